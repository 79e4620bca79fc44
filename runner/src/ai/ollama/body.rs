//! Reading Ollama's response bodies with a memory bound: a whole answer is read chunk by chunk
//! and given up as soon as it passes its cap ([`OllamaError::TooLarge`]); a stream is split
//! into lines, each line capped, and the stream's total capped too. Nothing is ever read
//! without a bound, whatever the server sends.

use std::time::Duration;

use reqwest::Response;
use serde::de::DeserializeOwned;

use super::{classify_transport, json_problem, OllamaError};

/// Largest whole `/api/generate` or `/api/chat` answer, in bytes. The longest limit of a
/// model call is 300 s; even a fast model writes some 100 tokens a second, ≈ 120 KB of text
/// in that time, and the `context` token list of a generate answer stays below 1 MB for a
/// 128k context. 4 MiB leaves ample room; more is not a model's answer.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Largest `/api/tags`, `/api/ps` or `/api/version` answer: ≈ 400 bytes per model, so room
/// for thousands of models.
pub const MAX_METADATA_BYTES: usize = 1 << 20;
/// Largest single NDJSON line of a stream (a pull progress line has some 150 bytes).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Largest whole pull stream. Ollama reports progress a few times a second, some KiB/s, so
/// a pull within its one-hour limit sends well below this.
pub const MAX_STREAM_BYTES: usize = 64 << 20;
/// Largest error body read for its `{"error": …}` text; a longer one is not read further.
pub const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// The whole body, or [`OllamaError::TooLarge`] as soon as it passes `max` bytes: an
/// announced `Content-Length` over `max` fails before reading; otherwise at most `max` bytes
/// plus one chunk are ever held.
pub(super) async fn read_capped(
    response: &mut Response,
    max: usize,
    limit: Duration,
) -> Result<Vec<u8>, OllamaError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(OllamaError::TooLarge { limit: max });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| classify_transport(&e, limit))?
    {
        if body.len() + chunk.len() > max {
            return Err(OllamaError::TooLarge { limit: max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Splits a byte stream into lines, each at most `max_line` bytes, `max_total` bytes in all.
#[derive(Debug)]
pub(super) struct LineSplitter {
    pending: Vec<u8>,
    /// How far `pending` is known to hold no newline.
    scanned: usize,
    total: usize,
    max_line: usize,
    max_total: usize,
}

impl LineSplitter {
    pub(super) fn new(max_line: usize, max_total: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            scanned: 0,
            total: 0,
            max_line,
            max_total,
        }
    }

    /// Adds received bytes; fails when the stream passes its total.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Result<(), OllamaError> {
        self.total += bytes.len();
        if self.total > self.max_total {
            return Err(OllamaError::TooLarge {
                limit: self.max_total,
            });
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete line without its newline; `None` when none is complete yet. Fails
    /// when a line passes `max_line` bytes, complete or not.
    pub(super) fn next_line(&mut self) -> Result<Option<Vec<u8>>, OllamaError> {
        let too_long = OllamaError::TooLarge {
            limit: self.max_line,
        };
        match self.pending[self.scanned..]
            .iter()
            .position(|b| *b == b'\n')
        {
            Some(offset) => {
                let end = self.scanned + offset;
                if end > self.max_line {
                    return Err(too_long);
                }
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                Ok(Some(line))
            }
            None if self.pending.len() > self.max_line => Err(too_long),
            None => {
                self.scanned = self.pending.len();
                Ok(None)
            }
        }
    }

    /// The unterminated rest at the end of the stream, if any.
    pub(super) fn finish(&mut self) -> Option<Vec<u8>> {
        self.scanned = 0;
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Feeds each NDJSON line to `on_line` until it returns `Ok(true)` (done) or the body ends.
/// Lines are capped at [`MAX_LINE_BYTES`], the stream at [`MAX_STREAM_BYTES`].
pub(super) async fn read_ndjson<T: DeserializeOwned>(
    mut response: Response,
    limit: Duration,
    mut on_line: impl FnMut(&T) -> Result<bool, OllamaError>,
) -> Result<(), OllamaError> {
    let mut lines = LineSplitter::new(MAX_LINE_BYTES, MAX_STREAM_BYTES);
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| classify_transport(&e, limit))?;
        let ended = chunk.is_none();
        let mut complete = Vec::new();
        match chunk {
            Some(bytes) => {
                lines.push(&bytes)?;
                while let Some(line) = lines.next_line()? {
                    complete.push(line);
                }
            }
            None => complete.extend(lines.finish()),
        }
        for line in complete {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed: T = serde_json::from_slice(&line)
                .map_err(|e| OllamaError::Malformed(json_problem("stream line", &e)))?;
            if on_line(&parsed)? {
                return Ok(());
            }
        }
        if ended {
            return Err(OllamaError::Broken(
                "stream ended before the final message".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(splitter: &mut LineSplitter) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(line) = splitter.next_line().unwrap() {
            out.push(line);
        }
        out
    }

    #[test]
    fn lines_are_split_across_chunks() {
        let mut s = LineSplitter::new(10, 100);
        s.push(b"ab").unwrap();
        assert!(lines_of(&mut s).is_empty());
        s.push(b"c\nde\n\nf").unwrap();
        assert_eq!(lines_of(&mut s), [b"abc".to_vec(), b"de".to_vec(), vec![]]);
        assert_eq!(s.finish(), Some(b"f".to_vec()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_line_over_the_cap_fails_before_it_ends() {
        let mut s = LineSplitter::new(10, 100);
        s.push(b"0123456789").unwrap();
        assert_eq!(s.next_line(), Ok(None), "exactly the cap is fine");
        s.push(b"x").unwrap();
        assert_eq!(s.next_line(), Err(OllamaError::TooLarge { limit: 10 }));
        let mut s = LineSplitter::new(10, 100);
        s.push(b"0123456789x\n").unwrap();
        assert_eq!(s.next_line(), Err(OllamaError::TooLarge { limit: 10 }));
        let mut s = LineSplitter::new(10, 100);
        s.push(b"0123456789\n").unwrap();
        assert_eq!(s.next_line(), Ok(Some(b"0123456789".to_vec())));
    }

    #[test]
    fn the_stream_total_is_capped_even_with_short_lines() {
        let mut s = LineSplitter::new(10, 20);
        s.push(b"a\nb\nc\nd\ne\n").unwrap();
        assert_eq!(lines_of(&mut s).len(), 5);
        s.push(b"f\ng\nh\ni\nj\n").unwrap();
        assert_eq!(
            s.push(b"k\n"),
            Err(OllamaError::TooLarge { limit: 20 }),
            "22 bytes in all"
        );
    }
}
