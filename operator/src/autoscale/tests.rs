//! The engines' pure parts: which `replicas` the Deployment gets, the builtin decision (up at
//! once, held for the window, the lease floor, the capacity cap), the KEDA objects and the
//! `AutoscalerReady` condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use learning_crds::runner::{AutoscalingEngine, AutoscalingSpec};
use learning_crds::status::{AutoscalingStatus, LearningWorkerStatus, QueueStatus};
use learning_crds::LearningWorker;

use super::builtin::{capacity_cap, decide, Inputs};
use super::*;
use crate::desired::fixtures::example;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn queue(visible: i64, leased: i64) -> QueueStatus {
    QueueStatus {
        visible,
        leased,
        ..QueueStatus::default()
    }
}

/// The autoscaling example (1..6, 20 jobs per replica, concurrency 4) with Ollama serving
/// `num_parallel` requests per model.
fn scaled(num_parallel: i32) -> LearningWorker {
    let mut lw = example("autoscaling.yaml");
    lw.spec.ollama.num_parallel = Some(num_parallel);
    lw
}

fn spec(lw: &LearningWorker) -> AutoscalingSpec {
    lw.spec.runner.autoscaling.clone().unwrap()
}

/// One decision: the queue, the Deployment's replicas, the last state, the time.
fn step(
    lw: &LearningWorker,
    q: Option<QueueStatus>,
    current: i32,
    previous: &AutoscalingStatus,
    now: Timestamp,
) -> AutoscalingStatus {
    let inputs = Inputs {
        queue: q.as_ref(),
        current: Some(current),
        previous: Some(previous),
    };
    decide(lw, &spec(lw), &inputs, now)
}

#[test]
fn replicas_follow_suspend_fixed_count_and_the_engine() {
    let mut lw = example("autoscaling.yaml");
    assert_eq!(
        runner_replicas(&lw, None),
        Some(1),
        "the minimum before a decision"
    );
    assert_eq!(runner_replicas(&lw, Some(4)), Some(4));
    for engine in [AutoscalingEngine::Keda, AutoscalingEngine::External] {
        lw.spec.runner.autoscaling.as_mut().unwrap().engine = engine;
        assert_eq!(runner_replicas(&lw, Some(4)), None, "{engine:?}");
    }
    lw.spec.suspend = true;
    assert_eq!(
        runner_replicas(&lw, Some(4)),
        Some(0),
        "suspended: zero for every engine"
    );
    let fixed = example("amd-gpu.yaml");
    assert_eq!(runner_replicas(&fixed, Some(5)), Some(2));
}

#[test]
fn the_capacity_cap_divides_ollamas_slots_by_one_runners_calls() {
    // numParallel 6 over at most 6 runners: one call per model per runner → 6 runners.
    assert_eq!(capacity_cap(&scaled(6)), Some(6));
    assert_eq!(capacity_cap(&scaled(2)), Some(2));
    // More slots than runners: 2 calls each (⌈8 ÷ 6⌉), 8 slots → 4 runners.
    assert_eq!(capacity_cap(&scaled(8)), Some(4));
    // A runner with one job at a time makes one call at a time.
    let mut single = scaled(8);
    single.spec.runner.concurrency = Some(1);
    assert_eq!(capacity_cap(&single), Some(8));
    let mut stub = scaled(2);
    stub.spec.ai.backend = learning_crds::ai::Backend::Stub;
    assert_eq!(capacity_cap(&stub), None, "no Ollama, no cap");
}

#[test]
fn demand_counts_visible_and_leased_jobs_within_bounds_and_cap() {
    let lw = scaled(6);
    let none = AutoscalingStatus::default();
    for ((visible, leased), want) in [
        ((0, 0), 1),
        ((20, 0), 1),
        ((21, 0), 2),
        ((10, 30), 2),
        ((60, 60), 6),
        ((10_000, 0), 6),
    ] {
        let d = step(&lw, Some(queue(visible, leased)), 1, &none, at(0));
        assert_eq!(d.desired_replicas, Some(want), "{visible}+{leased}");
        assert_eq!(d.recommended_replicas, Some(want));
    }
    let capped = step(&scaled(2), Some(queue(10_000, 0)), 1, &none, at(0));
    assert_eq!(
        (capped.desired_replicas, capped.capacity_cap),
        (Some(2), Some(2))
    );
}

