//! Normalising what a model returns into a valid `criteria.v2` analysis (contract §5):
//! strip a code fence, find the JSON object, accept the field-name variants, truncate and
//! clamp scores, fill missing criteria in the requested order, drop extras, derive the overall
//! score. Pure: the same input always gives the same output.

use serde_json::{Map, Value};

use crate::job::analysis::{
    overall_score, AnalysisV2, CriterionResult, DEFAULT_MAX_SCORE, MAX_OVERALL_SCORE,
};

/// The explanation of a criterion the model did not assess.
pub const NO_EVIDENCE: &str = "Keine Aussage des Modells zu diesem Kriterium (no evidence found).";
/// The explanation used when nothing of the model's answer was usable.
pub const FALLBACK_EXPLANATION: &str =
    "Automatische Analyse nicht auswertbar; bitte durch die Lehrkraft prüfen.";

/// How the analysis was obtained, for logs and the `parse_status` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseStatus {
    /// Valid JSON as requested by a schema-constrained call.
    ParsedStructured,
    /// JSON found after tolerant cleanup (fences, prose around it, variants).
    Parsed,
    /// Nothing usable: the deterministic fallback.
    Fallback,
}

impl ParseStatus {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseStatus::ParsedStructured => "parsed_structured",
            ParseStatus::Parsed => "parsed",
            ParseStatus::Fallback => "fallback",
        }
    }
}

/// Removes one Markdown code fence (```json … ``` or ``` … ```) around `text`, if present.
pub fn strip_code_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let body = match rest.find('\n') {
        Some(nl) if !rest[..nl].trim().contains(char::is_whitespace) => &rest[nl + 1..],
        _ => rest,
    };
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

/// The first balanced JSON object in `text` (strings and escapes respected).
pub fn find_json_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Parses a model answer into a JSON object: directly, after stripping a fence, or by
/// extracting the first object. Returns the object and whether cleanup was needed.
pub fn parse_model_json(text: &str) -> Option<(Map<String, Value>, bool)> {
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text.trim()) {
        return Some((m, false));
    }
    let unfenced = strip_code_fence(text);
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(unfenced) {
        return Some((m, true));
    }
    let candidate = find_json_object(unfenced)?;
    match serde_json::from_str::<Value>(candidate) {
        Ok(Value::Object(m)) => Some((m, true)),
        _ => None,
    }
}

/// A number from a JSON number or numeric string, truncated toward zero.
fn truncated_number(value: &Value) -> Option<i64> {
    let f = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().replace(',', ".").parse::<f64>().ok()?,
        _ => return None,
    };
    f.is_finite().then(|| f.trunc() as i64)
}

fn text_field<'a>(item: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| item.get(*k).and_then(Value::as_str))
}

fn key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn normalise_item(criterion: &str, item: &Map<String, Value>) -> CriterionResult {
    let max_score = item
        .get("max_score")
        .or_else(|| item.get("max"))
        .and_then(truncated_number)
        .filter(|m| *m >= 1)
        .map(|m| m.min(i64::from(u32::MAX)) as u32)
        .unwrap_or(DEFAULT_MAX_SCORE);
    let score = item
        .get("score")
        .and_then(truncated_number)
        .unwrap_or(0)
        .clamp(0, i64::from(max_score)) as u32;
    let explanation_md = text_field(item, &["explanation_md", "explanation"])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(NO_EVIDENCE)
        .to_owned();
    CriterionResult {
        criterion: criterion.to_owned(),
        max_score,
        score,
        explanation_md,
    }
}

fn missing(criterion: &str, explanation: &str) -> CriterionResult {
    CriterionResult {
        criterion: criterion.to_owned(),
        max_score: DEFAULT_MAX_SCORE,
        score: 0,
        explanation_md: explanation.to_owned(),
    }
}

