//! The deterministic stub backend (`AI_BACKEND=stub`): no model, fixed outputs, optional
//! simulated latency. It is what demos, tests and benchmarks run; it is refused in production.
//!
//! Outputs follow the original worker's stub: a placeholder transcript for images and files,
//! and a `criteria.v2` analysis with overall score 4 and 8/10 for every criterion.
//!
//! For demos and process-level tests the stub can also fail on request, without touching any
//! other code path:
//! - vision: the submission's `internal_metadata.stub_fault` is `transient_once`, `transient`,
//!   or `permanent`;
//! - feedback: the text contains `[[stub:feedback-transient-once]]`, `[[stub:feedback-transient]]`
//!   or `[[stub:feedback-permanent]]`.
//!
//! "once" is remembered per process and submission.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    AdapterError, FeedbackAdapter, FeedbackOutput, FeedbackRequest, VisionAdapter, VisionOutput,
    VisionRequest,
};
use crate::job::analysis::{AnalysisV2, CriterionResult, DEFAULT_MAX_SCORE};

/// The score the stub gives every criterion, out of [`DEFAULT_MAX_SCORE`].
pub const STUB_CRITERION_SCORE: u32 = 8;

/// The stub backend; one value serves as both adapters.
#[derive(Debug, Default)]
pub struct StubBackend {
    delay: Duration,
    failed_once: Mutex<HashSet<(Uuid, &'static str)>>,
}

impl StubBackend {
    /// A stub that waits `delay` in every call (simulated model latency).
    pub fn new(delay: Duration) -> Self {
        StubBackend {
            delay,
            failed_once: Mutex::default(),
        }
    }

    async fn simulate_latency(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }

    /// True the first time it is asked for this submission and step.
    fn first_time(&self, submission_id: Uuid, step: &'static str) -> bool {
        let mut seen = self.failed_once.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert((submission_id, step))
    }

    fn requested_fault(
        &self,
        submission_id: Uuid,
        fault: Option<&str>,
        step: &'static str,
    ) -> Result<(), AdapterError> {
        match fault {
            Some("transient_once") if self.first_time(submission_id, step) => {
                Err(AdapterError::transient(
                    "stub_fault",
                    format!("stub {step}: simulated transient failure (once)"),
                ))
            }
            Some("transient") => Err(AdapterError::transient(
                "stub_fault",
                format!("stub {step}: simulated transient failure"),
            )),
            Some("permanent") => Err(AdapterError::permanent(
                "stub_fault",
                format!("stub {step}: simulated permanent failure"),
            )),
            _ => Ok(()),
        }
    }
}

/// The placeholder transcript the stub returns for images and files.
pub fn stub_transcript(submission_id: Uuid) -> String {
    format!(
        "# Transkript (Stub)\n\nPlatzhaltertext der Stub-Texterkennung für Einreichung {submission_id}. \
         Es wurde kein Modell aufgerufen."
    )
}

fn feedback_fault(text: &str) -> Option<&'static str> {
    if text.contains("[[stub:feedback-transient-once]]") {
        Some("transient_once")
    } else if text.contains("[[stub:feedback-transient]]") {
        Some("transient")
    } else if text.contains("[[stub:feedback-permanent]]") {
        Some("permanent")
    } else {
        None
    }
}

#[async_trait]
impl VisionAdapter for StubBackend {
    async fn extract(&self, request: &VisionRequest) -> Result<VisionOutput, AdapterError> {
        self.simulate_latency().await;
        let fault = request
            .internal_metadata
            .get("stub_fault")
            .and_then(Value::as_str);
        self.requested_fault(request.submission_id, fault, "vision")?;
        Ok(VisionOutput {
            text_md: stub_transcript(request.submission_id),
            raw_metadata: json!({"backend": "stub", "model": "stub"}),
        })
    }
}

