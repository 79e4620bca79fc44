//! Self-tests of the fake Ollama server: real HTTP over loopback with reqwest.

use std::time::{Duration, Instant};

use learning_tests::fake_ollama::{Endpoint, FakeAnswer, FakeOllama};
use serde_json::{json, Value};

const MODEL: &str = "qwen2.5vl:3b";

async fn fake_with_model() -> FakeOllama {
    let fake = FakeOllama::start().await;
    fake.add_model(MODEL);
    fake
}

fn text(answer: &str) -> FakeAnswer {
    FakeAnswer::Text(answer.to_owned())
}

async fn post(fake: &FakeOllama, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", fake.base_url()))
        .json(&body)
        .send()
        .await
        .expect("request reaches the fake")
}

async fn get(fake: &FakeOllama, path: &str) -> reqwest::Response {
    reqwest::get(format!("{}{path}", fake.base_url()))
        .await
        .expect("request reaches the fake")
}

/// The NDJSON lines of a streamed answer.
async fn ndjson(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson",
        "streamed answers are NDJSON"
    );
    let body = response.text().await.expect("body");
    body.lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

#[tokio::test]
async fn tags_ps_and_version_have_ollamas_shapes() {
    let fake = fake_with_model().await;
    fake.add_model("llama3.2");
    fake.set_ps(vec![(MODEL.to_owned(), 4_000, 3_000)]);
    fake.set_version("0.9.1");

    let tags: Value = get(&fake, "/api/tags").await.json().await.unwrap();
    let models = tags["models"].as_array().expect("models array");
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [MODEL, "llama3.2:latest"],
        "untagged names mean :latest"
    );
    for m in models {
        assert_eq!(m["model"], m["name"]);
        assert!(m["modified_at"].is_string() && m["size"].is_u64());
        assert_eq!(m["digest"].as_str().unwrap().len(), 64);
        assert_eq!(m["details"]["format"], "gguf");
    }

    let ps: Value = get(&fake, "/api/ps").await.json().await.unwrap();
    let running = &ps["models"][0];
    assert_eq!(running["name"], MODEL);
    assert_eq!(running["model"], MODEL);
    assert_eq!(running["size"], 4_000);
    assert_eq!(running["size_vram"], 3_000);
    assert!(running["expires_at"].is_string() && running["details"].is_object());
    assert_eq!(ps["models"].as_array().unwrap().len(), 1);

    let version: Value = get(&fake, "/api/version").await.json().await.unwrap();
    assert_eq!(version, json!({ "version": "0.9.1" }));

    assert_eq!(get(&fake, "/api/nothing").await.status(), 404);
}

