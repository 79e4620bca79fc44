//! The job payload written by the web app (contract §4), parsed into a typed value.
//! Parsing never panics: every malformation is a [`PayloadError`] that the runner turns into
//! a visible `input_corrupt` failure.
//!
//! The criteria are bounded: at most [`MAX_CRITERIA`], each at most [`MAX_CRITERION_CHARS`]
//! characters. GUSTAV's web app allows 10 criteria (API `maxItems: 10`, the `unit_tasks`
//! CHECK `array_length(criteria, 1) <= 10`) and no length limit; the caps here are far above
//! anything it writes, so only a payload that breaks the contract meets them. Every criterion
//! goes into the prompt, the output schema and `analysis_json` verbatim (it cannot be clipped
//! without changing its name), so such a payload fails for good — `input_corrupt` like any
//! other payload the web app would never write — instead of growing the prompt without bound.

use serde_json::{Map, Value};
use uuid::Uuid;

/// Keys the runner adds to cache the vision result across retries.
pub const CACHED_TEXT_KEY: &str = "cached_text_md";
/// Companion of [`CACHED_TEXT_KEY`]: metadata the vision step returned.
pub const CACHED_METADATA_KEY: &str = "cached_raw_metadata";

/// Most criteria a payload may carry (GUSTAV's web app allows 10).
pub const MAX_CRITERIA: usize = 50;
/// Longest criterion, in characters (as long as the instruction and hints sent to a model).
pub const MAX_CRITERION_CHARS: usize = 2_000;

/// Key the lease statement increments when it takes over an expired lease: a job with one
/// or more is a suspect and runs alone in its next runner.
pub const TAKEOVERS_KEY: &str = "lease_takeovers";
/// Key the lease statement increments when it takes over a lease whose holder was running
/// the job alone ([`SOLO_LEASE_KEY`] equal to the expired lease): only then is the job itself
/// known to have been running when its holder died.
pub const SOLO_TAKEOVERS_KEY: &str = "lease_solo_takeovers";
/// Key a runner sets to its lease key when it starts a suspect job alone.
pub const SOLO_LEASE_KEY: &str = "lease_solo";

/// What the runner needs from a job payload.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPayload {
    /// The submission this job is for (must equal the job row's `submission_id`).
    pub submission_id: Uuid,
    /// The student's identity, used only for the RLS GUC. PII: never log it.
    pub student_sub: String,
    /// The teacher's criteria, trimmed, empty ones dropped.
    pub criteria: Vec<String>,
    /// The task's instruction (context for feedback only).
    pub instruction_md: Option<String>,
    /// The teacher's hints (context for feedback only; never quoted).
    pub hints_md: Option<String>,
    /// A vision result cached by an earlier attempt.
    pub cached_text_md: Option<String>,
    /// How often this job's lease expired in a runner's hands (crash, OOM, lost database)
    /// and was taken over; counted by the lease statement.
    pub lease_takeovers: u32,
    /// How many of those takeovers happened while the job ran alone in its runner.
    pub solo_takeovers: u32,
}

impl JobPayload {
    /// Whether an earlier holder of this job died with it: it runs alone, so that a crash
    /// during its run can be blamed on it and on nothing else.
    pub fn is_suspect(&self) -> bool {
        self.lease_takeovers > 0
    }
}

