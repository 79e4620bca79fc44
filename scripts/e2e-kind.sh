#!/usr/bin/env bash
# e2e-kind.sh — the whole delivery path on a kind cluster (needs Docker; CI:
# .github/workflows/e2e.yml). It cannot run on a machine without a Docker engine.
#
#  1. creates a kind cluster (or reuses KIND_CLUSTER), builds the images with `make images`
#     (learning-runner:e2e, learning-operator:e2e) and loads them into kind;
#  2. runs PostgreSQL in namespace gustav (restricted Pod Security enforced there, so the
#     operator's runner and Ollama pods are admitted only if they are restricted too),
#     applies the migrations with `learning-runner migrate` as a Job, gives gustav_worker
#     LOGIN with a random password and stores its DSN in the Secret learning-db;
#  3. `helm install`s the chart (profiles/kind-e2e.yaml) into learning-system;
#  4. run "stub": applies a CPU-only LearningWorker with the stub backend, waits for
#     Ready, enqueues submissions with psql the way GUSTAV's web app does (as
#     gustav_limited under the student's RLS identity), and waits until every one is
#     completed;
#  5. run "gpu": patches a fake amd.com/gpu capacity of 1 onto the node, applies two
#     LearningWorkers that each want one GPU: the first one's Ollama pod is scheduled and
#     holds the GPU; the second must report OllamaReady=False/Unschedulable, Ready=False and
#     Degraded=True; after the first is deleted the second one's Ollama pod is scheduled.
#
# Environment:
#   KIND_CLUSTER     cluster name (default gustav-e2e); an existing one is reused
#   KEEP_CLUSTER     1: do not delete the cluster at the end (default: delete it if this
#                    script created it)
#   E2E_RUNS         which runs (default "stub gpu")
#   E2E_SUBMISSIONS  how many submissions the stub run enqueues (default 6)
#   E2E_TIMEOUT      seconds each wait may take (default 300)
#   E2E_ARTIFACTS    where diagnostics go on failure (default target/e2e-kind)
#   SKIP_BUILD       1: use the images already in Docker (learning-runner:e2e, …)
#   HELM, KIND, KUBECTL, DOCKER   the tools (default: .tools/helm4/helm if present, else helm
#                    on PATH; kind; kubectl; docker)
set -euo pipefail

PROG=e2e-kind
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CHART=$ROOT/charts/learning-worker-operator
MANIFESTS=$ROOT/scripts/e2e
CLUSTER=${KIND_CLUSTER:-gustav-e2e}
RUNS=${E2E_RUNS:-stub gpu}
SUBMISSIONS=${E2E_SUBMISSIONS:-6}
TIMEOUT=${E2E_TIMEOUT:-300}
ARTIFACTS=${E2E_ARTIFACTS:-$ROOT/target/e2e-kind}
KIND=${KIND:-kind}
KUBECTL=${KUBECTL:-kubectl}
DOCKER=${DOCKER:-docker}
if [[ -z ${HELM-} ]]; then
    if [[ -x $ROOT/.tools/helm4/helm ]]; then HELM=$ROOT/.tools/helm4/helm; else HELM=helm; fi
fi
NS=gustav
OPERATOR_NS=learning-system
RELEASE=learning-worker-operator
TAG=e2e
CREATED_CLUSTER=false

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

step() {
    printf '\n==> %s\n' "$*"
}

kc() {
    "$KUBECTL" --context "kind-$CLUSTER" "$@"
}

# Everything that helps to understand a failure, into $ARTIFACTS (uploaded by CI).
diagnostics() {
    mkdir -p "$ARTIFACTS"
    {
        kc get nodes -o wide
        kc get lw -A -o wide
        kc get all,pvc,networkpolicy,pdb -A
    } >"$ARTIFACTS/overview.txt" 2>&1 || true
    kc get lw -A -o yaml >"$ARTIFACTS/learningworkers.yaml" 2>&1 || true
    kc get events -A --sort-by=.lastTimestamp >"$ARTIFACTS/events.txt" 2>&1 || true
    kc describe pods -n "$NS" >"$ARTIFACTS/pods-$NS.txt" 2>&1 || true
    kc describe pods -n "$OPERATOR_NS" >"$ARTIFACTS/pods-$OPERATOR_NS.txt" 2>&1 || true
    kc logs -n "$OPERATOR_NS" -l app.kubernetes.io/name=learning-operator --tail=-1 --prefix \
        >"$ARTIFACTS/operator.log" 2>&1 || true
    kc logs -n "$NS" -l app.kubernetes.io/component=runner --tail=-1 --prefix \
        >"$ARTIFACTS/runners.log" 2>&1 || true
    kc logs -n "$NS" job/learning-migrate >"$ARTIFACTS/migrate.log" 2>&1 || true
    printf '%s: diagnostics in %s\n' "$PROG" "$ARTIFACTS" >&2
}

