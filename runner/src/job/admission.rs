//! Admission of model work: at most as many model phases (a vision phase, a feedback phase —
//! each a sequence of model calls) in flight at once as Ollama serves in parallel
//! (`AI_MAX_PARALLEL_CALLS`). Work beyond that waits here, in the runner, where the wait
//! costs nothing — not inside Ollama, where it would count against the call's time limit.
//! A phase's time budget starts when it is admitted; its lease is extended meanwhile.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::job::error_code::Phase;
use crate::telemetry::metrics::Metrics;

/// The runner's model slots; unlimited for backends without a capacity (the stub).
#[derive(Clone, Debug, Default)]
pub struct ModelAdmission {
    slots: Option<Arc<Semaphore>>,
    capacity: usize,
}

/// A model slot, held while the phase runs.
pub struct Admitted {
    _permit: Option<OwnedSemaphorePermit>,
    in_flight: prometheus::IntGauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl ModelAdmission {
    /// No limit.
    pub fn unlimited() -> Self {
        ModelAdmission::default()
    }

    /// At most `capacity` phases at once (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        ModelAdmission {
            slots: Some(Arc::new(Semaphore::new(capacity))),
            capacity,
        }
    }

    /// The limit, if any.
    pub fn capacity(&self) -> Option<usize> {
        self.slots.as_ref().map(|_| self.capacity)
    }

    /// Waits for a slot for `phase` (recording the wait), then holds it until dropped.
    pub async fn admit(&self, phase: Phase, metrics: &Metrics) -> Admitted {
        let started = Instant::now();
        let permit = match &self.slots {
            Some(slots) => Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the admission semaphore is never closed"),
            ),
            None => None,
        };
        metrics
            .admission_wait
            .with_label_values(&[phase.as_str()])
            .observe(started.elapsed().as_secs_f64());
        metrics.model_phases_in_flight.inc();
        Admitted {
            _permit: permit,
            in_flight: metrics.model_phases_in_flight.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_beyond_the_capacity_wait_for_a_slot() {
        let metrics = Metrics::new().unwrap();
        let admission = ModelAdmission::with_capacity(2);
        assert_eq!(admission.capacity(), Some(2));
        let a = admission.admit(Phase::Vision, &metrics).await;
        let _b = admission.admit(Phase::Feedback, &metrics).await;
        assert_eq!(metrics.model_phases_in_flight.get(), 2);
        let third = admission.admit(Phase::Vision, &metrics);
        tokio::pin!(third);
        assert!(
            futures_poll_once(third.as_mut()).await.is_none(),
            "the third waits"
        );
        drop(a);
        let _c = third.await;
        assert_eq!(metrics.model_phases_in_flight.get(), 2);
        assert_eq!(ModelAdmission::unlimited().capacity(), None);
    }

    /// Polls a future once: its output if it is ready at once.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
