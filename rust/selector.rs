//! The one interface every policy of the core implements, and the same interface behind a
//! pointer for code that holds policies of any kind (the Python bindings).

use std::any::Any;

use crate::error::{invalid, Result};
use crate::observe::Observations;
use crate::pending::{Arrival, Pending};
use crate::record::{self, Field, Record, Values};

/// A prompt-selection policy.
///
/// A step: `select` before any rollout (several calls are a step's rounds, and never repeat an
/// id handed out in the step), then `observe` with every rolled-out group, which advances the
/// step and releases the ids handed out. `observe` also takes groups that were never selected
/// (a log replayed into a fresh policy). With selections in flight, `observe_as` takes groups of
/// earlier selections (`Arrival::InFlight`: each id must be in flight; the others stay out and
/// are not selected again) or never-selected groups (`Arrival::WarmStart`), and `hand_back`
/// returns ids whose rollouts were dropped. A group arriving late is taken as of the step it
/// arrives at. `state` holds everything needed to continue exactly, what is in flight included:
/// `restore` of it selects what this selector would have selected. A refused call changes nothing.
pub trait Selector: Send + Sync + Sized + 'static {
    /// The options, fixed at construction.
    type Config: Record + Clone;
    /// What a saved state holds.
    type State: Record;

    fn config(&self) -> &Self::Config;
    fn num_prompts(&self) -> usize;
    /// Steps observed so far.
    fn step(&self) -> u64;
    /// `batch_size` distinct prompt ids, none handed out earlier in this step or in flight.
    fn select(&mut self, batch_size: usize) -> Result<Vec<u32>>;
    /// The ids handed out and not yet observed.
    fn pending(&self) -> &Pending;
    fn pending_mut(&mut self) -> &mut Pending;
    /// Refuses groups this policy cannot read (checked, like the ids, before anything changes);
    /// by default it reads every valid group.
    fn accepts(&self, groups: &Observations) -> Result<()> {
        let _ = groups;
        Ok(())
    }
    /// The policy's own update from a step's groups, once they are accepted and `pending`
    /// settled (ids still in flight are still in it); advances one step.
    fn update(&mut self, groups: &Observations);

    /// A lockstep step's groups (checked once, in `Observations::new`); advances one step and
    /// releases every id handed out.
    fn observe(&mut self, groups: &Observations) -> Result<()> {
        self.observe_as(groups, Arrival::Lockstep)
    }

    /// A step's groups, arriving as `arrival` says; advances one step.
    fn observe_as(&mut self, groups: &Observations, arrival: Arrival) -> Result<()> {
        if let Some(g) = groups.groups().last() {
            if g.id as usize >= self.num_prompts() {
                return invalid(format!(
                    "prompt id {} is outside [0, {})",
                    g.id,
                    self.num_prompts()
                ));
            }
        }
        self.accepts(groups)?;
        self.pending().check(groups, arrival)?;
        self.pending_mut().settle(groups, arrival);
        self.update(groups);
        Ok(())
    }

    /// Ids in flight handed back unobserved (their rollouts were dropped): they may be selected
    /// again. Returns them; refuses an id that is not in flight.
    fn hand_back(&mut self, ids: &[i64]) -> Result<Vec<u32>> {
        let n = self.num_prompts();
        self.pending_mut().hand_back(n, ids)
    }

    fn state(&self) -> Self::State;
    /// This selector (its options and any fixed data) continued from `state`; refuses a state
    /// that does not fit.
    fn restore(&self, state: Self::State) -> Result<Self>;
}

/// A selector that predicts prompts' next groups (replay scores the prediction).
pub trait Predictor {
    /// [P(unsolved), P(partially solved), P(solved)] of prompt `id`'s next group of
    /// `n_rollouts` responses.
    fn predicted(&self, id: u32, n_rollouts: u32) -> [f64; 3];
}

/// A [`Selector`] of any kind, its options and state as named values.
pub trait AnySelector: Send + Sync {
    fn num_prompts(&self) -> usize;
    fn step(&self) -> u64;
    fn select(&mut self, batch_size: usize) -> Result<Vec<u32>>;
    fn observe_as(&mut self, groups: &Observations, arrival: Arrival) -> Result<()>;
    fn hand_back(&mut self, ids: &[i64]) -> Result<Vec<u32>>;
    /// Every id handed out and not yet observed: this step's, then earlier steps'.
    fn in_flight(&self) -> Vec<u32>;
    fn config_values(&self) -> Values;
    fn state_values(&self) -> Values;
    /// The fields of the state, in order.
    fn state_fields(&self) -> Vec<Field>;
    /// Continue from a state given as values; changes nothing when it does not fit.
    fn load_state(&mut self, state: Values) -> Result<()>;
    fn as_any(&self) -> &dyn Any;
}

impl<S: Selector> AnySelector for S {
    fn num_prompts(&self) -> usize {
        Selector::num_prompts(self)
    }

    fn step(&self) -> u64 {
        Selector::step(self)
    }

    fn select(&mut self, batch_size: usize) -> Result<Vec<u32>> {
        Selector::select(self, batch_size)
    }

    fn observe_as(&mut self, groups: &Observations, arrival: Arrival) -> Result<()> {
        Selector::observe_as(self, groups, arrival)
    }

    fn hand_back(&mut self, ids: &[i64]) -> Result<Vec<u32>> {
        Selector::hand_back(self, ids)
    }

    fn in_flight(&self) -> Vec<u32> {
        let pending = self.pending();
        [pending.ids(), pending.earlier()].concat()
    }

    fn config_values(&self) -> Values {
        record::to_values(self.config().clone(), Selector::num_prompts(self))
    }

    fn state_values(&self) -> Values {
        record::to_values(self.state(), Selector::num_prompts(self))
    }

