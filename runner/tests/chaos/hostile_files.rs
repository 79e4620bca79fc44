//! Hostile inputs through a real runner process (the local backend against a FAKE Ollama):
//! a PNG decompression bomb, a 100-page PDF of huge blank pages, a 50 MiB model reply, a
//! storage key with `..` and a `page_keys` entry of another student. Each ends with its
//! defined outcome, and the runner's peak resident memory stays under [`PEAK_RSS_BOUND_MIB`]
//! (measured from `/proc/<pid>/status` and printed).

use std::time::Duration;

use learning_tests::fake_ollama::{Endpoint, FakeAnswer};
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::pdf::{document, PdfPage};
use learning_tests::TestDb;
use serde_json::json;
use uuid::Uuid;

use crate::common::local::{fake_with_models, png, StorageRoot, FEEDBACK_MODEL, VISION_MODEL};
use crate::invariant::{
    assert_exactly_once, assert_ready, install_audit, settle, DEFAULT_LEASE_AND_BEAT,
};
use crate::runners::start;

/// The bound on the runner's peak resident memory over the whole scenario. The inputs would
/// need far more when read without bounds: the bomb decodes to 2.5 GiB, the PDF's pages at
/// 300 DPI to some 24 GiB, the reply is 50 MiB.
const PEAK_RSS_BOUND_MIB: u64 = 200;

const STUDENT: &str = "5b7e9c1d-2f3a-4b5c-8d6e-7f8a9b0c1d2e";

/// The submissions of the scenario, enqueued in this order (one slot: processed in it).
struct Cases {
    huge_reply: Uuid,
    bomb: Uuid,
    blank_pdf: Uuid,
    climbing_key: Uuid,
    foreign_page: Uuid,
}

async fn enqueue_cases(db: &TestDb, root: &StorageRoot) -> Cases {
    let photo = png(64, 48, [20, 20, 20]);
    let s = NewSubmission::gustav_file(STUDENT, "image", "image/png", &photo);
    root.put(s.key(), &photo);
    let huge_reply = fixtures::enqueue(&db.admin, &s).await.0;

    let bomb_bytes = learning_tests::images::png_bomb_header(30_000, 30_000);
    let s = NewSubmission::gustav_file(STUDENT, "image", "image/png", &bomb_bytes);
    root.put(s.key(), &bomb_bytes);
    let bomb = fixtures::enqueue(&db.admin, &s).await.0;

    // The largest page PDF allows (200 × 200 inches), blank, 100 times.
    let blank = PdfPage {
        size: (14_400, 14_400),
        text: String::new(),
        scan: None,
    };
    let pdf = document(&vec![blank; 100]);
    let s = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &pdf);
    root.put(s.key(), &pdf);
    let blank_pdf = fixtures::enqueue(&db.admin, &s).await.0;

    let mut s = NewSubmission::gustav_file(STUDENT, "image", "image/png", &photo);
    let climbing = format!(
        "submissions/{}/{}/{STUDENT}/../../../../etc/passwd",
        s.course_id, s.task_id
    );
    s.storage_key = Some(climbing);
    let climbing_key = fixtures::enqueue(&db.admin, &s).await.0;

    let mut s = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &pdf);
    root.put(s.key(), &pdf);
    let other = format!(
        "submissions/{}/{}/another-student/derived/{}/page_0001.png",
        s.course_id,
        s.task_id,
        Uuid::new_v4()
    );
    root.put(&other, &photo);
    s.internal_metadata = json!({"page_keys": [other]});
    let foreign_page = fixtures::enqueue(&db.admin, &s).await.0;
    Cases {
        huge_reply,
        bomb,
        blank_pdf,
        climbing_key,
        foreign_page,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_fail_with_their_codes_in_bounded_memory() {
    let db = TestDb::new().await;
    install_audit(&db).await;
    let root = StorageRoot::new();
    let fake = fake_with_models().await;
    fake.script(
        Endpoint::Generate,
        VISION_MODEL,
        vec![FakeAnswer::Huge(50 << 20)],
    );
    fake.default_answer(
        Endpoint::Generate,
        VISION_MODEL,
        FakeAnswer::Text("Leere Seiten".into()),
    );
    fake.default_answer(
        Endpoint::Chat,
        FEEDBACK_MODEL,
        FakeAnswer::Text("Weiter so.".into()),
    );
    let cases = enqueue_cases(&db, &root).await;
    let base = fake.base_url();
    let root_dir = root.0.display().to_string();
    let mut runner = start(
        &db,
        &[
            ("AI_BACKEND", "local"),
            ("OLLAMA_BASE_URL", base.as_str()),
            ("STORAGE_VERIFY_ROOT", root_dir.as_str()),
            ("WORKER_CONCURRENCY", "1"),
            ("WORKER_MAX_RETRIES", "0"),
            ("AI_TIMEOUT_VISION", "300"),
        ],
    );
    settle(&db, Duration::from_secs(600), DEFAULT_LEASE_AND_BEAT).await;
    assert_exactly_once(&db, 5).await;

    let ended = async |sub: Uuid| {
        let s = fixtures::submission(&db.admin, sub).await;
        (
            s.status,
            s.error_code,
            s.vision_last_error.unwrap_or_default(),
        )
    };
    let (status, code, message) = ended(cases.huge_reply).await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("failed", Some("vision_failed")),
        "{message}"
    );
    assert!(message.contains("larger than"), "{message}");
    let (status, code, message) = ended(cases.bomb).await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("failed", Some("input_too_large")),
        "{message}"
    );
    let (status, code, message) = ended(cases.climbing_key).await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("failed", Some("input_corrupt")),
        "{message}"
    );
    let (status, code, message) = ended(cases.foreign_page).await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("failed", Some("input_corrupt")),
        "{message}"
    );
    // The blank PDF is a valid document: rendered within the page box, it completes.
    let (status, code, message) = ended(cases.blank_pdf).await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("completed", None),
        "{message}"
    );

    let peak = runner.peak_rss_kib() / 1024;
    println!("hostile files: runner peak RSS {peak} MiB (bound {PEAK_RSS_BOUND_MIB} MiB)");
    assert!(peak < PEAK_RSS_BOUND_MIB, "peak RSS {peak} MiB");
    assert_ready(&mut runner.process);
    runner.stop();
}
