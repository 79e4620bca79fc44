//! The feedback step: the feedback model's answer for the obtained text, turned into what the
//! job finishes with (the stored result, or an error that keeps a fresh transcription for the
//! retry).

use std::time::Instant;

use super::adapter_call::guarded;
use super::vision::ObtainedText;
use super::{Finish, JobContext};
use crate::ai::FeedbackRequest;
use crate::db::queue::SubmissionRow;
use crate::job::error_code::Phase;
use crate::job::message::{strip_nul, strip_nul_json};
use crate::job::payload::JobPayload;

/// Asks the feedback adapter, within the phase's time limit, and decides how the job ends.
pub(super) async fn give_feedback(
    ctx: &JobContext,
    payload: &JobPayload,
    row: &SubmissionRow,
    text: ObtainedText,
    final_attempt: bool,
) -> Finish {
    let request = FeedbackRequest {
        submission_id: row.id,
        text_md: text.text_md.clone(),
        criteria: payload.criteria.clone(),
        instruction_md: payload.instruction_md.clone(),
        hints_md: payload.hints_md.clone(),
        final_attempt,
    };
    let feedback = ctx.adapters.feedback.clone();
    let _slot = ctx.admission.admit(Phase::Feedback, &ctx.metrics).await;
    let started = Instant::now();
    let result = guarded(Phase::Feedback, ctx.timeout_feedback, async move {
        feedback.feedback(&request).await
    })
    .await;
    ctx.metrics
        .phase_duration
        .with_label_values(&["feedback"])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(out) => {
            let mut analysis = out.analysis_json;
            strip_nul_json(&mut analysis);
            Finish::Complete {
                text: strip_nul(&text.text_md),
                feedback_md: strip_nul(&out.feedback_md),
                analysis,
            }
        }
        Err(error) => Finish::Error {
            error,
            cache: text.into_cache(),
        },
    }
}