    fn state_fields(&self) -> Vec<Field> {
        record::fields::<S::State>()
    }

    fn load_state(&mut self, state: Values) -> Result<()> {
        let state = record::from_values(state, Selector::num_prompts(self), "state")?;
        *self = self.restore(state)?;
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Tests every selector runs: a state round trip continues exactly, and a state for another
/// number of prompts is refused without a change.
#[cfg(test)]
pub(crate) mod contract {
    use std::collections::VecDeque;

    use super::*;

    /// Groups for `ids`: n_correct cycles through 0..=8 of 8.
    pub fn groups(n: usize, ids: &[u32], step: u64) -> Observations {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let correct: Vec<i64> = ids.iter().map(|&i| (i + step as i64) % 9).collect();
        Observations::new(n, &ids, &correct, &vec![8; ids.len()]).unwrap()
    }

    pub fn run<S: Selector>(s: &mut S, steps: u64, batch: usize) -> Vec<Vec<u32>> {
        (0..steps)
            .map(|_| {
                let ids = s.select(batch).unwrap();
                let obs = groups(s.num_prompts(), &ids, s.step());
                s.observe(&obs).unwrap();
                ids
            })
            .collect()
    }

    /// Every contract test, each on a fresh copy of `s`.
    pub fn holds<S: Selector + Clone>(s: S) {
        state_round_trip_continues_exactly(s.clone());
        in_flight_resumes_exactly(s.clone());
        in_flight_refusals_change_nothing(s);
    }

    pub fn state_round_trip_continues_exactly<S: Selector>(mut s: S) {
        run(&mut s, 5, 4);
        s.select(2).unwrap(); // mid-step: two ids handed out
        let mut copy = s.restore(s.state()).unwrap();
        assert_eq!(
            record::to_values(copy.state(), copy.num_prompts()),
            record::to_values(s.state(), s.num_prompts())
        );
        assert_eq!(copy.select(3).unwrap(), s.select(3).unwrap());
        assert_eq!(run(&mut copy, 6, 4), run(&mut s, 6, 4));
        let mut boxed: Box<dyn AnySelector> = Box::new(s);
        let before = boxed.state_values();
        let mut other = before.clone();
        other.0.retain(|(name, _)| name != "step");
        assert!(boxed.load_state(other).is_err());
        assert_eq!(
            boxed.state_values(),
            before,
            "a refused state changes nothing"
        );
        boxed.load_state(before.clone()).unwrap();
        assert_eq!(boxed.state_values(), before);
    }

    fn values<S: Selector>(s: &S) -> Values {
        record::to_values(s.state(), s.num_prompts())
    }

    /// Steps at lag 2: each selects, then observes, in flight, the groups selected two steps
    /// before (`queue` holds the selections in flight). No selection repeats an id in flight.
    pub fn run_lagged<S: Selector>(
        s: &mut S,
        steps: u64,
        batch: usize,
        queue: &mut VecDeque<Vec<u32>>,
    ) -> Vec<Vec<u32>> {
        (0..steps)
            .map(|_| {
                let ids = s.select(batch).unwrap();
                let out: Vec<u32> = queue.iter().flatten().copied().collect();
                assert!(ids.iter().all(|id| !out.contains(id)), "{ids:?} {out:?}");
                queue.push_back(ids.clone());
                if queue.len() > 2 {
                    let due = queue.pop_front().unwrap();
                    let obs = groups(s.num_prompts(), &due, s.step());
                    s.observe_as(&obs, Arrival::InFlight).unwrap();
                }
                ids
            })
            .collect()
    }

    /// A state saved with selections in flight continues exactly.
    pub fn in_flight_resumes_exactly<S: Selector>(mut s: S) {
        let mut queue = VecDeque::new();
        run_lagged(&mut s, 5, 4, &mut queue);
        s.select(2).unwrap(); // mid-step too
        assert_eq!(s.pending().len(), 10);
        let mut copy = s.restore(s.state()).unwrap();
        assert_eq!(values(&copy), values(&s));
        let mut copied = queue.clone();
        assert_eq!(
            run_lagged(&mut copy, 6, 4, &mut copied),
            run_lagged(&mut s, 6, 4, &mut queue)
        );
        assert_eq!(values(&copy), values(&s));
    }

    /// An id neither in flight nor a warm start's, an id in flight given as a warm start, an id
    /// observed twice, one handed back that is not out: refused, nothing changed.
    pub fn in_flight_refusals_change_nothing<S: Selector>(mut s: S) {
        let mut queue = VecDeque::new();
        run_lagged(&mut s, 3, 4, &mut queue);
        let n = s.num_prompts();
        let flying = queue[0][0];
        let outside = (0..n as u32).find(|&i| !s.pending().contains(i)).unwrap();
        let before = values(&s);
        let lone = |id: u32| groups(n, &[id], 0);
        assert!(s.observe_as(&lone(outside), Arrival::InFlight).is_err());
        assert!(s.observe_as(&lone(flying), Arrival::WarmStart).is_err());
        assert!(s.hand_back(&[outside as i64]).is_err());
        assert!(s.hand_back(&[flying as i64, flying as i64]).is_err());
        assert_eq!(values(&s), before, "a refused call changes nothing");
        s.observe_as(&lone(flying), Arrival::InFlight).unwrap();
        let after = values(&s);
        assert!(s.observe_as(&lone(flying), Arrival::InFlight).is_err());
        assert_eq!(values(&s), after, "an id observed twice is refused");
        s.observe_as(&lone(outside), Arrival::WarmStart).unwrap();
        let back = queue[1][1];
        assert_eq!(s.hand_back(&[back as i64]).unwrap(), vec![back]);
        assert!(!s.pending().contains(back));
    }
}
