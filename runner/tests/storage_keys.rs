//! Storage keys that are not GUSTAV's, end to end through the local backend (real PostgreSQL,
//! a FAKE Ollama, a FAKE Supabase Storage, a temporary submissions volume): a key that could
//! climb out of the submission's folder or the bucket, one of another student, task or course,
//! one of another bucket's shape, and `page_keys` of another submission all fail the
//! submission for good with `input_corrupt` before anything is read. The file each one points
//! at exists on the volume and in Supabase, so only the key check stands between it and the
//! runner: no request reaches the fake Supabase or the fake Ollama, and the message names no
//! key and no student.

mod common;

use learning_runner::job::process::JobOutcome;
use learning_tests::fake_ollama::FakeOllama;
use learning_tests::fake_supabase::FakeSupabase;
use learning_tests::fixtures::{self, gustav_storage_key, NewSubmission};
use serde_json::json;
use uuid::Uuid;

use common::local::{fake_with_models, local_setup, png, LocalSetup};
use common::process_next;

const STUDENT: &str = "5b7e9c1d-2f3a-4b5c-8d6e-7f8a9b0c1d2e";
const OTHER_STUDENT: &str = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
const SERVICE_KEY: &str = "service-role-test-key";

/// The local backend with a fake Supabase Storage (default bucket `submissions`).
async fn with_supabase() -> (FakeSupabase, LocalSetup) {
    let supabase = FakeSupabase::start("submissions", SERVICE_KEY).await;
    let fake: FakeOllama = fake_with_models().await;
    let setup = local_setup(
        fake,
        &[
            "--supabase-url",
            supabase.url(),
            "--supabase-service-role-key",
            SERVICE_KEY,
        ],
    )
    .await;
    (supabase, setup)
}

/// Puts `bytes` at `key` on the volume and in Supabase, under the object name the runner
/// would ask for (one leading `submissions/` removed), so that a read could only fail by the
/// key check.
fn plant(supabase: &FakeSupabase, setup: &LocalSetup, key: &str, bytes: &[u8]) {
    if !key.starts_with('/') {
        setup.root.put(key, bytes);
    }
    let object = key.strip_prefix("submissions/").unwrap_or(key);
    supabase.put(object, bytes);
}

/// Runs `s` and checks that it failed for good with `input_corrupt`, without a retry, with a
/// vision error that says `words` and names neither `key` nor a student.
async fn assert_refused(setup: &LocalSetup, s: &NewSubmission, key: &str, words: &str) {
    let (sub, job) = fixtures::enqueue(&setup.db.admin, s).await;
    assert_eq!(process_next(&setup.ctx).await, JobOutcome::Failed, "{key}");
    let state = fixtures::submission(&setup.db.admin, sub).await;
    assert_eq!(
        (state.status.as_str(), state.error_code.as_deref()),
        ("failed", Some("input_corrupt")),
        "{key}"
    );
    let message = state.vision_last_error.unwrap_or_default();
    assert!(message.contains(words), "{key}: {message}");
    for secret in [
        key,
        "submissions/",
        STUDENT,
        OTHER_STUDENT,
        "another-student",
    ] {
        assert!(!message.contains(secret), "{secret:?} in {message}");
    }
    assert_eq!(
        fixtures::job(&setup.db.admin, job)
            .await
            .unwrap()
            .retry_count,
        0
    );
}

/// Nothing was fetched from Supabase and nothing was sent to Ollama.
fn assert_nothing_read(supabase: &FakeSupabase, setup: &LocalSetup) {
    assert!(supabase.paths().is_empty(), "{:?}", supabase.paths());
    let ollama: Vec<String> = setup.fake.requests().into_iter().map(|r| r.path).collect();
    assert!(ollama.is_empty(), "requests to Ollama: {ollama:?}");
}

/// A submission of `STUDENT` whose storage key is `key`.
fn photo_with_key(course: Uuid, task: Uuid, key: &str, bytes: &[u8]) -> NewSubmission {
    let mut s = NewSubmission::gustav_file(STUDENT, "image", "image/png", bytes);
    (s.course_id, s.task_id) = (course, task);
    s.storage_key = Some(key.to_owned());
    s
}

