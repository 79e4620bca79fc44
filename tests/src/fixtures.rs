//! Fixtures: submissions and jobs inserted as GUSTAV's web app does (one transaction, the
//! payload of contract §4), plus readers for assertions. They use the superuser pool.

use serde_json::{json, Value};
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// A submission to insert.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    /// `text`, `image`, `file` (or something invalid for bad-input tests, if the schema allows).
    pub kind: &'static str,
    /// The course (`course_id`).
    pub course_id: Uuid,
    /// The task (`task_id`).
    pub task_id: Uuid,
    /// The student (PII in real life).
    pub student_sub: String,
    /// Text for `text` submissions.
    pub text_body: Option<String>,
    /// Storage key for files.
    pub storage_key: Option<String>,
    /// MIME type for files.
    pub mime_type: Option<&'static str>,
    /// Recorded size of the file.
    pub size_bytes: Option<i32>,
    /// Recorded SHA-256 of the file.
    pub sha256: Option<String>,
    /// Status to start in.
    pub analysis_status: &'static str,
    /// `internal_metadata`.
    pub internal_metadata: Value,
    /// Teacher criteria for the payload.
    pub criteria: Vec<String>,
}

impl NewSubmission {
    /// A typed-text submission.
    pub fn text(student_sub: &str, text: &str) -> Self {
        NewSubmission {
            kind: "text",
            course_id: Uuid::new_v4(),
            task_id: Uuid::new_v4(),
            student_sub: student_sub.to_owned(),
            text_body: Some(text.to_owned()),
            storage_key: None,
            mime_type: None,
            size_bytes: None,
            sha256: None,
            analysis_status: "pending",
            internal_metadata: json!({}),
            criteria: vec!["Inhalt".into(), "Struktur".into()],
        }
    }

    /// A photo submission.
    pub fn image(student_sub: &str) -> Self {
        NewSubmission {
            kind: "image",
            course_id: Uuid::new_v4(),
            task_id: Uuid::new_v4(),
            student_sub: student_sub.to_owned(),
            text_body: None,
            storage_key: Some(format!("course/task/{student_sub}/{}.png", Uuid::new_v4())),
            mime_type: Some("image/png"),
            size_bytes: Some(1234),
            sha256: Some("a".repeat(64)),
            analysis_status: "pending",
            internal_metadata: json!({}),
            criteria: vec!["Rechenweg".into()],
        }
    }
}

/// Inserts the submission and its job in one transaction; returns `(submission_id, job_id)`.
pub async fn enqueue(pool: &PgPool, s: &NewSubmission) -> (Uuid, Uuid) {
    let submission_id = Uuid::new_v4();
    let payload = json!({
        "submission_id": submission_id, "course_id": s.course_id, "task_id": s.task_id,
        "student_sub": s.student_sub, "kind": s.kind, "attempt_nr": 1,
        "criteria": s.criteria, "instruction_md": "Beschreibe den Versuch.", "hints_md": "Achte auf Einheiten."
    });
    enqueue_with_payload(pool, s, submission_id, payload).await
}

/// Like [`enqueue`] with an explicit (possibly malformed) payload.
pub async fn enqueue_with_payload(
    pool: &PgPool,
    s: &NewSubmission,
    submission_id: Uuid,
    payload: Value,
) -> (Uuid, Uuid) {
    let mut tx = pool.begin().await.expect("begin");
    let (size, sha) = (s.size_bytes, s.sha256.clone());
    sqlx::query(
        "insert into learning_submissions (id, course_id, task_id, student_sub, kind, text_body, storage_key, mime_type, \
         size_bytes, sha256, attempt_nr, analysis_status, internal_metadata) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12)",
    )
    .bind(submission_id)
    .bind(s.course_id)
    .bind(s.task_id)
    .bind(&s.student_sub)
    .bind(s.kind)
    .bind(&s.text_body)
    .bind(&s.storage_key)
    .bind(s.mime_type)
    .bind(size)
    .bind(sha)
    .bind(s.analysis_status)
    .bind(&s.internal_metadata)
    .execute(&mut *tx)
    .await
    .expect("insert submission");
    let job_id: Uuid = sqlx::query_scalar("insert into learning_submission_jobs (submission_id, payload) values ($1, $2) returning id")
        .bind(submission_id)
        .bind(&payload)
        .fetch_one(&mut *tx)
        .await
        .expect("insert job");
    tx.commit().await.expect("commit");
    (submission_id, job_id)
}

