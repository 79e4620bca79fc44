//! Self-tests of the fake API server (`support::fake_apiserver`): the semantics the whole-loop
//! tests rely on, exercised through kube's own client and watcher — resourceVersions,
//! generation, no-op writes, the status subresource, label selectors, paging, metadata-only
//! lists, watches (events, selector transitions, resume, bookmarks, 410 after compaction),
//! server-side apply, merge patch, garbage collection, authorization and request recording,
//! stalled requests (held for one named client only, then served), and optional CRDs (404
//! until installed).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::Api;
use serde_json::{json, Value};
use support::fake_apiserver::merge;
use support::fake_apiserver::selector::Selector;
use support::fake_apiserver::{FakeApiServer, Options, Propagation};
use support::wait::eventually;

const WAIT: Duration = Duration::from_secs(10);

fn deployment(name: &str, labels: Value, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": "ns", "labels": labels},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
}

fn ssa() -> PatchParams {
    PatchParams::apply("tester").force()
}

#[test]
fn selectors_parse_and_match_like_the_api_server() {
    let labels: BTreeMap<String, String> = [("a", "1"), ("b", "2")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    for (sel, expect) in [
        ("", true),
        ("a=1", true),
        ("a==1,b=2", true),
        ("a=1,b=3", false),
        ("a!=2", true),
        ("c!=2", true),
        ("a", true),
        ("!a", false),
        ("!c", true),
        ("a in (1,3)", true),
        ("b notin (1,2)", false),
        ("c notin (1)", true),
    ] {
        assert_eq!(
            Selector::parse(sel).unwrap().matches(&labels),
            expect,
            "{sel}"
        );
    }
    assert!(Selector::parse("a b=1").is_err());
}

#[test]
fn merge_patch_and_simplified_apply() {
    let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge::merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
    assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));

    let mut t = json!({"spec": {"replicas": 2, "paused": false, "x": 1}, "status": {"ready": 1}});
    let prev = json!({"spec": {"replicas": 2, "paused": false}});
    merge::apply(
        &mut t,
        Some(&prev),
        &json!({"spec": {"replicas": 3, "list": [1]}}),
        &[],
    );
    assert_eq!(
        t,
        json!({"spec": {"replicas": 3, "x": 1, "list": [1]}, "status": {"ready": 1}}),
        "fields the manager stopped applying go, fields of others stay, lists are replaced"
    );

    // A field another manager's configuration also sets stays (shared ownership: a hand-over).
    let mut t = json!({"spec": {"replicas": 3, "paused": false}});
    let prev = json!({"spec": {"replicas": 3, "paused": false}});
    let other = json!({"spec": {"replicas": 3}});
    merge::apply(&mut t, Some(&prev), &json!({"spec": {}}), &[&other]);
    assert_eq!(t, json!({"spec": {"replicas": 3}}));
}