#[tokio::test]
async fn generate_without_streaming_answers_one_object() {
    let fake = fake_with_model().await;
    fake.script(Endpoint::Generate, MODEL, vec![text("The sky is blue.")]);
    let response = post(
        &fake,
        "/api/generate",
        json!({ "model": MODEL, "prompt": "Why?", "stream": false }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["response"], "The sky is blue.");
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    assert!(v["created_at"].is_string());
    for key in [
        "total_duration",
        "load_duration",
        "eval_count",
        "eval_duration",
    ] {
        assert!(v[key].is_u64(), "{key} is a number");
    }
}

#[tokio::test]
async fn generate_streams_ndjson_by_default() {
    let fake = fake_with_model().await;
    let answer = "{\"transcript\": \"ä 2 + 2 = 4 ✓\"}";
    fake.script(Endpoint::Generate, MODEL, vec![text(answer)]);
    // No "stream" field: Ollama streams.
    let response = post(
        &fake,
        "/api/generate",
        json!({ "model": MODEL, "prompt": "p" }),
    )
    .await;
    let lines = ndjson(response).await;
    assert!(lines.len() >= 3, "a few chunks and a final line: {lines:?}");
    let (last, chunks) = lines.split_last().unwrap();
    assert!(chunks
        .iter()
        .all(|c| c["done"] == false && c["model"] == MODEL));
    let joined: String = chunks
        .iter()
        .map(|c| c["response"].as_str().unwrap())
        .collect();
    assert_eq!(joined, answer);
    assert_eq!(last["done"], true);
    assert_eq!(last["response"], "");
    assert_eq!(last["done_reason"], "stop");
}

#[tokio::test]
async fn chat_answers_with_an_assistant_message_streamed_or_not() {
    let fake = fake_with_model().await;
    fake.script(Endpoint::Chat, MODEL, vec![text("Hello there!")]);
    fake.default_answer(Endpoint::Chat, MODEL, text("Again."));
    let messages = json!([{ "role": "user", "content": "Hi" }]);

    let v: Value = post(
        &fake,
        "/api/chat",
        json!({ "model": MODEL, "messages": messages, "stream": false }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        v["message"],
        json!({ "role": "assistant", "content": "Hello there!" })
    );
    assert_eq!(v["done"], true);

    let lines = ndjson(
        post(
            &fake,
            "/api/chat",
            json!({ "model": MODEL, "messages": messages, "stream": true }),
        )
        .await,
    )
    .await;
    let (last, chunks) = lines.split_last().unwrap();
    let joined: String = chunks
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        joined, "Again.",
        "the default answers once the script is used up"
    );
    assert!(chunks.iter().all(|c| c["message"]["role"] == "assistant"));
    assert_eq!(last["done"], true);
    assert_eq!(last["message"]["content"], "");
}

#[tokio::test]
async fn scripts_are_used_front_first_then_the_default_then_a_500() {
    let fake = fake_with_model().await;
    fake.add_model("other:1b");
    fake.script(Endpoint::Generate, MODEL, vec![text("one"), text("two")]);
    fake.default_answer(Endpoint::Generate, MODEL, text("default"));
    let mut seen = vec![];
    for _ in 0..4 {
        let body = json!({ "model": MODEL, "prompt": "p", "stream": false });
        let v: Value = post(&fake, "/api/generate", body)
            .await
            .json()
            .await
            .unwrap();
        seen.push(v["response"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["one", "two", "default", "default"]);

    // Nothing scripted for this model: a loud 500, not a silent answer.
    let body = json!({ "model": "other:1b", "prompt": "p", "stream": false });
    let response = post(&fake, "/api/generate", body).await;
    assert_eq!(response.status(), 500);
    let v: Value = response.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("nothing scripted"));

    // An empty prompt is Ollama's "load the model": answered without using the script.
    fake.script(Endpoint::Generate, "other:1b", vec![text("kept")]);
    let v: Value = post(&fake, "/api/generate", json!({ "model": "other:1b" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["done_reason"], "load");
    let body = json!({ "model": "other:1b", "prompt": "p", "stream": false });
    let v: Value = post(&fake, "/api/generate", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["response"], "kept");
}

#[tokio::test]
async fn unknown_model_is_ollamas_404() {
    let fake = fake_with_model().await;
    for (path, body) in [
        (
            "/api/generate",
            json!({ "model": "nope:7b", "prompt": "p" }),
        ),
        (
            "/api/chat",
            json!({ "model": "nope:7b", "messages": [{ "role": "user", "content": "x" }] }),
        ),
    ] {
        let response = post(&fake, path, body).await;
        assert_eq!(response.status(), 404);
        let v: Value = response.json().await.unwrap();
        assert_eq!(
            v,
            json!({ "error": "model \"nope:7b\" not found, try pulling it first" })
        );
    }
}

#[tokio::test]
async fn status_answers_carry_the_error_message() {
    let fake = fake_with_model().await;
    fake.script(
        Endpoint::Generate,
        MODEL,
        vec![FakeAnswer::Status(500, "boom".into())],
    );
    let response = post(
        &fake,
        "/api/generate",
        json!({ "model": MODEL, "prompt": "p" }),
    )
    .await;
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "error": "boom" })
    );
}

#[tokio::test]
async fn garbage_and_empty_answers() {
    let fake = fake_with_model().await;
    fake.script(
        Endpoint::Generate,
        MODEL,
        vec![
            FakeAnswer::Garbage("<html>oops".into()),
            FakeAnswer::Empty,
            FakeAnswer::Empty,
        ],
    );
    let body = json!({ "model": MODEL, "prompt": "p", "stream": false });
    let response = post(&fake, "/api/generate", body.clone()).await;
    assert_eq!(response.status(), 200);
    let raw = response.text().await.unwrap();
    assert_eq!(raw, "<html>oops");
    assert!(serde_json::from_str::<Value>(&raw).is_err());

    let v: Value = post(&fake, "/api/generate", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["response"].as_str(), v["done"].as_bool()),
        (Some(""), Some(true))
    );

    let lines = ndjson(
        post(
            &fake,
            "/api/generate",
            json!({ "model": MODEL, "prompt": "p" }),
        )
        .await,
    )
    .await;
    assert_eq!(lines.len(), 1, "only the final line: {lines:?}");
    assert_eq!(lines[0]["done"], true);
}

