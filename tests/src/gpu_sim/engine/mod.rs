//! The scheduler of the simulated GPU: a discrete-event simulation on the simulated clock.
//! Requests arrive at the clock's current time; everything after that (loads, admissions,
//! completions, expiries) happens at times computed from the configuration, never from when
//! a task happened to wake up. See the module docs of [`super`] for the rules.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::config::{splitmix, GpuConfig, SimSecs};
use super::recorder::{EventKind, Recorder};

mod view;

/// How a finished request went.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Outcome {
    /// `load`, `stop` or `length`.
    pub done_reason: &'static str,
    /// Arrival to admission (to the answer, for a load request).
    pub waited: SimSecs,
    /// Of that, waiting for the model's load.
    pub load_wait: SimSecs,
    /// Admission to the end.
    pub ran: SimSecs,
}

/// What a request asks.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Ask {
    /// Load the model (empty prompt or messages).
    Load,
    /// A generation of this cost (before jitter), ending with this done reason.
    Generate {
        cost: SimSecs,
        done_reason: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// In the global FIFO, not yet given to its model.
    Pending,
    /// Given to its (loading or loaded) model, waiting for the load or a slot.
    Waiting,
    /// In a slot since `started`, for `takes` (ending at `started + takes`).
    Running {
        slot: usize,
        started: SimSecs,
        takes: SimSecs,
    },
}

struct Call {
    model: usize,
    arrived: SimSecs,
    keep_alive: Option<SimSecs>,
    ask: Ask,
    state: State,
    load_wait: SimSecs,
    answer: Option<oneshot::Sender<Outcome>>,
}

struct Resident {
    loading: bool,
    load_started: SimSecs,
    ready_at: SimSecs,
    last_used: SimSecs,
    keep_alive: SimSecs,
    /// Set when the model became idle; `None` while busy (or never stamped).
    idle_since: Option<SimSecs>,
    /// When an idle model unloads; `None`: never (negative keep-alive) or busy.
    expires: Option<SimSecs>,
}

#[derive(Default)]
struct ModelState {
    resident: Option<Resident>,
    /// Generations given to this model, waiting for a slot (FIFO).
    waiting: VecDeque<u64>,
    /// Load requests waiting for the load to finish.
    warming: Vec<u64>,
    /// The call in each slot.
    slots: Vec<Option<u64>>,
}

impl ModelState {
    fn idle(&self) -> bool {
        self.resident.as_ref().is_some_and(|r| !r.loading)
            && self.waiting.is_empty()
            && self.warming.is_empty()
            && self.slots.iter().all(Option::is_none)
    }
}

/// Events in the order they are handled when simultaneous: loads, completions, expiries.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Event {
    Loaded(usize),
    Finished(u64),
    Expired(usize),
}

/// The queue is full (`queue_limit`).
#[derive(Debug)]
pub(super) struct Busy;

/// The whole simulated server state.
pub(super) struct Engine {
    cfg: Arc<GpuConfig>,
    now: SimSecs,
    models: Vec<ModelState>,
    pending: VecDeque<u64>,
    calls: BTreeMap<u64, Call>,
    next_id: u64,
    rng: u64,
    rec: Recorder,
}