/// Why a payload could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload is valid JSON but not an object.
    #[error("job payload is not a JSON object (found {0})")]
    NotAnObject(&'static str),
    /// `student_sub` is missing, not a string, or empty.
    #[error(
        "job payload has no student_sub; the submission cannot be read under row-level security"
    )]
    MissingStudentSub,
    /// `submission_id` is present but not a UUID.
    #[error("job payload submission_id is not a UUID")]
    BadSubmissionId,
    /// `submission_id` names another submission than the job row.
    #[error("job payload submission_id does not match the job's submission")]
    SubmissionMismatch,
    /// `criteria` is present but not an array of strings.
    #[error("job payload criteria is not a list of strings")]
    BadCriteria,
    /// More than [`MAX_CRITERIA`] (non-empty) criteria.
    #[error("job payload has {0} criteria; at most {MAX_CRITERIA} are accepted (GUSTAV's web app allows 10)")]
    TooManyCriteria(usize),
    /// A criterion longer than [`MAX_CRITERION_CHARS`] characters.
    #[error("criterion {number} of the job payload has {chars} characters; at most {MAX_CRITERION_CHARS} are accepted")]
    CriterionTooLong {
        /// Its position, from 1, among the non-empty criteria.
        number: usize,
        /// Its length in characters.
        chars: usize,
    },
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn optional_text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The criteria, trimmed, empty ones dropped, within [`MAX_CRITERIA`] and
/// [`MAX_CRITERION_CHARS`]; nothing is copied before every item passed.
fn parse_criteria(items: &[Value]) -> Result<Vec<String>, PayloadError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut count = 0;
    for item in items {
        let text = item.as_str().ok_or(PayloadError::BadCriteria)?.trim();
        if text.is_empty() {
            continue;
        }
        count += 1;
        if text.chars().nth(MAX_CRITERION_CHARS).is_some() {
            return Err(PayloadError::CriterionTooLong {
                number: count,
                chars: text.chars().count(),
            });
        }
        if kept.len() < MAX_CRITERIA {
            kept.push(text);
        }
    }
    if count > MAX_CRITERIA {
        return Err(PayloadError::TooManyCriteria(count));
    }
    Ok(kept.into_iter().map(str::to_owned).collect())
}

/// Parses `payload` for the job whose row says `job_submission_id`.
///
/// A missing `submission_id` in the payload falls back to the row's value (the row is
/// authoritative); a present but different one is corrupt.
pub fn parse_payload(payload: &Value, job_submission_id: Uuid) -> Result<JobPayload, PayloadError> {
    let map = payload
        .as_object()
        .ok_or_else(|| PayloadError::NotAnObject(json_type_name(payload)))?;

    let submission_id = match map.get("submission_id") {
        None | Some(Value::Null) => job_submission_id,
        Some(Value::String(s)) => Uuid::parse_str(s).map_err(|_| PayloadError::BadSubmissionId)?,
        Some(_) => return Err(PayloadError::BadSubmissionId),
    };
    if submission_id != job_submission_id {
        return Err(PayloadError::SubmissionMismatch);
    }

    let student_sub = map
        .get("student_sub")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or(PayloadError::MissingStudentSub)?
        .to_owned();

    let criteria = match map.get("criteria") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => parse_criteria(items)?,
        Some(_) => return Err(PayloadError::BadCriteria),
    };

    Ok(JobPayload {
        submission_id,
        student_sub,
        criteria,
        instruction_md: optional_text(map, "instruction_md"),
        hints_md: optional_text(map, "hints_md"),
        cached_text_md: optional_text(map, CACHED_TEXT_KEY),
        lease_takeovers: count(map, TAKEOVERS_KEY),
        solo_takeovers: count(map, SOLO_TAKEOVERS_KEY),
    })
}

/// Whether the raw payload says an earlier holder of the job died with it (a suspect, see
/// [`JobPayload::is_suspect`]); for the worker, which schedules before the payload is parsed.
pub fn was_taken_over(payload: &Value) -> bool {
    payload
        .as_object()
        .is_some_and(|map| count(map, TAKEOVERS_KEY) > 0)
}