#[async_trait]
impl FeedbackAdapter for StubBackend {
    async fn feedback(&self, request: &FeedbackRequest) -> Result<FeedbackOutput, AdapterError> {
        self.simulate_latency().await;
        self.requested_fault(
            request.submission_id,
            feedback_fault(&request.text_md),
            "feedback",
        )?;
        let analysis_json = if request.criteria.is_empty() {
            json!({})
        } else {
            let results = request
                .criteria
                .iter()
                .map(|criterion| CriterionResult {
                    criterion: criterion.clone(),
                    max_score: DEFAULT_MAX_SCORE,
                    score: STUB_CRITERION_SCORE,
                    explanation_md: "Stub-Bewertung: keine echte Analyse.".to_owned(),
                })
                .collect();
            serde_json::to_value(AnalysisV2::from_results(results)).map_err(|e| {
                AdapterError::permanent(
                    "serialize",
                    format!("stub analysis could not be serialised: {e}"),
                )
            })?
        };
        let feedback_md = format!(
            "**Rückmeldung (Stub)**\n\n- Stärken: Die Abgabe wurde vollständig verarbeitet.\n\
             - Nächste Schritte: Dies ist eine Platzhalter-Rückmeldung ohne Modell ({} Kriterien).",
            request.criteria.len()
        );
        Ok(FeedbackOutput {
            feedback_md,
            analysis_json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::{StoredFile, SubmissionKind, SubmissionOwner};

    fn feedback_request(text: &str, criteria: &[&str]) -> FeedbackRequest {
        FeedbackRequest {
            submission_id: Uuid::new_v4(),
            text_md: text.into(),
            criteria: criteria.iter().map(|c| c.to_string()).collect(),
            instruction_md: None,
            hints_md: None,
            final_attempt: true,
        }
    }

    fn vision_request(metadata: Value) -> VisionRequest {
        VisionRequest {
            submission_id: Uuid::new_v4(),
            kind: SubmissionKind::Image,
            file: StoredFile {
                storage_key: "k".into(),
                mime_type: Some("image/png".into()),
                size_bytes: Some(1),
                sha256: None,
            },
            internal_metadata: metadata,
            owner: SubmissionOwner::default(),
        }
    }

    #[tokio::test]
    async fn feedback_scores_every_criterion_8_of_10_and_4_overall() {
        let out = StubBackend::default()
            .feedback(&feedback_request("Text", &["A", "B"]))
            .await
            .unwrap();
        let analysis: AnalysisV2 = serde_json::from_value(out.analysis_json).unwrap();
        assert_eq!(analysis.score, 4);
        assert!(analysis
            .criteria_results
            .iter()
            .all(|r| r.score == 8 && r.max_score == 10));
        analysis.validate(&["A".into(), "B".into()]).unwrap();
        assert!(!out.feedback_md.is_empty());
    }

    #[tokio::test]
    async fn no_criteria_gives_an_empty_analysis() {
        let out = StubBackend::default()
            .feedback(&feedback_request("Text", &[]))
            .await
            .unwrap();
        assert_eq!(out.analysis_json, json!({}));
    }

    #[tokio::test]
    async fn vision_returns_the_placeholder_transcript() {
        let req = vision_request(json!({}));
        let out = StubBackend::default().extract(&req).await.unwrap();
        assert_eq!(out.text_md, stub_transcript(req.submission_id));
    }

    #[tokio::test]
    async fn transient_once_fails_exactly_once_per_submission() {
        let stub = StubBackend::default();
        let req = vision_request(json!({"stub_fault": "transient_once"}));
        assert!(matches!(
            stub.extract(&req).await,
            Err(AdapterError::Transient { .. })
        ));
        assert!(stub.extract(&req).await.is_ok());
    }

    #[tokio::test]
    async fn feedback_markers_select_the_fault() {
        let stub = StubBackend::default();
        let permanent = stub
            .feedback(&feedback_request("x [[stub:feedback-permanent]]", &[]))
            .await;
        assert!(matches!(permanent, Err(AdapterError::Permanent { .. })));
        let transient = stub
            .feedback(&feedback_request("[[stub:feedback-transient]]", &[]))
            .await;
        assert!(matches!(transient, Err(AdapterError::Transient { .. })));
    }
}
