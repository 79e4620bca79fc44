//! Every prompt the local backend sends, in one place. Prompts are ours, German (the
//! platform's language), bounded in size: long student texts are clipped with a marker, and
//! the student text appears only in the steps that need it (analysis; synthesis only when
//! there is no analysis to work from). Hints are context for the model, never to be quoted.

use serde_json::{json, Value};

use crate::job::analysis::AnalysisV2;

/// Longest student text sent to a model, in characters.
pub const MAX_STUDENT_CHARS: usize = 12_000;
/// Longest instruction or hints text sent to a model, in characters.
pub const MAX_CONTEXT_CHARS: usize = 2_000;

/// The transcription instruction for the vision model.
pub const VISION_PROMPT: &str = "Transkribiere den gesamten sichtbaren Text dieses Bildes wortgetreu als Markdown. \
Übernimm Überschriften, Aufzählungen, Tabellen und Formeln (als LaTeX) so, wie sie dastehen, in der Reihenfolge \
von oben nach unten. Markiere unleserliche Stellen mit [unleserlich]. Füge nichts hinzu: keine Korrekturen, \
keine Kommentare, keine Zusammenfassung, keine Einleitung. Antworte nur mit dem Transkript.";

const ANALYSIS_SYSTEM: &str = "Du bist eine erfahrene, faire Lehrkraft. Du bewertest eine Schülerarbeit \
ausschließlich anhand der vorgegebenen Kriterien. Vergib je Kriterium 0 bis 10 Punkte (max_score 10) und begründe \
kurz in Markdown mit konkreten Belegen aus der Arbeit. Aufgabenstellung und Hinweise der Lehrkraft sind nur \
Kontext. Erfinde nichts, was nicht in der Arbeit steht.";

const SYNTHESIS_SYSTEM: &str = "Du schreibst eine kurze, ermutigende, formative Rückmeldung auf Deutsch direkt \
an die Schülerin oder den Schüler (Du-Form). Gliedere in zwei Abschnitte: zuerst **Stärken**, dann **Nächste \
Schritte** mit konkreten, umsetzbaren Hinweisen. Höchstens 150 Wörter. Nenne keine Punktzahlen, zitiere die \
Hinweise der Lehrkraft nicht und verrate keine Musterlösung.";

/// The analysis step's closing instruction when Ollama constrains the answer to the schema.
const STRUCTURED_FORMAT_HINT: &str = "Antworte als JSON nach dem vorgegebenen Schema.";

/// The analysis step's closing instruction without structured output: the JSON shape spelled
/// out, since nothing else constrains the answer.
const FREE_TEXT_FORMAT_HINT: &str =
    "Antworte ausschließlich mit einem JSON-Objekt ohne weiteren Text, genau in dieser Form:\n\
     {\"score\": <0-5 gesamt>, \"criteria_results\": [{\"criterion\": \"<Kriterium wörtlich>\", \"max_score\": 10, \
     \"score\": <0-10>, \"explanation_md\": \"<Begründung>\"}]}";

/// Cuts `text` to `max` characters, marking the cut.
pub fn clip(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}\n\n[… gekürzt: {} weitere Zeichen …]", count - max)
}

fn context_block(instruction_md: Option<&str>, hints_md: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(i) = instruction_md {
        out.push_str(&format!(
            "## Aufgabenstellung (Kontext)\n{}\n\n",
            clip(i, MAX_CONTEXT_CHARS)
        ));
    }
    if let Some(h) = hints_md {
        out.push_str(&format!(
            "## Hinweise der Lehrkraft (nur Kontext, nicht zitieren)\n{}\n\n",
            clip(h, MAX_CONTEXT_CHARS)
        ));
    }
    out
}

/// The JSON schema of the analysis, for Ollama's `format` (structured output).
pub fn analysis_schema(criteria: &[String]) -> Value {
    json!({
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 0, "maximum": 5},
            "criteria_results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "criterion": {"type": "string", "enum": criteria},
                        "max_score": {"type": "integer", "minimum": 1},
                        "score": {"type": "integer", "minimum": 0},
                        "explanation_md": {"type": "string"}
                    },
                    "required": ["criterion", "max_score", "score", "explanation_md"]
                }
            }
        },
        "required": ["score", "criteria_results"]
    })
}

/// System and user prompt of the analysis step.
pub fn analysis_prompt(
    criteria: &[String],
    text: &str,
    instruction_md: Option<&str>,
    hints_md: Option<&str>,
    structured: bool,
) -> (String, String) {
    let list: String = criteria
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{}. {}\n", i + 1, c))
        .collect();
    let format_hint = if structured {
        STRUCTURED_FORMAT_HINT
    } else {
        FREE_TEXT_FORMAT_HINT
    };
    let user = format!(
        "{}## Kriterien (in dieser Reihenfolge, wörtlich übernehmen)\n{list}\n## Schülerarbeit\n{}\n\n{format_hint}",
        context_block(instruction_md, hints_md),
        clip(text, MAX_STUDENT_CHARS)
    );
    (ANALYSIS_SYSTEM.to_owned(), user)
}

