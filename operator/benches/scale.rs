//! Operator scale bench (issue 12, "Operator scale"): the real `operate` (leader election off,
//! the production requeue intervals `Requeue::default()`) against the in-process FAKE API
//! server of the tests (`tests/support/fake_apiserver`, RBAC enforced), with N LearningWorkers
//! (default N = 100 and 1,000; `BENCH_SCALE_SIZES=100,1000` overrides, `BENCH_SCALE_RUNS=3`
//! repeats each size and reports medians). Each run is a child process of this binary (the
//! same executable with `BENCH_SCALE_ONE=N`), so the memory figures of one run are not
//! inflated by an earlier one.
//!
//! Every worker is `crds/examples/cpu-only.yaml` renamed, with `ai.backend: stub` (no Ollama,
//! no model), one runner; the runners answer healthy through a scripted prober (no network).
//! All N workers exist in the store before the operator starts.
//!
//! What is measured, in the same run:
//! 1. **Time to converge**: from the call of `operate` until every worker has
//!    `status.observedGeneration == 1` (its status written once), polled every 100 ms; at that
//!    moment every child the operator's own `desired::children` wants for the worker (stub:
//!    ServiceAccount, runner NetworkPolicy, Service, PodDisruptionBudget, Deployment) is
//!    checked to exist with a controller owner reference to the worker (the reconcile applies
//!    children before it writes status, so they exist by then; the check proves it).
//! 2. **RSS**: VmRSS and VmHWM of this (child) process from `/proc/self/status`, before the
//!    operator starts (the fake server already holds the N workers) and after convergence.
//!    The operator runs in-process, so the increase also counts the fake API server's growth
//!    (the children it stores, its watch history and its request log): an upper bound on the
//!    operator's own memory, not a measure of it alone.
//! 3. **API requests per steady-state reconcile**: after convergence the bench plays the
//!    Deployment controller (every runner Deployment available) and waits until every worker
//!    is `Ready=True`; from then on it counts every request the fake server records (by RBAC
//!    verb, and by verb and resource) until the operator's reconcile counter
//!    (`Metrics::reconciles`) has grown by N more — the timer requeues of `Requeue::default()`
//!    (30 s for a stable worker), so about one reconcile per worker — and divides by the
//!    reconciles counted in that window. Watches are long-lived (the server closes them after
//!    60 s), so they rarely fall in the window.
//!
//! The peak RSS reported is VmHWM at the end of the run (after the window).
//!
//! Run: `cargo bench -p learning-operator --bench scale` (release; `make bench`). At 1,000
//! workers a run did not converge within 11 minutes here (see docs/kubernetes.md).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use learning_crds::LearningWorker;
use learning_operator::controller::Requeue;
use learning_operator::desired::{children, RenderContext};
use learning_operator::metrics::{Metrics, CATEGORIES};
use learning_operator::run::{operate, Settings};
use serde_json::{json, Value};
use support::fake_apiserver::{FakeApiServer, Options};
use support::operator::make_available;
use support::prober::ScriptedProber;
use support::rbac_audit::{self, OPERATOR_NAMESPACE};

const NS: &str = "gustav";
const LW_API: &str = "learning.gustav.dev/v1alpha1";
/// The longest a run may take to converge, and the steady-state window at most.
const CONVERGE_LIMIT: Duration = Duration::from_secs(600);
const WINDOW_LIMIT: Duration = Duration::from_secs(180);
/// The verbs counted per reconcile.
const VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

fn main() {
    if let Ok(n) = std::env::var("BENCH_SCALE_ONE") {
        let n: usize = n.parse().expect("BENCH_SCALE_ONE is a number");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(one_run(n));
        println!("RESULT {result}");
        return;
    }
    // `cargo test --bench scale` runs the bench as a test binary: the same full run.
    let sizes: Vec<usize> = std::env::var("BENCH_SCALE_SIZES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_SCALE_SIZES: numbers, comma-separated")
        })
        .collect();
    let runs: usize = std::env::var("BENCH_SCALE_RUNS")
        .ok()
        .map(|s| s.parse().expect("BENCH_SCALE_RUNS is a number"))
        .unwrap_or(1);
    let mut rows = Vec::new();
    for &n in &sizes {
        let results: Vec<Value> = (0..runs).map(|_| child_run(n)).collect();
        rows.push((n, results));
    }
    print_table(&rows, runs);
}

