//! No log line at any level contains the student's text, a storage key, the bucket or the
//! Supabase service key, in a full run of the local backend (FAKE Ollama, a FAKE Supabase
//! Storage on loopback, real PostgreSQL). Alone in its binary so the capturing subscriber sees
//! every event.

mod common;

use common::capture::Capture;

use learning_tests::fake_ollama::{Endpoint, FakeAnswer};
use learning_tests::fake_supabase::FakeSupabase;
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;

use common::local::{
    analysis_answer, fake_with_models, local_config, local_context, png, StorageRoot,
    FEEDBACK_MODEL, VISION_MODEL,
};

const SERVICE_KEY: &str = "service-role-key-SECRET-31337";
const BUCKET: &str = "bucket-name-PRIVATE";

#[test]
fn a_full_local_run_logs_no_student_text_keys_or_secrets() {
    let capture = Capture::default();
    let _guard = capture.install();

    let secret_text = "VERTRAULICH-SCHUELER-4242";
    let student = "student-sub-PII-9090";
    let image = png(12, 12, [9, 9, 9]);
    // GUSTAV-shaped keys (the runner reads no other): one photo only on the volume, one only
    // in Supabase.
    let local = NewSubmission::gustav_file(student, "image", "image/png", &image);
    let remote = NewSubmission::gustav_file(student, "image", "image/png", &image);
    let (local_key, remote_key) = (local.key(), remote.key());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The fake Supabase Storage answers only with the service key as apikey and bearer.
        let supabase = FakeSupabase::start(BUCKET, SERVICE_KEY).await;
        supabase.put(remote_key, &image);
        let storage_url = supabase.url().to_owned();

        let db = TestDb::new().await;
        let pool = sqlx::PgPool::connect(&db.worker_url()).await.unwrap();
        let fake = fake_with_models().await;
        fake.default_answer(
            Endpoint::Generate,
            VISION_MODEL,
            FakeAnswer::Text(format!("Transkript {secret_text}")),
        );
        fake.default_answer(
            Endpoint::Chat,
            FEEDBACK_MODEL,
            FakeAnswer::Text(format!("Rückmeldung zu {secret_text}")),
        );
        let root = StorageRoot::new();
        root.put(local_key, &image);
        let config = local_config(
            &db,
            &fake,
            &root,
            &[
                "--supabase-url",
                &storage_url,
                "--supabase-service-role-key",
                SERVICE_KEY,
                "--learning-storage-bucket",
                BUCKET,
            ],
        );
        let (ctx, _) = local_context(&pool, &config);
        for submission in [&local, &remote] {
            fake.script(
                Endpoint::Chat,
                FEEDBACK_MODEL,
                vec![
                    FakeAnswer::Text(analysis_answer(&["Rechenweg", "Ergebnis"], 8)),
                    FakeAnswer::Text("Gut gerechnet.".into()),
                ],
            );
            fixtures::enqueue(&db.admin, submission).await;
        }
        fake.script(
            Endpoint::Chat,
            FEEDBACK_MODEL,
            vec![
                FakeAnswer::Text("kaputt".into()),
                FakeAnswer::Text("auch kaputt".into()),
            ],
        );
        let (_, text_job) =
            fixtures::enqueue(&db.admin, &NewSubmission::text(student, secret_text)).await;
        // Its final attempt, so the unusable answers end in the fallback instead of a retry.
        sqlx::query("update learning_submission_jobs set retry_count = 3 where id = $1")
            .bind(text_job)
            .execute(&db.admin)
            .await
            .unwrap();
        // One slot: the scripted answers are consumed in job order (analysis, feedback per image).
        let summary = common::run_until_drained(&pool, ctx, 1).await;
        assert_eq!(summary.completed, 3, "{summary:?}");
        assert!(
            supabase
                .paths()
                .contains(&format!("/storage/v1/object/{BUCKET}/{remote_key}")),
            "the remote-only photo came from Supabase: {:?}",
            supabase.paths()
        );
    });

    let logs = capture.text();
    assert!(
        logs.contains("learning.feedback.completed") && logs.contains("parse_status=fallback"),
        "{logs}"
    );
    let student_segment = student.to_lowercase();
    for forbidden in [
        secret_text,
        student,
        remote_key,
        local_key,
        student_segment.as_str(),
        SERVICE_KEY,
        BUCKET,
    ] {
        assert!(
            !logs.contains(forbidden),
            "a log line contains {forbidden:?}"
        );
    }
}
