//! The one interface every policy of the core implements, and the same interface behind a
//! pointer for code that holds policies of any kind (the Python bindings).

use std::any::Any;

use crate::error::Result;
use crate::observe::Observations;
use crate::record::{self, Field, Record, Values};

/// A prompt-selection policy.
///
/// A step: `select` before any rollout (several calls are a step's rounds, and never repeat an
/// id handed out in the step), then `observe` with every rolled-out group, which advances the
/// step and releases the ids handed out. `observe` also takes groups that were never selected
/// (a log replayed into a fresh policy). `state` holds everything needed to continue exactly:
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
    /// `batch_size` distinct prompt ids, none handed out earlier in this step.
    fn select(&mut self, batch_size: usize) -> Result<Vec<u32>>;
    /// The step's groups (checked once, in `Observations::new`); advances one step.
    fn observe(&mut self, groups: &Observations) -> Result<()>;
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
    fn observe(&mut self, groups: &Observations) -> Result<()>;
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

    fn observe(&mut self, groups: &Observations) -> Result<()> {
        Selector::observe(self, groups)
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
}
