//! What a simulated model says, made from the request: a transcript for a vision call, the
//! criteria analysis (JSON the runner's parser accepts) for the analysis call, feedback prose
//! for the synthesis call; sizes in tokens; the `num_predict` cut.

use serde_json::{json, Value};

use super::config::{tokens, Answer, GpuModel, CHARS_PER_TOKEN};

/// The transcript every vision call returns (German, like the platform's submissions).
pub const TRANSCRIPT: &str = "# Photosynthese\n\nPflanzen wandeln mit Licht, Wasser und \
Kohlenstoffdioxid Energie um. Dabei entstehen Traubenzucker und Sauerstoff.\n\n\
- Ort: Chloroplasten\n- Gleichung: $6CO_2 + 6H_2O \\rightarrow C_6H_{12}O_6 + 6O_2$\n\n\
Das Blattgrün nimmt das Licht auf. [unleserlich] Ohne Licht findet keine Photosynthese statt.";

/// The feedback text of a synthesis call.
pub const FEEDBACK: &str = "**Stärken**\n- Du erklärst den Ablauf klar und in der richtigen \
Reihenfolge.\n- Die Gleichung ist vollständig.\n\n**Nächste Schritte**\n- Begründe, warum \
das Blattgrün für die Lichtaufnahme wichtig ist.\n- Ergänze ein eigenes Beispiel aus dem \
Alltag.";

/// The answer of a plain `/api/generate` without images.
pub const PLAIN: &str = "Dies ist eine simulierte Antwort.";

/// The heading in the runner's analysis prompt above the numbered criteria.
const CRITERIA_HEADING: &str = "## Kriterien";

/// What one request asks of the model, in sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct Work {
    /// Characters of system, prompt and message text.
    pub prompt_chars: usize,
    /// Images sent.
    pub images: usize,
    /// The answer, after a `num_predict` cut.
    pub text: String,
    /// `stop`, or `length` when `num_predict` cut the answer.
    pub done_reason: &'static str,
}

impl Work {
    /// Prompt tokens ([`CHARS_PER_TOKEN`]).
    pub fn prompt_tokens(&self) -> u64 {
        tokens(self.prompt_chars)
    }

    /// Answer tokens.
    pub fn answer_tokens(&self) -> u64 {
        tokens(self.text.chars().count())
    }
}

/// The work of a generate (`chat == false`) or chat request with a non-empty prompt.
pub fn work(model: &GpuModel, chat: bool, body: &Value) -> Work {
    let text_of = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let (prompt_chars, images, full) = if chat {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let chars = messages.iter().map(|m| text_of(&m["content"])).sum();
        let images = messages
            .iter()
            .map(|m| m["images"].as_array().map_or(0, Vec::len))
            .sum();
        let text = match &model.answer {
            Answer::Auto if images > 0 => TRANSCRIPT.to_owned(),
            _ => chat_answer(model, body, &messages),
        };
        (chars, images, text)
    } else {
        let images = body["images"].as_array().map_or(0, Vec::len);
        let chars = text_of(&body["prompt"]) + text_of(&body["system"]);
        let text = match &model.answer {
            Answer::Fixed(t) => t.clone(),
            Answer::Auto if images > 0 => TRANSCRIPT.to_owned(),
            Answer::Auto => PLAIN.to_owned(),
        };
        (chars, images, text)
    };
    let (text, done_reason) = cut(full, num_predict(body));
    Work {
        prompt_chars,
        images,
        text,
        done_reason,
    }
}

fn chat_answer(model: &GpuModel, body: &Value, messages: &[Value]) -> String {
    if let Answer::Fixed(text) = &model.answer {
        return text.clone();
    }
    let prompt: String = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let format = &body["format"];
    let has_format = !format.is_null();
    if has_format || prompt.contains(CRITERIA_HEADING) {
        let criteria =
            criteria_from_schema(format).unwrap_or_else(|| criteria_from_prompt(&prompt));
        analysis(&criteria).to_string()
    } else {
        FEEDBACK.to_owned()
    }
}

/// `options.num_predict` when it is a positive limit (Ollama: -1 unlimited, -2 fill the
/// context; 0 and other values are read as no limit here).
fn num_predict(body: &Value) -> Option<u64> {
    body["options"]["num_predict"]
        .as_i64()
        .filter(|n| *n > 0)
        .map(|n| n as u64)
}

/// `text` cut to `limit` tokens (`limit × 4` characters), with the done reason.
pub fn cut(text: String, limit: Option<u64>) -> (String, &'static str) {
    match limit {
        Some(limit) if tokens(text.chars().count()) > limit => {
            let keep = usize::try_from(limit).unwrap_or(usize::MAX);
            let kept = text.chars().take(keep.saturating_mul(CHARS_PER_TOKEN));
            (kept.collect(), "length")
        }
        _ => (text, "stop"),
    }
}

/// The criteria names pinned by the runner's analysis schema
/// (`properties.criteria_results.items.properties.criterion.enum`).
pub fn criteria_from_schema(format: &Value) -> Option<Vec<String>> {
    let names = format["properties"]["criteria_results"]["items"]["properties"]["criterion"]
        ["enum"]
        .as_array()?;
    Some(
        names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
    )
}

/// The criteria of the runner's analysis prompt: the numbered lines (`1. Name`) after the
/// `## Kriterien` heading, up to the next blank line.
pub fn criteria_from_prompt(prompt: &str) -> Vec<String> {
    let Some(at) = prompt.find(CRITERIA_HEADING) else {
        return Vec::new();
    };
    prompt[at..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let (number, name) = l.trim().split_once(". ")?;
            number
                .chars()
                .all(|c| c.is_ascii_digit())
                .then(|| name.trim().to_owned())
        })
        .collect()
}

/// The analysis object for `criteria`: each scored 5–9 of 10 (from its name, so the same
/// criterion always gets the same score), the overall score 0–5 from their mean.
pub fn analysis(criteria: &[String]) -> Value {
    let scores: Vec<u64> = criteria
        .iter()
        .map(|c| 5 + c.bytes().map(u64::from).sum::<u64>() % 5)
        .collect();
    let results: Vec<Value> = criteria
        .iter()
        .zip(&scores)
        .map(|(c, s)| {
            json!({
                "criterion": c, "max_score": 10, "score": s,
                "explanation_md": format!("Zu „{c}“: nachvollziehbar umgesetzt, mit Belegen aus der Arbeit."),
            })
        })
        .collect();
    let mean = if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<u64>() as f64 / (10.0 * scores.len() as f64)
    };
    json!({ "score": (mean * 5.0).round() as u64, "criteria_results": results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_come_from_the_numbered_list_under_the_heading() {
        let prompt = "## Aufgabe\n1. nicht das\n\n## Kriterien (wörtlich)\n1. Inhalt\n2. Form und Stil\n\n## Schülerarbeit\n3. nein";
        assert_eq!(criteria_from_prompt(prompt), ["Inhalt", "Form und Stil"]);
    }

    #[test]
    fn a_cut_keeps_four_characters_per_token() {
        assert_eq!(
            cut("abcdefghij".into(), Some(2)),
            ("abcdefgh".into(), "length")
        );
        assert_eq!(cut("abcdefgh".into(), Some(2)), ("abcdefgh".into(), "stop"));
        assert_eq!(cut("abc".into(), None), ("abc".into(), "stop"));
    }
}
