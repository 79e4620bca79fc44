//! The local backend end to end: real PostgreSQL, a FAKE Ollama (no real one can be installed
//! here), a temporary submissions volume. Checks outcomes in the database and the exact request
//! bodies sent to Ollama.

mod common;

use base64::Engine;
use learning_runner::ai::normalize::FALLBACK_EXPLANATION;
use learning_runner::ai::prompts::VISION_PROMPT;
use learning_runner::job::analysis::AnalysisV2;
use learning_runner::job::process::JobOutcome;
use learning_tests::fake_ollama::{Endpoint, FakeAnswer};
use learning_tests::fixtures::{self, NewSubmission};
use serde_json::{json, Value};

use common::local::{
    analysis_answer, fake_with_models, jpeg, local_setup, png, LocalSetup, FEEDBACK_MODEL,
    VISION_MODEL,
};
use common::process_next;

fn text(s: &str) -> FakeAnswer {
    FakeAnswer::Text(s.to_owned())
}

fn analysis_of(db_json: Option<Value>) -> AnalysisV2 {
    serde_json::from_value(db_json.expect("analysis_json set")).expect("criteria.v2 shape")
}

#[tokio::test]
async fn a_text_submission_gets_analysis_and_synthesis_with_the_expected_requests() {
    let LocalSetup {
        db,
        fake,
        root: _root,
        ctx,
    } = local_setup(fake_with_models().await, &["--ai-think-level", "low"]).await;
    fake.script(
        Endpoint::Chat,
        FEEDBACK_MODEL,
        vec![
            text(&analysis_answer(&["Inhalt", "Struktur"], 7)),
            text("**Stärken**\n- klar\n\n**Nächste Schritte**\n- mehr Belege"),
        ],
    );
    let student_text = "Die Zelle ist die kleinste Einheit des Lebens. SCHUELERTEXT-77";
    let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", student_text)).await;

    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);

    let s = fixtures::submission(&db.admin, sub).await;
    let analysis = analysis_of(s.analysis_json);
    analysis
        .validate(&["Inhalt".into(), "Struktur".into()])
        .unwrap();
    assert!(analysis.criteria_results.iter().all(|r| r.score == 7));
    assert!(s.feedback_md.unwrap().starts_with("**Stärken**"));
    assert_eq!(s.text_body.as_deref(), Some(student_text));
    assert!(
        fake.requests_to("/api/generate").is_empty(),
        "no vision call for text"
    );

    let chats = fake.requests_to("/api/chat");
    assert_eq!(chats.len(), 2);
    let (analysis_req, synthesis_req) = (&chats[0], &chats[1]);
    assert_eq!(analysis_req["model"], FEEDBACK_MODEL);
    assert_eq!(analysis_req["stream"], false);
    assert_eq!(analysis_req["options"]["temperature"], 0.0);
    assert_eq!(
        analysis_req["options"]["num_predict"], 4096,
        "the analysis default"
    );
    assert_eq!(
        synthesis_req["options"]["num_predict"], 2048,
        "the feedback default"
    );
    assert_eq!(analysis_req["think"], "low");
    assert_eq!(
        analysis_req["format"]["properties"]["criteria_results"]["items"]["properties"]
            ["criterion"]["enum"],
        json!(["Inhalt", "Struktur"])
    );
    assert_eq!(analysis_req["messages"][0]["role"], "system");
    assert!(analysis_req["messages"][1]["content"]
        .as_str()
        .unwrap()
        .contains("SCHUELERTEXT-77"));
    assert!(synthesis_req.get("format").is_none(), "synthesis is prose");
    let synthesis_user = synthesis_req["messages"][1]["content"].as_str().unwrap();
    assert!(
        !synthesis_user.contains("SCHUELERTEXT-77"),
        "synthesis works from the analysis, not the text"
    );
    assert!(synthesis_user.contains("Inhalt (7/10)"));
    assert_eq!(
        ctx.metrics
            .feedback_parse
            .with_label_values(&["parsed_structured"])
            .get(),
        1
    );
    let ttf = &ctx.metrics.time_to_feedback;
    assert_eq!(ttf.get_sample_count(), 1, "one completed job measured");
    assert!(ttf.get_sample_sum() >= 0.0 && ttf.get_sample_sum() < 60.0);
}