/// Runs one size in a child process and returns its JSON result.
fn child_run(n: usize) -> Value {
    eprintln!("scale bench: {n} LearningWorkers ...");
    let out = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_SCALE_ONE", n.to_string())
        .env_remove("BENCH_SCALE_SIZES")
        .output()
        .expect("the bench re-runs itself");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the run with {n} workers failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("a RESULT line");
    let v: Value = serde_json::from_str(line).unwrap();
    eprintln!("scale bench: {v}");
    v
}

/// VmRSS and VmHWM of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The stub worker `name`: the CPU-only example with `ai.backend: stub`, one runner.
fn worker(template: &Value, name: &str) -> Value {
    let mut lw = template.clone();
    lw["metadata"] = json!({"name": name, "namespace": NS});
    lw["spec"]["ai"]["backend"] = json!("stub");
    lw["spec"]["runner"]["replicas"] = json!(1);
    lw
}

fn template() -> Value {
    let path = format!(
        "{}/../crds/examples/cpu-only.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One full run with `n` workers: converge, memory, steady-state requests.
async fn one_run(n: usize) -> Value {
    let server = FakeApiServer::start(Options {
        authorize: rbac_audit::authorizer(),
        max_watch: Duration::from_secs(60),
    })
    .await;
    let template = template();
    for i in 0..n {
        server.create(worker(&template, &format!("bench-{i:04}")));
    }
    let (rss_before, hwm_before) = memory_kib();
    let metrics = Metrics::new().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = Settings {
        namespace: None,
        operator_namespace: OPERATOR_NAMESPACE.into(),
        identity: "operator-0".into(),
        lease_name: "learning-operator-leader".into(),
        lease_seconds: 15,
        leader_election: false,
        requeue: Requeue::default(),
        default_runner_image: None,
    };
    let started = Instant::now();
    let task = tokio::spawn(operate(
        server.client(),
        Arc::new(ScriptedProber::healthy()),
        metrics.clone(),
        Arc::new(AtomicBool::new(false)),
        settings,
        stopped.map(drop),
    ));
    wait_statuses(&server, n, started).await;
    let converge = started.elapsed();
    eprintln!("scale bench: {n} workers converged in {converge:?} (in-process)");
    let converge_requests = server.request_count();
    let converge_reconciles = metrics.reconciles.get();
    check_children(&server);
    let (rss_after, hwm_after) = memory_kib();

    runners_available(&server, n).await;
    let (window, per_verb, lists, reconciles) = steady_window(&server, &metrics, n).await;
    let errors: u64 = CATEGORIES
        .iter()
        .map(|c| metrics.errors.with_label_values(&[c]).get())
        .sum();
    let first = server
        .get(LW_API, "LearningWorker", NS, "bench-0000")
        .unwrap();
    let ready = first["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| format!("{}/{}", c["status"], c["reason"]));
    let (_, hwm_end) = memory_kib();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    drop(server);
    let binary = binary_run(n).await;
    json!({
        "n": n,
        "binary": binary,
        "converge_s": converge.as_secs_f64(),
        "converge_requests": converge_requests,
        "converge_reconciles": converge_reconciles,
        "rss_before_kib": rss_before, "hwm_before_kib": hwm_before,
        "rss_after_kib": rss_after, "hwm_after_kib": hwm_after,
        "hwm_end_kib": hwm_end,
        "window_s": window.as_secs_f64(),
        "window_reconciles": reconciles,
        "window_requests": per_verb,
        "window_by_resource": lists,
        "reconcile_errors": errors,
        "ready_condition": ready,
    })
}

/// VmRSS and VmHWM of process `pid`, in KiB.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The operator's own memory: the `learning-operator run` binary (leader election off) as a
/// separate process against a fresh fake API server with `n` workers. Its prober is the real
/// HTTP one, so the runners are unreachable here (no cluster DNS): the workers converge with
/// `RunnersHealthy` not True. Returns the time to converge, and VmRSS / VmHWM (KiB) at
/// convergence and after `STEADY` more (the busy requeues, 10 s, run at least twice).
async fn binary_run(n: usize) -> Value {
    const STEADY: Duration = Duration::from_secs(25);
    let server = FakeApiServer::start(Options {
        authorize: rbac_audit::authorizer(),
        max_watch: Duration::from_secs(60),
    })
    .await;
    let template = template();
    for i in 0..n {
        server.create(worker(&template, &format!("bench-{i:04}")));
    }
    let dir = std::env::temp_dir().join(format!("scale-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_learning-operator"))
        .arg("run")
        .env("KUBECONFIG", &kubeconfig)
        .env("OPERATOR_NAMESPACE", OPERATOR_NAMESPACE)
        .env("LEADER_ELECTION", "false")
        .env("OPERATOR_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "LOG_LEVEL",
            std::env::var("BENCH_SCALE_LOG_LEVEL").unwrap_or_else(|_| "error".into()),
        )
        // The operator binary's log (stdout), for a look at a slow run.
        .stdout(match std::env::var("BENCH_SCALE_LOG") {
            Ok(path) => std::fs::File::create(path).unwrap().into(),
            Err(_) => std::process::Stdio::null(),
        })
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the operator binary starts");
    wait_statuses(&server, n, started).await;
    let converge = started.elapsed();
    let (rss_converged, hwm_converged) = memory_of(child.id());
    tokio::time::sleep(STEADY).await;
    let (rss_end, hwm_end) = memory_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    json!({"converge_s": converge.as_secs_f64(),
           "rss_converged_kib": rss_converged, "hwm_converged_kib": hwm_converged,
           "rss_end_kib": rss_end, "hwm_end_kib": hwm_end})
}

/// Polls every 100 ms until `n` workers pass `done`; panics naming `what` when that takes
/// longer than `CONVERGE_LIMIT` from `started`.
async fn wait_workers(
    server: &FakeApiServer,
    n: usize,
    started: Instant,
    what: &str,
    done: impl Fn(&Value) -> bool,
) {
    loop {
        let count = server
            .list(LW_API, "LearningWorker", NS)
            .iter()
            .filter(|lw| done(lw))
            .count();
        if count == n {
            return;
        }
        assert!(
            started.elapsed() < CONVERGE_LIMIT,
            "only {count} of {n} workers {what} within {CONVERGE_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every worker's status has been written once (observedGeneration 1).
async fn wait_statuses(server: &FakeApiServer, n: usize, started: Instant) {
    wait_workers(server, n, started, "converged", |lw| {
        lw["status"]["observedGeneration"] == 1
    })
    .await;
}

/// Asserts that every child the operator wants for each worker exists, owned by it.
fn check_children(server: &FakeApiServer) {
    let mut owned: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for obj in server.all_objects() {
        let refs = obj["metadata"]["ownerReferences"].as_array().cloned();
        for r in refs.unwrap_or_default() {
            if r["controller"] == true {
                let key = (
                    obj["kind"].as_str().unwrap_or_default().to_owned(),
                    obj["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
                owned
                    .entry(r["uid"].as_str().unwrap_or_default().to_owned())
                    .or_default()
                    .insert(key);
            }
        }
    }
    let ctx = RenderContext {
        operator_namespace: OPERATOR_NAMESPACE.into(),
        ..RenderContext::default()
    };
    for value in server.list(LW_API, "LearningWorker", NS) {
        let lw: LearningWorker = serde_json::from_value(value).unwrap();
        let uid = lw.metadata.uid.clone().unwrap_or_default();
        let have = owned.remove(&uid).unwrap_or_default();
        for child in children(&lw, &ctx).iter() {
            let want = (child.kind().kind().to_owned(), child.name());
            assert!(
                have.contains(&want),
                "{:?}: {want:?} missing; have {have:?}",
                lw.metadata.name
            );
        }
    }
}

/// Plays the Deployment controller after convergence: every runner Deployment is available;
/// then waits until every worker is Ready (the steady state the window measures).
async fn runners_available(server: &FakeApiServer, n: usize) {
    for d in server.list("apps/v1", "Deployment", NS) {
        make_available(
            server,
            NS,
            d["metadata"]["name"].as_str().unwrap_or_default(),
        );
    }
    wait_workers(
        server,
        n,
        Instant::now(),
        "Ready after the runners became available",
        |lw| {
            lw["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        },
    )
    .await;
}

/// Requests by verb, and list requests by resource.
type Counts = BTreeMap<String, u64>;

/// After convergence: the requests (by verb, and by verb and resource) while `n` more
/// reconciles finish; returns the window's length, the counts and the reconciles counted.
async fn steady_window(
    server: &FakeApiServer,
    metrics: &Metrics,
    n: usize,
) -> (Duration, Counts, Counts, u64) {
    // The Events of the last transitions (to Ready) are published after the status write
    // the bench waited for: wait until the server has been quiet for 2 s (at most 60 s).
    let quiet_since = Instant::now();
    loop {
        let before = server.request_count();
        tokio::time::sleep(Duration::from_secs(2)).await;
        if server.request_count() == before || quiet_since.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let from = server.request_count();
    let r0 = metrics.reconciles.get();
    let started = Instant::now();
    while metrics.reconciles.get() < r0 + n as u64 && started.elapsed() < WINDOW_LIMIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reconciles = metrics.reconciles.get() - r0;
    let window = started.elapsed();
    let mut per_verb: Counts = VERBS.iter().map(|v| ((*v).into(), 0)).collect();
    let mut lists = Counts::new();
    for r in server.requests_since(from) {
        let Some(a) = r.attributes else {
            *per_verb.entry("other".into()).or_default() += 1;
            continue;
        };
        *lists
            .entry(format!("{} {}", a.verb, a.resource))
            .or_default() += 1;
        *per_verb.entry(a.verb).or_default() += 1;
    }
    (window, per_verb, lists, reconciles)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Prints the markdown table: one row per size, medians over the runs.
fn print_table(rows: &[(usize, Vec<Value>)], runs: usize) {
    let med = |rs: &[Value], f: &dyn Fn(&Value) -> f64| median(rs.iter().map(f).collect());
    let per = |r: &Value, verbs: &[&str]| {
        let total: f64 = verbs
            .iter()
            .map(|v| r["window_requests"][*v].as_f64().unwrap_or(0.0))
            .sum();
        total / r["window_reconciles"].as_f64().unwrap_or(f64::NAN)
    };
    let mib = |k: &Value| k.as_f64().unwrap_or(0.0) / 1024.0;
    println!(
        "\n| workers | converge (s) | RSS before → after (MiB) | peak RSS (MiB) | operator process alone: converge (s), peak RSS (MiB) | reconciles in window | writes/reconcile (patch+create+update+delete) | lists/reconcile | gets/reconcile | watches/reconcile | patch | create | delete |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (n, rs) in rows {
        println!(
            "| {n} | {:.1} | {:.0} → {:.0} | {:.0} | {:.1} s, {:.0} MiB | {:.0} | {:.2} | {:.2} | {:.2} | {:.3} | {:.2} | {:.2} | {:.2} |",
            med(rs, &|r| r["converge_s"].as_f64().unwrap()),
            med(rs, &|r| mib(&r["rss_before_kib"])),
            med(rs, &|r| mib(&r["rss_after_kib"])),
            med(rs, &|r| mib(&r["hwm_end_kib"])),
            med(rs, &|r| r["binary"]["converge_s"].as_f64().unwrap()),
            med(rs, &|r| mib(&r["binary"]["hwm_end_kib"])),
            med(rs, &|r| r["window_reconciles"].as_f64().unwrap()),
            med(rs, &|r| per(r, &["patch", "create", "update", "delete"])),
            med(rs, &|r| per(r, &["list"])),
            med(rs, &|r| per(r, &["get"])),
            med(rs, &|r| per(r, &["watch"])),
            med(rs, &|r| per(r, &["patch"])),
            med(rs, &|r| per(r, &["create"])),
            med(rs, &|r| per(r, &["delete"])),
        );
    }
    for (n, rs) in rows {
        let r = &rs[0];
        let per_reconcile: BTreeMap<&String, String> = r["window_by_resource"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let per = v.as_f64().unwrap_or(0.0)
                            / r["window_reconciles"].as_f64().unwrap_or(f64::NAN);
                        (k, format!("{per:.2}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!("\n{n} workers, requests per steady-state reconcile by verb and resource (first run): {per_reconcile:?}");
    }
    println!("\n{runs} run(s) per size (medians); RSS is the whole bench process (operator + fake API server).");
}
