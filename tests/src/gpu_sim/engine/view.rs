//! What the engine shows without changing the simulation: the clock, the loaded models,
//! the recorder's report.

use super::{Engine, State};
use crate::gpu_sim::config::SimSecs;
use crate::gpu_sim::recorder::GpuReport;

impl Engine {
    /// The current simulated time.
    pub(in crate::gpu_sim) fn now(&self) -> SimSecs {
        self.now
    }

    /// Loaded models (not those still loading): `(model, seconds until it unloads when
    /// idle; negative: never)`.
    pub(in crate::gpu_sim) fn loaded_models(&self) -> Vec<(usize, SimSecs)> {
        (self.models.iter().enumerate())
            .filter_map(|(m, s)| {
                let r = s.resident.as_ref().filter(|r| !r.loading)?;
                let left = match r.expires.filter(|_| s.idle()) {
                    Some(at) => at - self.now,
                    None => r.keep_alive,
                };
                Some((m, left))
            })
            .collect()
    }

    /// The recorder's report now.
    pub(in crate::gpu_sim) fn report(&self) -> GpuReport {
        let running: Vec<(usize, usize, SimSecs)> = (self.calls.values())
            .filter_map(|c| match c.state {
                State::Running { slot, started, .. } => Some((c.model, slot, started)),
                _ => None,
            })
            .collect();
        let loading: Vec<(usize, SimSecs)> = (self.models.iter().enumerate())
            .filter_map(|(m, s)| {
                let r = s.resident.as_ref().filter(|r| r.loading)?;
                Some((m, r.load_started))
            })
            .collect();
        self.rec.snapshot(self.now, &running, &loading)
    }

    /// Forgets what was recorded.
    pub(in crate::gpu_sim) fn reset(&mut self) {
        self.rec.reset(self.now);
    }
}