cleanup() {
    local rc=$?
    trap - EXIT
    if ((rc != 0)); then
        diagnostics
    fi
    if [[ $CREATED_CLUSTER == true && ${KEEP_CLUSTER:-0} != 1 ]]; then
        "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    elif [[ $CREATED_CLUSTER == true ]]; then
        printf '%s: kept cluster %s (kind delete cluster --name %s)\n' "$PROG" "$CLUSTER" "$CLUSTER" >&2
    fi
    exit "$rc"
}

# wait_for WHAT SECONDS COMMAND...: retries COMMAND every 2 s until it succeeds.
wait_for() {
    local what=$1 limit=$2 start=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - start >= limit)); then
            die "timed out after ${limit} s waiting for: $what"
        fi
        sleep 2
    done
    printf '  ok  %s (%d s)\n' "$what" "$((SECONDS - start))"
}

# jsonpath_is RESOURCE JSONPATH VALUE (namespace gustav)
jsonpath_is() {
    [[ $(kc -n "$NS" get "$1" -o "jsonpath=$2") == "$3" ]]
}

condition() {
    kc -n "$NS" get "lw/$1" -o "jsonpath={.status.conditions[?(@.type==\"$2\")].$3}"
}

condition_is() {
    [[ $(condition "$1" "$2" status) == "$3" && $(condition "$1" "$2" reason) == "$4" ]]
}

psql_admin() {
    kc -n "$NS" exec -i deploy/postgres -- psql -X -q -v ON_ERROR_STOP=1 -U postgres -d gustav "$@"
}