/// A counter the lease statement keeps in the payload; 0 when missing or not a number.
fn count(map: &Map<String, Value>, key: &str) -> u32 {
    map.get(key)
        .and_then(Value::as_u64)
        .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> Uuid {
        Uuid::parse_str("0b4c7a8e-4a4e-4c55-9a0e-3f0c9d7d1a11").unwrap()
    }

    #[test]
    fn parses_a_full_payload() {
        let p = json!({
            "submission_id": id().to_string(), "course_id": "c", "task_id": "t",
            "student_sub": "stud-1", "kind": "text", "attempt_nr": 1,
            "criteria": [" Struktur ", "", "Inhalt"], "instruction_md": "Schreibe", "hints_md": null
        });
        let parsed = parse_payload(&p, id()).unwrap();
        assert_eq!(parsed.student_sub, "stud-1");
        assert_eq!(parsed.criteria, ["Struktur", "Inhalt"]);
        assert_eq!(parsed.instruction_md.as_deref(), Some("Schreibe"));
        assert_eq!(parsed.hints_md, None);
        assert_eq!(parsed.cached_text_md, None);
    }

    #[test]
    fn rejects_non_objects() {
        assert_eq!(
            parse_payload(&json!([1]), id()),
            Err(PayloadError::NotAnObject("an array"))
        );
        assert_eq!(
            parse_payload(&json!("x"), id()),
            Err(PayloadError::NotAnObject("a string"))
        );
    }

    #[test]
    fn requires_a_student_sub() {
        let p = json!({"submission_id": id().to_string(), "criteria": []});
        assert_eq!(
            parse_payload(&p, id()),
            Err(PayloadError::MissingStudentSub)
        );
        let blank = json!({"student_sub": "  "});
        assert_eq!(
            parse_payload(&blank, id()),
            Err(PayloadError::MissingStudentSub)
        );
    }

    #[test]
    fn submission_id_must_match_the_row() {
        let other = Uuid::new_v4();
        let p = json!({"submission_id": other.to_string(), "student_sub": "s"});
        assert_eq!(
            parse_payload(&p, id()),
            Err(PayloadError::SubmissionMismatch)
        );
        let bad = json!({"submission_id": "nope", "student_sub": "s"});
        assert_eq!(
            parse_payload(&bad, id()),
            Err(PayloadError::BadSubmissionId)
        );
        let missing = json!({"student_sub": "s"});
        assert_eq!(parse_payload(&missing, id()).unwrap().submission_id, id());
    }

    #[test]
    fn criteria_must_be_strings() {
        let p = json!({"student_sub": "s", "criteria": ["a", 3]});
        assert_eq!(parse_payload(&p, id()), Err(PayloadError::BadCriteria));
        let p = json!({"student_sub": "s", "criteria": "a"});
        assert_eq!(parse_payload(&p, id()), Err(PayloadError::BadCriteria));
    }

    #[test]
    fn criteria_are_bounded_in_number_and_length() {
        let at_cap: Vec<String> = (0..MAX_CRITERIA).map(|i| format!("K{i}")).collect();
        let p = json!({"student_sub": "s", "criteria": at_cap});
        assert_eq!(
            parse_payload(&p, id()).unwrap().criteria.len(),
            MAX_CRITERIA
        );
        let many: Vec<String> = (0..200).map(|i| format!("K{i}")).collect();
        let p = json!({"student_sub": "s", "criteria": many});
        let e = parse_payload(&p, id()).unwrap_err();
        assert_eq!(e, PayloadError::TooManyCriteria(200));
        assert!(e.to_string().contains("200 criteria; at most 50"), "{e}");
        let with_blanks: Vec<&str> = (0..MAX_CRITERIA).map(|_| "K").chain([" "; 10]).collect();
        let p = json!({"student_sub": "s", "criteria": with_blanks});
        assert!(parse_payload(&p, id()).is_ok(), "blank items do not count");

        let long = "ä".repeat(MAX_CRITERION_CHARS);
        let p = json!({"student_sub": "s", "criteria": ["A", format!(" {long} ")]});
        assert_eq!(parse_payload(&p, id()).unwrap().criteria[1], long);
        let p = json!({"student_sub": "s", "criteria": ["", "A", format!("{long}x")]});
        let e = parse_payload(&p, id()).unwrap_err();
        assert_eq!(
            e,
            PayloadError::CriterionTooLong {
                number: 2,
                chars: MAX_CRITERION_CHARS + 1
            }
        );
        assert!(!e.to_string().contains('ä'), "the criterion is not quoted");
    }

    #[test]
    fn reads_the_cached_vision_text() {
        let p = json!({"student_sub": "s", "cached_text_md": "# Text"});
        assert_eq!(
            parse_payload(&p, id()).unwrap().cached_text_md.as_deref(),
            Some("# Text")
        );
    }
}
