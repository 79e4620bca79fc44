//! Storage keys exactly as GUSTAV writes them, and the checks every key passes before the runner
//! reads it (pure: no I/O).
//!
//! GUSTAV's web app names an upload (`backend/storage/keys.py`, `make_submission_key`, called by
//! the upload-intent route in `backend/web/routes/learning.py`)
//! `submissions/{course_id}/{task_id}/{student}/{epoch_ms}-{uuid hex}{.png|.jpg|.pdf}`: the
//! literal `submissions` (whatever the bucket), the course and task ids from the URL, the
//! student segment made from the lower-cased `sub` (characters outside `[A-Za-z0-9._-]` in runs
//! replaced by one `-`, `-`, `_` and `.` stripped from both ends, `student` when nothing is
//! left), 13 digits of milliseconds and a dashless UUID. When a submission is created the key
//! must match `STORAGE_KEY_RE` (`backend/storage/learning_policy.py`): lower case, at most 256
//! characters, no `..` — but GUSTAV never checks that the key is the student's own, so a
//! crafted key could name anyone's object. PDF page images are written by
//! `backend/vision/persistence.py` as
//! `submissions/{course_id}/{task_id}/{student_sub}/derived/{submission_id}/page_{n:04}.png`
//! (here the `sub` as stored, not sanitised) and recorded in `internal_metadata.page_keys`.
//!
//! A [`SubmissionKey`] is a key that passed these checks for one submission; the storage reads
//! only such keys. Errors never carry the key.

use uuid::Uuid;

use crate::ai::{AdapterError, SubmissionOwner};
use crate::job::error_code::ErrorCode;

/// The first segment of every key GUSTAV writes (not the bucket: it is the same with any bucket).
pub const KEY_PREFIX: &str = "submissions";
/// The longest upload key GUSTAV accepts (`STORAGE_KEY_RE`: 1 + 255 characters).
pub const MAX_UPLOAD_KEY_BYTES: usize = 256;
/// The longest key of any kind (a page key holds the stored `student_sub`, up to 255 bytes).
pub const MAX_KEY_BYTES: usize = 1024;
/// The file extensions of GUSTAV's uploads (from the MIME type: PNG, JPEG, PDF).
const UPLOAD_EXTENSIONS: [&str; 3] = ["png", "jpg", "pdf"];

/// Why a key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Could leave the storage root or the bucket, or is not plain text: empty, too long, a
    /// leading `/`, an empty, `.` or `..` segment, `..` anywhere, or a character outside
    /// `[A-Za-z0-9._/-]` (`%`, `\`, NUL, control characters, spaces, non-ASCII).
    #[error("storage key could point outside the storage root or bucket")]
    Unsafe,
    /// Safe, but not the shape GUSTAV writes.
    #[error("storage key does not have the shape of GUSTAV's keys")]
    Shape,
    /// GUSTAV's shape, but another course's, task's, student's or submission's.
    #[error("storage key belongs to another course, task, student or submission")]
    Foreign,
}

impl KeyError {
    /// The permanent `input_corrupt` error for the submission's own file key.
    pub fn for_upload(self) -> AdapterError {
        let (reason, message) = match self {
            KeyError::Unsafe => (
                "path_escape",
                "storage key could point outside the storage root or bucket; nothing was read",
            ),
            KeyError::Shape => (
                "storage_key_malformed",
                "storage key does not have the shape of GUSTAV's upload keys; nothing was read",
            ),
            KeyError::Foreign => (
                "storage_key_foreign",
                "storage key names a file of another course, task or student; nothing was read",
            ),
        };
        AdapterError::permanent_with_code(ErrorCode::InputCorrupt, reason, message)
    }

    /// The permanent `input_corrupt` error for an `internal_metadata.page_keys` entry.
    pub fn for_page(self) -> AdapterError {
        AdapterError::permanent_with_code(
            ErrorCode::InputCorrupt,
            "foreign_page_key",
            "internal_metadata.page_keys names a file outside this submission's derived folder; nothing was read",
        )
    }
}

/// A storage key checked for one submission: its upload ([`SubmissionKey::upload`]) or one of
/// its PDF page images ([`SubmissionKey::page`]). `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SubmissionKey(String);

impl std::fmt::Debug for SubmissionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubmissionKey(..)")
    }
}

