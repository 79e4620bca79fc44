//! Submissions shaped exactly as GUSTAV's web app writes them, end to end through the local
//! backend: real PostgreSQL, a FAKE Ollama and a FAKE Supabase Storage (neither can run here),
//! a temporary submissions volume. Storage keys are `submissions/{course}/{task}/{student}/
//! {epoch_ms}-{uuid}.{ext}`; in Supabase the object is stored without the leading bucket
//! name; PDFs come without pre-rendered pages unless a test says otherwise.

mod common;

use std::time::Duration;

use base64::Engine;
use learning_runner::job::process::JobOutcome;
use learning_runner::submission::pages::{MAX_WIDTH, PAGE_GAP};
use learning_runner::submission::pdf::page_scale;
use learning_runner::submission::photo::MAX_PHOTO_SIDE;
use learning_tests::fake_ollama::{Endpoint, FakeAnswer, FakeOllama};
use learning_tests::fake_supabase::FakeSupabase;
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::pdf::{self as pdf_fixture, PdfPage};
use serde_json::json;

use common::local::{
    analysis_answer, fake_with_models, local_setup, png, LocalSetup, FEEDBACK_MODEL, VISION_MODEL,
};
use common::process_next;

const STUDENT: &str = "5b7e9c1d-2f3a-4b5c-8d6e-7f8a9b0c1d2e";
const SERVICE_KEY: &str = "service-role-test-key";

fn text(s: &str) -> FakeAnswer {
    FakeAnswer::Text(s.to_owned())
}

/// A fake Ollama that transcribes every image as `transcript`.
async fn answering_fake(transcript: &str) -> FakeOllama {
    let fake = fake_with_models().await;
    fake.default_answer(Endpoint::Generate, VISION_MODEL, text(transcript));
    fake.default_answer(Endpoint::Chat, FEEDBACK_MODEL, text("Weiter so."));
    fake
}

/// Scripts the feedback of the next job: an analysis of the fixtures' criteria, then prose.
fn expect_feedback(fake: &FakeOllama) {
    fake.script(
        Endpoint::Chat,
        FEEDBACK_MODEL,
        vec![
            text(&analysis_answer(&["Rechenweg", "Ergebnis"], 6)),
            text("Weiter so."),
        ],
    );
}

/// A fake Supabase Storage (default bucket) and the local backend using it, with a fake
/// Ollama that transcribes every image as `transcript`.
async fn with_supabase(transcript: &str) -> (FakeSupabase, LocalSetup) {
    let supabase = FakeSupabase::start("submissions", SERVICE_KEY).await;
    let setup = setup(answering_fake(transcript).await, &supabase).await;
    (supabase, setup)
}

/// The local backend with the fake Supabase as remote storage and a generous vision phase
/// (PDF rendering in a debug build on a loaded machine).
async fn setup(fake: FakeOllama, supabase: &FakeSupabase) -> LocalSetup {
    let mut setup = local_setup(
        fake,
        &[
            "--supabase-url",
            supabase.url(),
            "--supabase-service-role-key",
            SERVICE_KEY,
        ],
    )
    .await;
    setup.ctx.timeout_vision = Duration::from_secs(120);
    setup
}

/// The images sent in the last vision request, decoded.
fn last_vision_images(fake: &FakeOllama) -> Vec<image::DynamicImage> {
    let request = fake
        .requests_to("/api/generate")
        .pop()
        .expect("a vision call");
    request["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b64| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_str().unwrap())
                .unwrap();
            image::load_from_memory(&bytes).unwrap()
        })
        .collect()
}

fn object_name(key: &str) -> &str {
    key.strip_prefix("submissions/")
        .expect("GUSTAV keys start with the bucket")
}

/// The job ended as `expected` with the submission's `code`, and the vision error names
/// `words` but no storage key.
fn assert_ended(
    (result, state): (JobOutcome, &fixtures::SubmissionState),
    expected: JobOutcome,
    code: &str,
    words: &str,
) {
    assert_eq!(result, expected, "{code}: {words}");
    assert_eq!(state.error_code.as_deref(), Some(code));
    let message = state.vision_last_error.clone().unwrap_or_default();
    assert!(message.contains(words), "{message}");
    assert!(
        !message.contains("submissions/"),
        "no storage key: {message}"
    );
}

async fn outcome(
    setup: &LocalSetup,
    s: &NewSubmission,
) -> (uuid::Uuid, JobOutcome, fixtures::SubmissionState) {
    let (sub, _) = fixtures::enqueue(&setup.db.admin, s).await;
    expect_feedback(&setup.fake);
    let result = process_next(&setup.ctx).await;
    (
        sub,
        result,
        fixtures::submission(&setup.db.admin, sub).await,
    )
}

