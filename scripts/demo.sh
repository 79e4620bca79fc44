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
# Environment:
#   LEARNING_RUNNER_BIN    the binary (default target/debug/learning-runner; built with
#                          `cargo build -p learning-runner` when missing)
#   AI / AI_BACKEND        passed through as AI_BACKEND (default stub). The local (Ollama)
#                          backend is not part of the runner yet: it refuses to start.
#   OLLAMA_BASE_URL        passed through unchanged
#   AI_STUB_DELAY_MS       simulated model latency of the stub (default 250)
#   DEMO_TIMEOUT_SECONDS   how long the queue may take to drain (default 60)
#   DEMO_LOG_DIR           where the runner's logs go (default target/demo)
#
# Needs: bash, psql and the PostgreSQL server binaries (the 'postgresql' package, installed
# by throwaway-pg.sh when missing and root), curl; jq only for pretty JSON.
set -euo pipefail

PROG=demo
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PG_SCRIPT=$ROOT/scripts/throwaway-pg.sh
RUNNER_BIN=${LEARNING_RUNNER_BIN:-$ROOT/target/debug/learning-runner}
TIMEOUT_S=${DEMO_TIMEOUT_SECONDS:-60}
LOG_DIR=${DEMO_LOG_DIR:-$ROOT/target/demo}
BACKEND=${AI:-${AI_BACKEND:-stub}}
STUB_DELAY_MS=${AI_STUB_DELAY_MS:-250}
DB_NAME=gustav_demo

export PGCLIENTENCODING=UTF8 PGCONNECT_TIMEOUT=10

PG_DIR=
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
[[ $TIMEOUT_S =~ ^[0-9]+$ && $TIMEOUT_S -gt 0 ]] ||
    die "DEMO_TIMEOUT_SECONDS must be a positive whole number of seconds"
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
echo "role gustav_worker: LOGIN, password of $((${#WORKER_PASSWORD} * 4)) random bits (not shown)"

# ---------------------------------------------------------------------------
# Submissions, enqueued as GUSTAV's web app does
# ---------------------------------------------------------------------------
step "Enqueueing submissions as GUSTAV's web app does (submission + job in one transaction)"

COURSE_ID=$(new_uuid)
CASE_IDS=()
CASE_LABELS=()
STUDENT_SUBS=()
STORAGE_KEYS=()

