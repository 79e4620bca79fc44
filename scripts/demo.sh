#!/usr/bin/env bash
# demo.sh — learning-runner end to end against a real, throwaway PostgreSQL.
#
# 1. starts a private cluster (scripts/throwaway-pg.sh; stopped again on any exit),
#    creates database gustav_demo and applies the schema with `learning-runner migrate`
#    as the superuser;
# 2. gives the NOLOGIN role gustav_worker LOGIN and a random password, as production
#    does out of band;
# 3. enqueues submissions the way GUSTAV's web app does (as gustav_limited under the
#    student's RLS identity, submission + job in one transaction, payload of contract §4):
#    three texts, two photos, one PDF, one photo whose vision fails once
#    (stub_fault=transient_once) and one text whose feedback fails for good
#    ([[stub:feedback-permanent]]);
# 4. runs the runner as gustav_worker until the queue is drained, scrapes /metrics and
#    /internal/health/learning-worker, stops it with SIGTERM;
# 5. prints the outcome, the health report and the key metrics, and exits non-zero
#    unless everything completed except exactly the one permanent failure.
#
# With AI=local (a real Ollama; nothing is faked):
# - the photos and the PDF are real files: small PNGs with German school work written on
#   them (drawn by python3 with a built-in bitmap font) and a two-page PDF without
#   pre-rendered pages (as GUSTAV's upload flow stores it: the runner renders it); they go
#   into a temporary STORAGE_VERIFY_ROOT under GUSTAV's storage keys and the submissions
#   record their true size_bytes and sha256;
# - the two stub fault-injection submissions are left out (they mean something only to
#   the stub): six submissions;
# - `learning-runner preflight` runs first, as the runner will (printed; the demo stops with
#   its fix lines when a check fails);
# - the runner runs with WORKER_CONCURRENCY=1 and 300 s model timeouts by default, and the
#   drain may take DEMO_TIMEOUT_SECONDS (default 900): model calls are slow, on a CPU very;
# - the checks: every submission completed with a criteria.v2 analysis (one result per
#   criterion) and feedback, Ollama and both models reported healthy, clean stop, no student
#   data in the log. Anything not completed is reported with its error code, last error and
#   a hint, and the demo exits non-zero.
#
# Environment:
#   LEARNING_RUNNER_BIN    the binary (default target/debug/learning-runner; built with
#                          `cargo build -p learning-runner` when missing)
#   AI / AI_BACKEND        stub (default) or local (Ollama)
#   AI_STUB_DELAY_MS       simulated model latency of the stub (default 250)
#   DEMO_TIMEOUT_SECONDS   how long the queue may take to drain (default 60; local 900)
#   DEMO_CONCURRENCY       WORKER_CONCURRENCY of the runner (default 4; local 1)
#   DEMO_LOG_DIR           where the runner's logs go (default target/demo)
#   Local backend only (all passed to preflight and the runner):
#   OLLAMA_BASE_URL        default http://127.0.0.1:11434 (the runner's own default is the
#                          in-cluster http://ollama:11434)
#   AI_VISION_MODEL, AI_FEEDBACK_MODEL   the runner's defaults when unset
#   AI_TIMEOUT_VISION, AI_TIMEOUT_FEEDBACK   seconds per call, default 300 here (max 300)
#   OLLAMA_PULL_MISSING    true: missing models are pulled by the runner at start (preflight's
#                          "models present" failure is then tolerated; the download counts
#                          against DEMO_TIMEOUT_SECONDS)
#   LEARNING_DSPY_JSON_ADAPTER, AI_THINK_LEVEL, OLLAMA_KEEP_ALIVE   passed through unchanged
#
# Needs: bash, psql and the PostgreSQL server binaries (the 'postgresql' package, installed
# by throwaway-pg.sh when missing and root), curl; jq only for pretty JSON; python3 for
# AI=local (it draws the sample files).
set -euo pipefail

PROG=demo
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PG_SCRIPT=$ROOT/scripts/throwaway-pg.sh
RUNNER_BIN=${LEARNING_RUNNER_BIN:-$ROOT/target/debug/learning-runner}
LOG_DIR=${DEMO_LOG_DIR:-$ROOT/target/demo}
BACKEND=${AI:-${AI_BACKEND:-stub}}
BACKEND=${BACKEND,,}
STUB_DELAY_MS=${AI_STUB_DELAY_MS:-250}
DB_NAME=gustav_demo
if [[ $BACKEND == local ]]; then
    LOCAL=true
    TIMEOUT_S=${DEMO_TIMEOUT_SECONDS:-900}
    CONCURRENCY=${DEMO_CONCURRENCY:-1}
    OLLAMA_URL=${OLLAMA_BASE_URL:-http://127.0.0.1:11434}
    TIMEOUT_VISION=${AI_TIMEOUT_VISION:-300}
    TIMEOUT_FEEDBACK=${AI_TIMEOUT_FEEDBACK:-300}
    STOP_WAIT_S=60
else
    LOCAL=false
    TIMEOUT_S=${DEMO_TIMEOUT_SECONDS:-60}
    CONCURRENCY=${DEMO_CONCURRENCY:-4}
    STOP_WAIT_S=30
fi

export PGCLIENTENCODING=UTF8 PGCONNECT_TIMEOUT=10

PG_DIR=
FILES_DIR=
RUNNER_PID=
FAILURES=()

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

note() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

step() {
    printf '\n==> %s\n' "$*"
}

check() {
    # check DESCRIPTION COMMAND...: records a failure instead of exiting.
    local what=$1
    shift
    if "$@"; then
        printf '  ok    %s\n' "$what"
    else
        printf '  FAIL  %s\n' "$what"
        FAILURES+=("$what")
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $RUNNER_PID ]] && kill -0 "$RUNNER_PID" 2>/dev/null; then
        kill -TERM "$RUNNER_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$RUNNER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$RUNNER_PID" 2>/dev/null || true
        wait "$RUNNER_PID" 2>/dev/null || true
    fi
    if [[ -n $PG_DIR ]]; then
        bash "$PG_SCRIPT" stop "$PG_DIR" >/dev/null 2>&1 ||
            note "could not stop the throwaway cluster in $PG_DIR"
    fi
    if [[ -n $FILES_DIR ]]; then
        rm -rf -- "$FILES_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

new_uuid() {
    cat /proc/sys/kernel/random/uuid
}

random_hex() {
    od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

# A TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
    local port tries
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "could not find a free TCP port on 127.0.0.1"
}

psql_db() {
    psql "$DB_URL" -X -q -v ON_ERROR_STOP=1 "$@"
}

# A single value from a query.
sql_value() {
    psql_db -At -c "$1"
}

runner_alive() {
    kill -0 "$RUNNER_PID" 2>/dev/null
}

