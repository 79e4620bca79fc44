#!/usr/bin/env bash
# throwaway-pg.sh — a private, disposable PostgreSQL cluster for tests.
#
#   throwaway-pg.sh start DIR   create a cluster in DIR, start it on a free port of
#                               127.0.0.1, print its URL (the only line on stdout):
#                               postgres://postgres@127.0.0.1:PORT/postgres
#   throwaway-pg.sh url DIR     print that URL again
#   throwaway-pg.sh stop DIR    stop the cluster (immediate) and remove DIR
#   throwaway-pg.sh restart DIR restart it (pg_ctl restart -m fast), same port (chaos tests)
#   throwaway-pg.sh halt DIR    stop it (-m fast) but keep DIR, to be resumed (chaos tests)
#   throwaway-pg.sh resume DIR  start a halted cluster again on its port (chaos tests)
#
# The cluster is tuned for speed, not durability (fsync off, trust auth, only on
# 127.0.0.1 and a Unix socket inside DIR). Binaries: initdb/pg_ctl from PATH, else
# the newest /usr/lib/postgresql/*/bin; when missing and running as root, the
# Debian `postgresql` package is installed. initdb/pg_ctl refuse to run as root, so
# as root they run as the `postgres` system user (created when missing) and DIR is
# handed to it. All diagnostics go to stderr.
set -euo pipefail

PROG=${0##*/}

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

note() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

usage() {
    cat >&2 <<EOF
usage: $PROG start DIR | stop DIR | url DIR | restart DIR | halt DIR | resume DIR
EOF
    exit 2
}

is_root() {
    [[ $(id -u) -eq 0 ]]
}

# Directory holding both initdb and pg_ctl, or empty.
find_pg_bindir() {
    local initdb_path pg_ctl_path dir
    initdb_path=$(command -v initdb 2>/dev/null || true)
    pg_ctl_path=$(command -v pg_ctl 2>/dev/null || true)
    if [[ -n $initdb_path && -n $pg_ctl_path ]]; then
        dirname "$(readlink -f "$pg_ctl_path")"
        return 0
    fi
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null |
        sort -V | tail -n 1 || true)
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then
        printf '%s\n' "$dir"
    fi
}

PG_BINDIR=
ensure_pg_binaries() {
    PG_BINDIR=$(find_pg_bindir)
    [[ -n $PG_BINDIR ]] && return 0
    if ! is_root; then
        die "initdb/pg_ctl not found (PATH, /usr/lib/postgresql/*/bin): install the 'postgresql' package (e.g. sudo apt-get install -y postgresql)"
    fi
    note "initdb/pg_ctl not found; installing the 'postgresql' package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2 || die "apt-get update failed"
    apt-get install -y --no-install-recommends postgresql >&2 ||
        die "apt-get install postgresql failed"
    PG_BINDIR=$(find_pg_bindir)
    [[ -n $PG_BINDIR ]] || die "the 'postgresql' package is installed but initdb/pg_ctl are still missing"
}

# Run a PostgreSQL binary, as the postgres user when we are root. Runs from DIR so
# an unreadable current directory (e.g. /root) does not bother the binaries.
run_pg() {
    local bin=$1
    shift
    if is_root; then
        (cd "$DIR" && runuser -u postgres -- "$PG_BINDIR/$bin" "$@")
    else
        (cd "$DIR" && "$PG_BINDIR/$bin" "$@")
    fi
}

ensure_postgres_user() {
    if ! id -u postgres >/dev/null 2>&1; then
        note "creating system user 'postgres'"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin postgres >&2 || die "useradd postgres failed"
    fi
}

# A TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
    local port tries
    if command -v python3 >/dev/null 2>&1 &&
        port=$(python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
' 2>/dev/null) && [[ $port =~ ^[0-9]+$ ]]; then
        printf '%s\n' "$port"
        return 0
    fi
    # Fallback: probe random high ports with bash's /dev/tcp; a refused connect
    # means no listener.
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "could not find a free TCP port on 127.0.0.1"
}

set_dir() {
    [[ -n ${1:-} ]] || usage
    DIR=$1
}

absolute_dir() {
    (cd "$DIR" && pwd -P) || die "cannot enter $DIR"
}

url_for_port() {
    printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$1"
}

