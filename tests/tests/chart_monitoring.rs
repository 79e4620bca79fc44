//! The chart's monitoring objects: the PrometheusRule's rules through `promtool check rules`
//! and unit-tested with `promtool test rules` (each alert fires on synthetic series that mean
//! trouble and stays quiet on healthy ones); every alert switch; the Grafana dashboard's JSON
//! and PromQL (through promtool as recording rules) and metric names that exist in the
//! runner and the operator; the ServiceMonitors' selectors and ports against the Services they
//! scrape (there is no offline schema for the Prometheus Operator's CRDs).

mod chart_support;

use std::collections::BTreeSet;
use std::process::Command;

use chart_support::*;
use serde_yaml_ng::Value;

fn monitoring_profile() -> String {
    format!("{}/profiles/monitoring.yaml", chart_dir().display())
}

fn promtool(args: &[&str], dir: &TempDir) -> (bool, String) {
    let out = run(
        Command::new("promtool").args(args).current_dir(&dir.0),
        "install the Debian package prometheus (make deps)",
    );
    (out.status.success(), text(&out))
}

/// The PrometheusRule's `spec` as a Prometheus rule file.
fn rule_file(all: &[Value]) -> Value {
    let pr = of_kind(all, "PrometheusRule");
    assert_eq!(pr.len(), 1);
    pr[0]["spec"].clone()
}

fn alert_names(rules: &Value) -> BTreeSet<String> {
    rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let all = docs(&render(4, &["-f", &monitoring_profile()]));
    let rules = rule_file(&all);
    let dir = TempDir::new("rules-check");
    dir.write("rules.yaml", &serde_yaml_ng::to_string(&rules).unwrap());
    let (ok, t) = promtool(&["check", "rules", "rules.yaml"], &dir);
    assert!(ok, "promtool check rules failed:\n{t}");
    assert!(t.contains("SUCCESS: 14 rules found"), "{t}");
    let names = alert_names(&rules);
    for a in [
        "LearningQueueBacklogGrowing",
        "LearningOldestJobTooOld",
        "LearningJobFailureRateHigh",
        "LearningTimeToFeedbackHigh",
        "LearningWorkerRunnersUnhealthy",
        "LearningWorkerNotReady",
        "LearningRunnerDown",
        "LearningRunnerOllamaUnreachable",
        "LearningRunnerDatabaseErrors",
        "LearningOllamaCPUFallback",
        "LearningOllamaModelSwapping",
        "LearningOperatorDown",
        "LearningOperatorNoLeader",
        "LearningOperatorReconcileErrors",
    ] {
        assert!(names.contains(a), "{a} missing: {names:?}");
    }
}

/// Each alert switch removes exactly its alerts; all off leaves no rule group behind.
#[test]
fn every_alert_can_be_switched_off() {
    let switches = [
        ("queueBacklogGrowing", vec!["LearningQueueBacklogGrowing"]),
        ("oldestJobTooOld", vec!["LearningOldestJobTooOld"]),
        ("failureRate", vec!["LearningJobFailureRateHigh"]),
        ("timeToFeedback", vec!["LearningTimeToFeedbackHigh"]),
        (
            "runnersUnhealthy",
            vec![
                "LearningWorkerRunnersUnhealthy",
                "LearningRunnerDown",
                "LearningRunnerOllamaUnreachable",
                "LearningRunnerDatabaseErrors",
            ],
        ),
        ("notReady", vec!["LearningWorkerNotReady"]),
        ("cpuFallback", vec!["LearningOllamaCPUFallback"]),
        ("modelSwapping", vec!["LearningOllamaModelSwapping"]),
        (
            "operator",
            vec![
                "LearningOperatorDown",
                "LearningOperatorNoLeader",
                "LearningOperatorReconcileErrors",
            ],
        ),
    ];
    let full = alert_names(&rule_file(&docs(&render(
        4,
        &["-f", &monitoring_profile()],
    ))));
    let mut all_off = vec!["-f".to_owned(), monitoring_profile()];
    for (switch, gone) in &switches {
        let set = format!("monitoring.prometheusRule.alerts.{switch}.enabled=false");
        let names = alert_names(&rule_file(&docs(&render(
            4,
            &["-f", &monitoring_profile(), "--set", &set],
        ))));
        let expected: BTreeSet<String> = full
            .iter()
            .filter(|n| !gone.contains(&n.as_str()))
            .cloned()
            .collect();
        assert_eq!(names, expected, "{set}");
        all_off.push("--set".into());
        all_off.push(set);
    }
    let args: Vec<&str> = all_off.iter().map(String::as_str).collect();
    let rules = rule_file(&docs(&render(4, &args)));
    assert!(alert_names(&rules).is_empty());
}