/// Builds the analysis for `requested` criteria from a parsed model object.
pub fn normalise_analysis(object: &Map<String, Value>, requested: &[String]) -> AnalysisV2 {
    let items: Vec<&Map<String, Value>> = object
        .get("criteria_results")
        .or_else(|| object.get("criteria"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();

    let mut used = vec![false; items.len()];
    let results: Vec<CriterionResult> = requested
        .iter()
        .enumerate()
        .map(|(position, criterion)| {
            let wanted = key(criterion);
            let by_name = items.iter().enumerate().position(|(i, item)| {
                !used[i]
                    && text_field(item, &["criterion", "name"]).is_some_and(|n| key(n) == wanted)
            });
            // An unnamed item at the same position is taken as this criterion.
            let by_position = || {
                items
                    .get(position)
                    .filter(|item| {
                        !used[position] && text_field(item, &["criterion", "name"]).is_none()
                    })
                    .map(|_| position)
            };
            match by_name.or_else(by_position) {
                Some(i) => {
                    used[i] = true;
                    normalise_item(criterion, items[i])
                }
                None => missing(criterion, NO_EVIDENCE),
            }
        })
        .collect();

    let score = object
        .get("score")
        .and_then(truncated_number)
        .map(|s| s.clamp(0, i64::from(MAX_OVERALL_SCORE)) as u32)
        .unwrap_or_else(|| overall_score(&results));
    AnalysisV2 {
        schema: crate::job::analysis::SCHEMA_V2.to_owned(),
        score,
        criteria_results: results,
    }
}

/// The deterministic analysis when the model gave nothing usable.
pub fn fallback_analysis(requested: &[String]) -> AnalysisV2 {
    AnalysisV2::from_results(
        requested
            .iter()
            .map(|c| missing(c, FALLBACK_EXPLANATION))
            .collect(),
    )
}

/// Parses and normalises a model answer; `structured` says whether the call was
/// schema-constrained (for the status label). `None` when nothing usable was found.
pub fn analysis_from_answer(
    answer: &str,
    requested: &[String],
    structured: bool,
) -> Option<(AnalysisV2, ParseStatus)> {
    let (object, cleaned) = parse_model_json(answer)?;
    let has_list = ["criteria_results", "criteria"]
        .iter()
        .any(|k| object.get(*k).is_some_and(Value::is_array));
    if !has_list && !requested.is_empty() {
        return None;
    }
    let status = if structured && !cleaned {
        ParseStatus::ParsedStructured
    } else {
        ParseStatus::Parsed
    };
    Some((normalise_analysis(&object, requested), status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crits(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn analyse(answer: &str, names: &[&str]) -> AnalysisV2 {
        analysis_from_answer(answer, &crits(names), false)
            .expect("usable")
            .0
    }

    #[test]
    fn rule_strips_a_markdown_code_fence() {
        let a = analyse(
            "```json\n{\"criteria_results\": [{\"criterion\": \"A\", \"score\": 7}]}\n```",
            &["A"],
        );
        assert_eq!(a.criteria_results[0].score, 7);
        assert_eq!(strip_code_fence("```\n{}\n```"), "{}");
        assert_eq!(strip_code_fence("{\"a\": 1}"), "{\"a\": 1}");
    }

    #[test]
    fn rule_finds_the_object_inside_prose() {
        let a = analyse(
            "Hier ist die Analyse: {\"criteria\": [{\"name\": \"A\", \"score\": 3}]} Viel Erfolg!",
            &["A"],
        );
        assert_eq!(a.criteria_results[0].score, 3);
    }

    #[test]
    fn rule_accepts_criteria_as_the_list_name() {
        let a = analyse(r#"{"criteria": [{"criterion": "A", "score": 5}]}"#, &["A"]);
        assert_eq!(a.criteria_results[0].score, 5);
    }

    #[test]
    fn rule_accepts_name_for_criterion() {
        let a = analyse(
            r#"{"criteria_results": [{"name": "A", "score": 6}]}"#,
            &["A"],
        );
        assert_eq!(a.criteria_results[0].score, 6);
    }

    #[test]
    fn rule_accepts_max_for_max_score() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "A", "max": 4, "score": 3}]}"#,
            &["A"],
        );
        assert_eq!(
            (a.criteria_results[0].score, a.criteria_results[0].max_score),
            (3, 4)
        );
    }

    #[test]
    fn rule_accepts_explanation_for_explanation_md() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "A", "score": 1, "explanation": "kurz"}]}"#,
            &["A"],
        );
        assert_eq!(a.criteria_results[0].explanation_md, "kurz");
    }

    #[test]
    fn rule_max_score_defaults_to_10_and_is_at_least_1() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "A", "score": 3}, {"criterion": "B", "max_score": 0, "score": 3}]}"#,
            &["A", "B"],
        );
        assert_eq!(a.criteria_results[0].max_score, 10);
        assert_eq!(a.criteria_results[1].max_score, 10);
    }

    #[test]
    fn rule_float_and_string_scores_are_truncated() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "A", "score": 7.9}, {"criterion": "B", "score": "6.5"}, {"criterion": "C", "score": "8"}]}"#,
            &["A", "B", "C"],
        );
        let scores: Vec<u32> = a.criteria_results.iter().map(|r| r.score).collect();
        assert_eq!(scores, [7, 6, 8]);
    }

    #[test]
    fn rule_scores_are_clamped_to_the_range() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "A", "score": 14}, {"criterion": "B", "score": -3}]}"#,
            &["A", "B"],
        );
        assert_eq!(
            (a.criteria_results[0].score, a.criteria_results[1].score),
            (10, 0)
        );
    }

    #[test]
    fn rule_missing_criteria_are_filled_in_the_requested_order() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "C", "score": 9}]}"#,
            &["A", "B", "C"],
        );
        let names: Vec<&str> = a
            .criteria_results
            .iter()
            .map(|r| r.criterion.as_str())
            .collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(
            (
                a.criteria_results[0].score,
                a.criteria_results[0].explanation_md.as_str()
            ),
            (0, NO_EVIDENCE)
        );
        assert_eq!(a.criteria_results[2].score, 9);
    }

    #[test]
    fn rule_extra_items_are_dropped() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "A", "score": 9}, {"criterion": "Erfunden", "score": 2}]}"#,
            &["A"],
        );
        assert_eq!(a.criteria_results.len(), 1);
    }

    #[test]
    fn rule_overall_score_is_derived_when_missing() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "A", "score": 8}, {"criterion": "B", "score": 6}]}"#,
            &["A", "B"],
        );
        assert_eq!(a.score, 4); // mean 0.7 × 5 = 3.5 → 4
    }

    #[test]
    fn rule_a_given_overall_score_is_truncated_and_clamped() {
        assert_eq!(
            analyse(r#"{"score": 9, "criteria_results": []}"#, &[]).score,
            5
        );
        assert_eq!(
            analyse(r#"{"score": "3.7", "criteria_results": []}"#, &[]).score,
            3
        );
    }

    #[test]
    fn rule_no_extra_properties_in_the_output() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "A", "score": 8, "confidence": 0.9}], "notes": "x"}"#,
            &["A"],
        );
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 3);
        assert_eq!(v["criteria_results"][0].as_object().unwrap().len(), 4);
        a.validate(&crits(&["A"])).unwrap();
    }

    #[test]
    fn names_match_case_and_whitespace_insensitively_and_unnamed_items_by_position() {
        let a = analyse(
            r#"{"criteria_results": [{"criterion": "  fachliche   RICHTIGKEIT ", "score": 8}, {"score": 5}]}"#,
            &["Fachliche Richtigkeit", "Struktur"],
        );
        assert_eq!(
            (a.criteria_results[0].score, a.criteria_results[1].score),
            (8, 5)
        );
        assert_eq!(
            a.criteria_results[0].criterion, "Fachliche Richtigkeit",
            "the teacher's wording is kept"
        );
    }

    #[test]
    fn garbage_is_not_usable_and_the_fallback_is_valid() {
        assert!(analysis_from_answer("I cannot help with that.", &crits(&["A"]), true).is_none());
        assert!(analysis_from_answer("{\"foo\": 1}", &crits(&["A"]), true).is_none());
        let f = fallback_analysis(&crits(&["A", "B"]));
        f.validate(&crits(&["A", "B"])).unwrap();
        assert_eq!(f.score, 0);
    }

    #[test]
    fn parse_status_tells_structured_from_tolerant() {
        let clean = r#"{"criteria_results": [{"criterion": "A", "score": 8}]}"#;
        assert_eq!(
            analysis_from_answer(clean, &crits(&["A"]), true).unwrap().1,
            ParseStatus::ParsedStructured
        );
        assert_eq!(
            analysis_from_answer(clean, &crits(&["A"]), false)
                .unwrap()
                .1,
            ParseStatus::Parsed
        );
        let fenced = format!("```json\n{clean}\n```");
        assert_eq!(
            analysis_from_answer(&fenced, &crits(&["A"]), true)
                .unwrap()
                .1,
            ParseStatus::Parsed
        );
        let _ = json!({});
    }
}
