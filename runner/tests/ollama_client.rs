//! The Ollama client against the FAKE Ollama server: every endpoint, pulls with
//! progress, the classification of every failure mode into transient or permanent, and the
//! size caps on every answer.

use std::time::Duration;

use learning_runner::ai::ollama::{
    ChatMessage, ChatRequest, GenerateRequest, OllamaClient, OllamaError, MAX_ANSWER_BYTES,
    MAX_LINE_BYTES, MAX_METADATA_BYTES,
};
use learning_tests::fake_ollama::{Endpoint, FakeAnswer, FakeOllama};

const MODEL: &str = "gpt-oss:latest";

async fn setup() -> (FakeOllama, OllamaClient) {
    let fake = FakeOllama::start().await;
    fake.add_model(MODEL);
    let client = OllamaClient::new(&fake.base_url()).unwrap();
    (fake, client)
}

fn generate() -> GenerateRequest {
    GenerateRequest {
        model: MODEL.into(),
        prompt: "Hallo".into(),
        ..GenerateRequest::default()
    }
}

fn chat() -> ChatRequest {
    ChatRequest {
        model: MODEL.into(),
        messages: vec![ChatMessage::user("Hallo")],
        ..ChatRequest::default()
    }
}

const LIMIT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn generate_and_chat_return_the_whole_answer() {
    let (fake, client) = setup().await;
    fake.script(
        Endpoint::Generate,
        MODEL,
        vec![FakeAnswer::Text("Antwort A".into())],
    );
    fake.script(
        Endpoint::Chat,
        MODEL,
        vec![FakeAnswer::Text("Antwort B".into())],
    );
    assert_eq!(
        client.generate(&generate(), LIMIT).await.unwrap(),
        "Antwort A"
    );
    assert_eq!(client.chat(&chat(), LIMIT).await.unwrap(), "Antwort B");
    assert_eq!(fake.requests_to("/api/generate")[0]["stream"], false);
}

#[tokio::test]
async fn an_answer_cut_at_num_predict_is_a_transient_truncation() {
    let (fake, client) = setup().await;
    fake.script(
        Endpoint::Generate,
        MODEL,
        vec![FakeAnswer::Truncated("Die Zelle ist die kl".into())],
    );
    let mut request = generate();
    request.options.num_predict = Some(8);
    let err = client.generate(&request, LIMIT).await.unwrap_err();
    assert_eq!(err, OllamaError::Truncated(8));
    assert!(err.is_transient());
    assert_eq!(err.reason(), "answer_truncated");
    assert!(
        !err.to_string().contains("Zelle"),
        "the answer is not quoted: {err}"
    );
}

#[tokio::test]
async fn tags_ps_version_and_pull() {
    let (fake, client) = setup().await;
    fake.set_ps(vec![(MODEL.into(), 1000, 250)]);
    fake.set_version("0.12.3");
    assert!(client.tags().await.unwrap().iter().any(|m| m.name == MODEL));
    let ps = client.ps().await.unwrap();
    assert_eq!(ps[0].gpu_share(), 0.25);
    assert_eq!(client.version().await.unwrap(), "0.12.3");

    let mut statuses = Vec::new();
    client
        .pull("qwen2.5vl:3b", LIMIT, |p| statuses.push(p.status.clone()))
        .await
        .unwrap();
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("pulling manifest")
    );
    assert_eq!(statuses.last().map(String::as_str), Some("success"));
    assert!(client
        .tags()
        .await
        .unwrap()
        .iter()
        .any(|m| m.name == "qwen2.5vl:3b"));
}