impl NewSubmission {
    /// A file submission whose bytes are `bytes`, stored at `storage_key` (size and hash
    /// recorded as the web app does).
    pub fn stored_file(
        student_sub: &str,
        kind: &'static str,
        mime: &'static str,
        storage_key: &str,
        bytes: &[u8],
    ) -> Self {
        use sha2::{Digest, Sha256};
        let sha: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        NewSubmission {
            kind,
            course_id: Uuid::new_v4(),
            task_id: Uuid::new_v4(),
            student_sub: student_sub.to_owned(),
            text_body: None,
            storage_key: Some(storage_key.to_owned()),
            mime_type: Some(mime),
            size_bytes: Some(bytes.len() as i32),
            sha256: Some(sha),
            analysis_status: "pending",
            internal_metadata: json!({}),
            criteria: vec!["Rechenweg".into(), "Ergebnis".into()],
        }
    }
}

/// A storage key exactly as GUSTAV's web app builds it for an upload (`make_submission_key` in
/// its `backend/storage/keys.py`): `submissions/{course}/{task}/{student}/{epoch_ms}-{uuid
/// hex}.{ext}`, the student part the lower-cased `sub` with each run of characters outside
/// `[a-z0-9._-]` replaced by one `-`, `-`, `_` and `.` stripped from both ends (`student` when
/// nothing is left), and `ext` `jpg`, `png` or `pdf` from the MIME type. (GUSTAV folds
/// non-ASCII letters by NFKD first; the fixtures use ASCII subjects.)
pub fn gustav_storage_key(course_id: Uuid, task_id: Uuid, student_sub: &str, mime: &str) -> String {
    let (mut student, mut in_run) = (String::new(), false);
    for c in student_sub.to_lowercase().chars() {
        let plain = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if plain || !in_run {
            student.push(if plain { c } else { '-' });
        }
        in_run = !plain;
    }
    let student = match student.trim_matches(['-', '_', '.']) {
        "" => "student",
        trimmed => trimmed,
    };
    let ext = match mime {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        _ => "pdf",
    };
    let epoch_ms = chrono::Utc::now().timestamp_millis();
    format!(
        "submissions/{course_id}/{task_id}/{student}/{epoch_ms}-{}.{ext}",
        Uuid::new_v4().simple()
    )
}

impl NewSubmission {
    /// A file submission of `bytes` under a GUSTAV-shaped storage key (see
    /// [`gustav_storage_key`]), size and hash recorded as the web app does.
    pub fn gustav_file(
        student_sub: &str,
        kind: &'static str,
        mime: &'static str,
        bytes: &[u8],
    ) -> Self {
        let mut s = NewSubmission::stored_file(student_sub, kind, mime, "placeholder", bytes);
        s.storage_key = Some(gustav_storage_key(
            s.course_id,
            s.task_id,
            student_sub,
            mime,
        ));
        s
    }

    /// The storage key (set for file submissions).
    pub fn key(&self) -> &str {
        self.storage_key.as_deref().expect("a file submission")
    }

    /// GUSTAV's derived folder of this submission below the storage root, with the default
    /// bucket: `submissions/{course}/{task}/{student}/derived/{submission_id}`.
    pub fn derived_dir(&self, submission_id: Uuid) -> String {
        format!(
            "submissions/{}/{}/{}/derived/{submission_id}",
            self.course_id, self.task_id, self.student_sub
        )
    }
}

/// A submission row as the assertions need it.
#[derive(Debug, Clone)]
pub struct SubmissionState {
    /// `analysis_status`.
    pub status: String,
    /// `text_body`.
    pub text_body: Option<String>,
    /// `feedback_md`.
    pub feedback_md: Option<String>,
    /// `analysis_json`.
    pub analysis_json: Option<Value>,
    /// `error_code`.
    pub error_code: Option<String>,
    /// `vision_attempts`.
    pub vision_attempts: i32,
    /// `vision_last_error`.
    pub vision_last_error: Option<String>,
    /// `feedback_last_error`.
    pub feedback_last_error: Option<String>,
    /// `completed_at` is set.
    pub completed: bool,
}