show_runner_log() {
    note "last lines of $LOG_DIR/runner.log:"
    tail -n 20 "$LOG_DIR/runner.log" >&2 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------
command -v psql >/dev/null 2>&1 ||
    die "psql not found: install the 'postgresql' package (make deps does, as root)"
command -v curl >/dev/null 2>&1 || die "curl not found (make deps installs it, as root)"
[[ $BACKEND == stub || $BACKEND == local ]] ||
    die "AI=$BACKEND: use AI=stub (the default) or AI=local (a local Ollama)"
[[ $TIMEOUT_S =~ ^[0-9]+$ && $TIMEOUT_S -gt 0 ]] ||
    die "DEMO_TIMEOUT_SECONDS must be a positive whole number of seconds"
[[ $CONCURRENCY =~ ^[0-9]+$ && $CONCURRENCY -gt 0 ]] ||
    die "DEMO_CONCURRENCY must be a positive whole number"
if [[ $LOCAL == true ]]; then
    command -v python3 >/dev/null 2>&1 ||
        die "AI=local needs python3 to draw the sample images and the PDF (apt-get install python3)"
fi
if [[ ! -x $RUNNER_BIN ]]; then
    command -v cargo >/dev/null 2>&1 ||
        die "$RUNNER_BIN is missing and cargo is not installed: build the runner first"
    note "$RUNNER_BIN is missing; building it (cargo build -p learning-runner)"
    (cd "$ROOT" && cargo build -p learning-runner) || die "cargo build -p learning-runner failed"
fi
mkdir -p "$LOG_DIR"
: >"$LOG_DIR/runner.log"
: >"$LOG_DIR/runner.out"

# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------
step "Starting a throwaway PostgreSQL"
PG_DIR=$(mktemp -d /tmp/gustav-demo.XXXXXX)
ADMIN_URL=$(bash "$PG_SCRIPT" start "$PG_DIR" 2>"$LOG_DIR/postgres-start.log") || {
    cat "$LOG_DIR/postgres-start.log" >&2
    die "could not start PostgreSQL (see above)"
}
[[ $ADMIN_URL == postgres://*/postgres ]] || die "unexpected URL from throwaway-pg.sh: $ADMIN_URL"
DB_URL=${ADMIN_URL%/postgres}/$DB_NAME
echo "cluster in $PG_DIR, listening on ${ADMIN_URL#*@}" | sed 's|/postgres$||'

psql "$ADMIN_URL" -X -q -v ON_ERROR_STOP=1 -c "create database $DB_NAME" ||
    die "create database $DB_NAME failed"

step "Applying the schema: learning-runner migrate (as the superuser postgres)"
env -u DATABASE_URL -u LEARNING_DB_URL LEARNING_DATABASE_URL="$DB_URL" LOG_LEVEL=warn LOG_FORMAT=plain \
    "$RUNNER_BIN" migrate || die "learning-runner migrate failed"

step "Giving gustav_worker LOGIN with a random password (as production does out of band)"
WORKER_PASSWORD=$(random_hex 18)
# Via stdin, so the password is never on a command line.
psql_db <<SQL || die "alter role gustav_worker failed"
alter role gustav_worker login password '$WORKER_PASSWORD';
SQL
WORKER_URL="postgres://gustav_worker:$WORKER_PASSWORD@${DB_URL#*@}"
# The runner gets the DSN (with its password) through the environment only, never an argument list.
export LEARNING_DATABASE_URL="$WORKER_URL"
echo "role gustav_worker: LOGIN, password of $((${#WORKER_PASSWORD} * 4)) random bits (not shown)"

# What preflight and the runner are started with (besides what each adds).
RUNNER_UNSET=(-u DATABASE_URL -u LEARNING_DB_URL -u LEARNING_ALLOW_SUPERUSER_DSN -u WORKER_EXIT_WHEN_DRAINED)
LOCAL_ENV=()
if [[ $LOCAL == true ]]; then
    FILES_DIR=$(mktemp -d /tmp/gustav-demo-files.XXXXXX)
    STORAGE_ROOT=$FILES_DIR/storage
    mkdir -p "$STORAGE_ROOT" "$FILES_DIR/drawn"
    # The demo's files are all below STORAGE_ROOT: no Supabase fallback.
    RUNNER_UNSET+=(-u SUPABASE_URL -u SUPABASE_SERVICE_ROLE_KEY)
    LOCAL_ENV=(
        OLLAMA_BASE_URL="$OLLAMA_URL"
        STORAGE_VERIFY_ROOT="$STORAGE_ROOT"
        AI_TIMEOUT_VISION="$TIMEOUT_VISION"
        AI_TIMEOUT_FEEDBACK="$TIMEOUT_FEEDBACK"
    )
fi

# ---------------------------------------------------------------------------
# Preflight (local backend)
# ---------------------------------------------------------------------------
pull_missing() {
    [[ ${OLLAMA_PULL_MISSING:-false} =~ ^([Tt][Rr][Uu][Ee]|1|[Yy]([Ee][Ss])?|[Oo][Nn]|[Tt])$ ]]
}

if [[ $LOCAL == true ]]; then
    step "Preflight: learning-runner preflight (as gustav_worker, AI_BACKEND=local, OLLAMA_BASE_URL=$OLLAMA_URL)"
    preflight_rc=0
    PREFLIGHT=$(env "${RUNNER_UNSET[@]}" AI_BACKEND=local \
            "${LOCAL_ENV[@]}" LOG_FORMAT=plain LOG_LEVEL=warn \
            "$RUNNER_BIN" preflight 2>"$LOG_DIR/preflight.log") || preflight_rc=$?
    printf '%s\n' "$PREFLIGHT"
    if ((preflight_rc != 0)); then
        failed_checks=()
        fixes=
        while IFS= read -r line; do
            case $line in
            "✘ "*)
                line=${line#✘ }
                failed_checks+=("${line%% — *}")
                ;;
            "    fix: "*) fixes+="  - ${line#    fix: }"$'\n' ;;
            esac
        done <<<"$PREFLIGHT"
        if pull_missing && [[ ${failed_checks[*]-} == "models present" ]]; then
            note "OLLAMA_PULL_MISSING=${OLLAMA_PULL_MISSING}: the runner pulls the missing model(s) at start;" \
                "the download counts against the ${TIMEOUT_S} s drain timeout (DEMO_TIMEOUT_SECONDS)"
        else
            if [[ -z $PREFLIGHT ]]; then
                tail -n 20 "$LOG_DIR/preflight.log" >&2 || true
            fi
            die "preflight failed (exit status $preflight_rc), nothing was enqueued; to fix:"$'\n'"${fixes:-  see the messages above}"
        fi
    fi
    [[ $PREFLIGHT =~ vision=([^[:space:]]+)\ feedback=([^[:space:]]+) ]] ||
        die "preflight did not print the configured models (vision=… feedback=…)"
    VISION_MODEL=${BASH_REMATCH[1]}
    FEEDBACK_MODEL=${BASH_REMATCH[2]}
fi

# ---------------------------------------------------------------------------
# Sample files (local backend): real PNGs and a PDF, drawn with python3
# ---------------------------------------------------------------------------
# Writes math.png and physics.png (photos of handwritten-like work, drawn with a 5x7 bitmap
# font) and arbeitsblatt.pdf (two A4 pages of Helvetica text, no page images: the runner
# renders it) into the directory $1.
draw_sample_files() {
    python3 - "$1" <<'PY'
import struct, sys, zlib

OUT = sys.argv[1]

# A 5x7 bitmap font (rows top to bottom; rows 7-8 are descenders), enough for German
# school texts. Unknown characters are drawn as '?'.
G = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "Ä": "#...# .###. #...# #...# ##### #...# #...#",
    "Ö": "#...# .###. #...# #...# #...# #...# .###.",
    "Ü": "#...# ..... #...# #...# #...# #...# .###.",
    "a": "..... ..... .###. ....# .#### #...# .####",
    "b": "#.... #.... #.##. ##..# #...# #...# ####.",
    "c": "..... ..... .###. #.... #.... #...# .###.",
    "d": "....# ....# .##.# #..## #...# #...# .####",
    "e": "..... ..... .###. #...# ##### #.... .###.",
    "f": "..##. .#..# .#... ###.. .#... .#... .#...",
    "g": "..... ..... .#### #...# #...# #...# .#### ....# .###.",
    "h": "#.... #.... #.##. ##..# #...# #...# #...#",
    "i": "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
    "j": "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..",
    "k": "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
    "l": ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "m": "..... ..... ##.#. #.#.# #.#.# #...# #...#",
    "n": "..... ..... #.##. ##..# #...# #...# #...#",
    "o": "..... ..... .###. #...# #...# #...# .###.",
    "p": "..... ..... ####. #...# #...# #...# ####. #.... #....",
    "q": "..... ..... .#### #...# #...# #...# .#### ....# ....#",
    "r": "..... ..... #.##. ##..# #.... #.... #....",
    "s": "..... ..... .#### #.... .###. ....# ####.",
    "t": ".#... .#... ###.. .#... .#... .#..# ..##.",
    "u": "..... ..... #...# #...# #...# #..## .##.#",
    "v": "..... ..... #...# #...# #...# .#.#. ..#..",
    "w": "..... ..... #...# #...# #.#.# #.#.# .#.#.",
    "x": "..... ..... #...# .#.#. ..#.. .#.#. #...#",
    "y": "..... ..... #...# #...# #...# #...# .#### ....# .###.",
    "z": "..... ..... ##### ...#. ..#.. .#... #####",
    "ä": ".#.#. ..... .###. ....# .#### #...# .####",
    "ö": ".#.#. ..... .###. #...# #...# #...# .###.",
    "ü": ".#.#. ..... #...# #...# #...# #..## .##.#",
    "ß": ".##.. #..#. #..#. #.#.. #..#. #...# #.##.",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    " ": "",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... ..... .##.. ..#.. .#...",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    ";": "..... .##.. .##.. ..... .##.. ..#.. .#...",
    "-": "..... ..... ..... .###. ..... ..... .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "{": "...## ..#.. ..#.. .#... ..#.. ..#.. ...##",
    "}": "##... ..#.. ..#.. ...#. ..#.. ..#.. ##...",
    "/": "..... ....# ...#. ..#.. .#... #.... .....",
    "|": "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
    "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
    "·": "..... ..... ..... ..#.. ..... ..... .....",
    '"': ".#.#. .#.#. ..... ..... ..... ..... .....",
    "²": ".##.. ...#. ..#.. .###. ..... ..... .....",
    "→": "..... ..#.. ...#. ##### ...#. ..#.. .....",
}
GLYPHS = {k: [r for r in v.split()] for k, v in G.items()}
ALIASES = {"–": "-", "—": "-", "„": '"', "“": '"', "”": '"', "×": "·"}


class Canvas:
    def __init__(self, w, h, paper=246):
        self.w, self.h = w, h
        self.px = bytearray([paper]) * (w * h)

    def dot(self, x, y, ink, size=1):
        for yy in range(y, y + size):
            if 0 <= yy < self.h:
                row = yy * self.w
                for xx in range(x, x + size):
                    if 0 <= xx < self.w:
                        self.px[row + xx] = ink

    def text(self, x, y, line, scale, ink=35):
        for ch in line:
            rows = GLYPHS.get(ALIASES.get(ch, ch), GLYPHS["?"])
            for r, bits in enumerate(rows):
                for c, b in enumerate(bits):
                    if b == "#":
                        self.dot(x + c * scale, y + r * scale, ink, scale)
            x += 6 * scale

    def line(self, x0, y0, x1, y1, width=3, ink=35):
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            self.dot(round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps), ink, width)

    def circle(self, cx, cy, r, width=3, ink=35):
        import math
        for i in range(720):
            a = math.pi * i / 360
            self.dot(round(cx + r * math.cos(a)), round(cy + r * math.sin(a)), ink, width)

    def fill(self, x0, y0, x1, y1, ink):
        for y in range(y0, y1):
            self.px[y * self.w + x0:y * self.w + x1] = bytes([ink]) * (x1 - x0)

    def png(self, path):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w:(y + 1) * self.w]) for y in range(self.h))

        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
            f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 0, 0, 0, 0)))
            f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
            f.write(chunk(b"IEND", b""))