impl SubmissionKey {
    /// The submission's file key: GUSTAV's upload shape (at most
    /// [`MAX_UPLOAD_KEY_BYTES`], lower case), with the submission's own course, task and
    /// student segment.
    pub fn upload(key: &str, owner: &SubmissionOwner) -> Result<Self, KeyError> {
        check_safe(key, MAX_UPLOAD_KEY_BYTES)?;
        let segments: Vec<&str> = key.split('/').collect();
        let [prefix, course, task, student, file] = segments[..] else {
            return Err(KeyError::Shape);
        };
        let shaped = prefix == KEY_PREFIX
            && is_uuid(course)
            && is_uuid(task)
            && is_student_segment(student)
            && is_upload_name(file);
        if !shaped {
            return Err(KeyError::Shape);
        }
        let own_student = student_segment(&owner.student_sub);
        if course != owner.course_id
            || task != owner.task_id
            || own_student.as_deref() != Some(student)
        {
            return Err(KeyError::Foreign);
        }
        Ok(SubmissionKey(key.to_owned()))
    }

    /// A page image of the submission `submission_id`, whose checked upload key is `upload`:
    /// `page_NNNN.png` in `submissions/<course>/<task>/<student>/derived/<submission_id>/`,
    /// the course and task the upload's, the student the upload's segment or the stored
    /// `student_sub` (what GUSTAV's page writer uses; only when it is a plain segment).
    pub fn page(
        key: &str,
        upload: &SubmissionKey,
        owner: &SubmissionOwner,
        submission_id: Uuid,
    ) -> Result<Self, KeyError> {
        check_safe(key, MAX_KEY_BYTES)?;
        let segments: Vec<&str> = key.split('/').collect();
        let [prefix, course, task, student, derived, id, name] = segments[..] else {
            return Err(KeyError::Shape);
        };
        if prefix != KEY_PREFIX || derived != "derived" || !is_page_name(name) {
            return Err(KeyError::Shape);
        }
        // The upload key is checked: its first four segments are this submission's.
        let own: Vec<&str> = upload.0.split('/').take(4).collect();
        let student_ok = student == own[3]
            || (student == owner.student_sub && is_plain_segment(&owner.student_sub));
        if course != own[1] || task != own[2] || !student_ok || id != submission_id.to_string() {
            return Err(KeyError::Foreign);
        }
        Ok(SubmissionKey(key.to_owned()))
    }

    /// The key itself (never to be logged or put in a message).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Refuses anything that could leave the root or the bucket, or that a URL or file system
/// could read differently: see [`KeyError::Unsafe`].
fn check_safe(key: &str, max_bytes: usize) -> Result<(), KeyError> {
    let plain = !key.is_empty()
        && key.len() <= max_bytes
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && key.split('/').all(|s| !s.is_empty() && s != ".");
    plain.then_some(()).ok_or(KeyError::Unsafe)
}

/// A UUID as PostgreSQL prints it (lower-case hex, dashes at 8-4-4-4-12).
fn is_uuid(segment: &str) -> bool {
    segment.len() == 36
        && segment.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

/// What GUSTAV's sanitiser can produce from a lower-cased `sub`: `[a-z0-9._-]`, starting and
/// ending with a letter or digit.
fn is_student_segment(segment: &str) -> bool {
    let edge_ok = |c: Option<u8>| c.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    edge_ok(segment.bytes().next())
        && edge_ok(segment.bytes().last())
        && segment.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// `{epoch_ms}-{uuid hex}.{ext}`: 13 digits, 32 lower-case hex digits, `png`, `jpg` or `pdf`.
fn is_upload_name(name: &str) -> bool {
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    let Some((millis, hex)) = stem.split_once('-') else {
        return false;
    };
    millis.len() == 13
        && millis.bytes().all(|b| b.is_ascii_digit())
        && hex.len() == 32
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && UPLOAD_EXTENSIONS.contains(&ext)
}

/// `page_NNNN.png`: at least four digits (GUSTAV's `{n:04}`), at most six.
fn is_page_name(name: &str) -> bool {
    name.strip_prefix("page_")
        .and_then(|rest| rest.strip_suffix(".png"))
        .is_some_and(|n| (4..=6).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A single path segment of `[A-Za-z0-9._-]`, not `.` or `..`, at most 255 bytes.
pub(crate) fn is_plain_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 255
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The student segment GUSTAV's web app builds from `sub`: lower-cased, each run of
/// characters outside `[A-Za-z0-9._-]` replaced by one `-`, `-`, `_` and `.` stripped from
/// both ends, `student` when nothing is left. `None` for a `sub` with non-ASCII characters:
/// GUSTAV folds those by Unicode NFKD first, which is not reproduced here, so such a key is
/// refused rather than guessed.
pub fn student_segment(sub: &str) -> Option<String> {
    if !sub.is_ascii() {
        return None;
    }
    let mut out = String::with_capacity(sub.len());
    let mut in_run = false;
    for c in sub.to_ascii_lowercase().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let trimmed = out.trim_matches(['-', '_', '.']);
    Some(
        if trimmed.is_empty() {
            "student"
        } else {
            trimmed
        }
        .to_owned(),
    )
}

#[cfg(test)]
mod tests;