#[tokio::test]
async fn mid_stream_error_ends_the_stream_with_an_error_line() {
    let fake = fake_with_model().await;
    let answer = FakeAnswer::MidStreamError("partial".into(), "runner crashed".into());
    fake.script(Endpoint::Chat, MODEL, vec![answer.clone(), answer]);
    let messages = json!([{ "role": "user", "content": "Hi" }]);
    let lines = ndjson(
        post(
            &fake,
            "/api/chat",
            json!({ "model": MODEL, "messages": messages }),
        )
        .await,
    )
    .await;
    let (last, chunks) = lines.split_last().unwrap();
    assert!(!chunks.is_empty() && chunks.iter().all(|c| c["done"] == false));
    assert_eq!(last, &json!({ "error": "runner crashed" }));

    let body = json!({ "model": MODEL, "messages": messages, "stream": false });
    assert_eq!(post(&fake, "/api/chat", body).await.status(), 500);
}

#[tokio::test]
async fn delay_answers_after_the_delay_and_others_meanwhile() {
    let fake = fake_with_model().await;
    fake.add_model("fast:1b");
    let wait = Duration::from_millis(300);
    let slow_answer = FakeAnswer::Delay(wait, Box::new(text("slow")));
    fake.script(Endpoint::Generate, MODEL, vec![slow_answer]);
    fake.script(Endpoint::Generate, "fast:1b", vec![text("fast")]);

    let started = Instant::now();
    let timed = |model: &'static str| {
        let fake = &fake;
        async move {
            let body = json!({ "model": model, "prompt": "p", "stream": false });
            let v: Value = post(fake, "/api/generate", body)
                .await
                .json()
                .await
                .unwrap();
            (v["response"].as_str().unwrap().to_owned(), Instant::now())
        }
    };
    let ((slow, slow_at), (fast, fast_at)) = tokio::join!(timed(MODEL), timed("fast:1b"));
    assert_eq!((slow.as_str(), fast.as_str()), ("slow", "fast"));
    assert!(fast_at < slow_at, "the undelayed answer comes first");
    assert!(
        slow_at - started >= wait,
        "the delayed answer took at least the delay"
    );
}