#[tokio::test]
async fn png_and_jpeg_submissions_send_the_file_as_one_base64_image() {
    let LocalSetup {
        db,
        fake,
        root,
        ctx,
    } = local_setup(fake_with_models().await, &[]).await;
    fake.default_answer(
        Endpoint::Generate,
        VISION_MODEL,
        text("```markdown\n# Aufgabe 1\nx = 2\n```"),
    );
    fake.default_answer(Endpoint::Chat, FEEDBACK_MODEL, text("Gut gemacht."));
    fake.script(
        Endpoint::Chat,
        FEEDBACK_MODEL,
        vec![text(&analysis_answer(&["Rechenweg", "Ergebnis"], 9))],
    );

    for (mime, bytes) in [
        ("image/png", png(40, 30, [10, 20, 30])),
        ("image/jpeg", jpeg(40, 30, [200, 10, 10])),
    ] {
        let submission = NewSubmission::gustav_file("s1", "image", mime, &bytes);
        root.put(submission.key(), &bytes);
        let (sub, _) = fixtures::enqueue(&db.admin, &submission).await;
        if mime == "image/jpeg" {
            fake.script(
                Endpoint::Chat,
                FEEDBACK_MODEL,
                vec![text(&analysis_answer(&["Rechenweg", "Ergebnis"], 9))],
            );
        }
        assert_eq!(process_next(&ctx).await, JobOutcome::Completed, "{mime}");
        let s = fixtures::submission(&db.admin, sub).await;
        assert_eq!(
            s.text_body.as_deref(),
            Some("# Aufgabe 1\nx = 2"),
            "fence stripped ({mime})"
        );
        analysis_of(s.analysis_json)
            .validate(&["Rechenweg".into(), "Ergebnis".into()])
            .unwrap();
        let vision = fake.requests_to("/api/generate").pop().unwrap();
        assert_eq!(vision["model"], VISION_MODEL);
        assert_eq!(vision["stream"], false);
        assert_eq!(vision["options"]["temperature"], 0.0);
        assert_eq!(vision["options"]["num_predict"], 4096, "the vision default");
        assert_eq!(vision["prompt"], VISION_PROMPT);
        let images = vision["images"].as_array().unwrap();
        assert_eq!(images.len(), 1);
        let sent = base64::engine::general_purpose::STANDARD
            .decode(images[0].as_str().unwrap())
            .unwrap();
        assert_eq!(sent, bytes, "the stored file is sent unchanged ({mime})");
    }
}

#[tokio::test]
async fn a_pdf_is_transcribed_from_its_pre_rendered_pages_stitched_into_one_image() {
    let LocalSetup {
        db,
        fake,
        root,
        ctx,
    } = local_setup(fake_with_models().await, &[]).await;
    fake.default_answer(
        Endpoint::Generate,
        VISION_MODEL,
        text("Seite 1 und Seite 2"),
    );
    fake.script(
        Endpoint::Chat,
        FEEDBACK_MODEL,
        vec![
            text(&analysis_answer(&["Rechenweg", "Ergebnis"], 5)),
            text("Weiter so."),
        ],
    );
    let pdf = learning_tests::pdf::numbered_a4(2);
    let mut s = NewSubmission::gustav_file("s1", "file", "application/pdf", &pdf);
    root.put(s.key(), &pdf);
    let id = uuid::Uuid::new_v4();
    let dir = s.derived_dir(id);
    root.put(&format!("{dir}/page_0001.png"), &png(100, 60, [0, 0, 0]));
    root.put(&format!("{dir}/page_0002.png"), &png(80, 40, [0, 0, 0]));
    s.internal_metadata =
        json!({"page_keys": [format!("{dir}/page_0001.png"), format!("{dir}/page_0002.png")]});
    let payload = json!({"submission_id": id, "course_id": s.course_id, "task_id": s.task_id,
        "student_sub": "s1", "kind": "file", "attempt_nr": 1, "criteria": ["Rechenweg", "Ergebnis"]});
    let (sub, _) = fixtures::enqueue_with_payload(&db.admin, &s, id, payload).await;

    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);
    assert_eq!(
        fixtures::submission(&db.admin, sub)
            .await
            .text_body
            .as_deref(),
        Some("Seite 1 und Seite 2")
    );
    let vision = fake.requests_to("/api/generate").pop().unwrap();
    let sent = base64::engine::general_purpose::STANDARD
        .decode(vision["images"][0].as_str().unwrap())
        .unwrap();
    let stitched = image::load_from_memory(&sent).unwrap();
    assert_eq!(
        (stitched.width(), stitched.height()),
        (100, 60 + learning_runner::submission::pages::PAGE_GAP + 40)
    );
    assert_eq!(stitched.color(), image::ColorType::L8, "greyscale");
}

