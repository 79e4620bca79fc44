//! A huge response body made on the fly: a head, many filler bytes, a tail, sent in 64 KiB
//! frames and never held in memory. Each frame is counted when hyper takes it, so a test can
//! tell how much of the body left the fake before the client stopped reading: hyper takes
//! frames only as the connection drains, and drops the body when the client hangs up.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use hyper::body::Frame;

/// Bytes per frame of filler.
const FRAME: u64 = 64 << 10;

/// A body of exactly `head + filler + tail` bytes, chunked (no `Content-Length`).
pub struct HugeBody {
    head: Option<Bytes>,
    filler: u64,
    fill: Bytes,
    tail: Option<Bytes>,
    sent: Arc<AtomicU64>,
}

impl HugeBody {
    /// `total` bytes in all (at least head and tail): `head`, then `fill` bytes, then `tail`;
    /// every byte handed to hyper is added to `sent`.
    pub fn new(head: String, fill: u8, tail: String, total: u64, sent: Arc<AtomicU64>) -> Self {
        let filler = total.saturating_sub((head.len() + tail.len()) as u64);
        HugeBody {
            head: (!head.is_empty()).then(|| Bytes::from(head)),
            filler,
            fill: Bytes::from(vec![fill; FRAME as usize]),
            tail: (!tail.is_empty()).then(|| Bytes::from(tail)),
            sent,
        }
    }
}

impl hyper::body::Body for HugeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = if let Some(head) = self.head.take() {
            Some(head)
        } else if self.filler > 0 {
            let n = self.filler.min(FRAME);
            self.filler -= n;
            Some(self.fill.slice(..n as usize))
        } else {
            self.tail.take()
        };
        if let Some(bytes) = &next {
            self.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(next.map(|bytes| Ok(Frame::data(bytes))))
    }
}