/// `promtool test rules`: synthetic series for trouble and for health, per alert. The
/// annotations (templated text) are checked by `promtool check rules` above and stripped here
/// so the expectations compare labels only.
#[test]
fn alerts_fire_on_trouble_and_stay_quiet_otherwise() {
    let mut rules = rule_file(&docs(&render(4, &["-f", &monitoring_profile()])));
    for g in rules["groups"].as_sequence_mut().unwrap() {
        for r in g["rules"].as_sequence_mut().unwrap() {
            r.as_mapping_mut().unwrap().remove("annotations");
        }
    }
    let dir = TempDir::new("rules-test");
    dir.write("rules.yaml", &serde_yaml_ng::to_string(&rules).unwrap());
    dir.write("tests.yaml", RULE_TESTS);
    let (ok, t) = promtool(&["test", "rules", "tests.yaml"], &dir);
    assert!(ok, "promtool test rules failed:\n{t}");
    assert!(t.contains("SUCCESS"), "{t}");
}

const RULE_TESTS: &str = r#"
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - name: backlog, oldest job, failure rate
    interval: 1m
    input_series:
      # school: the backlog rises by 2 a minute; calm: 50 jobs, not rising.
      - series: 'learning_runner_queue_jobs{job="learning-runner",namespace="gustav",learning_worker="school",pod="r1",state="visible"}'
        values: '10+2x60'
      - series: 'learning_runner_queue_jobs{job="learning-runner",namespace="gustav",learning_worker="calm",pod="c1",state="visible"}'
        values: '50x60'
      - series: 'learning_runner_oldest_job_age_seconds{job="learning-runner",namespace="gustav",learning_worker="school",pod="r1"}'
        values: '0+60x60'
      - series: 'learning_runner_oldest_job_age_seconds{job="learning-runner",namespace="gustav",learning_worker="calm",pod="c1"}'
        values: '30x60'
      # school: 3 of 10 jobs fail; calm: none.
      - series: 'ai_worker_processed_total{job="learning-runner",namespace="gustav",learning_worker="school",pod="r1",status="failed"}'
        values: '0+3x60'
      - series: 'ai_worker_processed_total{job="learning-runner",namespace="gustav",learning_worker="school",pod="r1",status="completed"}'
        values: '0+7x60'
      - series: 'ai_worker_processed_total{job="learning-runner",namespace="gustav",learning_worker="calm",pod="c1",status="failed"}'
        values: '0x60'
      - series: 'ai_worker_processed_total{job="learning-runner",namespace="gustav",learning_worker="calm",pod="c1",status="completed"}'
        values: '0+10x60'
    alert_rule_test:
      - eval_time: 10m
        alertname: LearningQueueBacklogGrowing
        exp_alerts: []
      - eval_time: 40m
        alertname: LearningQueueBacklogGrowing
        exp_alerts:
          - exp_labels: {severity: warning, namespace: gustav, learning_worker: school}
      - eval_time: 40m
        alertname: LearningOldestJobTooOld
        exp_alerts:
          - exp_labels: {severity: warning, namespace: gustav, learning_worker: school}
      - eval_time: 40m
        alertname: LearningJobFailureRateHigh
        exp_alerts:
          - exp_labels: {severity: warning, namespace: gustav, learning_worker: school}
  - name: runners unhealthy and CPU fallback
    interval: 1m
    input_series:
      - series: 'up{job="learning-runner",namespace="gustav",learning_worker="school",pod="r1"}'
        values: '0x30'
      - series: 'up{job="learning-runner",namespace="gustav",learning_worker="school",pod="r2"}'
        values: '1x30'
      # r3 runs the local backend (learning_runner_build_info) and cannot reach Ollama;
      # r4 runs the stub backend: ollama_up stays 0 there, which is no trouble.
      - series: 'learning_runner_ollama_up{job="learning-runner",namespace="gustav",learning_worker="school",pod="r3"}'
        values: '0x30'
      - series: 'learning_runner_build_info{job="learning-runner",namespace="gustav",learning_worker="school",pod="r3",backend="local",version="0.1.0"}'
        values: '1x30'
      - series: 'learning_runner_ollama_up{job="learning-runner",namespace="gustav",learning_worker="stubby",pod="r4"}'
        values: '0x30'
      - series: 'learning_runner_build_info{job="learning-runner",namespace="gustav",learning_worker="stubby",pod="r4",backend="stub",version="0.1.0"}'
        values: '1x30'
      # r5 runs the local backend of a worker whose Ollama the operator scaled to zero
      # (idleScaleDown): expected, no alert.
      - series: 'learning_runner_ollama_up{job="learning-runner",namespace="gustav",learning_worker="idle",pod="r5"}'
        values: '0x30'
      - series: 'learning_runner_build_info{job="learning-runner",namespace="gustav",learning_worker="idle",pod="r5",backend="local",version="0.1.0"}'
        values: '1x30'
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="idle",pod="o1",type="OllamaReady",status="False",reason="ScaledToZero"}'
        values: '1x30'
      - series: 'learning_runner_db_errors_total{job="learning-runner",namespace="gustav",learning_worker="school",pod="r1",operation="lease"}'
        values: '0+1x30'
      - series: 'learning_runner_db_errors_total{job="learning-runner",namespace="gustav",learning_worker="school",pod="r2",operation="lease"}'
        values: '3x30'
      - series: 'learning_runner_ollama_gpu_offload_ratio{job="learning-runner",namespace="gustav",learning_worker="school",pod="r3",model="gpt-oss:20b"}'
        values: '0.6x30'
      - series: 'learning_runner_ollama_gpu_offload_ratio{job="learning-runner",namespace="gustav",learning_worker="gpu-ok",pod="g1",model="gpt-oss:20b"}'
        values: '1x30'
    alert_rule_test:
      - eval_time: 3m
        alertname: LearningRunnerDown
        exp_alerts: []
      - eval_time: 10m
        alertname: LearningRunnerDown
        exp_alerts:
          - exp_labels: {severity: critical, job: learning-runner, namespace: gustav, learning_worker: school, pod: r1}
      - eval_time: 10m
        alertname: LearningRunnerOllamaUnreachable
        exp_alerts:
          - exp_labels: {severity: critical, job: learning-runner, namespace: gustav, learning_worker: school, pod: r3}
      - eval_time: 15m
        alertname: LearningRunnerDatabaseErrors
        exp_alerts:
          - exp_labels: {severity: critical, namespace: gustav, learning_worker: school, pod: r1}
      - eval_time: 20m
        alertname: LearningOllamaCPUFallback
        exp_alerts:
          - exp_labels: {severity: warning, namespace: gustav, learning_worker: school, model: "gpt-oss:20b"}
  - name: time to feedback and model swapping
    interval: 5m
    input_series:
      # Completed jobs per 5 minutes, cumulative by bucket (le in seconds). slow: half of the
      # jobs take 30 to 60 minutes from hand-in; fast: all within 2 minutes; idle: none
      # complete (the quantile is NaN); lull: slow for 15 minutes, then nothing completes.
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="slow",pod="s1",le="600"}'
        values: '0+25x24'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="slow",pod="s1",le="1800"}'
        values: '0+25x24'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="slow",pod="s1",le="3600"}'
        values: '0+50x24'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="slow",pod="s1",le="+Inf"}'
        values: '0+50x24'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="fast",pod="f1",le="60"}'
        values: '0+40x24'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="fast",pod="f1",le="120"}'
        values: '0+50x24'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="fast",pod="f1",le="+Inf"}'
        values: '0+50x24'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="idle",pod="i1",le="600"}'
        values: '0x24'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="idle",pod="i1",le="+Inf"}'
        values: '0x24'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="lull",pod="l1",le="600"}'
        values: '0+25x3 75x21'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="lull",pod="l1",le="3600"}'
        values: '0+50x3 150x21'
      - series: 'learning_runner_time_to_feedback_seconds_bucket{job="learning-runner",namespace="gustav",learning_worker="lull",pod="l1",le="+Inf"}'
        values: '0+50x3 150x21'
      # swappy: the two models take turns, each loaded every 5 minutes (24 loads an hour),
      # seen by both runners. shared: four runners see the same feedback model loaded every 10
      # minutes (6 an hour, 4 to 8 by a 15-minute rate; summed over the runners, four times
      # that). fits: each model loaded once at the start, then resident.
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="swappy",pod="r1",model="qwen2.5vl:3b"}'
        values: '1+1x24'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="swappy",pod="r1",model="gpt-oss:20b"}'
        values: '1+1x24'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="swappy",pod="r2",model="qwen2.5vl:3b"}'
        values: '1+1x24'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="swappy",pod="r2",model="gpt-oss:20b"}'
        values: '1+1x24'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="shared",pod="h1",model="gpt-oss:20b"}'
        values: '1 1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9 10 10 11 11 12 12 13'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="shared",pod="h2",model="gpt-oss:20b"}'
        values: '1 1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9 10 10 11 11 12 12 13'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="shared",pod="h3",model="gpt-oss:20b"}'
        values: '1 1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9 10 10 11 11 12 12 13'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="shared",pod="h4",model="gpt-oss:20b"}'
        values: '1 1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9 10 10 11 11 12 12 13'
      # swappy completes one submission every 5 minutes: 2 loads per submission. phased swaps
      # as often, but completes 12 submissions every 5 minutes: 0.17 per submission, a
      # one-model GPU working in phases.
      - series: 'ai_worker_processed_total{job="learning-runner",namespace="gustav",learning_worker="swappy",pod="r1",status="completed"}'
        values: '0+1x24'
      - series: 'ai_worker_processed_total{job="learning-runner",namespace="gustav",learning_worker="swappy",pod="r2",status="completed"}'
        values: '0x24'
      # shared completes nothing: only its load rate (deduplicated) keeps it quiet.
      - series: 'ai_worker_processed_total{job="learning-runner",namespace="gustav",learning_worker="shared",pod="h1",status="completed"}'
        values: '0x24'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="phased",pod="p1",model="qwen2.5vl:3b"}'
        values: '1+1x24'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="phased",pod="p1",model="gpt-oss:20b"}'
        values: '1+1x24'
      - series: 'ai_worker_processed_total{job="learning-runner",namespace="gustav",learning_worker="phased",pod="p1",status="completed"}'
        values: '0+12x24'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="fits",pod="t1",model="qwen2.5vl:3b"}'
        values: '1x24'
      - series: 'learning_runner_ollama_model_loads_total{job="learning-runner",namespace="gustav",learning_worker="fits",pod="t1",model="gpt-oss:20b"}'
        values: '1x24'
    alert_rule_test:
      - eval_time: 20m
        alertname: LearningTimeToFeedbackHigh
        exp_alerts: []
      - eval_time: 60m
        alertname: LearningTimeToFeedbackHigh
        exp_alerts:
          - exp_labels: {severity: warning, namespace: gustav, learning_worker: slow}
      - eval_time: 20m
        alertname: LearningOllamaModelSwapping
        exp_alerts: []
      - eval_time: 60m
        alertname: LearningOllamaModelSwapping
        exp_alerts:
          - exp_labels: {severity: warning, namespace: gustav, learning_worker: swappy}
  - name: LearningWorker conditions (the operator's series; namespace is the worker's)
    interval: 1m
    input_series:
      # school: runners degraded, so not Ready.
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="school",pod="o1",type="RunnersHealthy",status="False",reason="HealthDegraded"}'
        values: '1x30'
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="school",pod="o1",type="Ready",status="False",reason="HealthDegraded"}'
        values: '1x30'
      # flappy: no runner available, first unschedulable, then crash-looping: the reason
      # changes (the old series goes stale) without restarting the alert's `for` clock.
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="flappy",pod="o1",type="RunnersAvailable",status="False",reason="Unschedulable"}'
        values: '1x3 stale'
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="flappy",pod="o1",type="RunnersAvailable",status="False",reason="CrashLoopBackOff"}'
        values: '_x4 1x26'
      # paused: suspended on purpose; fine: all good.
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="paused",pod="o1",type="RunnersAvailable",status="False",reason="Suspended"}'
        values: '1x30'
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="paused",pod="o1",type="RunnersHealthy",status="False",reason="Suspended"}'
        values: '1x30'
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="paused",pod="o1",type="Ready",status="False",reason="Suspended"}'
        values: '1x30'
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="fine",pod="o1",type="RunnersHealthy",status="True",reason="Healthy"}'
        values: '1x30'
      - series: 'learning_operator_worker_condition{job="learning-operator",namespace="gustav",learning_worker="fine",pod="o1",type="Ready",status="True",reason="Ready"}'
        values: '1x30'
    alert_rule_test:
      - eval_time: 3m
        alertname: LearningWorkerRunnersUnhealthy
        exp_alerts: []
      - eval_time: 7m
        alertname: LearningWorkerRunnersUnhealthy
        exp_alerts:
          - exp_labels: {severity: critical, namespace: gustav, learning_worker: school, type: RunnersHealthy}
          - exp_labels: {severity: critical, namespace: gustav, learning_worker: flappy, type: RunnersAvailable}
      - eval_time: 5m
        alertname: LearningWorkerNotReady
        exp_alerts: []
      - eval_time: 15m
        alertname: LearningWorkerNotReady
        exp_alerts:
          - exp_labels: {severity: warning, namespace: gustav, learning_worker: school}
  - name: operator
    interval: 1m
    input_series:
      - series: 'up{job="learning-operator",namespace="learning-system",pod="o1"}'
        values: '0x30'
      - series: 'learning_operator_leader{job="learning-operator",namespace="learning-system",pod="o1"}'
        values: '0x30'
      - series: 'learning_operator_reconcile_errors_total{job="learning-operator",namespace="learning-system",pod="o1",category="forbidden"}'
        values: '0+1x30'
      - series: 'learning_operator_reconcile_errors_total{job="learning-operator",namespace="learning-system",pod="o1",category="conflict"}'
        values: '0+5x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: LearningOperatorDown
        exp_alerts:
          - exp_labels: {severity: warning}
      - eval_time: 20m
        alertname: LearningOperatorNoLeader
        exp_alerts:
          - exp_labels: {severity: warning}
      - eval_time: 20m
        alertname: LearningOperatorReconcileErrors
        exp_alerts:
          - exp_labels: {severity: warning, category: forbidden}
  - name: a healthy operator is quiet
    interval: 1m
    input_series:
      - series: 'up{job="learning-operator",namespace="learning-system",pod="o1"}'
        values: '1x30'
      - series: 'learning_operator_leader{job="learning-operator",namespace="learning-system",pod="o1"}'
        values: '1x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: LearningOperatorDown
        exp_alerts: []
      - eval_time: 20m
        alertname: LearningOperatorNoLeader
        exp_alerts: []