#[tokio::test]
async fn a_vision_timeout_is_vision_retrying_and_a_feedback_timeout_is_feedback_retrying() {
    let LocalSetup {
        db,
        fake,
        root,
        ctx,
    } = local_setup(
        fake_with_models().await,
        &["--ai-timeout-vision", "1", "--ai-timeout-feedback", "1"],
    )
    .await;
    let bytes = png(10, 10, [0, 0, 0]);
    let photo = NewSubmission::gustav_file("s1", "image", "image/png", &bytes);
    root.put(photo.key(), &bytes);
    fake.script(Endpoint::Generate, VISION_MODEL, vec![FakeAnswer::Hang]);
    let (img, _) = fixtures::enqueue(&db.admin, &photo).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Retried);
    let s = fixtures::submission(&db.admin, img).await;
    assert_eq!(s.error_code.as_deref(), Some("vision_retrying"));
    assert!(s
        .vision_last_error
        .unwrap()
        .contains("did not answer within"));

    fake.script(Endpoint::Chat, FEEDBACK_MODEL, vec![FakeAnswer::Hang]);
    let (txt, _) = fixtures::enqueue(&db.admin, &NewSubmission::text("s2", "Text")).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Retried);
    let s = fixtures::submission(&db.admin, txt).await;
    assert_eq!(s.error_code.as_deref(), Some("feedback_retrying"));
    assert_eq!(s.vision_attempts, 0);
}

#[tokio::test]
async fn unusable_answers_are_retried_and_the_final_attempt_gives_the_deterministic_fallback() {
    let LocalSetup {
        db,
        fake,
        root: _root,
        ctx,
    } = local_setup(
        fake_with_models().await,
        &["--learning-dspy-json-adapter", "false"],
    )
    .await;
    let garbage = || {
        vec![
            text("Ich bewerte das gern! Insgesamt gut."),
            text("{\"kaputt\": "),
        ]
    };
    fake.script(Endpoint::Chat, FEEDBACK_MODEL, garbage());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "Text")).await;

    // Retries left: "model returned nothing usable" is transient (contract §6.6).
    assert_eq!(process_next(&ctx).await, JobOutcome::Retried);
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(s.error_code.as_deref(), Some("feedback_retrying"));
    assert!(s
        .feedback_last_error
        .unwrap()
        .contains("no usable analysis"));

    // The final attempt: the deterministic fallback, still a valid criteria.v2.
    sqlx::query(
        "update learning_submission_jobs set retry_count = 3, visible_at = now() where id = $1",
    )
    .bind(job)
    .execute(&db.admin)
    .await
    .unwrap();
    fake.script(Endpoint::Chat, FEEDBACK_MODEL, garbage());
    fake.script(Endpoint::Chat, FEEDBACK_MODEL, vec![text("")]);
    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);
    let s = fixtures::submission(&db.admin, sub).await;
    let analysis = analysis_of(s.analysis_json);
    analysis
        .validate(&["Inhalt".into(), "Struktur".into()])
        .unwrap();
    assert!(analysis
        .criteria_results
        .iter()
        .all(|r| r.score == 0 && r.explanation_md == FALLBACK_EXPLANATION));
    assert!(
        s.feedback_md.unwrap().contains("Nächste Schritte"),
        "fallback feedback from the analysis"
    );
    assert_eq!(
        ctx.metrics
            .feedback_parse
            .with_label_values(&["fallback"])
            .get(),
        1
    );
    let chats = fake.requests_to("/api/chat");
    assert_eq!(
        chats.len(),
        5,
        "two analysis tries, then two more and the synthesis"
    );
    assert!(
        chats[0].get("format").is_none(),
        "structured output off: no schema"
    );
    assert!(
        chats[0]["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("criteria_results"),
        "JSON asked for in the prompt"
    );
}

