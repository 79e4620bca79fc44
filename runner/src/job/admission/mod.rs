//! Admission of model work: per model, at most as many model steps (a vision step, a
//! feedback step — each one or a few model calls) in flight at once as Ollama serves in
//! parallel for this runner (`AI_MAX_PARALLEL_CALLS`; Ollama's `OLLAMA_NUM_PARALLEL` counts
//! per loaded model too), and in an order that spares the GPU model swaps ([`policy`]:
//! steps of the running or resident model first, a cold model's phase once the running one
//! has drained, no step held back longer than `AI_MAX_PHASE_WAIT_SECONDS`). Work beyond the
//! slots waits here, in the runner, where the wait costs nothing — not inside Ollama, where it
//! would count against the call's time limit. A step's time budget starts when it is
//! admitted; its job's lease is extended meanwhile.

pub mod policy;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::job::error_code::Phase;
use crate::telemetry::metrics::Metrics;
use learning_contract::model::same_model;

/// What the GPU holds right now (Ollama's `/api/ps`); empty when unknown.
#[async_trait]
pub trait Residency: Send + Sync {
    /// The names of the loaded models.
    async fn resident(&self) -> Vec<String>;
    /// Loads `model` (returns once it is loaded, or the load failed).
    async fn load(&self, model: &str);
}

/// Which models other runners on the same database are running now (see
/// `crate::db::phase_locks`): a runner whose own steps have drained does not begin another
/// model's phase while one of them still runs the current one.
#[async_trait]
pub trait PhaseLocks: Send + Sync {
    /// This runner has one more step of `model` in flight.
    async fn hold(&self, model: &str);
    /// One step of `model` ended.
    async fn release(&self, model: &str);
    /// Whether another runner holds `model` (`None`: unknown).
    async fn held_elsewhere(&self, model: &str) -> Option<bool>;
}

/// How often a waiting step looks again (for the phase bound and for `/api/ps`).
const RECHECK: Duration = Duration::from_millis(250);

/// The models and the rule of a limited admission.
struct Limited {
    /// Steps in flight per model.
    capacity: usize,
    vision_model: String,
    feedback_model: String,
    bound: Duration,
    residency: Option<Arc<dyn Residency>>,
    locks: Option<Arc<dyn PhaseLocks>>,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Waiting steps, oldest first: (id, model, since).
    waiting: Vec<(u64, String, Instant)>,
    /// Models of the admitted steps.
    running: Vec<String>,
    /// Steps admitted but not yet picked up by their waiter: (id, model).
    granted: Vec<(u64, String)>,
    /// The model of the step admitted last: presumably resident when `/api/ps` is not read.
    last_model: Option<String>,
}

/// The runner's model slots; unlimited for backends without a capacity (the stub).
#[derive(Clone, Default)]
pub struct ModelAdmission {
    limited: Option<Arc<Limited>>,
}

impl std::fmt::Debug for ModelAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelAdmission")
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// A model slot, held while the step runs.
pub struct Admitted {
    release: Option<(Arc<Limited>, String)>,
    in_flight: prometheus::IntGauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.in_flight.dec();
        if let Some((limited, model)) = self.release.take() {
            if let Some(locks) = limited.phase_locks().cloned() {
                let model = model.clone();
                // Outside a runtime (a test's end) the session ends with the process anyway.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { locks.release(&model).await });
                }
            }
            let mut state = limited.lock();
            if let Some(i) = state.running.iter().position(|m| *m == model) {
                state.running.remove(i);
            }
            drop(state);
            limited.changed.notify_waiters();
        }
    }
}

/// A limited admission's settings.
#[derive(Clone)]
pub struct AdmissionSettings {
    /// Steps in flight at once per model (at least one).
    pub capacity: usize,
    /// The vision step's model.
    pub vision_model: String,
    /// The feedback step's model.
    pub feedback_model: String,
    /// The longest a step is held back for its model's phase (zero: first come, first served).
    pub phase_bound: Duration,
    /// Where the resident models are read; `None`: only the running ones are known.
    pub residency: Option<Arc<dyn Residency>>,
    /// Where the runners sharing a database agree on the phase; `None`: this runner alone.
    pub phase_locks: Option<Arc<dyn PhaseLocks>>,
}

impl ModelAdmission {
    /// No limit.
    pub fn unlimited() -> Self {
        ModelAdmission::default()
    }

    /// At most `capacity` steps per model at once, first come, first served.
    pub fn with_capacity(capacity: usize) -> Self {
        ModelAdmission::limited(AdmissionSettings {
            capacity,
            vision_model: "vision".into(),
            feedback_model: "feedback".into(),
            phase_bound: Duration::ZERO,
            residency: None,
            phase_locks: None,
        })
    }

    /// A limited admission. Two names of one model (`x`, `x:latest`) share one model's slots.
    pub fn limited(settings: AdmissionSettings) -> Self {
        let feedback_model = if same_model(&settings.vision_model, &settings.feedback_model) {
            settings.vision_model.clone()
        } else {
            settings.feedback_model
        };
        ModelAdmission {
            limited: Some(Arc::new(Limited {
                capacity: settings.capacity.max(1),
                vision_model: settings.vision_model,
                feedback_model,
                bound: settings.phase_bound,
                residency: settings.residency,
                locks: settings.phase_locks,
                state: Mutex::default(),
                changed: Notify::new(),
            })),
        }
    }

    /// The limit per model, if any.
    pub fn capacity(&self) -> Option<usize> {
        self.limited.as_ref().map(|l| l.capacity)
    }

