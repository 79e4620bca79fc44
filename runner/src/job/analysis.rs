//! The `criteria.v2` analysis the runner writes to `analysis_json` (contract §5).

use serde::{Deserialize, Serialize};

/// The schema tag of the analysis the runner writes.
pub const SCHEMA_V2: &str = "criteria.v2";
/// The default `max_score` of a criterion.
pub const DEFAULT_MAX_SCORE: u32 = 10;
/// The highest overall score.
pub const MAX_OVERALL_SCORE: u32 = 5;

/// One criterion's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriterionResult {
    /// The criterion as the teacher wrote it.
    pub criterion: String,
    /// The maximum score, at least 1.
    pub max_score: u32,
    /// The score, `0..=max_score`.
    pub score: u32,
    /// Why, in Markdown.
    pub explanation_md: String,
}

/// A `criteria.v2` analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisV2 {
    /// Always [`SCHEMA_V2`].
    pub schema: String,
    /// The overall score, `0..=5`.
    pub score: u32,
    /// One result per requested criterion, in the requested order.
    pub criteria_results: Vec<CriterionResult>,
}

impl AnalysisV2 {
    /// Builds an analysis, deriving the overall score from the results (mean of
    /// `score/max_score`, times 5, rounded, clamped to `0..=5`).
    pub fn from_results(criteria_results: Vec<CriterionResult>) -> Self {
        let score = overall_score(&criteria_results);
        AnalysisV2 {
            schema: SCHEMA_V2.to_owned(),
            score,
            criteria_results,
        }
    }

    /// Checks the invariants of the contract's shape; returns the first violation.
    pub fn validate(&self, requested: &[String]) -> Result<(), String> {
        if self.schema != SCHEMA_V2 {
            return Err(format!("schema is {:?}", self.schema));
        }
        if self.score > MAX_OVERALL_SCORE {
            return Err(format!("overall score {} > 5", self.score));
        }
        let names: Vec<&str> = self
            .criteria_results
            .iter()
            .map(|r| r.criterion.as_str())
            .collect();
        let wanted: Vec<&str> = requested.iter().map(String::as_str).collect();
        if names != wanted {
            return Err("criteria do not match the requested list and order".to_owned());
        }
        for r in &self.criteria_results {
            if r.max_score < 1 || r.score > r.max_score {
                return Err(format!(
                    "criterion score {}/{} out of range",
                    r.score, r.max_score
                ));
            }
        }
        Ok(())
    }
}

/// The mean of `score/max_score` over `results`, times 5, rounded, clamped to `0..=5`;
/// 0 for an empty list.
pub fn overall_score(results: &[CriterionResult]) -> u32 {
    if results.is_empty() {
        return 0;
    }
    let sum: f64 = results
        .iter()
        .map(|r| f64::from(r.score) / f64::from(r.max_score.max(1)))
        .sum();
    let mean = sum / results.len() as f64;
    (mean * f64::from(MAX_OVERALL_SCORE))
        .round()
        .clamp(0.0, f64::from(MAX_OVERALL_SCORE)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, score: u32, max: u32) -> CriterionResult {
        CriterionResult {
            criterion: name.into(),
            max_score: max,
            score,
            explanation_md: "ok".into(),
        }
    }

    #[test]
    fn overall_score_is_the_rounded_mean_times_five() {
        assert_eq!(overall_score(&[result("a", 8, 10), result("b", 8, 10)]), 4);
        assert_eq!(overall_score(&[result("a", 10, 10), result("b", 0, 10)]), 3); // 2.5 rounds up
        assert_eq!(overall_score(&[]), 0);
    }

    #[test]
    fn serialises_exactly_the_contract_fields() {
        let a = AnalysisV2::from_results(vec![result("Struktur", 8, 10)]);
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"schema": "criteria.v2", "score": 4, "criteria_results": [
                {"criterion": "Struktur", "max_score": 10, "score": 8, "explanation_md": "ok"}]})
        );
    }

    #[test]
    fn validate_catches_order_and_range_errors() {
        let a = AnalysisV2::from_results(vec![result("a", 8, 10), result("b", 8, 10)]);
        assert!(a.validate(&["a".into(), "b".into()]).is_ok());
        assert!(a.validate(&["b".into(), "a".into()]).is_err());
        let bad = AnalysisV2::from_results(vec![result("a", 11, 10)]);
        assert!(bad.validate(&["a".into()]).is_err());
    }
}