def text_image(lines, scale, width=None, height=None, top=0, margin=40):
    lh = 11 * scale
    w = width or max(len(l) for l in lines) * 6 * scale + 2 * margin
    h = height or top + len(lines) * lh + 2 * margin
    c = Canvas(w, h)
    for i, l in enumerate(lines):
        c.text(margin, top + margin + i * lh, l, scale)
    return c


MATH = [
    "Mathematik - Lineares Gleichungssystem",
    "",
    "(I)  2x + y = 7",
    "(II) x - y = 2",
    "",
    "(II) nach x umstellen: x = y + 2",
    "in (I) einsetzen: 2(y + 2) + y = 7",
    "                  3y + 4 = 7   | -4",
    "                      3y = 3   | :3",
    "                       y = 1",
    "in (II): x = 1 + 2 = 3",
    "",
    "Probe: 2·3 + 1 = 7 und 3 - 1 = 2",
    "L = {(3 | 1)}",
]
PHYSICS_TOP = ["Physik - Reihenschaltung mit zwei Lampen"]
PHYSICS_BOTTOM = [
    "Die Lampen L1 und L2 sind hintereinander",
    "an die Batterie (4,5 V) angeschlossen.",
    "Der Strom ist überall gleich groß.",
    "Fällt eine Lampe aus, gehen beide aus.",
]
PAGE1 = [
    "Arbeitsblatt: Oxidation und Reduktion",
    "",
    "Aufgabe 1: Verbrennung von Magnesium",
    "",
    "2 Mg + O2 → 2 MgO",
    "",
    "Oxidation (Elektronenabgabe):",
    "   Mg → Mg2+ + 2 e-",
    "Reduktion (Elektronenaufnahme):",
    "   O2 + 4 e- → 2 O2-",
    "",
    "Magnesium gibt Elektronen ab, Sauerstoff nimmt",
    "sie auf. Oxidation und Reduktion laufen immer",
    "gleichzeitig ab: eine Redoxreaktion.",
]
PAGE2 = [
    "Aufgabe 2: Zink in Kupfersulfat-Lösung",
    "",
    "Zn + Cu2+ → Zn2+ + Cu",
    "",
    "Oxidation: Zn → Zn2+ + 2 e-",
    "Reduktion: Cu2+ + 2 e- → Cu",
    "",
    "Zink ist das Reduktionsmittel,",
    "die Kupfer-Ionen sind das Oxidationsmittel.",
    "Auf dem Zinkblech scheidet sich rotes",
    "Kupfer ab.",
]