#[tokio::test]
async fn every_failure_is_classified() {
    let (fake, client) = setup().await;
    let cases: Vec<(FakeAnswer, &str, bool)> = vec![
        (FakeAnswer::Status(500, "boom".into()), "server_error", true),
        (
            FakeAnswer::Status(503, "loading".into()),
            "server_error",
            true,
        ),
        (
            FakeAnswer::Status(400, "invalid format".into()),
            "rejected",
            false,
        ),
        (
            FakeAnswer::Garbage("<html>proxy error</html>".into()),
            "malformed_response",
            true,
        ),
        (FakeAnswer::Hang, "timeout", true),
        (FakeAnswer::Reset, "connection_reset", true),
    ];
    for (answer, reason, transient) in cases {
        fake.script(Endpoint::Generate, MODEL, vec![answer.clone()]);
        let e = client
            .generate(&generate(), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert_eq!(
            (e.reason(), e.is_transient()),
            (reason, transient),
            "{answer:?} → {e:?}"
        );
    }
    let unknown = GenerateRequest {
        model: "nope:1b".into(),
        ..generate()
    };
    let e = client.generate(&unknown, LIMIT).await.unwrap_err();
    assert_eq!(e, OllamaError::ModelNotFound("nope:1b".into()));

    let dead = OllamaClient::new(&format!(
        "http://127.0.0.1:{}",
        learning_tests::tools::free_port()
    ))
    .unwrap();
    let e = dead.tags().await.unwrap_err();
    assert_eq!(e.reason(), "connection_refused");
}

#[tokio::test]
async fn an_error_line_in_the_middle_of_a_pull_is_a_server_error() {
    let (fake, client) = setup().await;
    fake.fail_endpoint(
        "/api/pull",
        Some(FakeAnswer::Garbage(
            "{\"status\":\"pulling manifest\"}\n{\"error\":\"no space left on device\"}\n".into(),
        )),
    );
    let mut statuses = Vec::new();
    let e = client
        .pull("qwen2.5vl:3b", LIMIT, |p| statuses.push(p.status.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, OllamaError::Server { message, .. } if message.contains("no space left")),
        "{e:?}"
    );
    assert!(e.is_transient());
    assert_eq!(statuses, ["pulling manifest"]);
}

#[tokio::test]
async fn a_model_behind_a_registry_port_is_found_without_its_tag() {
    // `registry:5000/foo` names `registry:5000/foo:latest`: the colon belongs to the port. The
    // runner once read it as a tag and paused for a "missing" model that Ollama listed.
    let fake = FakeOllama::start().await;
    fake.add_model("registry:5000/school/foo:latest");
    let client = OllamaClient::new(&fake.base_url()).unwrap();
    let metrics = learning_runner::telemetry::metrics::Metrics::new().unwrap();
    let monitor = learning_runner::ai::ollama::monitor::OllamaMonitor::new(
        client,
        vec![
            "registry:5000/school/foo".into(),
            "registry:5000/school/bar".into(),
        ],
        None,
        metrics,
    );
    let snapshot = monitor.refresh().await;
    assert!(snapshot.reachable);
    assert_eq!(snapshot.missing, ["registry:5000/school/bar"]);
}

#[tokio::test]
async fn the_monitor_warms_every_model_before_it_reports_ready_and_again_after_an_outage() {
    let fake = FakeOllama::start().await;
    fake.add_model(MODEL);
    fake.add_model("other:latest");
    let client = OllamaClient::new(&fake.base_url()).unwrap();
    let metrics = learning_runner::telemetry::metrics::Metrics::new().unwrap();
    let monitor = learning_runner::ai::ollama::monitor::OllamaMonitor::new(
        client,
        vec![MODEL.into(), "other:latest".into()],
        Some("30m".into()),
        metrics,
    );
    monitor.refresh().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        monitor
            .clone()
            .run(Duration::from_millis(100), stop.clone()),
    );
    let loads = |fake: &FakeOllama| -> Vec<serde_json::Value> {
        fake.requests_to("/api/generate")
            .into_iter()
            .filter(|r| r["prompt"].as_str().unwrap_or("").is_empty())
            .collect()
    };
    let started = std::time::Instant::now();
    while loads(&fake).len() < 2 || !monitor.ready() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "warmed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let warm = loads(&fake);
    // The first configured model (the vision model) last, so that it stays loaded.
    assert_eq!(warm[0]["model"], "other:latest");
    assert_eq!(warm[1]["model"], MODEL);
    assert!(warm.iter().all(|r| r["keep_alive"] == "30m"));
    assert!(!monitor.warming());
    // Ollama goes away and comes back: the models are loaded again.
    fake.fail_endpoint("/api/tags", Some(FakeAnswer::Status(500, "down".into())));
    while monitor.snapshot().reachable {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the outage is seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.clear_failure("/api/tags");
    while loads(&fake).len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "warmed again after the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn the_monitor_counts_the_model_loads_it_sees_in_ps() {
    let fake = FakeOllama::start().await;
    fake.add_model(MODEL);
    let client = OllamaClient::new(&fake.base_url()).unwrap();
    let metrics = learning_runner::telemetry::metrics::Metrics::new().unwrap();
    let monitor = learning_runner::ai::ollama::monitor::OllamaMonitor::new(
        client,
        vec![MODEL.into()],
        None,
        metrics.clone(),
    );
    let loads = || metrics.ollama_model_loads.with_label_values(&[MODEL]).get();
    monitor.refresh().await;
    assert_eq!(loads(), 0);
    fake.set_ps(vec![(MODEL.into(), 1000, 1000)]);
    monitor.refresh().await;
    monitor.refresh().await;
    assert_eq!(loads(), 1, "loaded once, seen twice");
    fake.set_ps(vec![]);
    monitor.refresh().await;
    fake.set_ps(vec![(MODEL.into(), 1000, 1000)]);
    monitor.refresh().await;
    assert_eq!(loads(), 2, "evicted and loaded again: a swap");
}

const MIB: u64 = 1 << 20;

/// Far more than any cap: a body this size read whole would be the bug.
const HUGE: u64 = 50 * MIB;

/// The client gave up early: well under the whole body left the fake (hyper hands it
/// frames only as the connection drains, so what was sent bounds what the client could hold:
/// the cap plus socket and client buffers), and none follows once the client hung up.
async fn assert_stopped_early(fake: &FakeOllama) {
    let at_return = fake.huge_bytes_sent();
    assert!(
        at_return < HUGE / 2,
        "{at_return} of {HUGE} bytes sent before the client returned"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = fake.huge_bytes_sent();
    assert!(
        later < HUGE / 2,
        "{later} bytes sent: the fake kept sending"
    );
}

#[tokio::test]
async fn a_50_mib_answer_fails_as_too_large_without_being_read_whole() {
    for endpoint in [Endpoint::Generate, Endpoint::Chat] {
        let (fake, client) = setup().await;
        fake.script(endpoint, MODEL, vec![FakeAnswer::Huge(HUGE)]);
        let e = match endpoint {
            Endpoint::Generate => client.generate(&generate(), LIMIT).await,
            Endpoint::Chat => client.chat(&chat(), LIMIT).await,
        }
        .unwrap_err();
        assert_eq!(
            e,
            OllamaError::TooLarge {
                limit: MAX_ANSWER_BYTES
            },
            "{endpoint:?}"
        );
        assert_eq!((e.reason(), e.is_transient()), ("response_too_large", true));
        assert_stopped_early(&fake).await;
    }
}

#[tokio::test]
async fn an_answer_just_under_the_cap_is_read_whole() {
    let (fake, client) = setup().await;
    let size = MAX_ANSWER_BYTES as u64 - 1024;
    fake.script(Endpoint::Chat, MODEL, vec![FakeAnswer::Huge(size)]);
    let answer = client.chat(&chat(), LIMIT).await.unwrap();
    assert!(answer.len() as u64 > size - 1024 && answer.bytes().all(|b| b == b'a'));
    assert_eq!(fake.huge_bytes_sent(), size);
}

#[tokio::test]
async fn a_pull_with_one_endless_line_fails_as_too_large() {
    let (fake, client) = setup().await;
    fake.fail_endpoint("/api/pull", Some(FakeAnswer::Huge(HUGE)));
    let mut lines = 0;
    let e = client
        .pull("qwen2.5vl:3b", LIMIT, |_| lines += 1)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        OllamaError::TooLarge {
            limit: MAX_LINE_BYTES
        }
    );
    assert_eq!(lines, 0);
    assert_stopped_early(&fake).await;
}

#[tokio::test]
async fn oversized_metadata_answers_are_refused() {
    let (fake, client) = setup().await;
    let too_large = OllamaError::TooLarge {
        limit: MAX_METADATA_BYTES,
    };
    // Streamed without a length: stopped while reading.
    fake.fail_endpoint("/api/tags", Some(FakeAnswer::Huge(HUGE)));
    assert_eq!(client.tags().await.unwrap_err(), too_large);
    assert_stopped_early(&fake).await;
    // Announced by Content-Length: refused before reading.
    let padded = format!(
        "{{\"version\":\"0.1.0\",\"pad\":\"{}\"}}",
        "x".repeat(MAX_METADATA_BYTES)
    );
    fake.fail_endpoint("/api/version", Some(FakeAnswer::Text(padded)));
    assert_eq!(client.version().await.unwrap_err(), too_large);
    fake.fail_endpoint(
        "/api/ps",
        Some(FakeAnswer::Huge(MAX_METADATA_BYTES as u64 + 1)),
    );
    assert_eq!(client.ps().await.unwrap_err(), too_large);
}