#[tokio::test]
async fn apply_creates_then_updates_with_generation_and_no_op_writes_keep_the_version() {
    let server = FakeApiServer::start(Options::default()).await;
    let api: Api<Deployment> = Api::namespaced(server.client(), "ns");
    let created = api
        .patch(
            "web",
            &ssa(),
            &Patch::Apply(deployment("web", json!({"app": "web"}), 1)),
        )
        .await
        .unwrap();
    let rv1 = created.metadata.resource_version.clone().unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let same = api
        .patch(
            "web",
            &ssa(),
            &Patch::Apply(deployment("web", json!({"app": "web"}), 1)),
        )
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version.as_deref(),
        Some(rv1.as_str()),
        "no-op apply"
    );

    let mut with_status = deployment("web", json!({"app": "web"}), 2);
    with_status["status"] = json!({"readyReplicas": 9});
    let updated = api
        .patch("web", &ssa(), &Patch::Apply(with_status))
        .await
        .unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv1.as_str())
    );
    assert_eq!(
        updated.status, None,
        "status is ignored on the main resource"
    );

    let status = api
        .patch_status(
            "web",
            &ssa(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "status": {"readyReplicas": 2}, "spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.unwrap().ready_replicas, Some(2));
    assert_eq!(
        status.spec.unwrap().replicas,
        Some(2),
        "the status subresource changes only status"
    );
    assert_eq!(status.metadata.generation, Some(2));

    // A label the manager no longer applies is removed; a label set by someone else stays.
    server.modify("apps/v1", "Deployment", "ns", "web", |d| {
        d["metadata"]["labels"]["other"] = "x".into()
    });
    let relabeled = api
        .patch(
            "web",
            &ssa(),
            &Patch::Apply(deployment("web", json!({"team": "t"}), 2)),
        )
        .await
        .unwrap();
    let labels = relabeled.metadata.labels.unwrap();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["other", "team"]);

    // Apply without a field manager, with a wrong kind, or an unsupported patch type: refused.
    let err = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 415),
        "{err:?}"
    );
    let err = api
        .patch(
            "web",
            &ssa(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
}

#[tokio::test]
async fn replace_checks_the_resource_version_and_merge_patch_merges() {
    let server = FakeApiServer::start(Options::default()).await;
    let api: Api<Deployment> = Api::namespaced(server.client(), "ns");
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("web", json!({}), 1)).unwrap(),
        )
        .await
        .unwrap();
    let err = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("web", json!({}), 1)).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"));
    let mut stale = created.clone();
    let replaced = api
        .replace("web", &PostParams::default(), &created)
        .await
        .unwrap();
    assert_eq!(
        replaced.metadata.resource_version, created.metadata.resource_version,
        "no change, no new version"
    );
    stale.spec.as_mut().unwrap().replicas = Some(5);
    let ok = api
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap();
    assert_eq!(ok.spec.unwrap().replicas, Some(5));
    stale.spec.as_mut().unwrap().replicas = Some(6);
    let err = api
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );

    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.annotations.unwrap()["a"], "b");
    assert_eq!(patched.spec.unwrap().replicas, Some(5));
}

#[tokio::test]
async fn lists_filter_by_labels_page_and_serve_metadata_only() {
    let server = FakeApiServer::start(Options::default()).await;
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web")] {
        server.create(deployment(name, json!({"tier": tier}), 1));
    }
    server.create(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "other", "labels": {"tier": "web"}}}));
    let api: Api<Deployment> = Api::namespaced(server.client(), "ns");
    let names = |l: Vec<Deployment>| {
        l.into_iter()
            .map(|d| d.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    let web = api
        .list(&ListParams::default().labels("tier=web"))
        .await
        .unwrap();
    assert_eq!(names(web.items), ["a", "c"]);
    assert!(web.metadata.resource_version.is_some());
    let all: Api<Deployment> = Api::all(server.client());
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("tier in (web)"))
                .await
                .unwrap()
                .items
        ),
        ["a", "c", "d"]
    );

    let page1 = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(page1.items), ["a", "b"]);
    let token = page1.metadata.continue_.unwrap();
    let page2 = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(page2.items), ["c"]);
    assert_eq!(page2.metadata.continue_.as_deref().unwrap_or(""), "");

    let meta = api
        .list_metadata(&ListParams::default().labels("tier=db"))
        .await
        .unwrap();
    assert_eq!(meta.items.len(), 1);
    assert_eq!(meta.items[0].metadata.name.as_deref(), Some("b"));
    let raw = server.requests().into_iter().last().unwrap();
    assert!(raw.accept.contains("PartialObjectMetadataList"), "{raw:?}");
}