text_image(MATH, 3).png(f"{OUT}/math.png")

# The physics photo: a title, a series circuit (battery, two lamps), an explanation.
scale = 3
width = max(len(l) for l in PHYSICS_TOP + PHYSICS_BOTTOM) * 6 * scale + 80
x0, y0, x1, y1 = 140, 170, width - 140, 400
c = Canvas(width, y1 + 120 + len(PHYSICS_BOTTOM) * 33 + 40)
c.text(40, 40, PHYSICS_TOP[0], scale)
mid = (x0 + x1) // 2
l1, l2 = x0 + (x1 - x0) // 3, x0 + 2 * (x1 - x0) // 3
c.line(x0, y0, l1 - 28, y0)
c.line(l1 + 28, y0, l2 - 28, y0)
c.line(l2 + 28, y0, x1, y0)
for lx in (l1, l2):
    c.circle(lx, y0 + 1, 26)
    c.line(lx - 18, y0 - 17, lx + 18, y0 + 19, 2)
    c.line(lx - 18, y0 + 19, lx + 18, y0 - 17, 2)
c.text(l1 - 18, y0 - 70, "L1", scale)
c.text(l2 - 18, y0 - 70, "L2", scale)
c.line(x1, y0, x1, y1)
c.line(x0, y0, x0, y1)
c.line(x1, y1, mid + 12, y1)
c.line(x0, y1, mid - 12, y1)
c.fill(mid - 13, y1 - 45, mid - 7, y1 + 47, 35)   # long plate (+)
c.fill(mid + 8, y1 - 22, mid + 18, y1 + 24, 35)   # short plate (-)
c.text(mid - 50, y1 + 60, "4,5 V", scale)
for i, l in enumerate(PHYSICS_BOTTOM):
    c.text(40, y1 + 120 + i * 33, l, scale)
c.png(f"{OUT}/physics.png")

# The PDF: two A4 pages of text.

def pdf_text(s):
    s = s.replace("→", "->")
    return s.encode("cp1252", "replace").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


objects = [b"<< /Type /Catalog /Pages 2 0 R >>", None, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
kids = []
for lines in (PAGE1, PAGE2):
    stream = b"BT /F1 13 Tf 16 TL 56 780 Td " + b" ".join(b"(" + pdf_text(l) + b") Tj T*" for l in lines) + b" ET"
    objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % len(objects))
    kids.append(len(objects))
objects[1] = b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % len(kids)
out = bytearray(b"%PDF-1.4\n")
offsets = []
for i, body in enumerate(objects, 1):
    offsets.append(len(out))
    out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
xref = len(out)
out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
with open(f"{OUT}/arbeitsblatt.pdf", "wb") as f:
    f.write(out)
PY
}

if [[ $LOCAL == true ]]; then
    step "Drawing the sample files (python3) and storing them below STORAGE_VERIFY_ROOT=$STORAGE_ROOT"
    draw_sample_files "$FILES_DIR/drawn" || die "python3 could not draw the sample files"
    for f in math.png physics.png arbeitsblatt.pdf; do
        [[ -s $FILES_DIR/drawn/$f ]] || die "python3 did not write $f"
    done
    (cd "$FILES_DIR/drawn" && for f in *; do
        printf '  %-17s %6s bytes  sha256 %s\n' "$f" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -c1-16)…"
    done)
fi

# ---------------------------------------------------------------------------
# Submissions, enqueued as GUSTAV's web app does
# ---------------------------------------------------------------------------
step "Enqueueing submissions as GUSTAV's web app does (submission + job in one transaction)"

COURSE_ID=$(new_uuid)
CASE_IDS=()
CASE_LABELS=()
CASE_NCRIT=()
STUDENT_SUBS=()
STORAGE_KEYS=()

# Copies the drawn file $1 to the storage key $2 below STORAGE_ROOT.
store_file() {
    mkdir -p "$STORAGE_ROOT/${2%/*}"
    cp -- "$FILES_DIR/drawn/$1" "$STORAGE_ROOT/$2"
    STORAGE_KEYS+=("$2")
}