#[tokio::test]
async fn a_photo_only_in_supabase_is_fetched_without_the_bucket_prefix() {
    let (supabase, setup) = with_supabase("Foto-Text").await;
    let bytes = png(64, 48, [30, 30, 30]);
    let s = NewSubmission::gustav_file(STUDENT, "image", "image/png", &bytes);
    supabase.put(object_name(s.key()), &bytes);

    let (_, result, state) = outcome(&setup, &s).await;
    assert_eq!(result, JobOutcome::Completed);
    assert_eq!(state.text_body.as_deref(), Some("Foto-Text"));
    let paths = supabase.paths();
    assert_eq!(
        paths,
        [format!(
            "/storage/v1/object/submissions/{}",
            object_name(s.key())
        )],
        "one request, bucket named once"
    );
}

#[tokio::test]
async fn with_another_bucket_the_object_keeps_the_whole_key() {
    let supabase = FakeSupabase::start("learning-submissions", SERVICE_KEY).await;
    let fake = answering_fake("Alt-Bucket").await;
    let mut setup = local_setup(
        fake,
        &[
            "--supabase-url",
            supabase.url(),
            "--supabase-service-role-key",
            SERVICE_KEY,
            "--learning-storage-bucket",
            "learning-submissions",
        ],
    )
    .await;
    setup.ctx.timeout_vision = Duration::from_secs(120);
    let bytes = png(20, 20, [0, 0, 0]);
    let s = NewSubmission::gustav_file(STUDENT, "image", "image/png", &bytes);
    supabase.put(s.key(), &bytes);
    let (_, result, _) = outcome(&setup, &s).await;
    assert_eq!(result, JobOutcome::Completed);
    assert_eq!(
        supabase.paths(),
        [format!(
            "/storage/v1/object/learning-submissions/{}",
            s.key()
        )]
    );
}

/// Checks that `sheet` holds two rendered A4 pages, each with its black bar.
fn assert_two_rendered_pages(sheet: &image::DynamicImage) {
    let sheet = sheet.to_luma8();
    let scale = page_scale(595.0, 842.0);
    let page_height = (842.0 * scale) as u32;
    assert_eq!(sheet.width(), MAX_WIDTH);
    assert!(
        sheet.height().abs_diff(2 * page_height + PAGE_GAP) <= 2,
        "two pages and a gap: {}",
        sheet.height()
    );
    let bar = (114.0 * scale) as u32;
    assert_eq!(sheet.get_pixel(MAX_WIDTH / 2, bar).0, [0], "page 1's bar");
    assert_eq!(
        sheet
            .get_pixel(MAX_WIDTH / 2, page_height + PAGE_GAP + bar)
            .0,
        [0],
        "page 2's bar"
    );
}

#[tokio::test]
async fn a_two_page_pdf_without_page_keys_is_rendered_into_one_image_and_kept_for_retries() {
    let (supabase, setup) = with_supabase("Seite 1\n\nSeite 2").await;
    let bytes = pdf_fixture::numbered_a4(2);
    let s = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &bytes);
    setup.root.put(s.key(), &bytes);

    let (sub, result, state) = outcome(&setup, &s).await;
    assert_eq!(result, JobOutcome::Completed);
    assert_eq!(state.text_body.as_deref(), Some("Seite 1\n\nSeite 2"));
    let images = last_vision_images(&setup.fake);
    assert_eq!(images.len(), 1, "one stitched image");
    assert_eq!(images[0].color(), image::ColorType::L8, "greyscale");
    assert_two_rendered_pages(&images[0]);
    assert_eq!(setup.fake.requests_to("/api/generate").len(), 1);
    assert!(supabase.paths().is_empty(), "the local file was enough");

    // GUSTAV's place for the stitched image: the derived folder of the submission.
    let stitched = setup.root.0.join(s.derived_dir(sub)).join("stitched.png");
    let kept = image::open(&stitched).expect("stitched.png kept on the volume");
    assert_eq!(kept.to_luma8(), images[0].to_luma8());
}

#[tokio::test]
async fn a_pdf_only_in_supabase_is_rendered_too() {
    let (supabase, setup) = with_supabase("Aus Supabase").await;
    let bytes = pdf_fixture::numbered_a4(2);
    let s = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &bytes);
    supabase.put(object_name(s.key()), &bytes);

    let (_, result, state) = outcome(&setup, &s).await;
    assert_eq!(result, JobOutcome::Completed);
    assert_eq!(state.text_body.as_deref(), Some("Aus Supabase"));
    let images = last_vision_images(&setup.fake);
    assert_eq!(images.len(), 1);
    assert_two_rendered_pages(&images[0]);
    assert_eq!(
        supabase.paths(),
        [format!(
            "/storage/v1/object/submissions/{}",
            object_name(s.key())
        )]
    );
}

