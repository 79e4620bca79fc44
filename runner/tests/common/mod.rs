//! Shared pieces of the runner's integration tests: scripted adapters that count their calls,
//! and a job context wired to a real test database.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use learning_runner::adapters::stub::StubBackend;
use learning_runner::adapters::{
    AdapterError, Adapters, FeedbackAdapter, FeedbackOutput, FeedbackRequest, VisionAdapter, VisionOutput, VisionRequest,
};
use learning_runner::backoff::BackoffPolicy;
use learning_runner::metrics::Metrics;
use learning_runner::process::JobContext;
use sqlx::PgPool;

/// What a scripted call does.
#[derive(Clone)]
pub enum Script {
    /// Delegate to the stub.
    Stub,
    /// Fail with this error.
    Fail(AdapterError),
    /// Sleep, then delegate to the stub.
    Sleep(Duration),
    /// Panic.
    Panic,
}

/// An adapter pair whose behaviour is scripted per call and whose calls are counted.
pub struct Scripted {
    stub: StubBackend,
    pub vision_script: Mutex<Vec<Script>>,
    pub feedback_script: Mutex<Vec<Script>>,
    pub vision_calls: AtomicUsize,
    pub feedback_calls: AtomicUsize,
    /// Texts the feedback adapter saw (to check what reached the model).
    pub feedback_texts: Mutex<Vec<String>>,
}

impl Scripted {
    /// Every call behaves like the stub.
    pub fn stub() -> Arc<Self> {
        Self::with(vec![], vec![])
    }

    /// Calls take their behaviour from the front of each list; when a list is empty, the stub.
    pub fn with(vision: Vec<Script>, feedback: Vec<Script>) -> Arc<Self> {
        Arc::new(Scripted {
            stub: StubBackend::default(),
            vision_script: Mutex::new(vision),
            feedback_script: Mutex::new(feedback),
            vision_calls: AtomicUsize::new(0),
            feedback_calls: AtomicUsize::new(0),
            feedback_texts: Mutex::new(Vec::new()),
        })
    }

    pub fn adapters(self: &Arc<Self>) -> Adapters {
        Adapters {
            backend: "scripted",
            vision: self.clone(),
            feedback: self.clone(),
        }
    }

    fn next(list: &Mutex<Vec<Script>>) -> Script {
        let mut l = list.lock().unwrap();
        if l.is_empty() {
            Script::Stub
        } else {
            l.remove(0)
        }
    }

    pub fn vision_count(&self) -> usize {
        self.vision_calls.load(Ordering::SeqCst)
    }

    pub fn feedback_count(&self) -> usize {
        self.feedback_calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl VisionAdapter for Scripted {
    async fn extract(&self, request: &VisionRequest) -> Result<VisionOutput, AdapterError> {
        self.vision_calls.fetch_add(1, Ordering::SeqCst);
        match Self::next(&self.vision_script) {
            Script::Stub => self.stub.extract(request).await,
            Script::Fail(e) => Err(e),
            Script::Sleep(d) => {
                tokio::time::sleep(d).await;
                self.stub.extract(request).await
            }
            Script::Panic => panic!("scripted vision panic"),
        }
    }
}

#[async_trait]
impl FeedbackAdapter for Scripted {
    async fn feedback(&self, request: &FeedbackRequest) -> Result<FeedbackOutput, AdapterError> {
        self.feedback_calls.fetch_add(1, Ordering::SeqCst);
        self.feedback_texts.lock().unwrap().push(request.text_md.clone());
        match Self::next(&self.feedback_script) {
            Script::Stub => self.stub.feedback(request).await,
            Script::Fail(e) => Err(e),
            Script::Sleep(d) => {
                tokio::time::sleep(d).await;
                self.stub.feedback(request).await
            }
            Script::Panic => panic!("scripted feedback panic"),
        }
    }
}

/// The contract's default retry policy without jitter (so delays are exact).
pub fn backoff() -> BackoffPolicy {
    BackoffPolicy {
        base: Duration::from_secs(10),
        cap: Duration::from_secs(600),
        jitter_ratio: 0.0,
    }
}

/// A job context on `pool` with the contract's defaults (3 retries, 10 s backoff).
pub fn context(pool: &PgPool, adapters: Adapters) -> JobContext {
    JobContext {
        pool: pool.clone(),
        adapters,
        metrics: Metrics::new().unwrap(),
        max_retries: 3,
        backoff: backoff(),
        timeout_vision: Duration::from_secs(5),
        timeout_feedback: Duration::from_secs(5),
    }
}

/// The lease length tests use.
pub const LEASE: Duration = Duration::from_secs(30);