    /// Waits for a slot for `phase` (recording the wait), then — when its model is not
    /// loaded, as for the first step of a phase after a swap — loads the model, so that the
    /// load does not count against the step's time limit; holds the slot until dropped.
    pub async fn admit(&self, phase: Phase, metrics: &Metrics) -> Admitted {
        let started = Instant::now();
        let release = match &self.limited {
            Some(limited) => Some(limited.clone().wait_for_turn(phase).await),
            None => None,
        };
        metrics
            .admission_wait
            .with_label_values(&[phase.as_str()])
            .observe(started.elapsed().as_secs_f64());
        metrics.model_phases_in_flight.inc();
        // The slot is held by `Admitted` from here on: a job aborted during the load below
        // gives it back when this future is dropped.
        let admitted = Admitted {
            release,
            in_flight: metrics.model_phases_in_flight.clone(),
        };
        if let Some((limited, model)) = &admitted.release {
            if let Some(locks) = limited.phase_locks() {
                locks.hold(model).await;
            }
            limited.ensure_loaded(model).await;
        }
        admitted
    }
}

impl Limited {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads `model` unless `/api/ps` lists it (or residency is not read at all, or steps are
    /// admitted first come, first served: there, steps of both models run side by side, and
    /// loading ahead would only make two steps' loads evict each other).
    async fn ensure_loaded(&self, model: &str) {
        let Some(source) = self.residency.as_ref().filter(|_| !self.bound.is_zero()) else {
            return;
        };
        if !source.resident().await.iter().any(|l| same_model(l, model)) {
            source.load(model).await;
        }
    }

    /// Queues a step for `phase` and returns once it is admitted.
    async fn wait_for_turn(self: Arc<Self>, phase: Phase) -> (Arc<Limited>, String) {
        let model = match phase {
            Phase::Vision => self.vision_model.clone(),
            Phase::Feedback => self.feedback_model.clone(),
        };
        let id = {
            let mut state = self.lock();
            state.next_id += 1;
            let id = state.next_id;
            state.waiting.push((id, model.clone(), Instant::now()));
            id
        };
        // Leaves the queue if this future is dropped (the job was aborted) before admission.
        let mut ticket = Ticket {
            limited: self.clone(),
            id,
            admitted: false,
        };
        loop {
            let changed = self.changed.notified();
            self.dispatch().await;
            if self.take_grant(id) {
                ticket.admitted = true;
                return (self.clone(), model);
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    fn take_grant(&self, id: u64) -> bool {
        let mut state = self.lock();
        match state.granted.iter().position(|(g, _)| *g == id) {
            Some(i) => {
                state.granted.remove(i);
                true
            }
            None => false,
        }
    }

    /// The phase locks, when phases are on (first come, first served needs none).
    fn phase_locks(&self) -> Option<&Arc<dyn PhaseLocks>> {
        self.locks.as_ref().filter(|_| !self.bound.is_zero())
    }

    /// The models other runners run now, when it matters (phases on, nothing running here,
    /// steps waiting); empty when unknown.
    async fn elsewhere(&self) -> Vec<String> {
        let Some(locks) = self.phase_locks() else {
            return Vec::new();
        };
        let idle_with_work = {
            let state = self.lock();
            state.running.is_empty() && !state.waiting.is_empty()
        };
        let mut models = vec![self.vision_model.clone()];
        if self.feedback_model != self.vision_model {
            models.push(self.feedback_model.clone());
        }
        let mut out = Vec::new();
        for model in models.into_iter().filter(|_| idle_with_work) {
            if locks.held_elsewhere(&model).await == Some(true) {
                out.push(model);
            }
        }
        out
    }

    /// Admits waiting steps while their models have free slots, as [`policy::next`] says.
    async fn dispatch(&self) {
        let needs_residency = {
            let state = self.lock();
            state
                .waiting
                .iter()
                .any(|(_, m, _)| !state.running.contains(m))
        };
        let loaded = match (&self.residency, needs_residency) {
            (Some(source), true) if !self.bound.is_zero() => source.resident().await,
            _ => Vec::new(),
        };
        let mut resident: Vec<String> = [&self.vision_model, &self.feedback_model]
            .into_iter()
            .filter(|m| loaded.iter().any(|l| same_model(l, m)))
            .cloned()
            .collect();
        let elsewhere = self.elsewhere().await;
        let mut admitted_any = false;
        let mut state = self.lock();
        if loaded.is_empty() {
            // `/api/ps` not read (or empty): the model of the last step is the best guess.
            resident.extend(state.last_model.clone());
        }
        loop {
            let now = Instant::now();
            let views: Vec<policy::Waiting<'_>> = state
                .waiting
                .iter()
                .map(|(_, m, since)| policy::Waiting {
                    model: m,
                    waited: now.duration_since(*since),
                })
                .collect();
            let running: Vec<&str> = state.running.iter().map(String::as_str).collect();
            let Some(i) = policy::next(
                &views,
                &running,
                &elsewhere,
                &resident,
                self.capacity,
                self.bound,
            ) else {
                break;
            };
            let (id, model, _) = state.waiting.remove(i);
            state.running.push(model.clone());
            state.last_model = Some(model.clone());
            state.granted.push((id, model));
            admitted_any = true;
        }
        drop(state);
        if admitted_any {
            self.changed.notify_waiters();
        }
    }
}

/// A queued step; leaves the queue (or gives its slot back) when dropped unpicked.
struct Ticket {
    limited: Arc<Limited>,
    id: u64,
    admitted: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.admitted {
            return;
        }
        let mut state = self.limited.lock();
        state.waiting.retain(|(id, _, _)| *id != self.id);
        if let Some(i) = state.granted.iter().position(|(g, _)| *g == self.id) {
            // Admitted while it was being dropped: free the slot it was given.
            let (_, model) = state.granted.remove(i);
            if let Some(r) = state.running.iter().position(|m| *m == model) {
                state.running.remove(r);
            }
        }
        drop(state);
        self.limited.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
