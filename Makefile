# Every entry point of the workspace. `make` (or `make help`) lists the targets.
#
# The tests and the demo start their own throwaway PostgreSQL (scripts/throwaway-pg.sh);
# `make deps` installs the Debian packages they use when run as root.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RUNNER_BIN := $(TARGET_DIR)/debug/learning-runner
SHELL_SCRIPTS := $(wildcard scripts/*.sh .ci/run)

# First recipe line of every target that runs cargo.
require_cargo = @command -v $(CARGO) >/dev/null 2>&1 || { \
	echo "make: '$(CARGO)' not found: install a Rust toolchain (1.89 or newer, e.g. with rustup) and put cargo on PATH" >&2; \
	exit 1; }

# bash -n on every script; shellcheck too when it is installed.
shell_lint = for f in $(SHELL_SCRIPTS); do bash -n "$$f"; done; \
	if command -v shellcheck >/dev/null 2>&1; then shellcheck $(SHELL_SCRIPTS); \
	else echo "make: shellcheck not installed, only 'bash -n' ran on the scripts (make deps installs it)" >&2; fi

.PHONY: help build test demo bench crds fmt lint clean deps

help: ## List the targets (the default)
	@echo "usage: make TARGET"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  %-6s  %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## Build every crate of the workspace (debug)
	$(require_cargo)
	$(CARGO) build --workspace

test: deps ## Format check, clippy, shell-script lint, then every test (starts its own PostgreSQL)
	$(require_cargo)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(shell_lint)
	$(CARGO) test --workspace

demo: deps ## Run the runner end to end on sample submissions against a throwaway PostgreSQL
	$(require_cargo)
	$(CARGO) build -p learning-runner
	LEARNING_RUNNER_BIN="$(RUNNER_BIN)" bash scripts/demo.sh

bench: deps ## Run the queue benchmark (cargo bench -p learning-runner --bench queue)
	$(require_cargo)
	$(CARGO) bench -p learning-runner --bench queue

crds: ## Regenerate crds/learningworkers.learning.gustav.dev.yaml from the Rust types
	$(require_cargo)
	$(CARGO) run -q -p learning-operator -- crd > crds/learningworkers.learning.gustav.dev.yaml

fmt: ## Format all Rust code in place
	$(require_cargo)
	$(CARGO) fmt --all

lint: ## Clippy with warnings as errors, and bash -n / shellcheck on the scripts
	$(require_cargo)
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(shell_lint)

clean: ## Remove build output (target/) and the demo's logs
	$(require_cargo)
	$(CARGO) clean
	rm -rf target/demo

deps: ## Install missing tools (postgresql, prometheus, shellcheck, curl, jq; kubernetes-validate from PyPI) when root
	@bash scripts/deps.sh