#[tokio::test]
async fn watches_stream_changes_from_a_version_with_selector_transitions() {
    let server = FakeApiServer::start(Options::default()).await;
    let api: Api<Deployment> = Api::namespaced(server.client(), "ns");
    server.create(deployment("before", json!({"tier": "web"}), 1));
    let from = server.resource_version().to_string();
    let mut stream = api
        .watch(
            &WatchParams::default().labels("tier=web").timeout(30),
            &from,
        )
        .await
        .unwrap()
        .boxed();
    server.create(deployment("web", json!({"tier": "web"}), 1));
    server.create(deployment("db", json!({"tier": "db"}), 1));
    server.modify("apps/v1", "Deployment", "ns", "web", |d| {
        d["spec"]["replicas"] = 3.into()
    });
    server.modify("apps/v1", "Deployment", "ns", "db", |d| {
        d["metadata"]["labels"]["tier"] = "web".into()
    });
    server.modify("apps/v1", "Deployment", "ns", "web", |d| {
        d["metadata"]["labels"]["tier"] = "db".into()
    });
    server.delete("apps/v1", "Deployment", "ns", "db", None);
    let (mut seen, mut bookmarks) = (Vec::new(), 0);
    while seen.len() < 5 {
        let ev = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if matches!(ev, WatchEvent::Bookmark(_)) {
            bookmarks += 1;
            continue;
        }
        seen.push(match ev {
            WatchEvent::Added(d) => format!("ADDED {}", d.metadata.name.unwrap()),
            WatchEvent::Modified(d) => format!(
                "MODIFIED {} {}",
                d.metadata.name.unwrap(),
                d.spec.unwrap().replicas.unwrap()
            ),
            WatchEvent::Deleted(d) => format!("DELETED {}", d.metadata.name.unwrap()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "ADDED web",
            "MODIFIED web 3",
            "ADDED db",
            "DELETED web",
            "DELETED db"
        ],
        "the object created before the version is not replayed; leaving the selector is a DELETED"
    );
    assert_eq!(
        bookmarks, 1,
        "one BOOKMARK after the replay (kube asks for bookmarks)"
    );
}

#[tokio::test]
async fn the_kube_watcher_resumes_after_short_watches_and_relists_after_compaction() {
    let server = FakeApiServer::start(Options {
        max_watch: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let api: Api<Deployment> = Api::namespaced(server.client(), "ns");
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = kube::runtime::reflector(
        writer,
        watcher(api.clone(), watcher::Config::default().any_semantic()),
    );
    let task = tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader.wait_until_ready().await.unwrap();
    server.create(deployment("one", json!({}), 1));
    let names = |r: &kube::runtime::reflector::Store<Deployment>| {
        let mut v: Vec<String> = r
            .state()
            .iter()
            .map(|d| d.metadata.name.clone().unwrap())
            .collect();
        v.sort();
        v
    };
    eventually("the watcher to see `one`", WAIT, || {
        (names(&reader) == ["one"])
            .then_some(())
            .ok_or(format!("{:?}", names(&reader)))
    })
    .await;
    // Several watches time out and are resumed from bookmarks; nothing is lost in between.
    let before = server.requests().len();
    eventually("re-watches after the server closed watches", WAIT, || {
        let watches = server.requests()[before..]
            .iter()
            .filter(|r| r.query.contains("watch=true"))
            .count();
        (watches >= 2)
            .then_some(())
            .ok_or(format!("{watches} watches"))
    })
    .await;
    server.create(deployment("two", json!({}), 1));
    eventually("the watcher to see `two`", WAIT, || {
        (names(&reader) == ["one", "two"])
            .then_some(())
            .ok_or(format!("{:?}", names(&reader)))
    })
    .await;
    let resumed = server
        .requests()
        .into_iter()
        .filter(|r| r.query.contains("watch=true"))
        .collect::<Vec<_>>();
    assert!(resumed
        .iter()
        .all(|r| r.query.contains("allowWatchBookmarks=true")));

    // After compaction, a watch from an older version gets an ERROR event with 410 Gone (the
    // watcher then lists again — kube-runtime's behaviour, not re-tested here).
    let old = server.resource_version().to_string();
    server.create(deployment("three", json!({}), 1));
    server.compact();
    let mut gone = api
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(WAIT, gone.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Error(e) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    eventually("the watcher to see `three`", WAIT, || {
        (names(&reader) == ["one", "three", "two"])
            .then_some(())
            .ok_or(format!("{:?}", names(&reader)))
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn deleting_an_owner_collects_dependents_per_propagation_policy() {
    let server = FakeApiServer::start(Options::default()).await;
    let owner = server.create(json!({"apiVersion": "learning.gustav.dev/v1alpha1", "kind": "LearningWorker", "metadata": {"name": "w", "namespace": "ns"}, "spec": {}}));
    let owned_by = |o: &Value, kind: &str| json!([{"apiVersion": o["apiVersion"], "kind": kind, "name": o["metadata"]["name"], "uid": o["metadata"]["uid"], "controller": true}]);
    let dep = server.create(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns", "ownerReferences": owned_by(&owner, "LearningWorker")}}));
    server.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "ownerReferences": owned_by(&dep, "Deployment")}}));
    let job = server.create(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns", "ownerReferences": owned_by(&owner, "LearningWorker")}}));
    server.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job-pod", "namespace": "ns", "ownerReferences": owned_by(&job, "Job")}}));
    server.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "unowned", "namespace": "ns"}}));

    // A Job deleted without a policy orphans its pods (the REST default for batch/v1 Jobs).
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(server.client(), "ns");
    jobs.delete("j", &DeleteParams::default()).await.unwrap();
    let pod = server
        .get("v1", "Pod", "ns", "job-pod")
        .expect("orphaned, not deleted");
    assert_eq!(pod["metadata"]["ownerReferences"], json!([]));

    // The owner deleted (background): its Deployment and the Deployment's pod go.
    server.delete(
        "learning.gustav.dev/v1alpha1",
        "LearningWorker",
        "ns",
        "w",
        Some(Propagation::Background),
    );
    let left: Vec<String> = server
        .all_objects()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(left, ["Pod job-pod", "Service unowned"]);

    // An object created for an owner that no longer exists is collected at once.
    server.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "late", "namespace": "ns", "ownerReferences": owned_by(&owner, "LearningWorker")}}));
    assert!(server.get("v1", "Service", "ns", "late").is_none());
}

