//! Which waiting model step runs next: the scheduling rule, pure.
//!
//! Each model has its own slots (Ollama serves `OLLAMA_NUM_PARALLEL` requests per loaded
//! model): a step is admitted only while fewer than the per-model limit of its model run.
//!
//! A GPU that holds one model at a time pays a model swap (seconds to a minute) whenever the
//! next call is for the other model. So steps are grouped into phases: a step whose model is
//! already running here or resident in Ollama (`/api/ps`) goes first, oldest first; a step for
//! another model waits until the running phase has drained, then its model's phase begins.
//! No step is held back for its phase past the phase bound: once a step for a cold model has
//! waited that long, nothing more of the running phase is admitted, and its model comes next
//! (so it waits at most the bound plus the running steps, plus any older steps of its own
//! model that go first). With both models resident (a GPU that holds two) nothing is held back, and a bound of
//! zero turns the rule into plain first come, first served. Runners sharing one Ollama read
//! the same `/api/ps`, and runners sharing a database also see which models the others run
//! (advisory locks, `crate::db::phase_locks`): a runner joins another's running phase, and
//! begins another model's only once that phase has drained everywhere.

use std::time::Duration;

/// A waiting step as the rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting<'a> {
    /// Its model.
    pub model: &'a str,
    /// How long it has waited.
    pub waited: Duration,
}

