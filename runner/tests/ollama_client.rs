//! The Ollama client against the FAKE Ollama server: every endpoint, pulls with
//! progress, and the classification of every failure mode into transient or permanent.

use std::time::Duration;

use learning_runner::ai::ollama::{
    ChatMessage, ChatRequest, GenerateRequest, OllamaClient, OllamaError,
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
        metrics,
    );
    let snapshot = monitor.refresh().await;
    assert!(snapshot.reachable);
    assert_eq!(snapshot.missing, ["registry:5000/school/bar"]);
}