#[tokio::test]
async fn a_model_answer_with_nul_characters_is_stored_without_them() {
    let LocalSetup {
        db,
        fake,
        root: _root,
        ctx,
    } = local_setup(fake_with_models().await, &[]).await;
    let analysis = analysis_answer(&["Inhalt", "Struktur"], 6)
        .replace("Begründung zu Inhalt", "Begr\\u0000ündung");
    fake.script(
        Endpoint::Chat,
        FEEDBACK_MODEL,
        vec![text(&analysis), text("Gut\u{0}gemacht")],
    );
    let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "Text")).await;
    assert_eq!(
        process_next(&ctx).await,
        JobOutcome::Completed,
        "PostgreSQL cannot store NUL; the runner strips it"
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(s.feedback_md.as_deref(), Some("Gutgemacht"));
    assert_eq!(
        analysis_of(s.analysis_json).criteria_results[0].explanation_md,
        "Begründung"
    );
}

#[tokio::test]
async fn a_tolerant_parse_accepts_fenced_variant_json() {
    let LocalSetup {
        db,
        fake,
        root: _root,
        ctx,
    } = local_setup(fake_with_models().await, &[]).await;
    let variant = "```json\n{\"criteria\": [{\"name\": \"Inhalt\", \"max\": 5, \"score\": \"4.6\", \"explanation\": \"ok\"}]}\n```";
    fake.script(
        Endpoint::Chat,
        FEEDBACK_MODEL,
        vec![text(variant), text("Prima.")],
    );
    let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "Text")).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);
    let a = analysis_of(fixtures::submission(&db.admin, sub).await.analysis_json);
    assert_eq!(
        (a.criteria_results[0].score, a.criteria_results[0].max_score),
        (4, 5)
    );
    assert_eq!(a.criteria_results[1].score, 0, "missing criterion filled");
    assert_eq!(
        ctx.metrics
            .feedback_parse
            .with_label_values(&["parsed"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_missing_model_is_transient_so_an_operator_can_pull_it() {
    let LocalSetup {
        db,
        fake: _fake,
        root: _root,
        ctx,
    } = local_setup(learning_tests::fake_ollama::FakeOllama::start().await, &[]).await; // no models installed
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "Text")).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Retried);
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(s.error_code.as_deref(), Some("feedback_retrying"));
    assert!(s.feedback_last_error.unwrap().contains("not installed"));
    assert_eq!(fixtures::job(&db.admin, job).await.unwrap().retry_count, 1);
}