#[tokio::test]
async fn the_authorizer_answers_403_and_every_request_is_recorded() {
    let server = FakeApiServer::start(Options {
        authorize: Box::new(|a| a.resource != "configmaps" && a.verb != "delete"),
        ..Options::default()
    })
    .await;
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ns");
    let err = cms.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err:?}"
    );
    let deps: Api<Deployment> = Api::namespaced(client, "ns");
    deps.patch("x", &ssa(), &Patch::Apply(deployment("x", json!({}), 1)))
        .await
        .unwrap();
    let err = deps
        .delete("x", &DeleteParams::background())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err:?}"
    );
    let log = server.requests();
    let summary: Vec<(String, String, u16)> = log
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                r.attributes.as_ref().unwrap().verb.clone(),
                r.status,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("GET".into(), "list".into(), 403),
            ("PATCH".into(), "patch".into(), 201),
            ("DELETE".into(), "delete".into(), 403)
        ]
    );
    assert_eq!(log[1].content_type, "application/apply-patch+yaml");
    assert!(
        log[1].uri().contains("fieldManager=tester"),
        "{}",
        log[1].uri()
    );
    assert_eq!(log[1].body["metadata"]["name"], "x");
    assert_eq!(log[2].body["propagationPolicy"], "Background");
}

#[tokio::test]
async fn a_stall_holds_the_named_clients_requests_on_the_path_then_serves_them() {
    let server = FakeApiServer::start(Options::default()).await;
    server.create(
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                         "metadata": {"name": "l", "namespace": "ns"}, "spec": {}}),
    );
    let stalled: Api<Lease> = Api::namespaced(server.client_as("stalled"), "ns");
    let other: Api<Lease> = Api::namespaced(server.client_as("other"), "ns");
    let stall = Duration::from_secs(2);
    server.stall("/leases", Some("stalled"), stall);
    let started = tokio::time::Instant::now();
    let held = tokio::spawn(async move { stalled.get("l").await });

    // Another client on the same path is served during the stall.
    other.get("l").await.unwrap();
    assert!(
        !held.is_finished(),
        "the stalled client's GET is still held"
    );
    assert_eq!(
        server
            .requests()
            .iter()
            .map(|r| r.client.as_str())
            .collect::<Vec<_>>(),
        ["other"],
        "a held request is recorded when it is served"
    );

    // Once the stall is over, the held request is served as usual.
    let lease = tokio::time::timeout(WAIT, held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(lease.metadata.name.as_deref(), Some("l"));
    assert!(started.elapsed() >= stall, "held for the whole stall");
    let log = server.requests();
    assert_eq!(log[1].client, "stalled");
    assert_eq!(log[1].status, 200);
}

#[tokio::test]
async fn optional_crds_are_not_found_until_installed() {
    let server = FakeApiServer::start(Options::default()).await;
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        server.client(),
        "ns",
        &kube::api::ApiResource {
            group: "keda.sh".into(),
            version: "v1alpha1".into(),
            api_version: "keda.sh/v1alpha1".into(),
            kind: "ScaledObject".into(),
            plural: "scaledobjects".into(),
        },
    );
    let so = json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                    "metadata": {"name": "so", "namespace": "ns"}, "spec": {"triggers": []}});
    let err = api
        .patch("so", &ssa(), &Patch::Apply(so.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    server.install_optional_crds();
    api.patch("so", &ssa(), &Patch::Apply(so)).await.unwrap();
    assert!(server
        .get("keda.sh/v1alpha1", "ScaledObject", "ns", "so")
        .is_some());
}