/// System and user prompt of the synthesis step. The student text is included only when
/// there is no analysis (no criteria) to base the feedback on.
pub fn synthesis_prompt(
    analysis: Option<&AnalysisV2>,
    text: &str,
    instruction_md: Option<&str>,
    hints_md: Option<&str>,
) -> (String, String) {
    let basis = match analysis {
        Some(a) => {
            let lines: String = a
                .criteria_results
                .iter()
                .map(|r| {
                    format!(
                        "- {} ({}/{}): {}\n",
                        r.criterion, r.score, r.max_score, r.explanation_md
                    )
                })
                .collect();
            format!("## Analyse der Arbeit\n{lines}")
        }
        None => format!("## Schülerarbeit\n{}\n", clip(text, MAX_STUDENT_CHARS)),
    };
    let user = format!(
        "{}{basis}\nSchreibe jetzt die Rückmeldung.",
        context_block(instruction_md, hints_md)
    );
    (SYNTHESIS_SYSTEM.to_owned(), user)
}

/// The feedback when the model gave no usable text: built from the analysis alone.
pub fn fallback_feedback(analysis: Option<&AnalysisV2>) -> String {
    let Some(a) = analysis.filter(|a| !a.criteria_results.is_empty()) else {
        return "**Rückmeldung**\n\nDeine Abgabe ist eingegangen. Eine automatische Rückmeldung war diesmal nicht \
                möglich; deine Lehrkraft schaut sich deine Arbeit an."
            .to_owned();
    };
    let strong: Vec<&str> = a
        .criteria_results
        .iter()
        .filter(|r| r.score * 10 >= r.max_score * 7)
        .map(|r| r.criterion.as_str())
        .collect();
    let weak: Vec<&str> = a
        .criteria_results
        .iter()
        .filter(|r| r.score * 10 < r.max_score * 7)
        .map(|r| r.criterion.as_str())
        .collect();
    let mut out = String::from("**Rückmeldung**\n\n**Stärken**\n");
    if strong.is_empty() {
        out.push_str("- Du hast die Aufgabe bearbeitet und abgegeben.\n");
    } else {
        out.extend(strong.iter().map(|c| format!("- {c}: gut umgesetzt.\n")));
    }
    out.push_str("\n**Nächste Schritte**\n");
    if weak.is_empty() {
        out.push_str("- Vertiefe deine Arbeit weiter und überprüfe sie noch einmal sorgfältig.\n");
    } else {
        out.extend(
            weak.iter()
                .map(|c| format!("- {c}: Hier kannst du dich noch verbessern.\n")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::analysis::CriterionResult;

    #[test]
    fn long_texts_are_clipped_with_a_marker() {
        let clipped = clip(&"a".repeat(MAX_STUDENT_CHARS + 10), MAX_STUDENT_CHARS);
        assert!(clipped.starts_with(&"a".repeat(MAX_STUDENT_CHARS)));
        assert!(clipped.contains("10 weitere Zeichen"));
        assert_eq!(clip("kurz", 10), "kurz");
    }

    #[test]
    fn the_analysis_prompt_lists_criteria_in_order_and_contains_the_text() {
        let (_, user) = analysis_prompt(
            &["A".into(), "B".into()],
            "Schülertext",
            Some("Aufgabe"),
            Some("Tipp"),
            false,
        );
        assert!(user.find("1. A").unwrap() < user.find("2. B").unwrap());
        assert!(
            user.contains("Schülertext")
                && user.contains("nicht zitieren")
                && user.contains("criteria_results")
        );
    }

    #[test]
    fn the_synthesis_prompt_leaves_the_student_text_out_when_an_analysis_exists() {
        let a = AnalysisV2::from_results(vec![CriterionResult {
            criterion: "A".into(),
            max_score: 10,
            score: 8,
            explanation_md: "gut".into(),
        }]);
        let (_, with_analysis) = synthesis_prompt(Some(&a), "GEHEIMER TEXT", None, None);
        assert!(!with_analysis.contains("GEHEIMER TEXT"));
        assert!(with_analysis.contains("A (8/10)"));
        let (_, without) = synthesis_prompt(None, "GEHEIMER TEXT", None, None);
        assert!(without.contains("GEHEIMER TEXT"));
    }

    #[test]
    fn the_schema_pins_the_criteria_names() {
        let s = analysis_schema(&["A".into()]);
        assert_eq!(
            s["properties"]["criteria_results"]["items"]["properties"]["criterion"]["enum"],
            json!(["A"])
        );
    }

    #[test]
    fn fallback_feedback_sorts_criteria_into_strengths_and_next_steps() {
        let a = AnalysisV2::from_results(vec![
            CriterionResult {
                criterion: "Stark".into(),
                max_score: 10,
                score: 9,
                explanation_md: String::new(),
            },
            CriterionResult {
                criterion: "Schwach".into(),
                max_score: 10,
                score: 2,
                explanation_md: String::new(),
            },
        ]);
        let f = fallback_feedback(Some(&a));
        assert!(f.find("Stark").unwrap() < f.find("Nächste Schritte").unwrap());
        assert!(f.find("Schwach").unwrap() > f.find("Nächste Schritte").unwrap());
        assert!(fallback_feedback(None).contains("Lehrkraft"));
    }
}