"#;

/// Metric names a query uses (histogram suffixes stripped).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == '_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            if [
                "learning_runner_",
                "learning_operator_",
                "ai_worker_",
                "analysis_jobs_",
            ]
            .iter()
            .any(|p| word.starts_with(p))
            {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .unwrap_or(&word);
                out.insert(base.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The metric names the runner and the operator register (from their metrics modules).
fn exported_metrics() -> String {
    [
        "runner/src/telemetry/metrics.rs",
        "operator/src/metrics.rs",
        // The queue metrics the operator scrapes are named in the contract crate.
        "contract/src/metrics.rs",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(root().join(p)).unwrap())
    .collect::<Vec<_>>()
    .join("\n")
}

#[test]
fn alerts_and_dashboard_use_metrics_that_exist() {
    let all = docs(&render(4, &["-f", &monitoring_profile()]));
    let rules = rule_file(&all);
    let mut exprs: Vec<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect();
    exprs.extend(dashboard_exprs(&all));
    let exported = exported_metrics();
    let mut used = BTreeSet::new();
    for e in &exprs {
        used.extend(metric_names(e));
    }
    assert!(used.len() >= 15, "{used:?}");
    for m in &used {
        assert!(
            exported.contains(&format!("\"{m}\"")),
            "{m} is used by an alert or the dashboard but neither the runner nor the operator exports it"
        );
    }
}

fn dashboard(all: &[Value]) -> serde_json::Value {
    let cm = of_kind(all, "ConfigMap");
    assert_eq!(cm.len(), 1);
    assert_eq!(
        cm[0]["metadata"]["labels"]["grafana_dashboard"].as_str(),
        Some("1"),
        "the Grafana sidecar's default label"
    );
    let json = cm[0]["data"]["learning-worker.json"].as_str().unwrap();
    serde_json::from_str(json).expect("the dashboard is JSON")
}

fn dashboard_exprs(all: &[Value]) -> Vec<String> {
    let d = dashboard(all);
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    out
}

#[test]
fn dashboard_queries_are_valid_promql_for_the_configured_jobs() {
    let all = docs(&render(
        4,
        &[
            "-f",
            &monitoring_profile(),
            "--set",
            "monitoring.jobs.runner=my-runners",
        ],
    ));
    let d = dashboard(&all);
    assert_eq!(d["uid"].as_str(), Some("gustav-learning-worker"));
    let exprs = dashboard_exprs(&all);
    assert!(exprs.len() >= 14, "{} queries", exprs.len());
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_i64().unwrap()), "duplicate panel id");
    }
    let runner_queries = exprs
        .iter()
        .filter(|e| e.contains("learning_runner_") || e.contains("ai_worker_"));
    for e in runner_queries {
        assert!(
            e.contains(r#"job="my-runners""#),
            "not for the configured job: {e}"
        );
    }
    // As recording rules, so promtool parses every query.
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$namespace", ".*")
                .replace("$learning_worker", ".*");
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": e})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = TempDir::new("dashboard-check");
    dir.write(
        "dashboard-rules.yaml",
        &serde_json::to_string_pretty(&file).unwrap(),
    );
    let (ok, t) = promtool(&["check", "rules", "dashboard-rules.yaml"], &dir);
    assert!(ok, "dashboard queries do not parse:\n{t}");
}