cmd_start() {
    set_dir "${1:-}"
    ensure_pg_binaries

    mkdir -p "$DIR" || die "cannot create $DIR"
    DIR=$(absolute_dir)
    # DIR ends up inside pg_ctl's -o string, which a shell splits.
    if [[ $DIR =~ [[:space:]\'\"\\\$\`] ]]; then
        die "DIR must not contain whitespace, quotes, backslashes, \$ or backticks: $DIR"
    fi
    if [[ -e $DIR/data ]]; then
        die "$DIR/data already exists: stop (and remove) that cluster first"
    fi
    # The postgres user must be able to reach DIR (mktemp -d makes it 0700).
    chmod 0755 "$DIR"

    if is_root; then
        ensure_postgres_user
        chown postgres: "$DIR"
        if ! runuser -u postgres -- test -x "$DIR" || ! runuser -u postgres -- test -w "$DIR"; then
            die "user 'postgres' cannot reach $DIR (a parent directory is not searchable); use a directory under /tmp"
        fi
    fi

    note "initdb in $DIR/data (binaries: $PG_BINDIR)"
    run_pg initdb -D "$DIR/data" -A trust -U postgres --no-sync -E UTF8 --locale=C >&2 ||
        die "initdb failed"

    # Unix socket inside DIR unless that path would exceed the sockaddr_un limit;
    # then no Unix socket at all (TCP is what the URL uses anyway).
    local sockopt
    if ((${#DIR} + 20 <= 100)); then
        sockopt="-k $DIR"
    else
        note "$DIR is too long for a Unix socket path; listening on TCP only"
        sockopt="-c unix_socket_directories=''"
    fi

    local attempt port options
    for ((attempt = 1; attempt <= 5; attempt++)); do
        port=$(free_port)
        note "starting PostgreSQL on 127.0.0.1:$port (attempt $attempt)"
        options="-p $port $sockopt -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        if run_pg pg_ctl -D "$DIR/data" -l "$DIR/postgres.log" -t 60 -o "$options" -w start >&2; then
            printf '%s\n' "$port" >"$DIR/port"
            printf '%s\n' "$options" >"$DIR/options"
            url_for_port "$port"
            return 0
        fi
        # Lost a race for the port: try another one. Anything else is fatal.
        if ! grep -qE 'could not bind|Address already in use' "$DIR/postgres.log" 2>/dev/null; then
            break
        fi
        # Do not match this attempt's bind error on the next round.
        : >"$DIR/postgres.log"
    done
    note "PostgreSQL did not start; last lines of $DIR/postgres.log:"
    tail -n 30 "$DIR/postgres.log" >&2 2>/dev/null || true
    run_pg pg_ctl -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    exit 1
}

cmd_stop() {
    set_dir "${1:-}"
    if [[ ! -d $DIR ]]; then
        note "$DIR does not exist; nothing to stop"
        return 0
    fi
    DIR=$(absolute_dir)
    if [[ -f $DIR/data/PG_VERSION ]]; then
        ensure_pg_binaries
        local rc=0
        run_pg pg_ctl -D "$DIR/data" status >/dev/null 2>&1 || rc=$?
        # pg_ctl status: 0 = running, 3 = not running, 4 = no data directory.
        if [[ $rc -eq 0 ]]; then
            run_pg pg_ctl -D "$DIR/data" -m immediate -w stop >&2 || {
                rc=0
                run_pg pg_ctl -D "$DIR/data" status >/dev/null 2>&1 || rc=$?
                [[ $rc -ne 0 ]] || die "could not stop the cluster in $DIR; not removing it"
            }
        else
            note "cluster in $DIR is not running"
        fi
    fi
    if [[ -e $DIR && ! -e $DIR/port && ! -e $DIR/data/PG_VERSION ]]; then
        die "$DIR does not look like a throwaway cluster (no port file, no data/PG_VERSION); not removing it"
    fi
    rm -rf -- "$DIR"
}

cmd_url() {
    set_dir "${1:-}"
    [[ -f $DIR/port ]] || die "$DIR/port not found: no cluster started in $DIR"
    local port
    port=$(<"$DIR/port")
    [[ $port =~ ^[0-9]+$ ]] || die "$DIR/port does not hold a port number"
    url_for_port "$port"
}

# The started cluster in DIR, or die.
started_dir() {
    set_dir "${1:-}"
    [[ -f $DIR/data/PG_VERSION && -f $DIR/options ]] || die "no cluster started in $DIR"
    DIR=$(absolute_dir)
    ensure_pg_binaries
}

cmd_restart() {
    started_dir "${1:-}"
    run_pg pg_ctl -D "$DIR/data" -l "$DIR/postgres.log" -t 60 -m fast -o "$(<"$DIR/options")" -w restart >&2 ||
        die "restart failed"
}

cmd_halt() {
    started_dir "${1:-}"
    run_pg pg_ctl -D "$DIR/data" -t 60 -m fast -w stop >&2 || die "halt failed"
}

cmd_resume() {
    started_dir "${1:-}"
    run_pg pg_ctl -D "$DIR/data" -l "$DIR/postgres.log" -t 60 -o "$(<"$DIR/options")" -w start >&2 ||
        die "resume failed"
}

main() {
    [[ $# -eq 2 ]] || usage
    case $1 in
    start) cmd_start "$2" ;;
    stop) cmd_stop "$2" ;;
    url) cmd_url "$2" ;;
    restart) cmd_restart "$2" ;;
    halt) cmd_halt "$2" ;;
    resume) cmd_resume "$2" ;;
    *) usage ;;
    esac
}

main "$@"
