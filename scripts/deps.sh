#!/usr/bin/env bash
# deps.sh — make sure the Debian packages the entry points use are present.
#
#   postgresql (initdb, pg_ctl, psql: throwaway clusters for the tests and the demo)
#   prometheus (promtool: the metrics exposition check)
#   the shellcheck linter for the shell scripts
#   curl, jq (the demo's HTTP scrapes and JSON output)
#   python3 (`make demo AI=local` draws its sample images and PDF with it; the PyPI step
#   below runs on it)
# and, from PyPI, kubernetes-validate (checks rendered manifests against the upstream schemas).
#
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

# --- Debian packages ---------------------------------------------------------------
apt_packages() {
    local missing=()
    have_pg_server && have psql || missing+=(postgresql)
    have promtool || missing+=(prometheus)
    have shellcheck || missing+=(shellcheck)
    have curl || missing+=(curl)
    have jq || missing+=(jq)
    have python3 || missing+=(python3)

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
        note "continuing without them: the steps that need them are skipped or will say so"
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

# --- PyPI: kubernetes-validate ---------------------------------------------------------
python_tools() {
    if have kubernetes-validate; then
        note "kubernetes-validate present ($(kubernetes-validate --version 2>/dev/null || echo '?'))"
        return 0
    fi
    local python
    python=$(command -v python3 || true)
    if [[ -z $python ]]; then
        note "kubernetes-validate missing and no python3: install python3 and pip, then: pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
        exit 1
    fi
    note "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION from PyPI"
    "$python" -m pip install -q --disable-pip-version-check --root-user-action=ignore "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2 || {
        note "pip install kubernetes-validate failed: the manifest tests need it"
        exit 1
    }
    hash -r
    # pyenv installs console scripts behind shims that need a rehash.
    if ! have kubernetes-validate && have pyenv; then
        pyenv rehash
    fi
    have kubernetes-validate || {
        note "kubernetes-validate was installed but is not on PATH ($("$python" -m site --user-base 2>/dev/null)/bin?)"
        exit 1
    }
}

apt_packages
python_tools