random_hex() {
    od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

# ---------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------
for tool in "$DOCKER" "$KIND" "$KUBECTL" "$HELM"; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found: this script needs docker, kind, kubectl and helm"
done
"$DOCKER" info >/dev/null 2>&1 ||
    die "no Docker engine answers ('$DOCKER info' failed): kind needs one (this cannot run where there is none)"
[[ $SUBMISSIONS =~ ^[1-9][0-9]*$ ]] || die "E2E_SUBMISSIONS must be a positive number"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "E2E_TIMEOUT must be a positive number of seconds"
for run in $RUNS; do
    [[ $run == stub || $run == gpu ]] || die "E2E_RUNS: unknown run '$run' (stub, gpu)"
done
trap cleanup EXIT

# ---------------------------------------------------------------------------
# Cluster and images
# ---------------------------------------------------------------------------
step "kind cluster $CLUSTER"
if "$KIND" get clusters 2>/dev/null | grep -qxF "$CLUSTER"; then
    echo "reusing the existing cluster"
else
    "$KIND" create cluster --name "$CLUSTER" --wait 120s
    CREATED_CLUSTER=true
fi
NODE=$(kc get nodes -o jsonpath='{.items[0].metadata.name}')

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    step "Building the images (make images IMAGE_TAG=$TAG)"
    make -C "$ROOT" images IMAGE_TAG="$TAG" DOCKER="$DOCKER"
fi
step "Loading learning-runner:$TAG and learning-operator:$TAG into kind"
"$KIND" load docker-image --name "$CLUSTER" "learning-runner:$TAG" "learning-operator:$TAG"

# ---------------------------------------------------------------------------
# PostgreSQL, migrations, the worker's DSN
# ---------------------------------------------------------------------------
step "Namespaces $NS and $OPERATOR_NS (restricted Pod Security enforced)"
for ns in "$NS" "$OPERATOR_NS"; do
    kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
    kc label namespace "$ns" --overwrite \
        pod-security.kubernetes.io/enforce=restricted \
        pod-security.kubernetes.io/warn=restricted >/dev/null
done

step "PostgreSQL in $NS"
ADMIN_PASSWORD=$(random_hex 16)
kc -n "$NS" create secret generic postgres-admin \
    --from-literal=password="$ADMIN_PASSWORD" \
    --from-literal=dsn="postgres://postgres:$ADMIN_PASSWORD@postgres.$NS.svc:5432/gustav" \
    --dry-run=client -o yaml | kc apply -f - >/dev/null
kc apply -f "$MANIFESTS/postgres.yaml"
kc -n "$NS" rollout status deploy/postgres --timeout="${TIMEOUT}s"

step "Migrations: learning-runner migrate (Job learning-migrate)"
kc -n "$NS" delete job learning-migrate --ignore-not-found >/dev/null
kc apply -f "$MANIFESTS/migrate-job.yaml"
kc -n "$NS" wait --for=condition=Complete job/learning-migrate --timeout="${TIMEOUT}s"
kc -n "$NS" logs job/learning-migrate

step "gustav_worker: LOGIN with a random password; its DSN in Secret learning-db"
WORKER_PASSWORD=$(random_hex 18)
# Via stdin: the password is never on a command line.
psql_admin <<SQL
alter role gustav_worker login password '$WORKER_PASSWORD';
SQL
kc -n "$NS" create secret generic learning-db \
    --from-literal=dsn="postgres://gustav_worker:$WORKER_PASSWORD@postgres.$NS.svc:5432/gustav" \
    --dry-run=client -o yaml | kc apply -f - >/dev/null

# ---------------------------------------------------------------------------
# The chart
# ---------------------------------------------------------------------------
step "helm install $RELEASE ($("$HELM" version --short))"
"$HELM" upgrade --install "$RELEASE" "$CHART" --kube-context "kind-$CLUSTER" \
    --namespace "$OPERATOR_NS" -f "$CHART/profiles/kind-e2e.yaml" \
    --wait --timeout "${TIMEOUT}s"
kc get crd learningworkers.learning.gustav.dev >/dev/null
kc -n "$OPERATOR_NS" rollout status "deploy/$RELEASE" --timeout="${TIMEOUT}s"

# ---------------------------------------------------------------------------
# Run "stub": a CPU-only LearningWorker processes real submissions
# ---------------------------------------------------------------------------
enqueue() {
    local i=$1 id sub course task
    id=$(cat /proc/sys/kernel/random/uuid)
    sub=$(cat /proc/sys/kernel/random/uuid)
    course=$(cat /proc/sys/kernel/random/uuid)
    task=$(cat /proc/sys/kernel/random/uuid)
    psql_admin -v id="$id" -v sub="$sub" -v course="$course" -v task="$task" \
        -v body="Kind e2e submission $i: Die Fotosynthese wandelt Lichtenergie in chemische Energie um." \
        -v idem="$(cat /proc/sys/kernel/random/uuid)" <<'SQL'
begin;
-- GUSTAV's web app: its role and the student's identity for row-level security.
set local role gustav_limited;
set local app.current_sub = :'sub';
with submission as (
    insert into public.learning_submissions
        (id, course_id, task_id, student_sub, kind, text_body, attempt_nr, idempotency_key,
         internal_metadata)
    values (:'id', :'course', :'task', :'sub', 'text', :'body', 1, :'idem', '{}'::jsonb)
    returning id, course_id, task_id, student_sub, kind, attempt_nr
)
insert into public.learning_submission_jobs (submission_id, payload)
select id, jsonb_build_object(
           'submission_id', id, 'course_id', course_id, 'task_id', task_id,
           'student_sub', student_sub, 'kind', kind, 'attempt_nr', attempt_nr,
           'criteria', '["Fachliche Richtigkeit", "Struktur"]'::jsonb)
  from submission;
commit;
SQL
}

completed_count() {
    psql_admin -At -c "select count(*) from public.learning_submissions where analysis_status = 'completed'"
}

all_completed() {
    [[ $(completed_count) == "$SUBMISSIONS" ]]
}

run_stub() {
    step "Run stub: LearningWorker e2e (stub backend, no GPU)"
    kc apply -f "$MANIFESTS/learningworker-stub.yaml"
    wait_for "lw/e2e Ready" "$TIMEOUT" kc -n "$NS" wait --for=condition=Ready lw/e2e --timeout=5s
    kc -n "$NS" get lw e2e -o wide
    condition_is e2e OllamaReady True NotRequired || die "lw/e2e: OllamaReady should be True/NotRequired with the stub backend"
    condition_is e2e GPUAccelerated False NotRequired ||
        echo "  note: GPUAccelerated is $(condition e2e GPUAccelerated status)/$(condition e2e GPUAccelerated reason)"

    step "Enqueueing $SUBMISSIONS submissions with psql (as gustav_limited, under RLS)"
    local i
    for ((i = 1; i <= SUBMISSIONS; i++)); do
        enqueue "$i"
    done
    wait_for "$SUBMISSIONS submissions completed" "$TIMEOUT" all_completed
    psql_admin -c "select analysis_status, count(*) from public.learning_submissions group by 1"
    [[ $(psql_admin -At -c "select count(*) from public.learning_submission_jobs where status in ('queued', 'leased')") == 0 ]] ||
        die "jobs are still queued or leased after every submission completed"
    wait_for "lw/e2e still Ready" 60 kc -n "$NS" wait --for=condition=Ready lw/e2e --timeout=5s
}

# ---------------------------------------------------------------------------
# Run "gpu": GPU scheduling and the conditions with a fake amd.com/gpu capacity
# ---------------------------------------------------------------------------
gpu_allocatable() {
    [[ $(kc get node "$NODE" -o jsonpath='{.status.allocatable.amd\.com/gpu}') == 1 ]]
}

ollama_scheduled() {
    [[ $(kc -n "$NS" get pods -l "app.kubernetes.io/instance=$1,app.kubernetes.io/component=ollama" \
        -o jsonpath='{.items[0].status.conditions[?(@.type=="PodScheduled")].status}') == True ]]
}

schedulable() {
    local reason
    reason=$(condition "$1" OllamaReady reason)
    [[ -n $reason && $reason != Unschedulable ]]
}

run_gpu() {
    step "Run gpu: a fake amd.com/gpu capacity of 1 on node $NODE"
    kc patch node "$NODE" --subresource=status --type=json \
        -p '[{"op": "add", "path": "/status/capacity/amd.com~1gpu", "value": "1"}]' >/dev/null
    wait_for "node allocatable amd.com/gpu=1" 60 gpu_allocatable

    kc apply -f "$MANIFESTS/learningworker-gpu.yaml"
    wait_for "gpu-a's Ollama pod scheduled onto the GPU" "$TIMEOUT" ollama_scheduled gpu-a
    local limit
    limit=$(kc -n "$NS" get deploy gpu-a-ollama -o jsonpath='{.spec.template.spec.containers[0].resources.limits.amd\.com/gpu}')
    [[ $limit == 1 ]] || die "gpu-a-ollama does not request amd.com/gpu (limit: '$limit')"
    wait_for "gpu-b: OllamaReady=False, reason Unschedulable" "$TIMEOUT" condition_is gpu-b OllamaReady False Unschedulable
    wait_for "gpu-b: Ready=False" 60 condition_is gpu-b Ready False Unschedulable
    wait_for "gpu-b: Degraded=True" 60 jsonpath_is lw/gpu-b '{.status.conditions[?(@.type=="Degraded")].status}' True
    kc -n "$NS" get lw -o wide
    kc -n "$NS" get events --field-selector involvedObject.name=gpu-b,involvedObject.kind=LearningWorker
    [[ $(condition gpu-a OllamaReady reason) != Unschedulable ]] ||
        die "gpu-a holds the GPU but reports Unschedulable"

    step "Deleting gpu-a: gpu-b's Ollama pod gets the GPU"
    kc -n "$NS" delete lw gpu-a --wait=true --timeout="${TIMEOUT}s"
    wait_for "gpu-b's Ollama pod scheduled" "$TIMEOUT" ollama_scheduled gpu-b
    wait_for "gpu-b: OllamaReady no longer Unschedulable" "$TIMEOUT" schedulable gpu-b
    kc -n "$NS" delete lw gpu-b --wait=true --timeout="${TIMEOUT}s"
}

for run in $RUNS; do
    "run_$run"
done

step "kind end to end passed ($RUNS)"