# enqueue LABEL TASK_ID KIND TEXT EXT MIME SIZE METADATA_JSON CRITERIA_JSON INSTRUCTION HINTS [FILE]
# Prints nothing; remembers the submission id under LABEL for the outcome table.
# A file submission (EXT jpg, png or pdf) gets a storage key exactly as GUSTAV's web app
# builds it: submissions/{course}/{task}/{student}/{epoch_ms}-{uuid hex}.{ext}.
# The stub never reads files: SIZE is made up and the hash is that of the key. With the local
# backend FILE names a drawn file, stored under the key with its true size and SHA-256.
enqueue() {
    local label=$1 task_id=$2 kind=$3 text=$4 ext=$5 mime=$6 size=$7 metadata=$8
    local criteria=$9 instruction=${10} hints=${11} file=${12-}
    local id sub sha='' storage_key=''
    id=$(new_uuid)
    sub=$(new_uuid) # an OIDC subject, as GUSTAV's identity provider issues them
    if [[ -n $ext ]]; then
        local object
        object=$(new_uuid)
        storage_key="submissions/$COURSE_ID/$task_id/$sub/$(date +%s%3N)-${object//-/}.$ext"
    fi
    if [[ $LOCAL == true && -n $file ]]; then
        store_file "$file" "$storage_key"
        size=$(stat -c %s "$STORAGE_ROOT/$storage_key")
        sha=$(sha256sum "$STORAGE_ROOT/$storage_key" | cut -c1-64)
    elif [[ -n $storage_key ]]; then
        sha=$(printf '%s' "$storage_key" | sha256sum | cut -c1-64)
        STORAGE_KEYS+=("$storage_key")
    fi
    psql_db \
        -v id="$id" -v course_id="$COURSE_ID" -v task_id="$task_id" -v sub="$sub" \
        -v kind="$kind" -v text_body="$text" -v storage_key="$storage_key" -v mime="$mime" \
        -v size="$size" -v sha="$sha" -v metadata="$metadata" -v criteria="$criteria" \
        -v instruction="$instruction" -v hints="$hints" -v idem="$(new_uuid)" <<'SQL'
begin;
-- The web app's role and the student's identity for row-level security.
set local role gustav_limited;
set local app.current_sub = :'sub';
with submission as (
    insert into public.learning_submissions
        (id, course_id, task_id, student_sub, kind, text_body, storage_key, mime_type,
         size_bytes, sha256, attempt_nr, idempotency_key, internal_metadata)
    values
        (:'id', :'course_id', :'task_id', :'sub', :'kind', nullif(:'text_body', ''),
         nullif(:'storage_key', ''), nullif(:'mime', ''), nullif(:'size', '')::integer,
         nullif(:'sha', ''), 1, :'idem', :'metadata'::jsonb)
    returning id, course_id, task_id, student_sub, kind, attempt_nr
)
insert into public.learning_submission_jobs (submission_id, payload)
select id,
       jsonb_build_object(
           'submission_id', id, 'course_id', course_id, 'task_id', task_id,
           'student_sub', student_sub, 'kind', kind, 'attempt_nr', attempt_nr,
           'criteria', :'criteria'::jsonb,
           'instruction_md', nullif(:'instruction', ''),
           'hints_md', nullif(:'hints', ''))
  from submission;
commit;
SQL
    CASE_IDS+=("$id")
    CASE_LABELS+=("$label")
    STUDENT_SUBS+=("$sub")
    local quotes=${criteria//[^\"]/}
    CASE_NCRIT+=($((${#quotes} / 2)))
}

TASK_ESSAY=$(new_uuid)
TASK_PROTOCOL=$(new_uuid)
TASK_HISTORY=$(new_uuid)
TASK_MATH=$(new_uuid)
TASK_PHYSICS=$(new_uuid)
TASK_CHEMISTRY=$(new_uuid)
TASK_GEOGRAPHY=$(new_uuid)
TASK_SUMMARY=$(new_uuid)

ESSAY_TEXT='Sollten Handys in der Schule erlaubt sein?

Viele Schülerinnen und Schüler wünschen sich, ihr Handy in den Pausen benutzen zu dürfen. Dafür spricht, dass man in Notfällen die Eltern erreichen kann und dass Apps wie Wörterbücher beim Lernen helfen.

Dagegen spricht jedoch, dass Handys vom Unterricht ablenken und Cybermobbing erleichtern. Außerdem reden in der Pause weniger Kinder miteinander.

Ich finde, Handys sollten im Unterricht nur erlaubt sein, wenn die Lehrkraft sie für eine Aufgabe einsetzt.'
PROTOCOL_TEXT='Versuchsprotokoll: Fotosynthese bei der Wasserpest

Fragestellung: Entsteht bei der Fotosynthese ein Gas?
Material: Wasserpest (Elodea), Becherglas, Trichter, Reagenzglas, Lampe.
Durchführung: Wir haben die Wasserpest unter einen Trichter gelegt und ein mit Wasser gefülltes Reagenzglas darübergestülpt. Dann wurde die Lampe eingeschaltet.
Beobachtung: Nach etwa zehn Minuten stiegen kleine Bläschen auf und sammelten sich oben im Reagenzglas.
Deutung: Die Pflanze bildet bei Licht Sauerstoff. Die Glimmspanprobe war positiv.'
HISTORY_TEXT='Ursachen des Ersten Weltkriegs

Der Erste Weltkrieg hatte mehrere Ursachen. Das Wettrüsten zwischen Deutschland und Großbritannien, vor allem bei der Flotte, erhöhte die Spannungen. Die Bündnissysteme sorgten dafür, dass aus einem regionalen Konflikt ein großer Krieg wurde. Der Anlass war das Attentat von Sarajevo am 28. Juni 1914.'
SUMMARY_TEXT='Inhaltsangabe: „Das Brot“ von Wolfgang Borchert

In der Kurzgeschichte wacht eine Frau nachts auf und findet ihren Mann in der Küche, wo er heimlich eine Scheibe Brot gegessen hat. [[stub:feedback-permanent]] Beide tun so, als sei nichts gewesen.'

CRITERIA_ESSAY='["Fachliche Richtigkeit", "Struktur", "Argumentation", "Sprache und Ausdruck"]'
CRITERIA_SCIENCE='["Fachliche Richtigkeit", "Struktur", "Fachsprache"]'
CRITERIA_HISTORY='["Fachliche Richtigkeit", "Struktur", "Quellenbezug"]'
CRITERIA_MATH='["Fachliche Richtigkeit", "Rechenweg", "Darstellung"]'
CRITERIA_SUMMARY='["Fachliche Richtigkeit", "Struktur", "Sprache und Ausdruck"]'

enqueue "Deutsch: Erörterung (Text)" "$TASK_ESSAY" text "$ESSAY_TEXT" "" "" "" '{}' \
    "$CRITERIA_ESSAY" \
    '## Erörterung
Nimm Stellung zur Frage, ob Handys in der Schule erlaubt sein sollten. Wäge Argumente ab und komme zu einem begründeten Urteil.' \
    'Denke an Einleitung, Hauptteil mit Pro und Contra und einen Schluss.'
enqueue "Biologie: Versuchsprotokoll (Text)" "$TASK_PROTOCOL" text "$PROTOCOL_TEXT" "" "" "" '{}' \
    "$CRITERIA_SCIENCE" \
    'Schreibe ein vollständiges Versuchsprotokoll zum Wasserpest-Versuch.' \
    'Gliederung: Fragestellung, Material, Durchführung, Beobachtung, Deutung.'
enqueue "Geschichte: Ursachen WK I (Text)" "$TASK_HISTORY" text "$HISTORY_TEXT" "" "" "" '{}' \
    "$CRITERIA_HISTORY" \
    'Erläutere drei Ursachen des Ersten Weltkriegs.' \
    ''
enqueue "Mathematik: Gleichungssystem (Foto)" "$TASK_MATH" image "" \
    png image/png 1843215 '{}' \
    "$CRITERIA_MATH" \
    'Löse das lineare Gleichungssystem mit dem Einsetzungsverfahren: 2x + y = 7, x − y = 2.' \
    'Mache die Probe.' math.png
enqueue "Physik: Stromkreis-Skizze (Foto)" "$TASK_PHYSICS" image "" \
    png image/png 975402 '{}' \
    "$CRITERIA_SCIENCE" \
    'Zeichne den Schaltplan einer Reihenschaltung mit zwei Lampen und beschrifte ihn.' \
    'Verwende die genormten Schaltzeichen.' physics.png
# A PDF as GUSTAV's upload flow stores it: no pre-rendered pages (no page_keys).
enqueue "Chemie: Arbeitsblatt Redox (PDF)" "$TASK_CHEMISTRY" file "" \
    pdf application/pdf 284133 '{}' \
    "$CRITERIA_SCIENCE" \
    'Bearbeite das Arbeitsblatt zu Oxidation und Reduktion.' \
    'Kennzeichne Elektronenabgabe und -aufnahme.' arbeitsblatt.pdf
# The stub's fault injection: meaningless to a real model, so left out with AI=local.
if [[ $LOCAL == false ]]; then
    enqueue "Erdkunde: Klimadiagramm (Foto, Fehler 1x)" "$TASK_GEOGRAPHY" image "" \
        jpg image/jpeg 2210877 '{"stub_fault": "transient_once"}' \
        "$CRITERIA_SCIENCE" \
        'Werte das Klimadiagramm von Manaus aus.' \
        'Beschreibe Temperatur und Niederschlag im Jahresverlauf.'
    enqueue "Deutsch: Inhaltsangabe (Text, Fehler dauerhaft)" "$TASK_SUMMARY" text "$SUMMARY_TEXT" "" "" "" '{}' \
        "$CRITERIA_SUMMARY" \
        'Schreibe eine Inhaltsangabe der Kurzgeschichte „Das Brot“.' \
        'Präsens, keine wörtliche Rede.'
fi

EXPECTED_TOTAL=${#CASE_IDS[@]}
if [[ $LOCAL == true ]]; then
    EXPECTED_COMPLETED=$EXPECTED_TOTAL
else
    TRANSIENT_ID=${CASE_IDS[6]}
    PERMANENT_ID=${CASE_IDS[7]}
    EXPECTED_COMPLETED=$((EXPECTED_TOTAL - 1))
fi

echo "$EXPECTED_TOTAL submissions, $(sql_value "select count(*) from learning_submission_jobs where status = 'queued'") queued jobs"

# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------
if [[ $LOCAL == true ]]; then
    step "Running learning-runner as gustav_worker (AI_BACKEND=local: vision $VISION_MODEL, feedback $FEEDBACK_MODEL, WORKER_CONCURRENCY=$CONCURRENCY)"
    BACKOFF_S=5
else
    step "Running learning-runner as gustav_worker (AI_BACKEND=$BACKEND, WORKER_CONCURRENCY=$CONCURRENCY)"
    BACKOFF_S=1
fi
HTTP_ADDR=127.0.0.1:$(free_port)
env "${RUNNER_UNSET[@]}" \
    AI_BACKEND="$BACKEND" \
    AI_STUB_DELAY_MS="$STUB_DELAY_MS" \
    WORKER_CONCURRENCY="$CONCURRENCY" \
    WORKER_BACKOFF_SECONDS="$BACKOFF_S" \
    LEARNING_HTTP_ADDR="$HTTP_ADDR" \
    LOG_FORMAT=plain \
    LOG_LEVEL=info \
    "${LOCAL_ENV[@]}" \
    "$RUNNER_BIN" >"$LOG_DIR/runner.out" 2>"$LOG_DIR/runner.log" &
RUNNER_PID=$!
echo "pid $RUNNER_PID, http://$HTTP_ADDR, log $LOG_DIR/runner.log"

started=$SECONDS
until curl -fsS --max-time 2 "http://$HTTP_ADDR/livez" >/dev/null 2>&1; do
    if ! runner_alive; then
        show_runner_log
        die "the runner exited at start (see its log above)"
    fi
    if ((SECONDS - started > 20)); then
        show_runner_log
        die "the runner's HTTP server did not answer on $HTTP_ADDR within 20 s"
    fi
    sleep 0.2
done

step "Waiting until no job is queued or leased (timeout ${TIMEOUT_S} s)"
started=$SECONDS
last_progress=$SECONDS
DRAIN_TIMED_OUT=false
while :; do
    unfinished=$(sql_value "select count(*) from learning_submission_jobs where status in ('queued', 'leased')")
    [[ $unfinished == 0 ]] && break
    if ! runner_alive; then
        show_runner_log
        die "the runner exited while $unfinished job(s) were still queued or leased"
    fi
    if ((SECONDS - started >= TIMEOUT_S)); then
        if [[ $LOCAL == true ]]; then
            # Model calls may simply be slow: report what did not finish instead of stopping here.
            echo "timed out after ${TIMEOUT_S} s with $unfinished job(s) still queued or leased (DEMO_TIMEOUT_SECONDS)"
            DRAIN_TIMED_OUT=true
            break
        fi
        psql_db -c "select status, retry_count, visible_at, leased_until from learning_submission_jobs order by created_at" >&2 || true
        show_runner_log
        die "timed out after ${TIMEOUT_S} s: $unfinished job(s) still queued or leased"
    fi
    if [[ $LOCAL == true ]] && ((SECONDS - last_progress >= 30)); then
        last_progress=$SECONDS
        echo "  $((SECONDS - started)) s: $(sql_value "select count(*) filter (where analysis_status = 'completed') || ' completed, ' ||
                count(*) filter (where analysis_status = 'failed') || ' failed, ' ||
                count(*) filter (where analysis_status in ('pending', 'extracted')) || ' pending'
           from learning_submissions")"
    fi
    sleep 0.5
done
[[ $DRAIN_TIMED_OUT == true ]] || echo "drained after $((SECONDS - started)) s"

# Counters move right after the finishing transaction commits: wait for the last ones.
DB_COMPLETED=$(sql_value "select count(*) from learning_submissions where analysis_status = 'completed'")
for ((i = 0; i < 50; i++)); do
    METRICS=$(curl -fsS --max-time 5 "http://$HTTP_ADDR/metrics") || die "GET /metrics failed"
    grep -qxF 'analysis_jobs_inflight 0' <<<"$METRICS" &&
        grep -qxF 'ai_worker_processed_total{status="completed"} '"$DB_COMPLETED" <<<"$METRICS" &&
        break
    sleep 0.1
done
HEALTH_HEADERS=$LOG_DIR/health.headers
HEALTH=$(curl -sS --max-time 5 -D "$HEALTH_HEADERS" -o - "http://$HTTP_ADDR/internal/health/learning-worker") ||
    die "GET /internal/health/learning-worker failed"
HEALTH_STATUS=$(head -n 1 "$HEALTH_HEADERS" | tr -d '\r')

step "Stopping the runner (SIGTERM)"
kill -TERM "$RUNNER_PID"
for ((i = 0; i < STOP_WAIT_S * 10; i++)); do
    runner_alive || break
    sleep 0.1
done
runner_alive && die "the runner did not stop within $STOP_WAIT_S s of SIGTERM"
runner_rc=0
wait "$RUNNER_PID" || runner_rc=$?
RUNNER_PID=
SUMMARY=$(grep -m 1 '^learning-runner stopped:' "$LOG_DIR/runner.out" || true)
echo "exit status $runner_rc; ${SUMMARY:-no summary line on stdout}"

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
CASES_SQL=
for i in "${!CASE_IDS[@]}"; do
    [[ -n $CASES_SQL ]] && CASES_SQL+=", "
    CASES_SQL+="($((i + 1)), '${CASE_IDS[$i]}'::uuid, '${CASE_LABELS[$i]}', ${CASE_NCRIT[$i]})"
done

step "Outcome (learning_submissions; student_sub and student text are not shown)"
psql_db -P footer=off <<SQL
select c.nr as "#",
       c.label as "submission",
       s.kind,
       s.analysis_status as status,
       coalesce(s.error_code, '-') as error_code,
       s.vision_attempts as vision_attempts,
       coalesce(left(regexp_replace(regexp_replace(s.feedback_md, '[*#_]', '', 'g'), '\s+', ' ', 'g'), 40) || '…',
                'error: ' || coalesce(s.feedback_last_error, s.vision_last_error)) as feedback,
       coalesce((s.analysis_json ->> 'score') || '/5 ' || (s.analysis_json ->> 'schema'), '-') as score
  from (values $CASES_SQL) as c(nr, id, label, ncrit)
  join public.learning_submissions s on s.id = c.id
 order by c.nr;
SQL

step "Jobs left in the queue (successful jobs are deleted)"
psql_db -P footer=off -c "select c.nr as \"#\", j.status, j.error_code, j.retry_count
  from public.learning_submission_jobs j join (values $CASES_SQL) as c(nr, id, label, ncrit) on c.id = j.submission_id
 order by c.nr"

metric() {
    awk -v name="$1" '$1 == name { print $2 }' <<<"$METRICS"
}
# The configured models the runner last saw missing (both when that is unknown).
missing_models() {
    local m found=false
    for m in "$VISION_MODEL" "$FEEDBACK_MODEL"; do
        if [[ $(metric "learning_runner_ollama_model_present{model=\"$m\"}") == 0 ]]; then
            echo "$m"
            found=true
        fi
    done
    [[ $found == true ]] || printf '%s\n' "$VISION_MODEL" "$FEEDBACK_MODEL"
}

# What a retry or failure reason from the runner log usually means with a real Ollama.
reason_hint() {
    case $1 in
    timeout) echo "a model call took longer than AI_TIMEOUT_VISION/AI_TIMEOUT_FEEDBACK (now $TIMEOUT_VISION/$TIMEOUT_FEEDBACK s, at most 300): is the model running on the CPU (learning_runner_ollama_gpu_offload_ratio below 1)? Use a GPU or smaller models" ;;
    connection_refused | connection_reset) echo "Ollama went away during the run: look at Ollama's own log (crashed, restarted, out of memory?)" ;;
    model_not_found) echo "a model is not installed: $(missing_models | sed 's/^/ollama pull /' | paste -sd ';' -) (or OLLAMA_PULL_MISSING=true)" ;;
    server_error) echo "Ollama answered with an error (HTTP 5xx): its log says why (often: not enough memory to load the model)" ;;
    rejected) echo "Ollama refused the request (HTTP 4xx other than 404): is AI_VISION_MODEL a vision model (it gets an image)?" ;;
    malformed_response | empty_answer) echo "the model answered with nothing usable; try again or another model" ;;
    pdf_not_rendered) echo "the PDF has no page_keys: GUSTAV's web app renders the pages; this runner does not render PDFs" ;;
    file_not_found | storage_unavailable | path_escape | size_mismatch | hash_mismatch | not_a_file | not_an_image | bad_page)
        echo "a storage problem with the demo's own files below $STORAGE_ROOT: a bug in the demo, please report it" ;;
    *) echo "see the runner log around the lines with reason=\"$1\"" ;;
    esac
}

