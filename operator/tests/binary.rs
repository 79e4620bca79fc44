//! The `learning-operator` binary itself: `run` pointed at the fake API server through a
//! kubeconfig (the same `Client::try_default` path as outside a cluster) takes the Lease,
//! reconciles, serves `/livez`, `/readyz` and `/metrics` — the metrics checked by
//! `promtool check metrics` (fails loudly when promtool is missing) — makes only requests
//! its declared RBAC grants, and on SIGTERM exits 0 after releasing the Lease. With
//! `LEADER_ELECTION=false` it never touches a Lease. `rbac` prints the declared rules, and
//! operator/README.md shows exactly that output (a test fails on drift).

mod support;

use learning_tests::tools::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::rbac::v1::PolicyRule;
use learning_operator::rbac::{self, Scope};
use support::fake_apiserver::{FakeApiServer, Options};
use support::rbac_audit::{self, OPERATOR_NAMESPACE};
use support::wait::eventually;

const WAIT: Duration = Duration::from_secs(30);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_learning-operator")
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("learning-operator-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The child process, killed when the test ends however it ends.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Sends SIGTERM and waits for the exit code.
    async fn terminate(&mut self) -> i32 {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

async fn get(url: String) -> Result<(u16, String), String> {
    let resp = reqwest::get(&url).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    Ok((code, resp.text().await.map_err(|e| e.to_string())?))
}

fn promtool_check(metrics: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install it (Debian package `prometheus`, see .ci)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{text}\n---\n{metrics}"
    );
    text
}

/// A fake API server with the RBAC authorizer and the cpu-only example; its (namespace, name).
async fn server_with_a_worker() -> (FakeApiServer, String, String) {
    let server = FakeApiServer::start(Options {
        authorize: rbac_audit::authorizer(),
        max_watch: Duration::from_secs(5),
    })
    .await;
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/examples/cpu-only.yaml"
    ))
    .unwrap();
    let lw: serde_json::Value = serde_yaml_ng::from_str(&example).unwrap();
    let (ns, name) = (
        lw["metadata"]["namespace"].as_str().unwrap().to_owned(),
        lw["metadata"]["name"].as_str().unwrap().to_owned(),
    );
    server.create(lw);
    (server, ns, name)
}

/// `learning-operator run` against `server` with the given extra environment; its base URL.
fn start(server: &FakeApiServer, test: &str, env: &[(&str, &str)]) -> (Running, String) {
    let dir = scratch().join(test);
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    let log = dir.join("operator.log");
    let port = free_port();
    let child = Command::new(bin())
        .arg("run")
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("OPERATOR_NAMESPACE", OPERATOR_NAMESPACE)
        .env("POD_NAME", "learning-operator-7f9c-abcde")
        .env("OPERATOR_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "info")
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("operator.err")).unwrap())
        .spawn()
        .unwrap();
    (Running { child, log }, format!("http://127.0.0.1:{port}"))
}

async fn wait_for_status(server: &FakeApiServer, ns: &str, name: &str, running: &Running) {
    eventually("the worker's status written", WAIT, || {
        let lw = server
            .get("learning.gustav.dev/v1alpha1", "LearningWorker", ns, name)
            .unwrap();
        (lw["status"]["observedGeneration"] == 1)
            .then_some(())
            .ok_or(format!("{}; log:\n{}", lw["status"], running.log_tail()))
    })
    .await;
}

async fn wait_ready(base: &str, running: &Running) {
    let ready = eventually_async(
        "/readyz 200",
        || async {
            match get(format!("{base}/readyz")).await? {
                (200, body) => Ok(body),
                (code, body) => Err(format!("{code} {body}")),
            }
        },
        running,
    )
    .await;
    assert_eq!(ready, "ready\n");
}