#[test]
fn up_at_once_down_only_after_the_window_never_below_the_leases() {
    let lw = scaled(6); // window 300 s (the default)
    let s0 = step(
        &lw,
        Some(queue(120, 0)),
        1,
        &AutoscalingStatus::default(),
        at(0),
    );
    assert_eq!(s0.desired_replicas, Some(6), "up at once");
    assert_eq!(
        s0.demand_below_since, None,
        "no window while demand holds up"
    );
    // Demand falls: held for the window, which starts now.
    let s1 = step(&lw, Some(queue(0, 3)), 6, &s0, at(1));
    assert_eq!(
        (s1.desired_replicas, s1.recommended_replicas),
        (Some(6), Some(1))
    );
    assert_eq!(s1.demand_below_since, Some(Time(at(1))));
    let s1 = step(&lw, Some(queue(0, 3)), 6, &s1, at(300));
    assert_eq!(s1.desired_replicas, Some(6), "the window runs on");
    assert_eq!(s1.demand_below_since, Some(Time(at(1))));
    // After the window: down, but not below the 3 runners that may hold leases — and a
    // further step down waits a whole window again.
    let s2 = step(&lw, Some(queue(0, 3)), 6, &s1, at(301));
    assert_eq!(s2.desired_replicas, Some(3));
    assert_eq!(s2.demand_below_since, Some(Time(at(301))));
    let s3 = step(&lw, Some(queue(0, 0)), 3, &s2, at(400));
    assert_eq!(
        s3.desired_replicas,
        Some(3),
        "the next step waits its window"
    );
    let s3 = step(&lw, Some(queue(0, 0)), 3, &s3, at(601));
    assert_eq!(s3.desired_replicas, Some(1));
    assert_eq!(s3.demand_below_since, None, "at the demand: no window");
    // Steady at the minimum: the state does not change (no status write per reconcile).
    let s4 = step(&lw, Some(queue(0, 0)), 1, &s3, at(700));
    assert_eq!(s4, s3);
}

#[test]
fn a_step_down_restarts_the_window_for_the_next() {
    // Demand 6 -> 4 for a window -> 4; then 1: not straight to 1, another window first.
    let lw = scaled(6);
    let s0 = step(
        &lw,
        Some(queue(120, 0)),
        1,
        &AutoscalingStatus::default(),
        at(0),
    );
    assert_eq!(s0.desired_replicas, Some(6));
    let s1 = step(&lw, Some(queue(80, 0)), 6, &s0, at(1));
    let s1 = step(&lw, Some(queue(80, 0)), 6, &s1, at(301));
    assert_eq!(s1.desired_replicas, Some(4));
    assert_eq!(s1.demand_below_since, None);
    let s2 = step(&lw, Some(queue(0, 0)), 4, &s1, at(302));
    assert_eq!(
        s2.desired_replicas,
        Some(4),
        "a new window for the next step"
    );
    let s2 = step(&lw, Some(queue(0, 0)), 4, &s2, at(602));
    assert_eq!(s2.desired_replicas, Some(1));
}

#[test]
fn an_unknown_queue_holds_and_a_first_drop_starts_the_window() {
    let lw = scaled(6);
    let held = AutoscalingStatus {
        desired_replicas: Some(4),
        ..AutoscalingStatus::default()
    };
    assert_eq!(step(&lw, None, 4, &held, at(0)).desired_replicas, Some(4));
    // No recorded window start (e.g. after an upgrade): the window starts now.
    let first = step(&lw, Some(queue(0, 0)), 4, &held, at(0));
    assert_eq!(first.desired_replicas, Some(4));
    assert_eq!(first.demand_below_since, Some(Time(at(0))));
    // Without a previous status the Deployment's count is the count in force.
    let fresh = step(
        &lw,
        Some(queue(0, 0)),
        5,
        &AutoscalingStatus::default(),
        at(0),
    );
    assert_eq!(fresh.desired_replicas, Some(5));
    // A window of 0 scales down at once.
    let mut eager = scaled(6);
    eager
        .spec
        .runner
        .autoscaling
        .as_mut()
        .unwrap()
        .scale_down_stabilization_seconds = 0;
    assert_eq!(
        step(&eager, Some(queue(0, 0)), 4, &held, at(0)).desired_replicas,
        Some(1)
    );
}

