//! The vision step: the submission's text, from the text submission itself, from the text a
//! previous attempt transcribed (cached in the payload), or from the vision model.

use std::time::Instant;

use serde_json::Value;

use super::adapter_call::guarded;
use super::JobContext;
use crate::ai::{AdapterError, StoredFile, SubmissionKind, SubmissionOwner, VisionRequest};
use crate::db::queue::{SubmissionRow, VisionCache};
use crate::job::error_code::{ErrorCode, Phase};
use crate::job::message::{strip_nul, strip_nul_json};
use crate::job::outcome::JobError;
use crate::job::payload::JobPayload;

/// The text the feedback step works on.
pub(super) struct ObtainedText {
    pub(super) text_md: String,
    raw_metadata: Value,
    /// True when vision ran in this attempt (worth caching for a feedback retry).
    fresh_vision: bool,
}

impl ObtainedText {
    /// Text that did not come from a vision call in this attempt.
    fn known(text_md: String) -> Self {
        ObtainedText {
            text_md,
            raw_metadata: Value::Null,
            fresh_vision: false,
        }
    }

    /// What a retry may reuse: the transcription, when vision ran in this attempt.
    pub(super) fn into_cache(self) -> Option<VisionCache> {
        self.fresh_vision.then(|| {
            let mut raw_metadata = self.raw_metadata;
            strip_nul_json(&mut raw_metadata);
            VisionCache {
                text_md: strip_nul(&self.text_md),
                raw_metadata,
            }
        })
    }
}

/// The submission's text: its body for a text submission, the cached transcription, or a
/// fresh one from the vision model.
pub(super) async fn obtain_text(
    ctx: &JobContext,
    payload: &JobPayload,
    row: &SubmissionRow,
) -> Result<ObtainedText, JobError> {
    let kind = SubmissionKind::parse(&row.kind).ok_or_else(|| {
        JobError::input(
            ErrorCode::InputUnsupported,
            "unknown_kind",
            format!("submission kind '{}' is not supported", row.kind),
        )
    })?;
    if kind == SubmissionKind::Text {
        let text = row.text_body.clone().ok_or_else(|| {
            JobError::input(
                ErrorCode::InputCorrupt,
                "missing_text",
                "text submission has no text_body",
            )
        })?;
        return Ok(ObtainedText::known(text));
    }
    if let Some(cached) = &payload.cached_text_md {
        tracing::debug!(event = "learning.vision.cache_hit");
        return Ok(ObtainedText::known(cached.clone()));
    }
    transcribe(ctx, vision_request(row, kind)?).await
}

/// The vision request for a file submission; a file without a storage key is corrupt input.
fn vision_request(row: &SubmissionRow, kind: SubmissionKind) -> Result<VisionRequest, JobError> {
    let storage_key = row
        .storage_key
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            JobError::input(
                ErrorCode::InputCorrupt,
                "missing_storage_key",
                "file submission has no storage_key",
            )
        })?;
    Ok(VisionRequest {
        submission_id: row.id,
        kind,
        file: StoredFile {
            storage_key,
            mime_type: row.mime_type.clone(),
            size_bytes: row.size_bytes,
            sha256: row.sha256.clone(),
        },
        internal_metadata: row.internal_metadata.clone(),
        owner: SubmissionOwner {
            course_id: row.course_id.clone(),
            task_id: row.task_id.clone(),
            student_sub: row.student_sub.clone(),
        },
    })
}

/// Calls the vision adapter within the phase's time limit; an empty transcript is a
/// transient error.
async fn transcribe(ctx: &JobContext, request: VisionRequest) -> Result<ObtainedText, JobError> {
    let vision = ctx.adapters.vision.clone();
    let _slot = ctx.admission.admit(Phase::Vision, &ctx.metrics).await;
    let started = Instant::now();
    let result = guarded(Phase::Vision, ctx.timeout_vision, async move {
        vision.extract(&request).await
    })
    .await;
    ctx.metrics
        .phase_duration
        .with_label_values(&["vision"])
        .observe(started.elapsed().as_secs_f64());
    let out = result?;
    if out.text_md.trim().is_empty() {
        return Err(JobError::from_adapter(
            Phase::Vision,
            AdapterError::transient("empty_answer", "vision returned no text"),
        ));
    }
    Ok(ObtainedText {
        text_md: out.text_md,
        raw_metadata: out.raw_metadata,
        fresh_vision: true,
    })
}
