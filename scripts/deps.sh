#!/usr/bin/env bash
# deps.sh — make sure the Debian packages the entry points use are present.
#
#   postgresql (initdb, pg_ctl, psql: throwaway clusters for the tests and the demo)
#   prometheus (promtool: the metrics exposition check)
#   the shellcheck linter for the shell scripts
#   curl, jq (the demo's HTTP scrapes and JSON output)
#   python3, only when AI (or AI_BACKEND) is local: `make demo AI=local` draws its sample
#   images and PDF with it
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

missing=()
have_pg_server && have psql || missing+=(postgresql)
have promtool || missing+=(prometheus)
have shellcheck || missing+=(shellcheck)
have curl || missing+=(curl)
have jq || missing+=(jq)
checked="postgresql, promtool, shellcheck, curl, jq"
demo_backend=${AI:-${AI_BACKEND:-stub}}
if [[ ${demo_backend,,} == local ]]; then
    have python3 || missing+=(python3)
    checked+=", python3"
fi

if ((${#missing[@]} == 0)); then
    note "all present ($checked)"
    exit 0
fi

if ((EUID != 0)); then
    note "missing: ${missing[*]}"
    note "install them as root: sudo make deps   (or: sudo apt-get install -y --no-install-recommends ${missing[*]})"
    for pkg in "${missing[@]}"; do
        case $pkg in
        postgresql | curl | python3)
            note "cannot continue without '$pkg'"
            exit 1
            ;;
        esac
    done
    note "continuing without them: the steps that need them are skipped or will say so"
    exit 0
fi

APT_LOG=${TMPDIR:-/tmp}/gustav-deps-apt.log

have apt-get || {
    note "missing: ${missing[*]}, and there is no apt-get: this helper knows Debian/Ubuntu only"
    exit 1
}

note "installing: ${missing[*]} (apt output: $APT_LOG)"
export DEBIAN_FRONTEND=noninteractive
apt_failed() {
    tail -n 30 "$APT_LOG" >&2 || true
    note "$1 failed (full output: $APT_LOG)"
    exit 1
}
apt-get update -q >"$APT_LOG" 2>&1 || apt_failed "apt-get update"
apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$APT_LOG" 2>&1 ||
    apt_failed "apt-get install ${missing[*]}"
note "installed: ${missing[*]}"
