//! Self-tests of the GPU simulator (a fake Ollama on a simulated GPU): real HTTP over
//! loopback with reqwest, and the runner's own Ollama client, feedback adapter and parser.
//! Times asserted are simulated (exact where the simulator computes them, with a tolerance
//! where a client's arrival time enters); real-time bounds are lower bounds only.

use std::time::{Duration, Instant};

use clap::Parser;
use learning_runner::ai::normalize::{analysis_from_answer, ParseStatus};
use learning_runner::ai::ollama::{
    ChatMessage, ChatRequest, GenerateRequest, OllamaClient, Options,
};
use learning_runner::ai::ollama_feedback::OllamaFeedback;
use learning_runner::ai::prompts::{analysis_prompt, analysis_schema, synthesis_prompt};
use learning_runner::ai::{FeedbackAdapter, FeedbackRequest};
use learning_runner::cli::Cli;
use learning_runner::config::{runner_config, AiConfig, Backend};
use learning_runner::job::analysis::AnalysisV2;
use learning_runner::telemetry::metrics::Metrics;
use learning_tests::gpu_sim::{
    Answer, EventKind, GpuConfig, GpuModel, GpuReport, GpuSim, ModelReport, SimEvent, FEEDBACK,
    TRANSCRIPT,
};
use serde_json::{json, Value};

const VISION: &str = "vision:3b";
const FEEDBACK_MODEL: &str = "feedback:20b";
/// Simulated seconds compared with a client's arrival in them.
const SLACK: f64 = 25.0;

fn models() -> Vec<GpuModel> {
    vec![
        GpuModel::new(VISION, 3_000_000_000).load(8.0).base(6.0),
        GpuModel::new(FEEDBACK_MODEL, 13_000_000_000)
            .load(8.0)
            .base(10.0),
    ]
}

async fn sim(resident_models: usize, slots: usize) -> GpuSim {
    GpuSim::start(GpuConfig {
        resident_models,
        slots,
        // Never expire: a stalled test machine must not turn a swap into an expiry.
        keep_alive: -1.0,
        ..GpuConfig::with_models(models())
    })
    .await
}

async fn post(sim: &GpuSim, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", sim.base_url()))
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
        .expect("request reaches the simulator")
}

/// The JSON answer of a POST.
async fn post_json(sim: &GpuSim, path: &str, body: Value) -> Value {
    post(sim, path, body)
        .await
        .json()
        .await
        .expect("a JSON answer")
}