# enqueue LABEL TASK_ID KIND TEXT STORAGE_KEY MIME SIZE METADATA_JSON CRITERIA_JSON INSTRUCTION HINTS
# Prints nothing; remembers the submission id under LABEL for the outcome table.
enqueue() {
    local label=$1 task_id=$2 kind=$3 text=$4 storage_key=$5 mime=$6 size=$7 metadata=$8
    local criteria=$9 instruction=${10} hints=${11}
    local id sub sha=
    id=$(new_uuid)
    sub=$(new_uuid) # an OIDC subject, as GUSTAV's identity provider issues them
    storage_key=${storage_key//\{id\}/$id}
    metadata=${metadata//\{id\}/$id}
    if [[ -n $storage_key ]]; then
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
FILES="course/$COURSE_ID/task"

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
    "$FILES/$TASK_MATH/submissions/{id}/page1.png" image/png 1843215 '{}' \
    "$CRITERIA_MATH" \
    'Löse das lineare Gleichungssystem mit dem Einsetzungsverfahren: 2x + y = 7, x − y = 2.' \
    'Mache die Probe.'
enqueue "Physik: Stromkreis-Skizze (Foto)" "$TASK_PHYSICS" image "" \
    "$FILES/$TASK_PHYSICS/submissions/{id}/page1.png" image/png 975402 '{}' \
    "$CRITERIA_SCIENCE" \
    'Zeichne den Schaltplan einer Reihenschaltung mit zwei Lampen und beschrifte ihn.' \
    'Verwende die genormten Schaltzeichen.'
enqueue "Chemie: Arbeitsblatt Redox (PDF)" "$TASK_CHEMISTRY" file "" \
    "$FILES/$TASK_CHEMISTRY/submissions/{id}/arbeitsblatt.pdf" application/pdf 284133 \
    "{\"page_keys\": [\"$FILES/$TASK_CHEMISTRY/submissions/{id}/pages/page1.png\", \"$FILES/$TASK_CHEMISTRY/submissions/{id}/pages/page2.png\"]}" \
    "$CRITERIA_SCIENCE" \
    'Bearbeite das Arbeitsblatt zu Oxidation und Reduktion.' \
    'Kennzeichne Elektronenabgabe und -aufnahme.'
enqueue "Erdkunde: Klimadiagramm (Foto, Fehler 1x)" "$TASK_GEOGRAPHY" image "" \
    "$FILES/$TASK_GEOGRAPHY/submissions/{id}/page1.png" image/png 2210877 '{"stub_fault": "transient_once"}' \
    "$CRITERIA_SCIENCE" \
    'Werte das Klimadiagramm von Manaus aus.' \
    'Beschreibe Temperatur und Niederschlag im Jahresverlauf.'
enqueue "Deutsch: Inhaltsangabe (Text, Fehler dauerhaft)" "$TASK_SUMMARY" text "$SUMMARY_TEXT" "" "" "" '{}' \
    "$CRITERIA_SUMMARY" \
    'Schreibe eine Inhaltsangabe der Kurzgeschichte „Das Brot“.' \
    'Präsens, keine wörtliche Rede.'

TRANSIENT_ID=${CASE_IDS[6]}
PERMANENT_ID=${CASE_IDS[7]}
EXPECTED_TOTAL=${#CASE_IDS[@]}
EXPECTED_COMPLETED=$((EXPECTED_TOTAL - 1))

echo "$EXPECTED_TOTAL submissions, $(sql_value "select count(*) from learning_submission_jobs where status = 'queued'") queued jobs"

# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------
step "Running learning-runner as gustav_worker (AI_BACKEND=$BACKEND, WORKER_CONCURRENCY=4)"
HTTP_ADDR=127.0.0.1:$(free_port)
env -u DATABASE_URL -u LEARNING_DB_URL -u LEARNING_ALLOW_SUPERUSER_DSN -u WORKER_EXIT_WHEN_DRAINED \
    LEARNING_DATABASE_URL="$WORKER_URL" \
    AI_BACKEND="$BACKEND" \
    AI_STUB_DELAY_MS="$STUB_DELAY_MS" \
    WORKER_CONCURRENCY=4 \
    WORKER_BACKOFF_SECONDS=1 \
    LEARNING_HTTP_ADDR="$HTTP_ADDR" \
    LOG_FORMAT=plain \
    LOG_LEVEL=info \
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
while :; do
    unfinished=$(sql_value "select count(*) from learning_submission_jobs where status in ('queued', 'leased')")
    [[ $unfinished == 0 ]] && break
    if ! runner_alive; then
        show_runner_log
        die "the runner exited while $unfinished job(s) were still queued or leased"
    fi
    if ((SECONDS - started >= TIMEOUT_S)); then
        psql_db -c "select status, retry_count, visible_at, leased_until from learning_submission_jobs order by created_at" >&2 || true
        show_runner_log
        die "timed out after ${TIMEOUT_S} s: $unfinished job(s) still queued or leased"
    fi
    sleep 0.5
done
echo "drained after $((SECONDS - started)) s"

# Counters move right after the finishing transaction commits: wait for the last ones.
for ((i = 0; i < 50; i++)); do
    METRICS=$(curl -fsS --max-time 5 "http://$HTTP_ADDR/metrics") || die "GET /metrics failed"
    grep -qxF 'analysis_jobs_inflight 0' <<<"$METRICS" &&
        grep -qxF 'ai_worker_processed_total{status="completed"} '"$EXPECTED_COMPLETED" <<<"$METRICS" &&
        break
    sleep 0.1
done
HEALTH_HEADERS=$LOG_DIR/health.headers
HEALTH=$(curl -sS --max-time 5 -D "$HEALTH_HEADERS" -o - "http://$HTTP_ADDR/internal/health/learning-worker") ||
    die "GET /internal/health/learning-worker failed"
HEALTH_STATUS=$(head -n 1 "$HEALTH_HEADERS" | tr -d '\r')

step "Stopping the runner (SIGTERM)"
kill -TERM "$RUNNER_PID"
for ((i = 0; i < 300; i++)); do
    runner_alive || break
    sleep 0.1
done
runner_alive && die "the runner did not stop within 30 s of SIGTERM"
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
    CASES_SQL+="($((i + 1)), '${CASE_IDS[$i]}'::uuid, '${CASE_LABELS[$i]}')"
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
                'error: ' || s.feedback_last_error) as feedback,
       coalesce((s.analysis_json ->> 'score') || '/5 ' || (s.analysis_json ->> 'schema'), '-') as score
  from (values $CASES_SQL) as c(nr, id, label)
  join public.learning_submissions s on s.id = c.id
 order by c.nr;
SQL

step "Jobs left in the queue (successful jobs are deleted)"
psql_db -P footer=off -c "select c.nr as \"#\", j.status, j.error_code, j.retry_count
  from public.learning_submission_jobs j join (values $CASES_SQL) as c(nr, id, label) on c.id = j.submission_id
 order by c.nr"

step "GET /internal/health/learning-worker"
echo "$HEALTH_STATUS"
grep -iE '^(cache-control|vary):' "$HEALTH_HEADERS" | tr -d '\r'
if command -v jq >/dev/null 2>&1; then jq . <<<"$HEALTH"; else echo "$HEALTH"; fi

step "GET /metrics (key lines)"
grep -E '^(analysis_jobs_inflight|ai_worker_(processed|retry|failed)_total)' <<<"$METRICS" |
    grep -Ev '^ai_worker_(processed|retry|failed)_total\{[^}]*\} 0$'
echo "(all other ai_worker_* series are 0)"

step "Log events (LOG_FORMAT=plain, LOG_LEVEL=info; full log: $LOG_DIR/runner.log)"
grep -oE 'event="?learning\.[a-z_.]+' "$LOG_DIR/runner.log" | sed -E 's/^event="?//' |
    sort | uniq -c | sort -k2

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------
step "Checks"
metric() {
    awk -v name="$1" '$1 == name { print $2 }' <<<"$METRICS"
}
counts=$(sql_value "select count(*) filter (where analysis_status = 'completed') || ' ' ||
                           count(*) filter (where analysis_status = 'failed') || ' ' || count(*)
                      from learning_submissions")
read -r n_completed n_failed n_total <<<"$counts"
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
health_ok() {
    [[ $HEALTH_STATUS == *" 200"* && $HEALTH == *'"status":"healthy"'* && $HEALTH == *'"currentRole":"gustav_worker"'* ]]
}
check "health report: HTTP 200, healthy, currentRole gustav_worker" health_ok
check "metrics: completed=$EXPECTED_COMPLETED, retried=1 (vision), failed=1 (feedback_failed), inflight 0" \
    test "$(metric 'ai_worker_processed_total{status="completed"}') $(metric 'ai_worker_processed_total{status="retried"}') $(metric 'ai_worker_retry_total{phase="vision"}') $(metric 'ai_worker_failed_total{error_code="feedback_failed"}') $(metric analysis_jobs_inflight)" == "$EXPECTED_COMPLETED 1 1 1 0"
stopped_ok() {
    [[ $runner_rc == 0 && $SUMMARY == *"completed=$EXPECTED_COMPLETED retried=1 failed=1 "* ]]
}
check "runner stopped cleanly on SIGTERM with completed=$EXPECTED_COMPLETED retried=1 failed=1" stopped_ok
leaks=0
for secret in "${STUDENT_SUBS[@]}" "${STORAGE_KEYS[@]}" "Wasserpest" "Sarajevo" "Cybermobbing" "Borchert"; do
    if grep -qF -- "$secret" "$LOG_DIR/runner.log" "$LOG_DIR/runner.out"; then
        leaks=$((leaks + 1))
    fi
done
check "no student_sub, storage key or student text in the runner's log" test "$leaks" -eq 0

if ((${#FAILURES[@]} > 0)); then
    printf '\n%s: FAILED: %d check(s) did not hold (runner log: %s)\n' "$PROG" "${#FAILURES[@]}" "$LOG_DIR/runner.log" >&2
    exit 1
fi
printf '\n%s: OK: %d submissions processed as expected\n' "$PROG" "$EXPECTED_TOTAL"
