//! Pruning: which existing children one reconcile deletes (only this worker's, only what it
//! no longer wants), and the reconcile span on its log lines.

use super::*;

const UID: &str = "0b5c9a8e-1111-4222-8333-444455556666";

/// An existing object as a metadata list shows it: the operator's labels, owned by `uid`.
fn existing(api_version: &str, kind: &str, name: &str, owner_uid: Option<&str>) -> Value {
    let mut meta = json!({"name": name, "namespace": "gustav", "labels": {
        "app.kubernetes.io/name": "learning-worker", "app.kubernetes.io/instance": "school-a",
        "app.kubernetes.io/managed-by": "learning-operator"}});
    if let Some(uid) = owner_uid {
        meta["ownerReferences"] = json!([{"apiVersion": "learning.gustav.dev/v1alpha1", "kind": "LearningWorker",
            "name": "school-a", "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    }
    json!({"apiVersion": api_version, "kind": kind, "metadata": meta})
}

/// What a managed-Ollama worker with policies leaves in the cluster, plus look-alikes that are
/// not this worker's (another owner's, unowned).
fn full_cluster() -> Cluster {
    let own = Some(UID);
    Cluster {
        listed: vec![
            existing("v1", "ServiceAccount", "school-a-runner", own),
            existing("apps/v1", "Deployment", "school-a-runner", own),
            existing("apps/v1", "Deployment", "school-a-ollama", own),
            existing("v1", "Service", "school-a-runner", own),
            existing("v1", "Service", "school-a-ollama", own),
            existing("policy/v1", "PodDisruptionBudget", "school-a-runner", own),
            existing("v1", "PersistentVolumeClaim", "school-a-ollama-models", own),
            existing(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "school-a-runner",
                own,
            ),
            existing(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "school-a-ollama",
                own,
            ),
            existing(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "school-a-model-pull",
                own,
            ),
            existing("batch/v1", "Job", "school-a-model-pull-0123456789", own),
            existing("v1", "Service", "school-a-ollama-old", Some("another-uid")),
            existing("v1", "PersistentVolumeClaim", "school-a-scratch", None),
        ],
        ..Cluster::default()
    }
}

fn deletes(log: &[Recorded]) -> Vec<String> {
    log.iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| {
            assert_eq!(
                r.body["propagationPolicy"], "Background",
                "dependents (a Job's pods) must go too: {}",
                r.uri
            );
            r.uri.trim_end_matches('?').to_owned()
        })
        .collect()
}

#[tokio::test]
async fn switching_to_external_ollama_prunes_only_this_workers_ollama_objects() {
    let (client, log) = fake_api_server(full_cluster());
    let mut lw = example(5);
    lw.spec.ollama.mode = learning_crds::ollama::OllamaMode::External;
    lw.spec.ollama.url = Some("http://ollama:11434".into());
    reconcile(Arc::new(lw), ctx(client, ScriptedProber::unreachable()))
        .await
        .unwrap();
    let log = finish(&log);
    assert_eq!(
        deletes(&log),
        [
            "/apis/batch/v1/namespaces/gustav/jobs/school-a-model-pull-0123456789",
            "/apis/apps/v1/namespaces/gustav/deployments/school-a-ollama",
            "/api/v1/namespaces/gustav/services/school-a-ollama",
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-model-pull",
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-ollama",
        ],
        "owned and unwanted only; the model PVC (never pruned), the other owner's Service and \
         the unowned PVC stay"
    );
    // Deletes come after the applies (the runner is re-pointed first); which children exist
    // comes from the watch caches: no get, no list.
    let first_delete = log.iter().position(|r| r.method == "DELETE").unwrap();
    let last_apply = log
        .iter()
        .rposition(|r| r.method == "PATCH" && !r.uri.contains("/status?"))
        .unwrap();
    assert!(last_apply < first_delete, "{log:#?}");
    let reads: Vec<&Recorded> = log.iter().filter(|r| r.method == "GET").collect();
    assert!(reads.is_empty(), "{reads:#?}");
    let runner = patches(&log)
        .into_iter()
        .find(|r| r.uri.contains("/deployments/school-a-runner?"))
        .unwrap();
    let env = runner.body["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "OLLAMA_BASE_URL" && e["value"] == "http://ollama:11434"),
        "{env:#?}"
    );
}

#[tokio::test]
async fn disabling_network_policies_deletes_them_and_nothing_else() {
    let (client, log) = fake_api_server(full_cluster());
    let mut lw = example(5);
    lw.spec.network.policies = false;
    reconcile(Arc::new(lw), ctx(client, ScriptedProber::unreachable()))
        .await
        .unwrap();
    assert_eq!(
        deletes(&finish(&log)),
        [
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-model-pull",
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-ollama",
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-runner",
        ],
        "the pull Job is kept while pulls are wanted (its TTL removes it)"
    );
}

thread_local! {
    /// What the log subscriber wrote on this thread.
    static THIS_THREAD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes into the calling thread's buffer.
struct ThreadBuffer;

impl std::io::Write for ThreadBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A thread that logs while it exits finds its buffer gone: drop those lines.
        let _ = THIS_THREAD.try_with(|lines| lines.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures log lines per thread from now on. A global subscriber (installed once) rather
/// than a scoped one: tracing caches per call site whether anyone listens, and a scoped
/// subscriber can lose that race against tests on other threads that reached the call site
/// first without one.
fn capture_this_threads_logs() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadBuffer)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    THIS_THREAD.with(|lines| lines.borrow_mut().clear());
}

#[tokio::test]
async fn the_reconcile_span_marks_its_own_log_lines_and_is_left_while_it_waits() {
    capture_this_threads_logs();
    let (client, log) = fake_api_server(full_cluster());
    let mut lw = example(5);
    lw.spec.network.policies = false;
    // Another task on the same thread logs while the reconcile waits for the API server.
    let elsewhere = tokio::spawn(async {
        for _ in 0..20 {
            tracing::info!(event = "elsewhere");
            tokio::task::yield_now().await;
        }
    });
    reconcile(Arc::new(lw), ctx(client, ScriptedProber::unreachable()))
        .await
        .unwrap();
    elsewhere.await.unwrap();
    finish(&log);
    let text = THIS_THREAD.with(|lines| String::from_utf8(lines.borrow().clone()).unwrap());
    let pruned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("learning.operator.child_pruned"))
        .collect();
    assert_eq!(pruned.len(), 3, "{text}");
    for line in pruned {
        assert!(
            line.contains("reconcile{namespace=gustav name=school-a generation=5}"),
            "{line}"
        );
    }
    let others: Vec<&str> = text.lines().filter(|l| l.contains("elsewhere")).collect();
    assert_eq!(others.len(), 20, "{text}");
    assert!(
        others.iter().all(|l| !l.contains("reconcile{")),
        "the span is left while the reconcile waits:\n{}",
        others.join("\n")
    );
}

#[tokio::test]
async fn an_unchanged_worker_prunes_nothing() {
    let (client, log) = fake_api_server(full_cluster());
    reconcile(
        Arc::new(example(5)),
        ctx(client, ScriptedProber::unreachable()),
    )
    .await
    .unwrap();
    assert!(deletes(&finish(&log)).is_empty());
}