#[tokio::test]
async fn hang_makes_the_client_time_out() {
    let fake = fake_with_model().await;
    fake.script(Endpoint::Generate, MODEL, vec![FakeAnswer::Hang]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .post(format!("{}/api/generate", fake.base_url()))
        .json(&json!({ "model": MODEL, "prompt": "p", "stream": false }))
        .send()
        .await
        .expect_err("a hanging fake never answers");
    assert!(err.is_timeout(), "timeout, got {err:?}");
}

#[tokio::test]
async fn reset_drops_the_connection_without_a_response() {
    let fake = fake_with_model().await;
    fake.script(
        Endpoint::Generate,
        MODEL,
        vec![FakeAnswer::Reset, text("after")],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("{}/api/generate", fake.base_url());
    let body = json!({ "model": MODEL, "prompt": "p", "stream": false });
    let err = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect_err("a reset connection gives no response");
    assert!(!err.is_timeout(), "not a timeout: {err:?}");
    assert!(err.status().is_none(), "no HTTP status: {err:?}");
    assert!(
        err.is_request() || err.is_connect(),
        "a connection error: {err:?}"
    );
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    let mut reset = false;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            reset |= io.kind() == std::io::ErrorKind::ConnectionReset;
        }
        source = e.source();
    }
    assert!(reset, "the client sees a connection reset: {err:?}");

    // The fake keeps serving (new connection).
    let v: Value = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["response"], "after");
}

#[tokio::test]
async fn pull_streams_progress_and_installs_the_model() {
    let fake = FakeOllama::start().await;
    let lines = ndjson(post(&fake, "/api/pull", json!({ "model": "gemma3:4b" })).await).await;
    let statuses: Vec<&str> = lines
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"pulling manifest"));
    assert_eq!(statuses.last(), Some(&"success"));
    let downloads: Vec<&Value> = lines
        .iter()
        .filter(|l| l["status"].as_str().unwrap().starts_with("downloading"))
        .collect();
    assert!(!downloads.is_empty());
    let last = downloads.last().unwrap();
    assert_eq!(last["completed"], last["total"]);
    assert!(last["digest"].as_str().unwrap().starts_with("sha256:"));

    // Older clients send "name"; without streaming, one object.
    let v: Value = post(
        &fake,
        "/api/pull",
        json!({ "name": "llava", "stream": false }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v, json!({ "status": "success" }));

    let tags: Value = get(&fake, "/api/tags").await.json().await.unwrap();
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gemma3:4b", "llava:latest"]);
}

#[tokio::test]
async fn fail_endpoint_overrides_a_path_until_cleared() {
    let fake = fake_with_model().await;
    fake.fail_endpoint("/api/tags", None);
    let response = get(&fake, "/api/tags").await;
    assert_eq!(response.status(), 500);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());

    fake.fail_endpoint("/api/version", Some(FakeAnswer::Garbage("nope".into())));
    assert_eq!(
        get(&fake, "/api/version").await.text().await.unwrap(),
        "nope"
    );

    fake.clear_failure("/api/tags");
    let tags: Value = get(&fake, "/api/tags").await.json().await.unwrap();
    assert_eq!(tags["models"][0]["name"], MODEL);
}

#[tokio::test]
async fn requests_are_recorded_with_their_bodies() {
    let fake = fake_with_model().await;
    fake.default_answer(Endpoint::Generate, MODEL, text("ok"));
    let schema = json!({ "type": "object", "properties": { "a": { "type": "integer" } } });
    let body = json!({
        "model": MODEL, "prompt": "Transcribe.", "system": "You transcribe.",
        "images": ["aGVsbG8="], "format": schema, "options": { "temperature": 0 },
        "stream": false, "think": false, "keep_alive": "5m",
    });
    post(&fake, "/api/generate", body.clone()).await;
    get(&fake, "/api/tags").await;

    let all = fake.requests();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].method.as_str(), all[0].path.as_str()),
        ("POST", "/api/generate")
    );
    assert_eq!(all[0].body, body);
    assert_eq!(
        (all[1].method.as_str(), all[1].path.as_str()),
        ("GET", "/api/tags")
    );
    assert_eq!(all[1].body, Value::Null);

    let generated = fake.requests_to("/api/generate");
    assert_eq!(generated.len(), 1);
    assert_eq!(generated[0]["images"][0], "aGVsbG8=");
    assert_eq!(generated[0]["format"], schema);
    assert_eq!(generated[0]["options"]["temperature"], 0);
    assert!(fake.requests_to("/api/chat").is_empty());
}