impl Engine {
    pub(super) fn new(cfg: Arc<GpuConfig>) -> Engine {
        let models = (0..cfg.models.len())
            .map(|_| ModelState {
                slots: vec![None; cfg.slots],
                ..ModelState::default()
            })
            .collect();
        Engine {
            rec: Recorder::new(&cfg),
            rng: cfg.seed,
            cfg,
            now: 0.0,
            models,
            pending: VecDeque::new(),
            calls: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Handles every event up to `to`, in time order, then sets the clock to `to`.
    pub(super) fn advance(&mut self, to: SimSecs) {
        while let Some((at, event)) = self.next_event().filter(|(at, _)| *at <= to) {
            self.now = self.now.max(at);
            match event {
                Event::Loaded(m) => self.loaded(m),
                Event::Finished(id) => self.finished(id),
                Event::Expired(m) => self.unload(m, false),
            }
            self.schedule();
        }
        self.now = self.now.max(to);
    }

    /// When the next event is due.
    pub(super) fn next_time(&self) -> Option<SimSecs> {
        self.next_event().map(|(at, _)| at)
    }

    fn next_event(&self) -> Option<(SimSecs, Event)> {
        let loads = self.models.iter().enumerate().filter_map(|(m, s)| {
            let r = s.resident.as_ref().filter(|r| r.loading)?;
            Some((r.ready_at, Event::Loaded(m)))
        });
        let ends = self.calls.iter().filter_map(|(id, c)| match c.state {
            State::Running { started, takes, .. } => Some((started + takes, Event::Finished(*id))),
            _ => None,
        });
        let expiries = self.models.iter().enumerate().filter_map(|(m, s)| {
            let at = s.resident.as_ref()?.expires.filter(|_| s.idle())?;
            Some((at, Event::Expired(m)))
        });
        loads
            .chain(ends)
            .chain(expiries)
            .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
    }

    /// A new request for model `model`; its answer comes through the receiver.
    pub(super) fn submit(
        &mut self,
        model: usize,
        ask: Ask,
        keep_alive: Option<SimSecs>,
    ) -> Result<(u64, oneshot::Receiver<Outcome>), Busy> {
        let waiting = self
            .calls
            .values()
            .filter(|c| !matches!(c.state, State::Running { .. }));
        if waiting.count() >= self.cfg.queue_limit {
            self.rec.report.rejected += 1;
            self.rec.event(self.now, model, None, EventKind::Rejected);
            return Err(Busy);
        }
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        let call = Call {
            model,
            arrived: self.now,
            keep_alive,
            ask,
            state: State::Pending,
            load_wait: 0.0,
            answer: Some(tx),
        };
        self.calls.insert(id, call);
        self.pending.push_back(id);
        self.rec
            .event(self.now, model, Some(id), EventKind::Arrived);
        self.schedule();
        Ok((id, rx))
    }

    /// The client of `id` went away: the request leaves its queue or frees its slot.
    pub(super) fn cancel(&mut self, id: u64) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        let m = call.model;
        match call.state {
            State::Pending => self.pending.retain(|x| *x != id),
            State::Waiting => {
                self.models[m].waiting.retain(|x| *x != id);
                self.models[m].warming.retain(|x| *x != id);
            }
            State::Running { slot, started, .. } => {
                self.models[m].slots[slot] = None;
                self.rec.call_ended(m, slot, started, self.now);
            }
        }
        self.rec.model(m).cancelled += 1;
        self.rec.event(self.now, m, Some(id), EventKind::Cancelled);
        self.schedule();
    }

    /// `keep_alive: 0` with an empty prompt: the model unloads as soon as it is idle.
    pub(super) fn expire(&mut self, model: usize) {
        if let Some(r) = self.models[model].resident.as_mut() {
            r.keep_alive = 0.0;
            r.idle_since = None;
        }
        self.schedule();
        self.advance(self.now);
    }

    /// Gives pending requests to their models (loading, evicting as needed), stops at the
    /// first one that cannot be placed (Ollama queues everything behind it), then starts
    /// waiting calls in free slots and stamps models that became idle.
    fn schedule(&mut self) {
        while let Some(&id) = self.pending.front() {
            let m = self.calls[&id].model;
            if self.models[m].resident.is_none() && !self.make_room_and_load(m) {
                break;
            }
            self.pending.pop_front();
            self.dispatch(id);
        }
        for m in 0..self.models.len() {
            self.start_calls(m);
        }
        let now = self.now;
        for state in &mut self.models {
            let idle = state.idle();
            let Some(r) = state.resident.as_mut() else {
                continue;
            };
            if !idle {
                r.idle_since = None;
            } else if r.idle_since.is_none() {
                r.idle_since = Some(now);
                r.expires = (r.keep_alive >= 0.0).then_some(now + r.keep_alive);
            }
        }
    }

    fn make_room_and_load(&mut self, m: usize) -> bool {
        let resident = self.models.iter().filter(|s| s.resident.is_some()).count();
        if resident >= self.cfg.resident_models {
            let victim = (self.models.iter().enumerate())
                .filter(|(_, s)| s.idle())
                .map(|(i, s)| (s.resident.as_ref().map_or(0.0, |r| r.last_used), i))
                .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            let Some((_, victim)) = victim else {
                return false;
            };
            self.unload(victim, true);
            self.rec.report.swaps += 1;
        }
        let now = self.now;
        self.models[m].resident = Some(Resident {
            loading: true,
            load_started: now,
            ready_at: now + self.cfg.models[m].load,
            last_used: now,
            keep_alive: self.cfg.keep_alive,
            idle_since: None,
            expires: None,
        });
        self.rec.report.loads += 1;
        self.rec.model(m).loads += 1;
        self.rec.event(now, m, None, EventKind::LoadStarted);
        true
    }

    fn unload(&mut self, m: usize, evicted: bool) {
        self.models[m].resident = None;
        let report = self.rec.model(m);
        let (count, kind) = if evicted {
            (&mut report.evictions, EventKind::Evicted)
        } else {
            (&mut report.expiries, EventKind::Expired)
        };
        *count += 1;
        self.rec.event(self.now, m, None, kind);
    }

    fn dispatch(&mut self, id: u64) {
        let now = self.now;
        let default_keep_alive = self.cfg.keep_alive;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let state = &mut self.models[call.model];
        let Some(r) = state.resident.as_mut() else {
            return;
        };
        r.keep_alive = call.keep_alive.unwrap_or(default_keep_alive);
        r.last_used = now;
        r.idle_since = None;
        call.state = State::Waiting;
        call.load_wait = if r.loading { r.ready_at - now } else { 0.0 };
        let answer_now = match (&call.ask, r.loading) {
            (Ask::Load, false) => true,
            (Ask::Load, true) => {
                state.warming.push(id);
                false
            }
            (Ask::Generate { .. }, _) => {
                state.waiting.push_back(id);
                false
            }
        };
        if answer_now {
            self.warmed(id);
        }
    }

    fn loaded(&mut self, m: usize) {
        let now = self.now;
        let Some(r) = self.models[m].resident.as_mut() else {
            return;
        };
        r.loading = false;
        r.last_used = now;
        let started = r.load_started;
        let took = self.rec.counted(started, now);
        self.rec.model(m).loading += took;
        self.rec.event(now, m, None, EventKind::LoadFinished);
        for id in std::mem::take(&mut self.models[m].warming) {
            self.warmed(id);
        }
    }

    /// Answers load request `id` now.
    fn warmed(&mut self, id: u64) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        let waited = self.now - call.arrived;
        self.rec.model(call.model).warmups += 1;
        self.rec
            .event(self.now, call.model, Some(id), EventKind::Warmed { waited });
        let outcome = Outcome {
            done_reason: "load",
            waited,
            load_wait: call.load_wait,
            ran: 0.0,
        };
        if let Some(tx) = call.answer.take() {
            let _ = tx.send(outcome);
        }
    }

