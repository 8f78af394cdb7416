//! The prompts handed out by `select` and not yet observed: those of the current step (so that a
//! second `select` in the step, a dynamic-sampling round, never repeats one) and, with selections
//! in flight, those of earlier steps, never handed out again until their groups are observed or
//! the caller hands them back.

use crate::error::{invalid, Result};
use crate::observe::Observations;

crate::record! {
    /// What a saved state holds of the prompts handed out.
    #[derive(Clone, Debug, PartialEq)]
    pub struct FlightState {
        /// Handed out in the current step (since the last observe).
        pub pending: Vec<i64> [*],
        /// Handed out at earlier steps and not observed yet (selections in flight).
        pub in_flight: Vec<i64> [*],
    }
}

/// How a step's groups reach a policy (`Selector::observe_as`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A lockstep step: groups selected or not (a log replayed into the policy); every id
    /// handed out is released afterwards, observed or not.
    Lockstep,
    /// Groups of earlier selections, in any order: each id must be in flight, and leaves it;
    /// the ids not observed stay in flight.
    InFlight,
    /// Groups the policy never selected (a warm start from a log): no id may be in flight, and
    /// what is in flight stays.
    WarmStart,
}

impl Arrival {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "lockstep" => Ok(Arrival::Lockstep),
            "in_flight" => Ok(Arrival::InFlight),
            "warm_start" => Ok(Arrival::WarmStart),
            _ => invalid(format!(
                "arrival must be 'lockstep', 'in_flight' or 'warm_start', got '{name}'"
            )),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Pending {
    /// One bit per prompt: handed out and not yet observed (this step's and earlier).
    bits: Vec<u64>,
    /// This step's, in the order handed out.
    ids: Vec<u32>,
    /// Earlier steps', in flight.
    earlier: Vec<u32>,
}

impl Pending {
    pub fn new(num_prompts: usize) -> Self {
        Pending {
            bits: vec![0; num_prompts.div_ceil(64)],
            ids: Vec::new(),
            earlier: Vec::new(),
        }
    }

    /// Handed out and not yet observed, in this step or an earlier one.
    #[inline]
    pub fn contains(&self, id: u32) -> bool {
        self.bits[(id >> 6) as usize] & (1u64 << (id & 63)) != 0
    }

    fn set(&mut self, id: u32, on: bool) {
        let (word, bit) = ((id >> 6) as usize, 1u64 << (id & 63));
        if on {
            self.bits[word] |= bit;
        } else {
            self.bits[word] &= !bit;
        }
    }

    /// Hand `id` out in this step.
    pub fn insert(&mut self, id: u32) {
        if !self.contains(id) {
            self.set(id, true);
            self.ids.push(id);
        }
    }

    /// Release everything handed out (a lockstep step ends).
    pub fn clear(&mut self) {
        for id in self.ids.drain(..).chain(self.earlier.drain(..)) {
            self.bits[(id >> 6) as usize] = 0;
        }
    }