/// The index (in `waiting`, oldest first) of the step to admit now, if any. `running`: the
/// models of the steps in flight here; `elsewhere`: the models other runners on the same
/// database run now (their phase: joined, and not swapped out while it lasts); `resident`: the
/// models Ollama holds (empty when unknown); `per_model`: the steps one model may have in
/// flight here.
pub fn next(
    waiting: &[Waiting<'_>],
    running: &[&str],
    elsewhere: &[String],
    resident: &[String],
    per_model: usize,
    bound: Duration,
) -> Option<usize> {
    let room = |model: &str| running.iter().filter(|r| **r == model).count() < per_model;
    if bound.is_zero() {
        return waiting.iter().position(|w| room(w.model));
    }
    if waiting.is_empty() {
        return None;
    }
    // `/api/ps` counts only while it agrees with what runs here: right after a phase switch
    // it still lists the old model, which must not come back in beside the new one.
    let agrees = running.iter().all(|m| resident.iter().any(|r| r == m));
    let warm = |model: &str| {
        running.contains(&model)
            || elsewhere.iter().any(|e| e == model)
            || (agrees && resident.iter().any(|r| r == model))
    };
    // A step held back for its phase past the bound: nothing more of the running phase is
    // admitted, and once it has drained the starving step's model comes next. A warm step
    // that only waits for a slot of its model is not held back, and holds back nothing.
    if let Some(i) = waiting
        .iter()
        .position(|w| !warm(w.model) && w.waited >= bound)
    {
        return running.is_empty().then_some(i);
    }
    if let Some(i) = waiting.iter().position(|w| warm(w.model) && room(w.model)) {
        return Some(i);
    }
    // Only steps for a cold model wait: begin its phase once the running one has drained,
    // here and in the other runners.
    (running.is_empty() && elsewhere.is_empty()).then_some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(60);

    fn w(model: &str, secs: u64) -> Waiting<'_> {
        Waiting {
            model,
            waited: Duration::from_secs(secs),
        }
    }

    fn resident(models: &[&str]) -> Vec<String> {
        models.iter().map(|m| m.to_string()).collect()
    }

    #[test]
    fn nothing_is_admitted_without_a_free_slot_of_its_model_or_a_waiting_step() {
        assert_eq!(next(&[w("v", 1)], &["v", "v"], &[], &[], 2, BOUND), None);
        assert_eq!(
            next(&[w("v", 1)], &["v", "v"], &[], &[], 2, Duration::ZERO),
            None
        );
        assert_eq!(next(&[], &[], &[], &[], 2, BOUND), None);
        assert_eq!(next(&[], &[], &[], &[], 2, Duration::ZERO), None);
    }

    #[test]
    fn each_model_has_its_own_slots() {
        // First come, first served: the oldest step whose model has a free slot.
        let waiting = [w("v", 3), w("f", 2)];
        assert_eq!(next(&waiting, &["v"], &[], &[], 1, Duration::ZERO), Some(1));
        assert_eq!(next(&waiting, &["v"], &[], &[], 2, Duration::ZERO), Some(0));
        // Phases: with both models resident, the other model's slots fill too.
        let both = resident(&["v", "f"]);
        assert_eq!(next(&waiting, &["v"], &[], &both, 1, BOUND), Some(1));
        assert_eq!(next(&waiting, &["v", "f"], &[], &both, 1, BOUND), None);
    }

    #[test]
    fn steps_of_the_running_or_resident_model_go_first() {
        let waiting = [w("f", 20), w("v", 10), w("v", 5)];
        assert_eq!(
            next(&waiting, &["v"], &[], &[], 2, BOUND),
            Some(1),
            "the running vision phase"
        );
        assert_eq!(
            next(&waiting, &[], &[], &resident(&["v"]), 1, BOUND),
            Some(1),
            "resident vision"
        );
        assert_eq!(
            next(&waiting, &[], &[], &resident(&["f"]), 1, BOUND),
            Some(0)
        );
    }

    #[test]
    fn a_cold_models_phase_begins_once_the_running_one_has_drained() {
        let waiting = [w("f", 20)];
        assert_eq!(
            next(&waiting, &["v"], &[], &resident(&["v"]), 2, BOUND),
            None,
            "drain first"
        );
        assert_eq!(
            next(&waiting, &[], &[], &resident(&["v"]), 1, BOUND),
            Some(0),
            "then swap"
        );
    }

    #[test]
    fn no_step_waits_past_the_bound_for_its_phase() {
        let waiting = [w("f", 61), w("v", 1)];
        assert_eq!(
            next(&waiting, &["v"], &[], &resident(&["v"]), 2, BOUND),
            None,
            "no more vision: the running phase drains"
        );
        assert_eq!(
            next(&waiting, &[], &[], &resident(&["v"]), 1, BOUND),
            Some(0)
        );
    }

    #[test]
    fn a_warm_step_waiting_for_a_slot_past_the_bound_holds_back_nothing() {
        // Both resident: the feedback step waits only for its model's one slot.
        let both = resident(&["v", "f"]);
        let waiting = [w("f", 200), w("v", 1)];
        assert_eq!(next(&waiting, &["f"], &[], &both, 1, BOUND), Some(1));
    }

    #[test]
    fn a_starving_step_behind_a_warm_one_still_ends_the_running_phase() {
        let waiting = [w("v", 5), w("f", 70)];
        let vision = resident(&["v"]);
        assert_eq!(
            next(&waiting, &["v"], &[], &vision, 2, BOUND),
            None,
            "no more vision"
        );
        assert_eq!(
            next(&waiting, &[], &[], &vision, 2, BOUND),
            Some(1),
            "feedback next"
        );
    }

    #[test]
    fn another_runners_phase_is_joined_and_not_swapped_out() {
        // Nothing runs here; another runner runs vision on a one-model GPU.
        let vision = vec!["v".to_owned()];
        let waiting = [w("f", 20), w("v", 10)];
        assert_eq!(
            next(&waiting, &[], &vision, &vision, 1, BOUND),
            Some(1),
            "join the vision phase"
        );
        let only_feedback = [w("f", 20)];
        assert_eq!(
            next(&only_feedback, &[], &vision, &vision, 1, BOUND),
            None,
            "no swap while another runner's vision phase runs"
        );
        assert_eq!(
            next(&only_feedback, &[], &[], &vision, 1, BOUND),
            Some(0),
            "once it has drained everywhere"
        );
        // The bound still wins: a starving step waits only for this runner's own steps.
        let starving = [w("f", 61)];
        assert_eq!(next(&starving, &[], &vision, &vision, 1, BOUND), Some(0));
    }

    #[test]
    fn with_both_models_resident_nothing_is_held_back() {
        let both = resident(&["v", "f"]);
        let waiting = [w("f", 1), w("v", 0)];
        assert_eq!(next(&waiting, &["v"], &[], &both, 1, BOUND), Some(0));
    }

    #[test]
    fn a_stale_ps_does_not_let_the_old_model_back_in_after_a_switch() {
        // Feedback was just admitted on a one-model GPU; /api/ps still lists vision only.
        let waiting = [w("v", 1)];
        assert_eq!(
            next(&waiting, &["f"], &[], &resident(&["v"]), 1, BOUND),
            None
        );
        // Once /api/ps agrees (both listed on a two-model GPU), nothing is held back.
        assert_eq!(
            next(&waiting, &["f"], &[], &resident(&["v", "f"]), 1, BOUND),
            Some(0)
        );
    }

    #[test]
    fn a_zero_bound_is_first_come_first_served() {
        let waiting = [w("f", 1), w("v", 0)];
        assert_eq!(
            next(&waiting, &["v"], &[], &resident(&["v"]), 1, Duration::ZERO),
            Some(0)
        );
    }
}
