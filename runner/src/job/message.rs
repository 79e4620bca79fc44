//! Error messages as stored in `*_last_error`: trimmed and cut to 1024 characters on a
//! character boundary (contract §6.7: 1021 characters and `...`).

/// The longest message the database columns receive, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1024;
const ELLIPSIS: &str = "...";

/// Removes NUL characters, which PostgreSQL `text` and `jsonb` cannot store (a model that
/// emits one would otherwise make every finishing statement fail).
pub fn strip_nul(text: &str) -> String {
    text.replace('\0', "")
}

/// Removes NUL characters from every string inside a JSON value.
pub fn strip_nul_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => *s = strip_nul(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nul_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(strip_nul_json),
        _ => {}
    }
}

/// Trims `message` and, when it is longer than [`MAX_MESSAGE_CHARS`] characters, keeps the
/// first 1021 characters followed by `...`. Never splits a UTF-8 sequence.
pub fn truncate_message(message: &str) -> String {
    let cleaned = strip_nul(message);
    let trimmed = cleaned.trim();
    if trimmed.chars().count() <= MAX_MESSAGE_CHARS {
        return trimmed.to_owned();
    }
    let keep = MAX_MESSAGE_CHARS - ELLIPSIS.len();
    let mut out: String = trimmed.chars().take(keep).collect();
    out.push_str(ELLIPSIS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_are_only_trimmed() {
        assert_eq!(
            truncate_message("  timeout after 30s \n"),
            "timeout after 30s"
        );
    }

    #[test]
    fn exactly_the_limit_is_kept_whole() {
        let m = "x".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(truncate_message(&m), m);
    }

    #[test]
    fn long_messages_are_cut_to_1024_characters_with_an_ellipsis() {
        let m = "y".repeat(5000);
        let cut = truncate_message(&m);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS);
        assert!(cut.ends_with("..."));
        assert!(cut.starts_with(&"y".repeat(1021)));
    }

    #[test]
    fn nul_characters_are_removed_everywhere() {
        assert_eq!(truncate_message("a\0b"), "ab");
        let mut v = serde_json::json!({"a": ["x\0y", {"b": "\0"}], "n": 1});
        strip_nul_json(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["xy", {"b": ""}], "n": 1}));
    }

    #[test]
    fn multibyte_text_is_cut_on_a_character_boundary() {
        let m = "ä€😀".repeat(600);
        let cut = truncate_message(&m);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS);
        assert!(cut.is_char_boundary(cut.len()));
        assert!(cut.chars().take(1021).all(|c| "ä€😀".contains(c)));
    }
}