    fn start_calls(&mut self, m: usize) {
        if self.models[m].resident.as_ref().is_none_or(|r| r.loading) {
            return;
        }
        while let Some(slot) = self.models[m].slots.iter().position(Option::is_none) {
            let Some(id) = self.models[m].waiting.pop_front() else {
                return;
            };
            let factor = self.jitter();
            let now = self.now;
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let cost = match call.ask {
                Ask::Generate { cost, .. } => cost,
                Ask::Load => 0.0,
            };
            let takes = cost * factor;
            call.state = State::Running {
                slot,
                started: now,
                takes,
            };
            let waited = now - call.arrived;
            self.models[m].slots[slot] = Some(id);
            let report = self.rec.model(m);
            report.queue_wait_total += waited;
            report.queue_wait_max = report.queue_wait_max.max(waited);
            self.rec.call_started(now);
            let kind = EventKind::Admitted { waited, slot };
            self.rec.event(now, m, Some(id), kind);
        }
    }

    fn finished(&mut self, id: u64) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        let State::Running {
            slot,
            started,
            takes,
        } = call.state
        else {
            return;
        };
        let (m, now) = (call.model, self.now);
        self.models[m].slots[slot] = None;
        if let Some(r) = self.models[m].resident.as_mut() {
            r.last_used = now;
        }
        self.rec.call_ended(m, slot, started, now);
        let done_reason = match call.ask {
            Ask::Generate { done_reason, .. } => done_reason,
            Ask::Load => "load",
        };
        let report = self.rec.model(m);
        report.calls += 1;
        report.cut += u64::from(done_reason == "length");
        let ran = takes;
        let kind = EventKind::Finished { ran, done_reason };
        self.rec.event(now, m, Some(id), kind);
        let outcome = Outcome {
            done_reason,
            waited: started - call.arrived,
            load_wait: call.load_wait,
            ran,
        };
        if let Some(tx) = call.answer.take() {
            let _ = tx.send(outcome);
        }
    }

    /// `1 + jitter × u`, `u` uniform in `[-1, 1]` from the seeded generator.
    fn jitter(&mut self) -> f64 {
        if self.cfg.jitter == 0.0 {
            return 1.0;
        }
        1.0 + self.cfg.jitter * splitmix(&mut self.rng)
    }
}
