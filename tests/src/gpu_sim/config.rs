//! What the simulated GPU is: its models (size, load time, costs, answers), how many fit in
//! VRAM at once, the parallel slots per model, the queue limit, the time scale and the seed.
//! Every time here is in **simulated seconds** (`f64`); [`GpuConfig::time_scale`] says how
//! much real time one simulated second takes.

use std::time::Duration;

/// Simulated seconds.
pub type SimSecs = f64;

/// Characters per token in every size computation of the simulator (prompt and answer
/// tokens, `num_predict`): a token is about four characters, rounded up.
pub const CHARS_PER_TOKEN: usize = 4;

/// Tokens of `chars` characters: `ceil(chars / 4)`.
pub fn tokens(chars: usize) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN) as u64
}

/// What a model answers.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Answer {
    /// Derived from the request: a transcript for a call with images (`images` of a
    /// generate or of a chat message); for a chat with a `format`, or with the runner's
    /// analysis prompt (a numbered list under `## Kriterien`), the criteria analysis as JSON
    /// (criteria from the schema's `criterion` enum, else from the prompt); a short German
    /// feedback text for any other chat; a short text for any other generate.
    #[default]
    Auto,
    /// Always this text (cut by `num_predict` like any answer).
    Fixed(String),
}

/// One model the simulated Ollama has installed.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuModel {
    /// Name; without a tag it means `name:latest`, as in Ollama.
    pub name: String,
    /// Bytes; `/api/tags` and `/api/ps` report it (`size_vram` = `size`: all on the GPU).
    pub size: u64,
    /// Time to load the model into VRAM.
    pub load: SimSecs,
    /// Fixed time of every call, whatever its size.
    pub base: SimSecs,
    /// Time per prompt token (system, prompt and message text, [`CHARS_PER_TOKEN`]).
    pub per_prompt_token: SimSecs,
    /// Time per image of a vision call.
    pub per_image: SimSecs,
    /// Time per answer token (after a `num_predict` cut).
    pub per_answer_token: SimSecs,
    /// What the model answers.
    pub answer: Answer,
}

impl GpuModel {
    /// A model of `size` bytes loading in 8 s, each call 1 s, no size costs, automatic
    /// answers. Change the parts with the builder methods.
    pub fn new(name: &str, size: u64) -> GpuModel {
        GpuModel {
            name: canonical(name),
            size,
            load: 8.0,
            base: 1.0,
            per_prompt_token: 0.0,
            per_image: 0.0,
            per_answer_token: 0.0,
            answer: Answer::Auto,
        }
    }

    /// With this load time.
    pub fn load(mut self, load: SimSecs) -> GpuModel {
        self.load = load;
        self
    }

    /// With this fixed time per call.
    pub fn base(mut self, base: SimSecs) -> GpuModel {
        self.base = base;
        self
    }

    /// With these costs per prompt token, per image and per answer token.
    pub fn costs(mut self, prompt_token: SimSecs, image: SimSecs, answer_token: SimSecs) -> Self {
        self.per_prompt_token = prompt_token;
        self.per_image = image;
        self.per_answer_token = answer_token;
        self
    }

    /// With this answer.
    pub fn answer(mut self, answer: Answer) -> GpuModel {
        self.answer = answer;
        self
    }
}

/// The simulated GPU and Ollama server settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuConfig {
    /// The installed models (`/api/tags`, in this order).
    pub models: Vec<GpuModel>,
    /// How many models fit in VRAM at once: Ollama's `OLLAMA_MAX_LOADED_MODELS`, here the
    /// whole VRAM budget counted in models (at least 1).
    pub resident_models: usize,
    /// Parallel calls per loaded model: Ollama's `OLLAMA_NUM_PARALLEL` (at least 1).
    pub slots: usize,
    /// Calls that may wait (not running) before new ones get 503: `OLLAMA_MAX_QUEUE`.
    pub queue_limit: usize,
    /// How long a model stays loaded after its last call when the request does not say:
    /// `OLLAMA_KEEP_ALIVE` (default 300 = 5 minutes); negative: for ever.
    pub keep_alive: SimSecs,
    /// Real time of one simulated second (default 1 ms).
    pub time_scale: Duration,
    /// Seed of the jitter.
    pub seed: u64,
    /// Each call's duration is multiplied by `1 + jitter × u`, `u` uniform in `[-1, 1]`
    /// from the seeded generator, drawn in admission order. 0 (default): no jitter.
    pub jitter: f64,
}

impl Default for GpuConfig {
    fn default() -> GpuConfig {
        GpuConfig {
            models: Vec::new(),
            resident_models: 1,
            slots: 1,
            queue_limit: 512,
            keep_alive: 300.0,
            time_scale: Duration::from_millis(1),
            seed: 0,
            jitter: 0.0,
        }
    }
}

impl GpuConfig {
    /// The defaults with these models.
    pub fn with_models(models: Vec<GpuModel>) -> GpuConfig {
        GpuConfig {
            models,
            ..GpuConfig::default()
        }
    }

    /// The index of `name` (a missing tag means `:latest`).
    pub(super) fn model_index(&self, name: &str) -> Option<usize> {
        let name = canonical(name);
        self.models.iter().position(|m| m.name == name)
    }

    /// Panics on settings the simulator cannot run with.
    pub(super) fn check(&self) {
        assert!(self.resident_models >= 1, "gpu sim: resident_models >= 1");
        assert!(self.slots >= 1, "gpu sim: slots >= 1");
        assert!(!self.time_scale.is_zero(), "gpu sim: time_scale > 0");
        assert!(
            (0.0..1.0).contains(&self.jitter),
            "gpu sim: jitter in [0, 1)"
        );
        for m in &self.models {
            let times = [m.load, m.base, m.per_prompt_token, m.per_image];
            let ok = times.iter().chain([&m.per_answer_token]).all(|t| *t >= 0.0);
            assert!(ok, "gpu sim: negative time for {}", m.name);
        }
    }
}

/// The next number of a splitmix64 generator at `state`, as a uniform `f64` in `[-1, 1)`.
pub(super) fn splitmix(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// `name`, with `:latest` when its last path segment has no tag.
pub fn canonical(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// Ollama's `keep_alive`: a number of seconds, or a Go duration string (`"5m"`, `"1h30m"`,
/// `"300ms"`, `"-1"`, `"0"`); read as simulated seconds. `None` when absent or unreadable.
pub fn keep_alive(value: &serde_json::Value) -> Option<SimSecs> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => go_duration(s.trim()),
        _ => None,
    }
}

fn go_duration(s: &str) -> Option<SimSecs> {
    if let Ok(n) = s.parse::<f64>() {
        return Some(n);
    }
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s),
    };
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * unit;
        rest = &rest[unit_len..];
    }
    Some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_alive_reads_numbers_and_go_durations() {
        assert_eq!(keep_alive(&json!(0)), Some(0.0));
        assert_eq!(keep_alive(&json!("5m")), Some(300.0));
        assert_eq!(keep_alive(&json!("1h30m")), Some(5400.0));
        assert_eq!(keep_alive(&json!("-1m")), Some(-60.0));
        assert_eq!(keep_alive(&json!("-1")), Some(-1.0));
        assert_eq!(keep_alive(&json!("1.5s")), Some(1.5));
        assert_eq!(keep_alive(&json!("soon")), None);
        assert_eq!(keep_alive(&json!(null)), None);
    }

    #[test]
    fn tokens_are_four_characters_rounded_up() {
        assert_eq!((tokens(0), tokens(1), tokens(4), tokens(5)), (0, 1, 1, 2));
    }
}