/// Every request was granted by the declared RBAC.
fn audit(server: &FakeApiServer) {
    let log = server.requests();
    let requests: Vec<(String, String)> = log.iter().map(|r| (r.method.clone(), r.uri())).collect();
    let checked =
        rbac_audit::assert_declared(requests.iter().map(|(m, u)| (m.as_str(), u.as_str())));
    assert!(checked > 10, "{checked} requests");
    assert!(log.iter().all(|r| r.status != 403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_leads_reconciles_and_serves_health_and_promtool_clean_metrics() {
    let (server, ns, name) = server_with_a_worker().await;
    let (mut running, base) = start(&server, "leader", &[("LEADER_LEASE_SECONDS", "6")]);

    let live = eventually_async("/livez answers", || get(format!("{base}/livez")), &running).await;
    assert_eq!(live, (200, "ok\n".to_owned()));
    eventually("the Lease held by the pod", WAIT, || {
        let lease = server
            .get(
                "coordination.k8s.io/v1",
                "Lease",
                OPERATOR_NAMESPACE,
                "learning-operator-leader",
            )
            .ok_or_else(|| format!("no Lease; log:\n{}", running.log_tail()))?;
        (lease["spec"]["holderIdentity"] == "learning-operator-7f9c-abcde"
            && lease["spec"]["leaseDurationSeconds"] == 6)
            .then_some(())
            .ok_or(format!("{}", lease["spec"]))
    })
    .await;
    wait_for_status(&server, &ns, &name, &running).await;
    wait_ready(&base, &running).await;

    let (code, metrics) = get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(code, 200);
    for needle in [
        "learning_operator_leader 1",
        "# TYPE learning_operator_reconciles_total counter",
        "# TYPE learning_operator_reconcile_duration_seconds histogram",
        "learning_operator_reconcile_errors_total{category=\"transport\"}",
        "# TYPE learning_operator_worker_condition gauge",
        &format!(
            "learning_operator_worker_condition{{learning_worker=\"{name}\",namespace=\"{ns}\",reason=\"MinimumReplicasUnavailable\",status=\"False\",type=\"RunnersAvailable\"}} 1"
        ),
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    let reconciles: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("learning_operator_reconciles_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(reconciles >= 1.0, "{metrics}");
    promtool_check(&metrics);

    // SIGTERM: a clean exit, and the Lease is free for a standby at once.
    assert_eq!(running.terminate().await, 0, "{}", running.log_tail());
    let lease = server
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            OPERATOR_NAMESPACE,
            "learning-operator-leader",
        )
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the Lease is released on SIGTERM: {}; log:\n{}",
        lease["spec"],
        running.log_tail()
    );
    assert!(running
        .log_tail()
        .contains("learning.operator.lease_released"));
    drop(running);
    audit(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_leader_election_never_touches_a_lease() {
    let (server, ns, name) = server_with_a_worker().await;
    let (mut running, base) = start(&server, "no-election", &[("LEADER_ELECTION", "false")]);
    wait_for_status(&server, &ns, &name, &running).await;
    wait_ready(&base, &running).await;
    let (_, metrics) = get(format!("{base}/metrics")).await.unwrap();
    assert!(
        metrics.contains("learning_operator_leader 1"),
        "it reconciles:\n{metrics}"
    );
    promtool_check(&metrics);
    assert_eq!(running.terminate().await, 0, "{}", running.log_tail());
    let leases: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.path.contains("/leases"))
        .map(|r| r.uri())
        .collect();
    assert!(leases.is_empty(), "Lease requests: {leases:?}");
    drop(running);
    audit(&server);
}

#[test]
fn run_refuses_a_leader_election_value_that_is_not_a_boolean() {
    let out = Command::new(bin())
        .args(["run", "--leader-election", "maybe"])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--leader-election"), "{err}");
}

/// Polls an async check until it succeeds or `WAIT` passes (with the operator's log).
async fn eventually_async<T, F, Fut>(what: &str, mut check: F, running: &Running) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!(
                    "timed out waiting for {what}: {e}; log:\n{}",
                    running.log_tail()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn operator(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn rbac_prints_the_declared_rules_as_policy_rules() {
    let cluster = operator(&["rbac"]);
    let parsed: Vec<PolicyRule> = serde_yaml_ng::from_str(&cluster).unwrap();
    assert_eq!(parsed, rbac::policy_rules(Scope::Watched));
    for rule in &parsed {
        for field in [
            rule.api_groups.as_deref().unwrap(),
            rule.resources.as_deref().unwrap(),
            &rule.verbs,
        ] {
            assert!(field.iter().all(|v| v != "*"), "no wildcards: {rule:?}");
        }
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
    }
    let lease: Vec<PolicyRule> =
        serde_yaml_ng::from_str(&operator(&["rbac", "--leader-election"])).unwrap();
    assert_eq!(lease, rbac::policy_rules(Scope::OperatorNamespace));
    let keda: Vec<PolicyRule> = serde_yaml_ng::from_str(&operator(&["rbac", "--keda"])).unwrap();
    assert_eq!(keda, rbac::policy_rules(Scope::Keda));
}

/// The YAML between `<!-- marker:begin -->` and `<!-- marker:end -->` in operator/README.md.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let begin = format!("<!-- {marker}:begin -->\n```yaml\n");
    let end = format!("```\n<!-- {marker}:end -->");
    let start = readme
        .find(&begin)
        .unwrap_or_else(|| panic!("README.md has no {begin:?}"))
        + begin.len();
    let stop = readme[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("README.md has no {end:?}"))
        + start;
    readme[start..stop].to_owned()
}

#[test]
fn the_readme_shows_exactly_the_generated_rbac() {
    assert_eq!(
        readme_block("rbac-cluster"),
        operator(&["rbac"]),
        "operator/README.md is stale: paste `learning-operator rbac` output"
    );
    assert_eq!(
        readme_block("rbac-leader-election"),
        operator(&["rbac", "--leader-election"]),
        "operator/README.md is stale: paste `learning-operator rbac --leader-election` output"
    );
    assert_eq!(
        readme_block("rbac-keda"),
        operator(&["rbac", "--keda"]),
        "operator/README.md is stale: paste `learning-operator rbac --keda` output"
    );
}
