//! The simulator's recorder: counts and times per model and for the whole GPU, and a
//! timeline of events, all in simulated seconds since the start or the last reset.

use super::config::{GpuConfig, SimSecs};

/// Longest timeline kept; later events are only counted ([`GpuReport::timeline_dropped`]).
pub const MAX_TIMELINE: usize = 100_000;

/// What happened, in the timeline.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// A generate/chat request arrived (a call or a load request).
    Arrived,
    /// A request got 503: the queue was full.
    Rejected,
    /// The model began loading.
    LoadStarted,
    /// The model is loaded.
    LoadFinished,
    /// The model was unloaded to make room for another (a swap).
    Evicted,
    /// The model was unloaded because its `keep_alive` ran out (or was 0).
    Expired,
    /// A call got a slot after waiting this long since it arrived.
    Admitted {
        /// Arrival to admission.
        waited: SimSecs,
        /// The slot of the model it runs in.
        slot: usize,
    },
    /// A call finished after running this long.
    Finished {
        /// Admission to the end.
        ran: SimSecs,
        /// `stop` or `length`.
        done_reason: &'static str,
    },
    /// A load request (empty prompt) was answered after waiting this long.
    Warmed {
        /// Arrival to answer.
        waited: SimSecs,
    },
    /// The client went away before its call finished.
    Cancelled,
}

/// One event of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct SimEvent {
    /// Simulated time since the start (not since the reset).
    pub at: SimSecs,
    /// The model.
    pub model: String,
    /// The request, for request events.
    pub call: Option<u64>,
    /// What happened.
    pub kind: EventKind,
}

/// Counts and times of one model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelReport {
    /// Name with tag.
    pub name: String,
    /// Loads begun (a first load, a swap in, a reload after an expiry).
    pub loads: u64,
    /// Times this model was unloaded to make room for another.
    pub evictions: u64,
    /// Times it was unloaded by its `keep_alive`.
    pub expiries: u64,
    /// Generations finished.
    pub calls: u64,
    /// Of those, cut by `num_predict` (`done_reason: "length"`).
    pub cut: u64,
    /// Load requests (empty prompt) answered.
    pub warmups: u64,
    /// Requests whose client went away first.
    pub cancelled: u64,
    /// Busy time of each slot (index = slot), including calls still running.
    pub slot_busy: Vec<SimSecs>,
    /// Sum over admitted calls of arrival to admission.
    pub queue_wait_total: SimSecs,
    /// The longest of those waits.
    pub queue_wait_max: SimSecs,
    /// Time spent loading, including a load still under way.
    pub loading: SimSecs,
}

impl ModelReport {
    /// Busy time of all slots together.
    pub fn busy(&self) -> SimSecs {
        self.slot_busy.iter().sum()
    }
}

/// What the recorder saw since the start or the last [`super::GpuSim::reset`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuReport {
    /// Simulated time covered.
    pub wall: SimSecs,
    /// Time with at least one call running on any model.
    pub busy: SimSecs,
    /// `busy / wall` (0 for an empty wall).
    pub busy_fraction: f64,
    /// Loads begun, all models.
    pub loads: u64,
    /// Loads that had to unload another model first (= sum of evictions).
    pub swaps: u64,
    /// Requests rejected with 503.
    pub rejected: u64,
    /// Per model, in the configured order.
    pub models: Vec<ModelReport>,
    /// Events in order (at most [`MAX_TIMELINE`]).
    pub timeline: Vec<SimEvent>,
    /// Events not kept because the timeline was full.
    pub timeline_dropped: u64,
}

impl GpuReport {
    /// The report of `name` (a missing tag means `:latest`).
    pub fn model(&self, name: &str) -> Option<&ModelReport> {
        let name = super::config::canonical(name);
        self.models.iter().find(|m| m.name == name)
    }

    /// Generations finished, all models.
    pub fn calls(&self) -> u64 {
        self.models.iter().map(|m| m.calls).sum()
    }
}

/// The recording side of the engine.
pub(super) struct Recorder {
    pub(super) since: SimSecs,
    pub(super) report: GpuReport,
    running: usize,
    busy_from: SimSecs,
    slots: usize,
}

impl Recorder {
    pub(super) fn new(cfg: &GpuConfig) -> Recorder {
        let mut r = Recorder {
            since: 0.0,
            report: GpuReport::default(),
            running: 0,
            busy_from: 0.0,
            slots: cfg.slots,
        };
        r.report.models = cfg.models.iter().map(|m| r.empty(&m.name)).collect();
        r
    }

    fn empty(&self, name: &str) -> ModelReport {
        ModelReport {
            name: name.to_owned(),
            slot_busy: vec![0.0; self.slots],
            ..ModelReport::default()
        }
    }

    /// Forgets everything recorded; calls and loads under way count from `now` on.
    pub(super) fn reset(&mut self, now: SimSecs) {
        self.since = now;
        let names: Vec<String> = self.report.models.iter().map(|m| m.name.clone()).collect();
        let models = names.iter().map(|n| self.empty(n)).collect();
        self.report = GpuReport {
            models,
            ..GpuReport::default()
        };
    }

    pub(super) fn event(&mut self, at: SimSecs, model: usize, call: Option<u64>, kind: EventKind) {
        if self.report.timeline.len() >= MAX_TIMELINE {
            self.report.timeline_dropped += 1;
            return;
        }
        let model = self.report.models[model].name.clone();
        self.report.timeline.push(SimEvent {
            at,
            model,
            call,
            kind,
        });
    }

    pub(super) fn model(&mut self, model: usize) -> &mut ModelReport {
        &mut self.report.models[model]
    }

    /// The part of `[from, to]` after the last reset.
    pub(super) fn counted(&self, from: SimSecs, to: SimSecs) -> SimSecs {
        (to - from.max(self.since)).max(0.0)
    }

    pub(super) fn call_started(&mut self, now: SimSecs) {
        if self.running == 0 {
            self.busy_from = now;
        }
        self.running += 1;
    }

    pub(super) fn call_ended(&mut self, model: usize, slot: usize, started: SimSecs, now: SimSecs) {
        let ran = self.counted(started, now);
        self.report.models[model].slot_busy[slot] += ran;
        self.running -= 1;
        if self.running == 0 {
            self.report.busy += self.counted(self.busy_from, now);
        }
    }

    /// The report at `now`, with the calls and loads under way counted up to `now`:
    /// `running` is `(model, slot, started)`, `loading` is `(model, load started)`.
    pub(super) fn snapshot(
        &self,
        now: SimSecs,
        running: &[(usize, usize, SimSecs)],
        loading: &[(usize, SimSecs)],
    ) -> GpuReport {
        let mut report = self.report.clone();
        for &(model, slot, started) in running {
            report.models[model].slot_busy[slot] += self.counted(started, now);
        }
        for &(model, started) in loading {
            report.models[model].loading += self.counted(started, now);
        }
        if self.running > 0 {
            report.busy += self.counted(self.busy_from, now);
        }
        report.wall = (now - self.since).max(0.0);
        report.busy_fraction = if report.wall > 0.0 {
            report.busy / report.wall
        } else {
            0.0
        };
        report
    }
}