/// The ServiceMonitors select the Services they mean and name ports those Services have.
#[test]
fn service_monitors_select_the_operator_and_the_runner_services() {
    let all = docs(&render(4, &["-f", &monitoring_profile()]));
    let sms = of_kind(&all, "ServiceMonitor");
    assert_eq!(sms.len(), 2);
    let fullname = format!("{RELEASE}-learning-worker-operator");

    let selects = |sm: &Value, svc: &Value| {
        let sel = sm["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .expect("matchLabels");
        assert!(!sel.is_empty());
        sel.iter()
            .all(|(k, v)| svc["metadata"]["labels"].get(k.as_str().unwrap()) == Some(v))
    };
    let port_of = |sm: &Value| {
        sm["spec"]["endpoints"][0]["port"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let has_port = |svc: &Value, p: &str| {
        svc["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|x| x["name"].as_str() == Some(p))
    };

    // The operator's metrics Service (chart).
    let op_sm = sms
        .iter()
        .find(|s| name(s) == fullname)
        .expect("operator ServiceMonitor");
    let op_svc = of_kind(&all, "Service")[0];
    assert!(
        selects(op_sm, op_svc),
        "operator ServiceMonitor does not select the metrics Service"
    );
    assert!(has_port(op_svc, &port_of(op_sm)));
    assert_eq!(
        op_sm["spec"]["endpoints"][0]["path"].as_str(),
        Some("/metrics")
    );
    assert_eq!(
        op_sm["spec"]["endpoints"][0]["honorLabels"].as_bool(),
        Some(true),
        "learning_operator_worker_* carry the LearningWorker's namespace, which must not become \
         exported_namespace"
    );

    // A runner Service as the operator renders it (crds/examples/cpu-only.yaml).
    let example = std::fs::read_to_string(root().join("crds/examples/cpu-only.yaml")).unwrap();
    let ctx = learning_operator::desired::RenderContext {
        operator_namespace: NAMESPACE.to_owned(),
        ..Default::default()
    };
    let children = docs(&learning_operator::render::render_yaml(&example, &ctx, None).unwrap());
    let runner_svc = children
        .iter()
        .find(|d| {
            kind(d) == "Service"
                && d["metadata"]["labels"]["app.kubernetes.io/component"].as_str() == Some("runner")
        })
        .expect("runner Service");
    let ollama_svc = children
        .iter()
        .find(|d| {
            kind(d) == "Service"
                && d["metadata"]["labels"]["app.kubernetes.io/component"].as_str() == Some("ollama")
        })
        .expect("Ollama Service");
    let r_sm = sms
        .iter()
        .find(|s| name(s) == format!("{fullname}-runners"))
        .expect("runners ServiceMonitor");
    assert!(
        selects(r_sm, runner_svc),
        "runners ServiceMonitor does not select the runner Service"
    );
    assert!(
        !selects(r_sm, ollama_svc),
        "runners ServiceMonitor also selects Ollama"
    );
    assert!(has_port(runner_svc, &port_of(r_sm)));
    assert_eq!(
        r_sm["spec"]["namespaceSelector"]["any"].as_bool(),
        Some(true)
    );
    let relabel = serde_yaml_ng::to_string(&r_sm["spec"]["endpoints"][0]["relabelings"]).unwrap();
    assert!(relabel.contains("__meta_kubernetes_service_label_app_kubernetes_io_instance"));
    assert!(
        relabel.contains("targetLabel: learning_worker"),
        "the alerts group by learning_worker"
    );

    // One watched namespace: the runner ServiceMonitor looks only there.
    let all = docs(&render(
        4,
        &[
            "-f",
            &monitoring_profile(),
            "--set",
            "watchNamespace=gustav",
        ],
    ));
    let r_sm = of_kind(&all, "ServiceMonitor")
        .into_iter()
        .find(|s| name(s).ends_with("-runners"))
        .unwrap()
        .clone();
    assert_eq!(
        r_sm["spec"]["namespaceSelector"]["matchNames"][0].as_str(),
        Some("gustav")
    );
}