if [[ $LOCAL == true ]]; then
    NOT_COMPLETED=$(sql_value "select count(*) from learning_submissions where analysis_status <> 'completed'")
    if ((NOT_COMPLETED > 0)); then
        step "Not completed: $NOT_COMPLETED submission(s), and why"
        psql_db -P footer=off <<SQL
select c.nr as "#", c.label as "submission", s.analysis_status as status,
       coalesce(s.error_code, '-') as error_code, s.vision_attempts,
       coalesce(s.vision_last_error, '-') as vision_last_error,
       coalesce(s.feedback_last_error, '-') as feedback_last_error
  from (values $CASES_SQL) as c(nr, id, label, ncrit)
  join public.learning_submissions s on s.id = c.id
 where s.analysis_status <> 'completed'
 order by c.nr;
SQL
    fi
    REASONS=$(grep -E 'event="learning\.job\.(retry_scheduled|failed)"' "$LOG_DIR/runner.log" |
        grep -oE 'reason="?[a-z_]+' | sed -E 's/^reason="?//' | sort | uniq -c | sort -rn || true)
    if [[ -n $REASONS ]]; then
        step "Retries and failures by reason (runner log), with what they usually mean"
        while read -r count reason; do
            printf '  %3d × %-20s %s\n' "$count" "$reason" "$(reason_hint "$reason")"
        done <<<"$REASONS"
    fi
    if grep -q 'event="learning\.ollama\.pull_failed"' "$LOG_DIR/runner.log"; then
        note "pulling a missing model at start failed (learning.ollama.pull_failed in $LOG_DIR/runner.log): run 'ollama pull' by hand"
    fi