#[test]
fn the_keda_objects_map_the_spec_and_pause_when_suspended() {
    let mut lw = scaled(2);
    let a = AutoscalingSpec {
        engine: AutoscalingEngine::Keda,
        min_replicas: 0,
        ..spec(&lw)
    };
    lw.spec.runner.autoscaling = Some(a.clone());
    let so = keda::scaled_object(&lw, &a);
    assert_eq!(so.metadata.name.as_deref(), Some("school-e-runner"));
    assert_eq!(so.spec.scale_target_ref.name, "school-e-runner");
    assert_eq!(so.spec.min_replica_count, Some(0));
    assert_eq!(
        so.spec.max_replica_count,
        Some(2),
        "capped like the builtin engine"
    );
    assert_eq!(so.spec.cooldown_period, Some(300));
    let trigger = &so.spec.triggers[0];
    assert_eq!(trigger.type_, "postgresql");
    assert_eq!(trigger.metadata["targetQueryValue"], "20");
    assert_eq!(trigger.metadata["activationTargetQueryValue"], "0");
    assert!(trigger.metadata["query"].contains("learning_submission_jobs"));
    assert_eq!(trigger.authentication_ref.name, "school-e-runner-db");
    assert!(so.metadata.annotations.is_none());
    let auth = keda::trigger_authentication(&lw);
    let r = &auth.spec.secret_target_ref[0];
    assert_eq!(
        (r.parameter.as_str(), r.name.as_str(), r.key.as_str()),
        ("connection", "learning-db", "dsn")
    );
    lw.spec.suspend = true;
    let paused = keda::scaled_object(&lw, &a);
    assert_eq!(
        paused.metadata.annotations.unwrap()[keda::PAUSED_REPLICAS],
        "0"
    );
}

#[test]
fn the_condition_follows_the_engine_and_goes_without_autoscaling() {
    let lw = scaled(2);
    let mut status = LearningWorkerStatus::default();
    let state = |s| Some((s, AutoscalingStatus::default()));
    let first = report(&lw, &mut status, state(EngineState::Builtin), at(0)).unwrap();
    assert_eq!(
        (first.condition.reason.as_str(), first.warning),
        ("BuiltinScaling", false)
    );
    assert!(report(&lw, &mut status, state(EngineState::Builtin), at(1)).is_none());
    let down = report(
        &lw,
        &mut status,
        state(EngineState::KedaUnavailable("no KEDA".into())),
        at(2),
    )
    .unwrap();
    assert_eq!(
        (
            down.condition.status.as_str(),
            down.condition.reason.as_str(),
            down.warning
        ),
        ("False", "AutoscalerUnavailable", true)
    );
    assert!(report(&lw, &mut status, None, at(3)).is_none());
    assert!(status.conditions.is_empty() && status.autoscaling.is_none());
}

#[test]
fn a_changed_count_gets_a_note_saying_why() {
    let mut lw = scaled(6);
    let decided = AutoscalingStatus {
        desired_replicas: Some(5),
        capacity_cap: Some(6),
        ..AutoscalingStatus::default()
    };
    let q = queue(60, 40);
    assert_eq!(
        rescale_note(&lw, Some(&decided), Some(&q)),
        None,
        "no count before"
    );
    lw.status = Some(LearningWorkerStatus {
        autoscaling: Some(AutoscalingStatus {
            desired_replicas: Some(1),
            ..AutoscalingStatus::default()
        }),
        ..LearningWorkerStatus::default()
    });
    assert_eq!(
        rescale_note(&lw, Some(&decided), Some(&q)).as_deref(),
        Some("runners 1 → 5: 60 visible + 40 leased jobs, 20 per runner, capacity cap 6")
    );
    let same = AutoscalingStatus {
        desired_replicas: Some(1),
        ..AutoscalingStatus::default()
    };
    assert_eq!(rescale_note(&lw, Some(&same), Some(&q)), None);
}