#[tokio::test]
async fn a_cached_sheet_is_used_instead_of_rendering_again() {
    let (_supabase, setup) = with_supabase("Aus dem Cache").await;
    let bytes = pdf_fixture::numbered_a4(1);
    let s = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &bytes);
    // No PDF bytes anywhere: only the cached sheet can make this complete.
    let (sub, _) = fixtures::enqueue(&setup.db.admin, &s).await;
    let sheet = png(300, 400, [0, 0, 0]);
    setup
        .root
        .put(&format!("{}/stitched.png", s.derived_dir(sub)), &sheet);
    expect_feedback(&setup.fake);
    assert_eq!(process_next(&setup.ctx).await, JobOutcome::Completed);
    let images = last_vision_images(&setup.fake);
    assert_eq!((images[0].width(), images[0].height()), (300, 400));
}

#[tokio::test]
async fn page_images_in_the_derived_folder_are_used_in_page_order() {
    let (_supabase, setup) = with_supabase("Abgeleitet").await;
    let bytes = pdf_fixture::numbered_a4(3);
    let s = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &bytes);
    setup.root.put(s.key(), &bytes);
    let (sub, _) = fixtures::enqueue(&setup.db.admin, &s).await;
    let dir = s.derived_dir(sub);
    // Pre-rendered pages as GUSTAV's page writer names them; page 10 sorts after page 9.
    for (name, shade) in [
        ("page_0001.png", 0u8),
        ("page_0002.png", 100),
        ("page_0010.png", 200),
    ] {
        setup.root.put(
            &format!("{dir}/{name}"),
            &png(100, 50, [shade, shade, shade]),
        );
    }
    expect_feedback(&setup.fake);
    assert_eq!(process_next(&setup.ctx).await, JobOutcome::Completed);
    let calls = setup.fake.requests_to("/api/generate");
    assert_eq!(calls.len(), 2, "three pages make two sheets, one call each");
    let decode = |call: &serde_json::Value| {
        let b = base64::engine::general_purpose::STANDARD
            .decode(call["images"][0].as_str().unwrap())
            .unwrap();
        image::load_from_memory(&b).unwrap().to_luma8()
    };
    let (first, second) = (decode(&calls[0]), decode(&calls[1]));
    assert_eq!((first.width(), first.height()), (100, 100 + PAGE_GAP));
    assert_eq!(first.get_pixel(5, 5).0, [0]);
    assert_eq!(first.get_pixel(5, 50 + PAGE_GAP + 5).0, [100]);
    assert_eq!((second.height(), second.get_pixel(5, 5).0), (50, [200]));
    let state = fixtures::submission(&setup.db.admin, sub).await;
    assert_eq!(state.text_body.as_deref(), Some("Abgeleitet\n\nAbgeleitet"));
    // Kept as a two-sheet cache next to the pages.
    for name in ["stitched-1-of-2.png", "stitched-2-of-2.png"] {
        assert!(setup.root.0.join(&dir).join(name).is_file(), "{name}");
    }
}

#[tokio::test]
async fn page_keys_of_the_same_submission_are_used_and_foreign_ones_refused() {
    let (supabase, setup) = with_supabase("Seiten").await;
    let bytes = pdf_fixture::numbered_a4(2);

    let mut own = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &bytes);
    let own_id = uuid::Uuid::new_v4();
    let dir = own.derived_dir(own_id);
    own.internal_metadata =
        json!({"page_keys": [format!("{dir}/page_0001.png"), format!("{dir}/page_0002.png")]});
    setup
        .root
        .put(&format!("{dir}/page_0001.png"), &png(80, 40, [0, 0, 0]));
    // Page 2 only in Supabase, under its object name.
    supabase.put(
        object_name(&format!("{dir}/page_0002.png")),
        &png(80, 30, [0, 0, 0]),
    );
    fixtures::enqueue_with_payload(
        &setup.db.admin,
        &own,
        own_id,
        json!({"submission_id": own_id, "course_id": own.course_id, "task_id": own.task_id,
               "student_sub": STUDENT, "kind": "file", "attempt_nr": 1, "criteria": ["Rechenweg", "Ergebnis"]}),
    )
    .await;
    expect_feedback(&setup.fake);
    assert_eq!(process_next(&setup.ctx).await, JobOutcome::Completed);
    let images = last_vision_images(&setup.fake);
    assert_eq!(
        (images[0].width(), images[0].height()),
        (80, 40 + PAGE_GAP + 30)
    );

    let mut foreign = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &bytes);
    let other_student = format!(
        "submissions/{}/{}/another-student/derived/{}/page_0001.png",
        foreign.course_id,
        foreign.task_id,
        uuid::Uuid::new_v4()
    );
    setup.root.put(&other_student, &png(10, 10, [0, 0, 0]));
    foreign.internal_metadata = json!({"page_keys": [other_student]});
    let (_, result, state) = outcome(&setup, &foreign).await;
    assert_ended(
        (result, &state),
        JobOutcome::Failed,
        "input_corrupt",
        "outside this submission",
    );
}