/// Reads a submission (as superuser).
pub async fn submission(pool: &PgPool, id: Uuid) -> SubmissionState {
    let r = sqlx::query(
        "select analysis_status, text_body, feedback_md, analysis_json, error_code, vision_attempts, \
         vision_last_error, feedback_last_error, completed_at is not null as completed from learning_submissions where id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("submission row");
    SubmissionState {
        status: r.get("analysis_status"),
        text_body: r.get("text_body"),
        feedback_md: r.get("feedback_md"),
        analysis_json: r.get("analysis_json"),
        error_code: r.get("error_code"),
        vision_attempts: r.get("vision_attempts"),
        vision_last_error: r.get("vision_last_error"),
        feedback_last_error: r.get("feedback_last_error"),
        completed: r.get("completed"),
    }
}

/// A job row as the assertions need it; `None` when the job was deleted.
#[derive(Debug, Clone)]
pub struct JobState {
    /// `status`.
    pub status: String,
    /// `retry_count`.
    pub retry_count: i32,
    /// `lease_key` is set.
    pub leased: bool,
    /// `leased_until` is set.
    pub has_lease_expiry: bool,
    /// Seconds from now until `visible_at` (negative when past).
    pub visible_in_seconds: f64,
    /// `error_code`.
    pub error_code: Option<String>,
    /// `payload`.
    pub payload: Value,
}

/// Reads a job (as superuser).
pub async fn job(pool: &PgPool, id: Uuid) -> Option<JobState> {
    sqlx::query(
        "select status, retry_count, lease_key is not null as leased, leased_until is not null as has_expiry, \
         extract(epoch from visible_at - now())::float8 as visible_in, error_code, payload from learning_submission_jobs where id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .expect("job row")
    .map(|r| JobState {
        status: r.get("status"),
        retry_count: r.get("retry_count"),
        leased: r.get("leased"),
        has_lease_expiry: r.get("has_expiry"),
        visible_in_seconds: r.get("visible_in"),
        error_code: r.get("error_code"),
        payload: r.get("payload"),
    })
}

/// Count of jobs by status.
pub async fn job_count(pool: &PgPool, status: &str) -> i64 {
    sqlx::query_scalar("select count(*) from learning_submission_jobs where status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Count of submissions by status.
pub async fn submission_count(pool: &PgPool, status: &str) -> i64 {
    sqlx::query_scalar("select count(*) from learning_submissions where analysis_status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Makes every job visible now (skips a retry's backoff in tests).
pub async fn make_all_visible(pool: &PgPool) {
    sqlx::query("update learning_submission_jobs set visible_at = now() where status = 'queued'")
        .execute(pool)
        .await
        .expect("make visible");
}

/// Inserts `n` text submissions with their jobs in one statement (for load tests and
/// benchmarks); returns nothing, the caller counts by status.
pub async fn enqueue_bulk_text(pool: &PgPool, n: i64) {
    sqlx::query(
        r#"
        with s as (
            insert into learning_submissions (course_id, task_id, student_sub, kind, text_body, attempt_nr)
            select gen_random_uuid(), gen_random_uuid(), 'bulk-student-' || g, 'text', 'Aufsatz Nummer ' || g, 1
              from generate_series(1, $1) as g
            returning id, student_sub
        )
        insert into learning_submission_jobs (submission_id, payload, visible_at, created_at)
        select id, jsonb_build_object('submission_id', id, 'student_sub', student_sub, 'kind', 'text',
                                      'attempt_nr', 1, 'criteria', jsonb_build_array('Inhalt', 'Sprache')),
               -- distinct timestamps, as jobs enqueued one by one by the web app have
               clock_timestamp(), clock_timestamp()
          from s
        "#,
    )
    .bind(n)
    .execute(pool)
    .await
    .expect("bulk enqueue");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keys_have_the_web_apps_shape() {
        let key = gustav_storage_key(Uuid::nil(), Uuid::nil(), "Ab C", "image/jpeg");
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 5, "{key}");
        assert_eq!(parts[0], "submissions");
        assert_eq!(parts[3], "ab-c", "lower-cased, other characters as '-'");
        for (sub, segment) in [("-A  b.", "a-b"), ("x- y", "x--y"), ("@@", "student")] {
            let key = gustav_storage_key(Uuid::nil(), Uuid::nil(), sub, "image/png");
            assert_eq!(key.split('/').nth(3), Some(segment), "{sub:?}");
        }
        let (ms, rest) = parts[4].split_once('-').unwrap();
        assert!(ms.len() >= 13 && ms.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(rest.len(), 32 + ".jpg".len());
        assert!(
            gustav_storage_key(Uuid::nil(), Uuid::nil(), "s", "application/pdf").ends_with(".pdf")
        );
    }
}