fi

step "GET /internal/health/learning-worker"
echo "$HEALTH_STATUS"
grep -iE '^(cache-control|vary):' "$HEALTH_HEADERS" | tr -d '\r'
if command -v jq >/dev/null 2>&1; then jq . <<<"$HEALTH"; else echo "$HEALTH"; fi

step "GET /metrics (key lines)"
grep -E '^(analysis_jobs_inflight|ai_worker_(processed|retry|failed)_total)' <<<"$METRICS" |
    grep -Ev '^ai_worker_(processed|retry|failed)_total\{[^}]*\} 0$'
echo "(all other ai_worker_* series are 0)"
if [[ $LOCAL == true ]]; then
    grep -E '^learning_runner_(feedback_parse_total|ollama_(up|model_present|gpu_offload_ratio))' <<<"$METRICS" |
        grep -Ev '^learning_runner_feedback_parse_total\{[^}]*\} 0$'
    echo "(learning_runner_ollama_gpu_offload_ratio appears once a model has been loaded)"
fi

step "Log events (LOG_FORMAT=plain, LOG_LEVEL=info; full log: $LOG_DIR/runner.log)"
grep -oE 'event="?learning\.[a-z_.]+' "$LOG_DIR/runner.log" | sed -E 's/^event="?//' |
    sort | uniq -c | sort -k2
if [[ $LOCAL == true ]]; then
    echo
    grep -oE 'learning\.adapters\.selected backend=[^ ]+ vision=[^ ]+ feedback=[^ ]+' "$LOG_DIR/runner.log" | head -n 1 || true
    grep -oE 'learning\.feedback\.completed submission_id=[^ ]+ parse_status=[a-z_]+' "$LOG_DIR/runner.log" || true