#[tokio::test]
async fn keys_that_could_climb_out_fail_permanently_and_nothing_is_read() {
    let (supabase, setup) = with_supabase().await;
    let bytes = png(16, 16, [0, 0, 0]);
    let (course, task) = (Uuid::new_v4(), Uuid::new_v4());
    // Another student's upload of the same task: what each crafted key aims at.
    let victim = gustav_storage_key(course, task, OTHER_STUDENT, "image/png");
    plant(&supabase, &setup, &victim, &bytes);
    let file = victim.rsplit('/').next().unwrap();
    let own_dir = format!("submissions/{course}/{task}/{STUDENT}");
    // The student's own folder exists, so `<own folder>/../` would resolve on the volume.
    setup.root.put(&format!("{own_dir}/placeholder"), b"");
    let crafted = [
        format!("{own_dir}/../{OTHER_STUDENT}/{file}"),
        format!("submissions/{course}/{task}/./{OTHER_STUDENT}/{file}"),
        format!("submissions/{course}/{task}//{OTHER_STUDENT}/{file}"),
        format!("{own_dir}%2f..%2f{OTHER_STUDENT}/{file}"),
        format!("{own_dir}/%2e%2e/{OTHER_STUDENT}/{file}"),
        format!("{own_dir}\\..\\{OTHER_STUDENT}/{file}"),
        format!("/{victim}"),
        format!("{own_dir}/{file}\n"),
        format!("{own_dir}/{}{file}", "x".repeat(300)),
    ];
    for key in crafted {
        let s = photo_with_key(course, task, &key, &bytes);
        assert_refused(
            &setup,
            &s,
            &key,
            "could point outside the storage root or bucket",
        )
        .await;
    }
    assert_nothing_read(&supabase, &setup);
}

#[tokio::test]
async fn keys_of_another_student_task_course_or_bucket_fail_permanently_and_nothing_is_read() {
    let (supabase, setup) = with_supabase().await;
    let bytes = png(16, 16, [0, 0, 0]);
    let (course, task) = (Uuid::new_v4(), Uuid::new_v4());
    let own = gustav_storage_key(course, task, STUDENT, "image/png");
    let file = own.rsplit('/').next().unwrap().to_owned();
    let foreign = [
        gustav_storage_key(course, task, OTHER_STUDENT, "image/png"),
        gustav_storage_key(course, Uuid::new_v4(), STUDENT, "image/png"),
        gustav_storage_key(Uuid::new_v4(), task, STUDENT, "image/png"),
    ];
    for key in &foreign {
        plant(&supabase, &setup, key, &bytes);
        let s = photo_with_key(course, task, key, &bytes);
        assert_refused(&setup, &s, key, "another course, task or student").await;
    }
    // Not GUSTAV's upload shape: the materials bucket's, the bare object name, a folder below
    // the student's, another file name.
    let misshapen = [
        format!(
            "materials/{}/{}/{}/{}.png",
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4().simple()
        ),
        format!("{course}/{task}/{STUDENT}/{file}"),
        format!("submissions/{course}/{task}/{STUDENT}/orig/{file}"),
        format!("submissions/{course}/{task}/{STUDENT}/secret.png"),
    ];
    for key in &misshapen {
        plant(&supabase, &setup, key, &bytes);
        let s = photo_with_key(course, task, key, &bytes);
        assert_refused(&setup, &s, key, "shape of GUSTAV's upload keys").await;
    }
    assert_nothing_read(&supabase, &setup);
}

#[tokio::test]
async fn page_keys_of_another_submission_are_refused_before_any_page_is_read() {
    let (supabase, setup) = with_supabase().await;
    let pdf = learning_tests::pdf::numbered_a4(1);
    let mut s = NewSubmission::gustav_file(STUDENT, "file", "application/pdf", &pdf);
    plant(&supabase, &setup, s.key(), &pdf);
    let id = Uuid::new_v4();
    let page = png(40, 20, [0, 0, 0]);
    // Page 1 is the submission's own; page 2 lies in another course's derived folder.
    let own_page = format!("{}/page_0001.png", s.derived_dir(id));
    let foreign_page = format!(
        "submissions/{}/{}/{STUDENT}/derived/{id}/page_0002.png",
        Uuid::new_v4(),
        s.task_id
    );
    for key in [&own_page, &foreign_page] {
        plant(&supabase, &setup, key, &page);
    }
    s.internal_metadata = json!({"page_keys": [own_page, foreign_page]});
    let (_, job) = fixtures::enqueue_with_payload(
        &setup.db.admin,
        &s,
        id,
        json!({"submission_id": id, "course_id": s.course_id, "task_id": s.task_id,
               "student_sub": STUDENT, "kind": "file", "attempt_nr": 1, "criteria": ["Rechenweg"]}),
    )
    .await;
    assert_eq!(process_next(&setup.ctx).await, JobOutcome::Failed);
    let state = fixtures::submission(&setup.db.admin, id).await;
    assert_eq!(state.error_code.as_deref(), Some("input_corrupt"));
    let message = state.vision_last_error.unwrap_or_default();
    assert!(message.contains("outside this submission"), "{message}");
    assert!(!message.contains("submissions/") && !message.contains(STUDENT));
    assert_eq!(
        fixtures::job(&setup.db.admin, job)
            .await
            .unwrap()
            .retry_count,
        0
    );
    assert_nothing_read(&supabase, &setup);
}