#[tokio::test]
async fn path_escape_size_mismatch_hash_mismatch_and_oversize_are_permanent() {
    let LocalSetup {
        db,
        fake,
        root,
        ctx,
    } = local_setup(fake_with_models().await, &[]).await;
    let bytes = png(10, 10, [1, 2, 3]);
    std::fs::write(
        root.0.parent().unwrap().join(format!(
            "{}-outside.png",
            root.0.file_name().unwrap().to_string_lossy()
        )),
        &bytes,
    )
    .unwrap();

    let escape_key = format!(
        "../{}-outside.png",
        root.0.file_name().unwrap().to_string_lossy()
    );
    let escape = NewSubmission::stored_file("s1", "image", "image/png", &escape_key, &bytes);
    let mut wrong_size = NewSubmission::gustav_file("s2", "image", "image/png", &bytes);
    wrong_size.size_bytes = Some(bytes.len() as i32 + 1);
    root.put(wrong_size.key(), &bytes);
    let mut wrong_hash = NewSubmission::gustav_file("s3", "image", "image/png", &bytes);
    wrong_hash.sha256 = Some("0".repeat(64));
    root.put(wrong_hash.key(), &bytes);
    let big = vec![0u8; 10 * 1024 * 1024 + 1];
    let mut oversize = NewSubmission::gustav_file("s4", "image", "image/png", &big[..10]);
    oversize.size_bytes = Some(10 * 1024 * 1024);
    root.put(oversize.key(), &big);

    for (submission, code, reason) in [
        (escape, "input_corrupt", "outside the storage root"),
        (wrong_size, "input_corrupt", "bytes, the record says"),
        (wrong_hash, "input_corrupt", "SHA-256"),
        (oversize, "input_too_large", "limit"),
    ] {
        let (sub, job) = fixtures::enqueue(&db.admin, &submission).await;
        assert_eq!(process_next(&ctx).await, JobOutcome::Failed, "{code}");
        let s = fixtures::submission(&db.admin, sub).await;
        assert_eq!(
            (s.status.as_str(), s.error_code.as_deref()),
            ("failed", Some(code))
        );
        assert!(
            s.vision_last_error.as_deref().unwrap().contains(reason),
            "{:?}",
            s.vision_last_error
        );
        assert!(
            !s.vision_last_error.unwrap().contains("submissions/"),
            "no storage key in the message"
        );
        assert_eq!(fixtures::job(&db.admin, job).await.unwrap().retry_count, 0);
    }
    assert!(
        fake.requests_to("/api/generate").is_empty(),
        "no model call for bad input"
    );
}

#[tokio::test]
async fn an_unsupported_mime_type_is_input_unsupported() {
    let LocalSetup {
        db,
        fake: _fake,
        root,
        ctx,
    } = local_setup(fake_with_models().await, &[]).await;
    let constraint: String = sqlx::query_scalar(
        "select conname::text from pg_constraint where conrelid = 'learning_submissions'::regclass and pg_get_constraintdef(oid) like '%mime_type%'",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    sqlx::query(&format!(
        "alter table learning_submissions drop constraint {constraint}"
    ))
    .execute(&db.admin)
    .await
    .unwrap();
    root.put("a.gif", b"GIF89a");
    let (sub, _) = fixtures::enqueue(
        &db.admin,
        &NewSubmission::stored_file("s1", "image", "image/gif", "a.gif", b"GIF89a"),
    )
    .await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    assert_eq!(
        fixtures::submission(&db.admin, sub)
            .await
            .error_code
            .as_deref(),
        Some("input_unsupported")
    );
}

#[tokio::test]
async fn a_pdf_that_is_only_a_header_fails_permanently_as_unreadable() {
    let LocalSetup {
        db,
        fake: _fake,
        root,
        ctx,
    } = local_setup(fake_with_models().await, &[]).await;
    let pdf = b"%PDF-1.7".to_vec();
    let s = NewSubmission::gustav_file("s1", "file", "application/pdf", &pdf);
    root.put(s.key(), &pdf);
    let (sub, _) = fixtures::enqueue(&db.admin, &s).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(s.error_code.as_deref(), Some("input_corrupt"));
    assert!(s.vision_last_error.unwrap().contains("cannot be read"));
}

#[tokio::test]
async fn answers_cut_at_their_generation_limit_are_unusable_and_retried() {
    let LocalSetup {
        db,
        fake,
        root: _root,
        ctx,
    } = local_setup(
        fake_with_models().await,
        &[
            "--ai-num-predict-analysis",
            "300",
            "--ai-num-predict-feedback",
            "200",
        ],
    )
    .await;
    // Both analysis attempts are cut off: not a usable analysis, retried (not the fallback,
    // retries remain).
    let cut = FakeAnswer::Truncated("{\"score\": 3, \"criteria_res".into());
    fake.script(Endpoint::Chat, FEEDBACK_MODEL, vec![cut.clone(), cut]);
    let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "Ein Text")).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Retried);
    let chats = fake.requests_to("/api/chat");
    assert_eq!(chats.len(), 2, "two analysis attempts, no synthesis");
    assert!(chats.iter().all(|c| c["options"]["num_predict"] == 300));
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(s.status, "pending");
    let message = s.feedback_last_error.unwrap_or_default();
    assert!(message.contains("no usable analysis"), "{message}");
}