#[tokio::test]
async fn encrypted_broken_and_tampered_pdfs_fail_permanently_with_their_codes() {
    let (_supabase, setup) = with_supabase("nie").await;
    let encrypted = pdf_fixture::encrypted_document(&[PdfPage::a4("geheim")]);
    let broken = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage".to_vec();
    let not_pdf = b"PK\x03\x04 a zip file".to_vec();
    let good = pdf_fixture::numbered_a4(1);
    let mut cases = Vec::new();
    for (bytes, code, words) in [
        (&encrypted, "input_unsupported", "password"),
        (&broken, "input_corrupt", "cannot be read"),
        (&not_pdf, "input_corrupt", "not a PDF"),
    ] {
        let s = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", bytes);
        setup.root.put(s.key(), bytes);
        cases.push((s, code, words));
    }
    let mut tampered = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &good);
    tampered.sha256 = Some("0".repeat(64));
    setup.root.put(tampered.key(), &good);
    cases.push((tampered, "input_corrupt", "SHA-256"));

    for (s, code, words) in cases {
        let (_, result, state) = outcome(&setup, &s).await;
        assert_eq!(state.status, "failed");
        assert_ended((result, &state), JobOutcome::Failed, code, words);
    }
    assert!(
        setup.fake.requests_to("/api/generate").is_empty(),
        "no model call"
    );
}

#[tokio::test]
async fn a_pdf_whose_bytes_are_missing_stays_transient() {
    let (_supabase, setup) = with_supabase("nie").await;
    let bytes = pdf_fixture::numbered_a4(1);
    let s = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &bytes);
    let (_, result, state) = outcome(&setup, &s).await;
    assert_ended(
        (result, &state),
        JobOutcome::Retried,
        "vision_retrying",
        "remote storage: HTTP 400",
    );
}

#[tokio::test]
async fn large_photos_are_scaled_and_pixel_bombs_refused_unread() {
    let (_supabase, setup) = with_supabase("Foto").await;

    let big = common::local::jpeg(4032, 3024, [120, 80, 40]);
    let s = NewSubmission::gustav_file(STUDENT, "image", "image/jpeg", &big);
    setup.root.put(s.key(), &big);
    let (_, result, _) = outcome(&setup, &s).await;
    assert_eq!(result, JobOutcome::Completed);
    let sent = last_vision_images(&setup.fake);
    assert_eq!((sent[0].width(), sent[0].height()), (MAX_PHOTO_SIDE, 1200));

    let bomb = learning_tests::images::png_bomb_header(30_000, 30_000);
    let s = NewSubmission::gustav_file(STUDENT, "image", "image/png", &bomb);
    setup.root.put(s.key(), &bomb);
    let (_, result, state) = outcome(&setup, &s).await;
    assert_ended(
        (result, &state),
        JobOutcome::Failed,
        "input_too_large",
        "30000 × 30000",
    );
    assert_eq!(
        setup.fake.requests_to("/api/generate").len(),
        1,
        "only the first photo was sent"
    );
}

#[tokio::test]
async fn a_download_larger_than_its_record_stops_early_and_fails_as_corrupt() {
    let (supabase, setup) = with_supabase("nie").await;
    let bytes = png(64, 48, [30, 30, 30]);
    let s = NewSubmission::gustav_file(STUDENT, "image", "image/png", &bytes);
    // The object is 200 MiB, sent chunked without Content-Length; the record says a few KiB.
    let huge: u64 = 200 << 20;
    supabase.put_huge(object_name(s.key()), huge);

    let (_, result, state) = outcome(&setup, &s).await;
    assert_ended(
        (result, &state),
        JobOutcome::Failed,
        "input_corrupt",
        "is larger",
    );
    // Reading stopped near the recorded size: what left the server is the few KiB read plus
    // what the sockets buffered, never the whole object.
    let sent = supabase.huge_bytes_sent();
    assert!(sent < 32 << 20, "{sent} bytes of {huge} were sent");
    assert!(
        setup.fake.requests_to("/api/generate").is_empty(),
        "no model call"
    );
}