/// A non-streamed chat for `model`; the answer object.
async fn call(sim: &GpuSim, model: &str) -> Value {
    let body = json!({"model": model, "stream": false,
        "messages": [{"role": "user", "content": "Schreibe jetzt die Rückmeldung."}]});
    let response = post(sim, "/api/chat", body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn get_json(sim: &GpuSim, path: &str) -> Value {
    let url = format!("{}{path}", sim.base_url());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn ps(sim: &GpuSim) -> Vec<Value> {
    let ps = get_json(sim, "/api/ps").await;
    ps["models"].as_array().cloned().unwrap_or_default()
}

fn secs(ns: &Value) -> f64 {
    ns.as_u64().expect("a duration in ns") as f64 / 1e9
}

fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance
}

#[tokio::test]
async fn one_resident_model_swaps_at_every_alternation_and_the_call_pays_the_load() {
    let sim = sim(1, 1).await;
    for (i, model) in [VISION, FEEDBACK_MODEL].repeat(2).into_iter().enumerate() {
        let started = Instant::now();
        let answer = call(&sim, model).await;
        let base = if model == VISION { 6.0 } else { 10.0 };
        // Computed on the simulated clock: the call waited exactly the load, then ran.
        let (load, total) = (&answer["load_duration"], &answer["total_duration"]);
        let exact = close(secs(load), 8.0, 1e-6) && close(secs(total), 8.0 + base, 1e-6);
        assert!(exact, "{i}: {answer}");
        assert!(
            started.elapsed() >= sim.real(8.0 + base) * 9 / 10,
            "{i}: load in the latency"
        );
        assert_eq!(sim.resident(), [model.to_string()]);
    }
    let report = sim.report();
    assert_eq!((report.loads, report.swaps, report.calls()), (4, 3, 4));
    let vision = report.model(VISION).unwrap();
    let feedback = report.model(FEEDBACK_MODEL).unwrap();
    assert_eq!((vision.loads, vision.evictions), (2, 2));
    assert_eq!((feedback.loads, feedback.evictions), (2, 1));
    assert!(close(vision.loading + feedback.loading, 32.0, 1e-6));
    assert!(close(vision.busy() + feedback.busy(), 32.0, 1e-6));
    assert!(report.busy_fraction > 0.0 && report.busy_fraction < 1.0);
}

#[tokio::test]
async fn two_resident_models_load_once_and_never_swap() {
    let sim = sim(2, 1).await;
    for model in [VISION, FEEDBACK_MODEL] {
        call(&sim, model).await;
    }
    assert_eq!((sim.report().loads, sim.report().swaps), (2, 0));
    sim.reset();
    for model in [VISION, FEEDBACK_MODEL].repeat(3) {
        let answer = call(&sim, model).await;
        assert_eq!(secs(&answer["load_duration"]), 0.0);
    }
    let report = sim.report();
    assert_eq!((report.loads, report.swaps, report.calls()), (0, 0, 6));
    assert_eq!(sim.resident(), [VISION, FEEDBACK_MODEL]);
}

#[tokio::test]
async fn calls_beyond_the_slots_queue_for_about_one_call() {
    let long = GpuModel::new(FEEDBACK_MODEL, 1_000).load(5.0).base(100.0);
    let sim = GpuSim::start(GpuConfig {
        slots: 2,
        ..GpuConfig::with_models(vec![long])
    })
    .await;
    let warm = json!({"model": FEEDBACK_MODEL, "messages": []});
    assert_eq!(post(&sim, "/api/chat", warm).await.status(), 200);
    sim.reset();
    let m = FEEDBACK_MODEL;
    tokio::join!(call(&sim, m), call(&sim, m), call(&sim, m), call(&sim, m));

    let report = sim.report();
    let model = report.model(FEEDBACK_MODEL).unwrap();
    assert_eq!(model.calls, 4);
    let waits = admitted_waits(&report);
    assert_eq!(waits.iter().filter(|w| **w > 50.0).count(), 2, "{waits:?}");
    assert!(close(model.queue_wait_max, 100.0, SLACK), "{model:?}");
    assert!(
        close(model.queue_wait_total, 200.0, 2.0 * SLACK),
        "{model:?}"
    );
    // Both slots worked two calls each.
    assert_eq!(model.slot_busy, [200.0, 200.0]);
}

/// What `pick` takes from the timeline's events, in order.
fn timeline<T>(report: &GpuReport, pick: impl Fn(&SimEvent) -> Option<T>) -> Vec<T> {
    report.timeline.iter().filter_map(pick).collect()
}

/// Every call's wait from arrival to admission, in order.
fn admitted_waits(report: &GpuReport) -> Vec<f64> {
    timeline(report, |e| match e.kind {
        EventKind::Admitted { waited, .. } => Some(waited),
        _ => None,
    })
}

/// Waits until `n` requests have arrived.
async fn arrivals(sim: &GpuSim, n: usize) {
    let arrived = |e: &SimEvent| (e.kind == EventKind::Arrived).then_some(());
    while timeline(&sim.report(), arrived).len() < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_request_waiting_for_room_holds_up_later_requests_as_in_ollama() {
    let long = GpuModel::new(VISION, 1).load(8.0).base(100.0);
    let sim = GpuSim::start(GpuConfig {
        slots: 2,
        keep_alive: -1.0,
        ..GpuConfig::with_models(vec![long, models().remove(1)])
    })
    .await;
    let later = async {
        arrivals(&sim, 1).await;
        let vision_again = async {
            arrivals(&sim, 2).await;
            call(&sim, VISION).await
        };
        tokio::join!(call(&sim, FEEDBACK_MODEL), vision_again)
    };
    tokio::join!(call(&sim, VISION), later);
    let report = sim.report();
    let admitted = timeline(&report, |e| {
        matches!(e.kind, EventKind::Admitted { .. }).then(|| e.model.clone())
    });
    // The second vision call had a free slot on a loaded model, yet waited behind the
    // feedback call for the whole swap out and back: 100 + 8 + 10 + 8 seconds.
    assert_eq!(admitted, [VISION, FEEDBACK_MODEL, VISION]);
    assert!(
        close(admitted_waits(&report)[2], 126.0, SLACK),
        "{report:?}"
    );
    assert_eq!((report.loads, report.swaps, report.calls()), (3, 2, 3));
}

#[tokio::test]
async fn a_warm_up_loads_the_model_and_ps_shows_it_in_vram() {
    let sim = sim(1, 1).await;
    assert!(ps(&sim).await.is_empty());
    let body = json!({"model": VISION, "prompt": "", "keep_alive": "1h"});
    let warm = post_json(&sim, "/api/generate", body).await;
    assert_eq!(
        (warm["done"].as_bool(), warm["done_reason"].as_str()),
        (Some(true), Some("load"))
    );
    assert!(close(secs(&warm["load_duration"]), 8.0, 1e-6), "{warm}");

    let loaded = ps(&sim).await;
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0]["name"], VISION);
    assert_eq!(loaded[0]["size_vram"], 3_000_000_000u64);
    assert_eq!(loaded[0]["size"], loaded[0]["size_vram"]);
    assert!(loaded[0]["expires_at"].is_string());
    let tags = get_json(&sim, "/api/tags").await;
    assert_eq!(tags["models"].as_array().unwrap().len(), 2);

    let answer = call(&sim, VISION).await;
    assert_eq!(secs(&answer["load_duration"]), 0.0, "already warm");
    let report = sim.report();
    let vision = report.model(VISION).unwrap();
    assert_eq!((vision.loads, vision.warmups, vision.calls), (1, 1, 1));

    // keep_alive 0 with an empty request unloads.
    let body = json!({"model": VISION, "messages": [], "keep_alive": 0});
    let unload = post_json(&sim, "/api/chat", body).await;
    assert_eq!(unload["done_reason"], "unload");
    assert!(ps(&sim).await.is_empty());
    assert_eq!(sim.report().model(VISION).unwrap().expiries, 1);
}

#[tokio::test]
async fn num_predict_cuts_the_answer_with_done_reason_length() {
    let sim = sim(1, 1).await;
    let chat = |stream: bool| {
        json!({"model": FEEDBACK_MODEL, "stream": stream, "options": {"num_predict": 8},
            "messages": [{"role": "user", "content": "Schreibe jetzt die Rückmeldung."}]})
    };
    let whole = post_json(&sim, "/api/chat", chat(false)).await;
    assert_eq!(whole["done_reason"], "length");
    let text = whole["message"]["content"].as_str().unwrap();
    assert_eq!(text, FEEDBACK.chars().take(32).collect::<String>());
    assert_eq!(whole["eval_count"], 8);

    let streamed = post(&sim, "/api/chat", chat(true)).await;
    assert_eq!(streamed.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = (streamed.text().await.unwrap().lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(
        (last["done"].as_bool(), last["done_reason"].as_str()),
        (Some(true), Some("length"))
    );
    let joined: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(joined, text);

    let uncut = call(&sim, FEEDBACK_MODEL).await;
    assert_eq!(uncut["done_reason"], "stop");
    assert_eq!(uncut["message"]["content"], FEEDBACK);
    assert_eq!(sim.report().model(FEEDBACK_MODEL).unwrap().cut, 2);
}

fn criteria() -> Vec<String> {
    ["Fachliche Richtigkeit", "Struktur", "Sprache"]
        .map(String::from)
        .to_vec()
}

#[tokio::test]
async fn the_runners_client_and_parser_accept_the_answers() {
    let sim = sim(1, 2).await;
    let client = OllamaClient::new(&sim.base_url()).unwrap();
    let limit = Duration::from_secs(60);
    let vision = GenerateRequest {
        model: VISION.into(),
        prompt: "Transkribiere.".into(),
        images: vec!["aGVsbG8=".into()],
        ..GenerateRequest::default()
    };
    assert_eq!(client.generate(&vision, limit).await.unwrap(), TRANSCRIPT);

    for structured in [true, false] {
        let (system, user) =
            analysis_prompt(&criteria(), "Text", Some("Aufgabe"), None, structured);
        let chat = chat_request(
            system,
            user,
            structured.then(|| analysis_schema(&criteria())),
        );
        let answer = client.chat(&chat, limit).await.unwrap();
        let (analysis, status) = analysis_from_answer(&answer, &criteria(), structured)
            .unwrap_or_else(|| panic!("unusable analysis: {answer}"));
        let expected = [ParseStatus::Parsed, ParseStatus::ParsedStructured];
        assert_eq!(status, expected[usize::from(structured)]);
        analysis.validate(&criteria()).unwrap();
        assert!(analysis
            .criteria_results
            .iter()
            .all(|r| r.explanation_md.contains(&r.criterion)));
    }
    let (system, user) = synthesis_prompt(None, "Text", None, None);
    let chat = chat_request(system, user, None);
    assert_eq!(client.chat(&chat, limit).await.unwrap(), FEEDBACK);

    // The whole feedback step of the runner, not on its final attempt: an unusable answer
    // would be an error here, not the fallback.
    let adapter = OllamaFeedback::new(client, &ai_config(&sim), Metrics::new().unwrap());
    let request = FeedbackRequest {
        submission_id: uuid::Uuid::new_v4(),
        text_md: TRANSCRIPT.into(),
        criteria: criteria(),
        instruction_md: None,
        hints_md: None,
        final_attempt: false,
    };
    let output = adapter.feedback(&request).await.unwrap();
    assert_eq!(output.feedback_md, FEEDBACK);
    let analysis: AnalysisV2 = serde_json::from_value(output.analysis_json).unwrap();
    analysis.validate(&criteria()).unwrap();
}

/// A chat like the runner's feedback step sends.
fn chat_request(system: String, user: String, format: Option<Value>) -> ChatRequest {
    ChatRequest {
        model: FEEDBACK_MODEL.into(),
        messages: vec![ChatMessage::system(system), ChatMessage::user(user)],
        format,
        options: Options {
            temperature: Some(0.0),
            ..Options::default()
        },
        ..ChatRequest::default()
    }
}

/// The runner's AI settings (its defaults, with its generation limits) for the simulator.
fn ai_config(sim: &GpuSim) -> AiConfig {
    let argv = ["learning-runner", "--database-url", "postgres://u@h/d"];
    let settings = Cli::try_parse_from(argv).unwrap().settings;
    let mut ai = runner_config(&settings).unwrap().ai;
    ai.backend = Backend::Local;
    ai.ollama_base_url = sim.base_url();
    ai.vision_model = VISION.into();
    ai.feedback_model = FEEDBACK_MODEL.into();
    ai.timeout_feedback = Duration::from_secs(60);
    ai.structured_output = true;
    ai.think_level = None;
    ai
}

/// A scripted day: warm-up, a burst, a swap, a cut answer, a queue; the report's counts.
async fn scripted(seed: u64) -> (GpuReport, Vec<f64>) {
    let sim = GpuSim::start(GpuConfig {
        slots: 2,
        seed,
        jitter: 0.2,
        keep_alive: -1.0,
        ..GpuConfig::with_models(models())
    })
    .await;
    let warm = json!({"model": VISION, "prompt": ""});
    post(&sim, "/api/generate", warm).await;
    tokio::join!(call(&sim, VISION), call(&sim, VISION), call(&sim, VISION));
    let f = FEEDBACK_MODEL;
    tokio::join!(call(&sim, f), call(&sim, f), call(&sim, f));
    let cut =
        json!({"model": VISION, "prompt": "x", "stream": false, "options": {"num_predict": 1}});
    post(&sim, "/api/generate", cut).await;
    call(&sim, FEEDBACK_MODEL).await;
    let report = sim.report();
    let mut ran = timeline(&report, |e| match e.kind {
        EventKind::Finished { ran, .. } => Some(ran),
        _ => None,
    });
    ran.sort_by(f64::total_cmp);
    (report, ran)
}

/// Per model: loads, evictions, calls, cut answers, warm-ups.
fn counts(r: &GpuReport) -> Vec<[u64; 5]> {
    let each = |m: &ModelReport| [m.loads, m.evictions, m.calls, m.cut, m.warmups];
    r.models.iter().map(each).collect()
}

#[tokio::test]
async fn the_same_script_gives_the_same_counts_and_the_seed_the_same_durations() {
    let (first, first_ran) = scripted(7).await;
    let (second, second_ran) = scripted(7).await;
    assert_eq!(counts(&first), counts(&second));
    assert_eq!((first.loads, first.swaps, first.calls()), (4, 3, 8));
    assert_eq!((second.loads, second.swaps, second.calls()), (4, 3, 8));
    assert_eq!(first_ran, second_ran, "same seed and admission order");
    let (_, other_ran) = scripted(8).await;
    assert_ne!(first_ran, other_ran, "another seed, other durations");
}

#[tokio::test]
async fn a_full_queue_answers_503_and_a_client_that_leaves_frees_its_slot() {
    let slow = GpuModel::new(VISION, 1).load(0.0).base(100_000.0);
    let sim = GpuSim::start(GpuConfig {
        queue_limit: 1,
        ..GpuConfig::with_models(vec![slow])
    })
    .await;
    let url = format!("{}/api/generate", sim.base_url());
    let body = json!({"model": VISION, "prompt": "x"});
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let running = tokio::spawn(quick.post(&url).json(&body).send());
    let waiting = tokio::spawn(quick.post(&url).json(&body).send());
    arrivals(&sim, 2).await;
    let rejected = post(&sim, "/api/generate", body.clone()).await;
    assert_eq!(rejected.status(), 503);
    assert!(running.await.unwrap().is_err() && waiting.await.unwrap().is_err());
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.report().model(VISION).unwrap().cancelled < 2 {
        assert!(Instant::now() < deadline, "the clients never left");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = sim.report();
    assert_eq!((report.rejected, report.calls()), (1, 0));
    assert!(
        report.busy < 100_000.0,
        "the slot was freed when its client left"
    );
}

#[tokio::test]
async fn an_idle_model_unloads_after_its_keep_alive() {
    let sim = sim(1, 1).await;
    let body = json!({"model": VISION, "stream": false, "keep_alive": "30s",
        "messages": [{"role": "user", "content": "x"}]});
    post(&sim, "/api/chat", body).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ps(&sim).await.is_empty() {
        assert!(Instant::now() < deadline, "never unloaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let vision = sim.report().model(VISION).cloned().unwrap();
    assert_eq!((vision.expiries, vision.evictions), (1, 0));
    let expired = timeline(&sim.report(), |e| {
        (e.kind == EventKind::Expired).then_some(e.at)
    });
    assert!(close(expired[0], 8.0 + 6.0 + 30.0, SLACK), "{expired:?}");
}

#[tokio::test]
async fn a_model_fixed_answer_and_an_unknown_model() {
    let fixed = GpuModel::new("plain", 1).answer(Answer::Fixed("immer das".into()));
    let sim = GpuSim::start(GpuConfig::with_models(vec![fixed])).await;
    let body = json!({"model": "plain:latest", "prompt": "x", "stream": false});
    let answer = post_json(&sim, "/api/generate", body).await;
    assert_eq!(answer["response"], "immer das");
    let missing = json!({"model": "nope", "prompt": "x"});
    let missing = post(&sim, "/api/generate", missing).await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("not found"));
}