fi

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------
step "Checks"
counts=$(sql_value "select count(*) filter (where analysis_status = 'completed') || ' ' ||
                           count(*) filter (where analysis_status = 'failed') || ' ' || count(*)
                      from learning_submissions")
read -r n_completed n_failed n_total <<<"$counts"
leaks=0
for secret in "${STUDENT_SUBS[@]}" "${STORAGE_KEYS[@]}" "Wasserpest" "Sarajevo" "Cybermobbing" "Borchert"; do
    if grep -qF -- "$secret" "$LOG_DIR/runner.log" "$LOG_DIR/runner.out"; then
        leaks=$((leaks + 1))
    fi
done

health_ok() {
    [[ $HEALTH_STATUS == *" 200"* && $HEALTH == *'"status":"healthy"'* && $HEALTH == *'"currentRole":"gustav_worker"'* ]]
}
stopped_ok() {
    [[ $runner_rc == 0 && $SUMMARY == *"completed=$EXPECTED_COMPLETED retried=1 failed=1 "* ]]
}

if [[ $LOCAL == false ]]; then
    check "$EXPECTED_COMPLETED of $EXPECTED_TOTAL submissions completed, exactly 1 failed" \
        test "$n_completed $n_failed $n_total" == "$EXPECTED_COMPLETED 1 $EXPECTED_TOTAL"
    check "the failure is the [[stub:feedback-permanent]] text, with feedback_failed" \
        test "$(sql_value "select analysis_status || ' ' || coalesce(error_code, '-') from learning_submissions where id = '$PERMANENT_ID'")" == "failed feedback_failed"
    check "every completed submission has a criteria.v2 analysis and feedback" \
        test "$(sql_value "select count(*) from learning_submissions where analysis_status = 'completed' and analysis_json ->> 'schema' = 'criteria.v2' and feedback_md <> '' and error_code is null")" == "$EXPECTED_COMPLETED"
    check "the transient_once photo was retried once, then completed (vision_attempts 2)" \
        test "$(sql_value "select analysis_status || ' ' || vision_attempts from learning_submissions where id = '$TRANSIENT_ID'")" == "completed 2"
    check "only the failed job is left: status failed, error_code feedback_failed, retry_count 0" \
        test "$(sql_value "select string_agg(status || ' ' || coalesce(error_code, '-') || ' ' || retry_count || ' ' || (submission_id = '$PERMANENT_ID'), ';') from learning_submission_jobs")" == "failed feedback_failed 0 true"
    check "health report: HTTP 200, healthy, currentRole gustav_worker" health_ok
    check "metrics: completed=$EXPECTED_COMPLETED, retried=1 (vision), failed=1 (feedback_failed), inflight 0" \
        test "$(metric 'ai_worker_processed_total{status="completed"}') $(metric 'ai_worker_processed_total{status="retried"}') $(metric 'ai_worker_retry_total{phase="vision"}') $(metric 'ai_worker_failed_total{error_code="feedback_failed"}') $(metric analysis_jobs_inflight)" == "$EXPECTED_COMPLETED 1 1 1 0"
    check "runner stopped cleanly on SIGTERM with completed=$EXPECTED_COMPLETED retried=1 failed=1" stopped_ok
    check "no student_sub, storage key or student text in the runner's log" test "$leaks" -eq 0

    if ((${#FAILURES[@]} > 0)); then
        printf '\n%s: FAILED: %d check(s) did not hold (runner log: %s)\n' "$PROG" "${#FAILURES[@]}" "$LOG_DIR/runner.log" >&2
        exit 1
    fi
    printf '\n%s: OK: %d submissions processed as expected\n' "$PROG" "$EXPECTED_TOTAL"
    exit 0
fi

# The local backend: a real model decides the scores, so the checks are about completeness
# and shape, not about particular results.
check "the queue drained within ${TIMEOUT_S} s (DEMO_TIMEOUT_SECONDS)" test "$DRAIN_TIMED_OUT" == false
check "all $EXPECTED_TOTAL submissions completed ($n_completed completed, $n_failed failed)" \
    test "$n_completed $n_total" == "$EXPECTED_TOTAL $EXPECTED_TOTAL"
check "every completed submission has feedback and a criteria.v2 analysis: one result per criterion, overall score 0..5" \
    test "$(sql_value "select count(*) from (values $CASES_SQL) as c(nr, id, label, ncrit)
                         join learning_submissions s on s.id = c.id
                        where s.analysis_status = 'completed' and s.error_code is null and s.feedback_md <> ''
                          and s.analysis_json ->> 'schema' = 'criteria.v2'
                          and (s.analysis_json ->> 'score')::int between 0 and 5
                          and jsonb_array_length(s.analysis_json -> 'criteria_results') = c.ncrit")" == "$n_completed"
local_health_ok() {
    [[ $HEALTH_STATUS == *" 200"* && $HEALTH == *'"status":"healthy"'* && $HEALTH == *'"currentRole":"gustav_worker"'* &&
        $HEALTH == *'"check":"ollama","status":"ok"'* && $HEALTH == *'"check":"models","status":"ok"'* ]]
}
check "health report: HTTP 200, healthy, currentRole gustav_worker, checks ollama and models ok" local_health_ok
check "metrics: learning_runner_ollama_up 1, both models present, completed=$n_completed, inflight 0" \
    test "$(metric learning_runner_ollama_up) $(metric "learning_runner_ollama_model_present{model=\"$VISION_MODEL\"}") $(metric "learning_runner_ollama_model_present{model=\"$FEEDBACK_MODEL\"}") $(metric 'ai_worker_processed_total{status="completed"}') $(metric analysis_jobs_inflight)" == "1 1 1 $n_completed 0"
check "log: learning.adapters.selected backend=local vision=$VISION_MODEL feedback=$FEEDBACK_MODEL" \
    grep -qF "learning.adapters.selected backend=local vision=$VISION_MODEL feedback=$FEEDBACK_MODEL" "$LOG_DIR/runner.log"
feedback_logged() {
    local id
    for id in $(sql_value "select id from learning_submissions where analysis_status = 'completed'"); do
        grep -qE "learning\.feedback\.completed submission_id=$id parse_status=(parsed_structured|parsed|fallback|no_criteria)" \
            "$LOG_DIR/runner.log" || return 1
    done
}
check "log: learning.feedback.completed submission_id=… parse_status=… for every completed submission" feedback_logged
local_stopped_ok() {
    [[ $runner_rc == 0 && $SUMMARY == *"completed=$n_completed "* ]]
}
check "runner stopped cleanly on SIGTERM (exit status 0, summary completed=$n_completed)" local_stopped_ok
check "no student_sub, storage key or student text in the runner's log" test "$leaks" -eq 0

# Worth knowing, but not a failure: how the analyses were obtained, and where the models ran.
fallbacks=$(metric 'learning_runner_feedback_parse_total{parse_status="fallback"}')
if [[ -n $fallbacks && $fallbacks != 0 ]]; then
    note "$fallbacks analysis/analyses fell back to the deterministic result (score 0, 'bitte durch die Lehrkraft prüfen'):" \
        "the feedback model gave unusable JSON twice; keep LEARNING_DSPY_JSON_ADAPTER=true or try a larger model"
fi
while read -r series value; do
    [[ -n $series ]] || continue
    if awk -v v="$value" 'BEGIN { exit !(v < 0.999) }'; then
        model=$(sed -E 's/.*model="([^"]*)".*/\1/' <<<"$series")
        note "$model ran $(awk -v v="$value" 'BEGIN { printf "%.0f", v * 100 }')% on the GPU, the rest on the CPU (slow):" \
            "see learning_runner_ollama_gpu_offload_ratio in the README's runbook"
    fi
done < <(grep -E '^learning_runner_ollama_gpu_offload_ratio\{' <<<"$METRICS" || true)

if ((${#FAILURES[@]} > 0)); then
    printf '\n%s: FAILED: %d check(s) did not hold; the reasons and hints are above (runner log: %s)\n' \
        "$PROG" "${#FAILURES[@]}" "$LOG_DIR/runner.log" >&2
    exit 1
fi
printf '\n%s: OK: %d submissions processed by the local backend (vision %s, feedback %s)\n' \
    "$PROG" "$EXPECTED_TOTAL" "$VISION_MODEL" "$FEEDBACK_MODEL"