    /// Ids handed out and not yet observed, this step's and earlier ones.
    pub fn len(&self) -> usize {
        self.ids.len() + self.earlier.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This step's ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Earlier steps' ids still in flight.
    pub fn earlier(&self) -> &[u32] {
        &self.earlier
    }

    /// Refuses groups that do not fit `arrival` (before anything changes).
    pub fn check(&self, groups: &Observations, arrival: Arrival) -> Result<()> {
        for g in groups.groups() {
            match arrival {
                Arrival::InFlight if !self.contains(g.id) => {
                    return invalid(format!(
                        "prompt {} is not in flight (never selected, already observed or handed \
                         back); groups the policy did not select go through a warm start",
                        g.id
                    ))
                }
                Arrival::WarmStart if self.contains(g.id) => {
                    return invalid(format!(
                        "prompt {} is in flight: observe its group as an in-flight group, not as \
                         a warm start",
                        g.id
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// What is handed out after a step's groups arrived (checked by `check`): the step ends.
    pub fn settle(&mut self, groups: &Observations, arrival: Arrival) {
        match arrival {
            Arrival::Lockstep => self.clear(),
            Arrival::InFlight => {
                for g in groups.groups() {
                    self.set(g.id, false);
                }
                self.close_step();
            }
            Arrival::WarmStart => self.close_step(),
        }
    }

    /// This step's ids join the earlier ones in flight; the ones observed (bit cleared) leave.
    fn close_step(&mut self) {
        let bits = &self.bits;
        let out = |id: &u32| bits[(*id >> 6) as usize] & (1u64 << (*id & 63)) != 0;
        self.earlier.retain(out);
        self.ids.retain(out);
        self.earlier.append(&mut self.ids);
    }

    /// Hand ids in flight back unobserved (their rollouts were dropped): they may be selected
    /// again. Refuses, changing nothing, an id that is not in flight or is named twice.
    pub fn hand_back(&mut self, num_prompts: usize, ids: &[i64]) -> Result<Vec<u32>> {
        let mut back = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            if id < 0 || id as u64 >= num_prompts as u64 {
                return invalid(format!(
                    "prompt_ids[{i}] = {id} is outside [0, {num_prompts})"
                ));
            }
            if !self.contains(id as u32) {
                return invalid(format!(
                    "prompt {id} is not in flight (never selected, already observed or handed \
                     back), so it cannot be handed back"
                ));
            }
            back.push(id as u32);
        }
        let mut sorted = back.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return invalid(format!("prompt {} is handed back twice in one call", w[0]));
        }
        for &id in &back {
            self.set(id, false);
        }
        let bits = &self.bits;
        let out = |id: &u32| bits[(*id >> 6) as usize] & (1u64 << (*id & 63)) != 0;
        self.ids.retain(out);
        self.earlier.retain(out);
        Ok(back)
    }

    /// The ids as a saved state holds them.
    pub fn state(&self) -> FlightState {
        let wide = |ids: &[u32]| ids.iter().map(|&id| id as i64).collect();
        FlightState {
            pending: wide(&self.ids),
            in_flight: wide(&self.earlier),
        }
    }

    /// Rebuild from a saved state, checking it: ids in range, none twice.
    pub fn restore(num_prompts: usize, state: &FlightState) -> Result<Self> {
        let mut pending = Pending::new(num_prompts);
        for (name, ids) in [("in_flight", &state.in_flight), ("pending", &state.pending)] {
            for &id in ids {
                if id < 0 || id as u64 >= num_prompts as u64 {
                    return invalid(format!("{name} id {id} is outside [0, {num_prompts})"));
                }
                if pending.contains(id as u32) {
                    return invalid(format!("{name} id {id} appears twice"));
                }
                pending.insert(id as u32);
            }
            if name == "in_flight" {
                pending.earlier = std::mem::take(&mut pending.ids);
            }
        }
        Ok(pending)
    }

    /// Refuses a batch that the prompts not handed out cannot fill.
    pub fn check_room(&self, num_prompts: usize, batch_size: usize) -> Result<()> {
        let room = num_prompts - self.len();
        if batch_size > room {
            if self.is_empty() {
                return invalid(format!(
                    "batch_size {batch_size} exceeds num_prompts {num_prompts}"
                ));
            }
            if self.earlier.is_empty() {
                return invalid(format!(
                    "batch_size {batch_size} exceeds the {room} prompts not yet selected in this step"
                ));
            }
            return invalid(format!(
                "batch_size {batch_size} exceeds the {room} prompts neither selected in this step \
                 nor in flight ({} in flight from earlier steps)",
                self.earlier.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(n: usize, ids: &[i64]) -> Observations {
        Observations::new(n, ids, &vec![1; ids.len()], &vec![2; ids.len()]).unwrap()
    }

    #[test]
    fn in_flight_ids_stay_out_until_observed() {
        let mut p = Pending::new(10);
        for id in [1, 2, 3] {
            p.insert(id);
        }
        let first = groups(10, &[2]);
        p.check(&first, Arrival::InFlight).unwrap();
        p.settle(&first, Arrival::InFlight);
        assert_eq!((p.ids(), p.earlier()), (&[][..], &[1, 3][..]));
        p.insert(5);
        assert!(p.contains(1) && p.contains(5) && !p.contains(2));
        let err = p.check(&groups(10, &[2]), Arrival::InFlight).unwrap_err();
        assert!(err.to_string().contains("not in flight"), "{err}");
        let err = p.check(&groups(10, &[3]), Arrival::WarmStart).unwrap_err();
        assert!(err.to_string().contains("is in flight"), "{err}");
        let warm = groups(10, &[7]);
        p.check(&warm, Arrival::WarmStart).unwrap();
        p.settle(&warm, Arrival::WarmStart);
        assert_eq!((p.ids(), p.earlier()), (&[][..], &[1, 3, 5][..]));
        let again = Pending::restore(10, &p.state()).unwrap();
        assert_eq!((again.ids(), again.earlier()), (p.ids(), p.earlier()));
        p.settle(&groups(10, &[9]), Arrival::Lockstep);
        assert!(p.is_empty() && !p.contains(1));
    }

    #[test]
    fn hand_back_refuses_without_change() {
        let mut p = Pending::new(10);
        for id in [4, 6] {
            p.insert(id);
        }
        p.settle(&groups(10, &[]), Arrival::InFlight);
        p.insert(8);
        for bad in [&[4, 4][..], &[4, 5][..], &[10][..], &[-1][..]] {
            assert!(p.hand_back(10, bad).is_err());
            assert_eq!(p.len(), 3);
        }
        assert_eq!(p.hand_back(10, &[8, 4]).unwrap(), vec![8, 4]);
        assert_eq!((p.ids(), p.earlier()), (&[][..], &[6][..]));
        assert!(!p.contains(4) && !p.contains(8));
    }

    #[test]
    fn a_saved_state_is_checked() {
        let state = |pending: Vec<i64>, in_flight: Vec<i64>| FlightState { pending, in_flight };
        assert!(Pending::restore(5, &state(vec![1], vec![1])).is_err());
        assert!(Pending::restore(5, &state(vec![5], vec![])).is_err());
        assert!(Pending::restore(5, &state(vec![], vec![-2])).is_err());
        let p = Pending::restore(5, &state(vec![0, 4], vec![2])).unwrap();
        assert_eq!((p.ids(), p.earlier(), p.len()), (&[0, 4][..], &[2][..], 3));
    }
}
