//! RateDPS (docs/method.md#rate-dps): a hidden Markov model per prompt whose hidden state is the
//! prompt's success rate on a grid of G rates; a group of n with c correct is a Binomial(n, rate)
//! look at it; between steps a prompt keeps its rate or, with chance rho, draws a new one from the
//! population, which is fitted online. rho is fitted online too: shadow filters, one per
//! candidate, score every group of a hashed sample of the prompts before they see it, and the
//! main filter takes the candidate with the best predictive likelihood so far. The score is the
//! predicted chance that a prompt's next group of k is partially solved. An eighth of each batch
//! revisits the prompts most likely stranded (the best draws of the expected drop in their chance
//! of staying unsolved; "age": the prompts observed least recently), and the rest goes by
//! Thompson sampling (the default), to the best scores ("top") or is drawn in proportion to them
//! ("sample").
//!
//! The filters are lazy (`filter`): a step touches only the prompts it observes. Top-B scans
//! the observed prompts' scores (a look-up and a multiply-add each) and takes never-observed
//! prompts, which share one score, from the front of a keyed order (`order`). Everything is f64,
//! so the policy agrees with its numpy reference (tests/reference_rate_dps.py) to rounding.

mod filter;
mod grid;
mod order;

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::logworld::Dice;
use crate::observe::Observations;
use crate::pending::{FlightState, Pending};
use crate::rng::{self, stream};
use crate::selector::{Predictor, Selector};
use filter::{Evidence, Filter, Look};
pub use grid::{rate_grid, Grid};
use order::Order;

/// The switch-rate candidates of the online fit (per step).
pub const SWITCH_RATES: [f64; 6] = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2];
/// The values of the `selection` option.
pub const SELECTIONS: [&str; 3] = ["top", "sample", "thompson"];
/// The selection when none is given (docs/method.md#rate-dps-why-thompson).
pub const SELECTION: &str = "thompson";
/// The values of the `revisit_by` option: how the revisit slots are filled.
pub const REVISIT_BYS: [&str; 2] = ["stranding", "age"];
/// The revisit rule when none is given (docs/method.md#rate-dps-selection).
pub const REVISIT_BY: &str = "stranding";
/// The switch rate while the candidates tie (before any prompt is observed twice).
pub const START_SWITCH_RATE: f64 = 0.02;
/// The shadow filters follow about this many prompts (every prompt when there are fewer).
pub const FIT_SAMPLE: u64 = 65_536;
/// The score's group size before any group is observed (when `group_size` is not given).
pub const START_GROUP_SIZE: u64 = 8;
pub use filter::POPULATION_HALF_LIFE;
/// The salt of the fit sample's hashed uniforms (the replay dice of (seed ^ salt, 0, id)).
const SAMPLE_SALT: u64 = 0x7261_7465_7361_6D31;
/// A step of a prompt never observed.
const NEVER: u32 = u32::MAX;
/// Observed prompts scanned per task when selecting in parallel.
const CHUNK: usize = 1 << 15;
/// Observed prompts whose scores place the selection's bar.
const BAR_SAMPLE: usize = 4096;
/// The bar aims at this many times the prompts wanted (missing them costs a second pass).
const BAR_MARGIN: f64 = 4.0;
/// The smallest D(key_ref) the selection keys are read against; below it they are rebased.
const KEY_SCALE_MIN: f64 = 1.0 / (1u64 << 60) as f64;
/// How far (absolute) a prompt's computed f64 score can sit from D(key_ref) x its key: the
/// rounding of the score and of the D history over up to ~10^6 steps.
const SCORE_SLACK: f64 = 1e-9;
/// How far (relative) a stored f32 key can sit from its exact value (f32 rounding is 6e-8).
const KEY_SLACK: f64 = 1e-6;
/// Keys counted at a time in the selection's branch-free pass.
const KEY_BLOCK: usize = 64;
/// Keys of the tie order a draw walk reads ahead.
const WALK_BLOCK: u64 = 32;

crate::record! {
    /// RateDPS's options (docs/method.md#rate-dps-parameters).
    #[derive(Clone, Debug, PartialEq)]
    pub struct RateDpsConfig {
        /// G, the number of rates.
        pub grid: u64,
        /// The rates span [-logit_max, logit_max] in logit.
        pub logit_max: f64,
        /// None: fitted online over `switch_rates`; a number in [0, 1): that rho, fixed.
        pub switch_rate: Option<f64>,
        pub switch_rates: Vec<f64>,
        /// The share of each batch given to revisits.
        pub revisit: f64,
        /// How the revisit slots are filled: "stranding", the default (the largest
        /// f_k(r) k r (1 - r)^k at a rate r drawn from each prompt's predicted distribution: the
        /// expected drop in the chance the prompt stays unsolved), or "age" (the prompts observed
        /// least recently).
        pub revisit_by: String,
        /// How the other slots are filled: "thompson", the default (the best partial chances at
        /// a rate drawn from each prompt's predicted distribution), "top" (the best scores) or
        /// "sample" (drawn in proportion to the score, without replacement).
        pub selection: String,
        /// The score's k; None: the most common group size of the last step.
        pub group_size: Option<u64>,
        /// How many prompts' worth of the population a family's start is shrunk towards.
        pub family_shrink: f64,
        /// The shadow filters follow about this many prompts.
        pub fit_sample: u64,
        pub seed: u64,
    }
}

crate::record! {
    /// One filter, or the shadow filters one after the other; flat arrays (filter, then row or
    /// step, then rate).
    #[derive(Clone, Debug, PartialEq)]
    pub struct FilterState {
        /// Each row's posterior at its last look (zeros before its first).
        pub post: Vec<f64> [*],
        /// What a switch draws (G values a filter).
        pub population: Vec<f64> [*],
        /// The decayed switch evidence per rate, then its total (G + 1 values a filter).
        pub switches: Vec<f64> [*],
        /// M_0 .. M_T ((T + 1) x G values a filter).
        pub mixture: Vec<f64> [*],
        /// For each step t0 < T, the chance that no switch happened from t0 to now (T a filter).
        pub unswitched: Vec<f64> [*],
        /// Per family, the sum of its observed prompts' last posteriors (F x G a filter).
        pub family_sums: Vec<f64> [*],
        /// The summed log predictive of the groups scored (one a filter).
        pub log_predictive: Vec<f64> [*],
        /// How many groups were scored (one a filter).
        pub groups: Vec<i64> [*],
    }
}

crate::record! {
    /// What RateDPS saves: enough to continue exactly.
    #[derive(Clone, Debug, PartialEq)]
    pub struct RateDpsState {
        pub step: u64,
        /// The step of each prompt's last observation; -1: never observed.
        pub last_step: Vec<i64> [N],
        /// The score's k.
        pub group_size: u64,
        /// rho of the main filter's last transition (the fitted choice).
        pub switch_rate: f64,
        /// The ids handed out: this step's, and earlier steps' still in flight.
        pub flight: FlightState as "",
        /// The main filter, over every prompt.
        pub main: FilterState as "",
        /// The shadow filters of the fit, one per candidate, over the fit sample.
        pub shadow: FilterState as "shadow_",
    }
}

impl Default for RateDpsConfig {
    fn default() -> Self {
        RateDpsConfig {
            grid: 16,
            logit_max: 7.0,
            switch_rate: None,
            switch_rates: SWITCH_RATES.to_vec(),
            revisit: 0.125,
            revisit_by: REVISIT_BY.into(),
            selection: SELECTION.into(),
            group_size: None,
            family_shrink: 1.0,
            fit_sample: FIT_SAMPLE,
            seed: 0,
        }
    }
}

impl RateDpsConfig {
    fn validate(&self) -> Result<()> {
        if !(2..=1024).contains(&self.grid) {
            return invalid(format!(
                "grid must be in [2, 1024] rates, got {}",
                self.grid
            ));
        }
        if !(self.logit_max.is_finite() && self.logit_max > 0.0 && self.logit_max <= 30.0) {
            return invalid(format!(
                "logit_max must be in (0, 30], got {}",
                self.logit_max
            ));
        }
        let rate_ok = |r: f64| (0.0..1.0).contains(&r);
        if let Some(r) = self.switch_rate {
            if !rate_ok(r) {
                return invalid(format!("switch_rate must be 'auto' or in [0, 1), got {r}"));
            }
        }
        if self.switch_rates.is_empty() || !self.switch_rates.iter().all(|&r| rate_ok(r)) {
            return invalid(format!(
                "switch_rates must be one or more rates in [0, 1), got {:?}",
                self.switch_rates
            ));
        }
        if !(0.0..=1.0).contains(&self.revisit) {
            return invalid(format!("revisit must be in [0, 1], got {}", self.revisit));
        }
        if !REVISIT_BYS.contains(&self.revisit_by.as_str()) {
            return invalid(format!(
                "revisit_by must be 'stranding' or 'age', got '{}'",
                self.revisit_by
            ));
        }
        if !SELECTIONS.contains(&self.selection.as_str()) {
            return invalid(format!(
                "selection must be 'top', 'sample' or 'thompson', got '{}'",
                self.selection
            ));
        }
        if self.group_size == Some(0) || self.group_size.is_some_and(|k| k > u32::MAX as u64) {
            return invalid(format!(
                "group_size must be a count >= 1 or None, got {:?}",
                self.group_size
            ));
        }
        if !(self.family_shrink.is_finite() && self.family_shrink > 0.0) {
            return invalid(format!(
                "family_shrink must be a finite number > 0, got {}",
                self.family_shrink
            ));
        }
        if self.fit_sample == 0 {
            return invalid("fit_sample must be at least 1");
        }
        Ok(())
    }

    fn fitted(&self) -> bool {
        self.switch_rate.is_none()
    }
}

/// Each prompt's family (an optional, fixed input like BOTS's anchors).
#[derive(Clone, Debug)]
struct Families {
    of: Vec<u32>,
    count: usize,
}

/// A key range of the prompts surely at the selection's bar (`at_lo..=at_hi`) and the key below
/// which a prompt is surely under it.
struct KeyBounds {
    floor: f32,
    at_lo: f32,
    at_hi: f32,
}

impl KeyBounds {
    fn sure_at(&self, k: f32) -> bool {
        k >= self.at_lo && k <= self.at_hi
    }

    /// The ids the keys leave unsure, and how many are surely at the bar.
    fn split(&self, keyed: impl Iterator<Item = (u32, f32)>) -> (Vec<u32>, usize) {
        let (mut unsure, mut at) = (Vec::new(), 0usize);
        for (id, k) in keyed {
            if self.sure_at(k) {
                at += 1;
            } else if k >= self.floor {
                unsure.push(id);
            }
        }
        (unsure, at)
    }

    /// `split` of the ids `start..` with these keys: blocks the keys settle whole (all surely at
    /// the bar or under it, the common case) are counted in a branch-free pass.
    fn split_run(&self, start: u32, keys: &[f32]) -> (Vec<u32>, usize) {
        let (mut unsure, mut at) = (Vec::new(), 0usize);
        for (b, block) in keys.chunks(KEY_BLOCK).enumerate() {
            let sure_at = block.iter().filter(|&&k| self.sure_at(k)).count();
            let under = block.iter().filter(|&&k| k < self.floor).count();
            if sure_at + under == block.len() {
                at += sure_at;
                continue;
            }
            let first = start + (b * KEY_BLOCK) as u32;
            let (u, a) = self.split((first..).zip(block.iter().copied()));
            unsure.extend(u);
            at += a;
        }
        (unsure, at)
    }
}

/// The nearest f32 at or below `x`.
fn f32_at_most(x: f64) -> f32 {
    let y = x as f32;
    if y as f64 > x {
        y.next_down()
    } else {
        y
    }
}

/// The nearest f32 at or above `x`.
fn f32_at_least(x: f64) -> f32 {
    let y = x as f32;
    if (y as f64) < x {
        y.next_up()
    } else {
        y
    }
}

/// A candidate of the score slots: better is a higher score, then a smaller key. Scores are
/// ranked rounded to f32, so that rounding noise never splits two scores equal in exact
/// arithmetic (mirror-image histories on the symmetric grid give such ties): those go to the
/// keyed order.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    score: f32,
    key: u64,
    id: u32,
}

/// Ordered so that "greater" means "worse" (a heap's top is the one to evict; sorted: best first).
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.key.cmp(&other.key))
    }
}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}

/// What a draw of each prompt's rate is ranked by: a value per grid rate (f32, so that rounding
/// noise never splits values equal in exact arithmetic), its largest, and the stream of the
/// draws' uniforms.
struct Drawn {
    value: Vec<f32>,
    top: f32,
    stream: u64,
}

impl Drawn {
    fn new(value: Vec<f32>, stream: u64) -> Self {
        let top = value.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Drawn { value, top, stream }
    }
}

#[derive(Clone, Debug)]
pub struct RateDps {
    cfg: RateDpsConfig,
    grid: Grid,
    families: Option<Families>,
    main: Filter,
    shadows: Vec<Filter>,
    /// The shadows' prompts, sorted.
    sample: Vec<u32>,
    /// The step of each prompt's last observation (NEVER: not yet).
    last: Vec<u32>,
    /// The observed prompts, sorted.
    seen: Vec<u32>,
    /// b_i = f_k . p_i - f_k . M_t0 of each observed prompt: its score is f_k . M_t + D(t0) b_i.
    offset: Vec<f64>,
    /// b_i D(t0_i) / D(key_ref) of each observed prompt (-inf for the others): a prompt's score
    /// is f_k . M_t + D(key_ref) key_i up to rounding, and the key is constant between its looks,
    /// so a pass over these 4 bytes a prompt finds the few that can reach the selection's bar.
    key: Vec<f32>,
    /// The step whose D the keys are relative to. Derived, never saved.
    key_ref: usize,
    /// f_k: P(partially solved) of a group of k at each rate.
    partial: Vec<f64>,
    group_size: u64,
    step: u64,
    pending: Pending,
    /// (step, id) of the observed prompts in revisit order; an entry whose step is no longer the
    /// prompt's last is stale and skipped. Derived from `last`, never saved.
    queue: VecDeque<(u32, u32)>,
}

impl RateDps {
    pub fn new(num_prompts: usize, cfg: RateDpsConfig) -> Result<Self> {
        Self::with_families(num_prompts, cfg, None)
    }

    /// With a family id per prompt (`families`), whose never-observed prompts start from their
    /// family's population (docs/method.md#rate-dps-families).
    pub fn with_families(
        num_prompts: usize,
        cfg: RateDpsConfig,
        families: Option<Vec<i64>>,
    ) -> Result<Self> {
        cfg.validate()?;
        crate::error::check_num_prompts(num_prompts)?;
        if num_prompts >= NEVER as usize {
            return invalid(format!("num_prompts must be below {NEVER}"));
        }
        let families = families
            .map(|f| check_families(f, num_prompts))
            .transpose()?;
        let family_count = families.as_ref().map_or(0, |f| f.count);
        let grid = Grid::new(cfg.grid as usize, cfg.logit_max);
        let g = grid.len();
        let sample = fit_sample(num_prompts, cfg.fit_sample, cfg.seed);
        let shadows = if cfg.fitted() {
            cfg.switch_rates
                .iter()
                .map(|&r| Filter::new(sample.len(), g, r, family_count))
                .collect()
        } else {
            Vec::new()
        };
        let start = cfg.switch_rate.unwrap_or(START_SWITCH_RATE);
        let group_size = cfg.group_size.unwrap_or(START_GROUP_SIZE);
        Ok(RateDps {
            main: Filter::new(num_prompts, g, start, family_count),
            shadows,
            sample,
            last: vec![NEVER; num_prompts],
            seen: Vec::new(),
            offset: vec![0.0; num_prompts],
            key: vec![f32::NEG_INFINITY; num_prompts],
            key_ref: 0,
            partial: grid.partial_chances(group_size as u32),
            group_size,
            step: 0,
            pending: Pending::new(num_prompts),
            queue: VecDeque::new(),
            grid,
            families,
            cfg,
        })
    }

    /// The grid of rates.
    pub fn rates(&self) -> &[f64] {
        &self.grid.rates
    }

    /// rho of the main filter (the fitted choice, or the fixed value).
    pub fn switch_rate(&self) -> f64 {
        self.main.rate
    }

    pub fn group_size(&self) -> u64 {
        self.group_size
    }

    fn look(&self, id: u32) -> Look {
        let last = self.last[id as usize];
        Look {
            row: id as usize,
            last: (last != NEVER).then_some(last as usize),
            family: self.family_of(id),
        }
    }

    fn family_of(&self, id: u32) -> Option<usize> {
        self.families.as_ref().map(|f| f.of[id as usize] as usize)
    }

    /// The predicted distribution of prompt `id`'s rate at the coming step.
    pub fn rate_distribution(&self, id: u32) -> Vec<f64> {
        let mut out = vec![0.0; self.grid.len()];
        self.main
            .prior_into(&self.look(id), self.cfg.family_shrink, &mut out);
        out
    }

    /// f_k . M_T: the part of every observed prompt's score that the step sets.
    fn score_base(&self) -> f64 {
        dot(
            &self.partial,
            &self.main.mixture[self.main.steps() * self.grid.len()..],
        )
    }

    /// What a never-observed prompt of `family` scores.
    fn unseen_score(&self, family: Option<usize>) -> f64 {
        let mut g = vec![0.0; self.grid.len()];
        self.main
            .unseen_into(family, self.cfg.family_shrink, &mut g);
        dot(&self.partial, &g)
    }

    #[inline]
    fn observed_score(&self, base: f64, id: u32) -> f64 {
        let i = id as usize;
        base + self.main.unswitched[self.last[i] as usize] * self.offset[i]
    }

    /// Every prompt's score: P(its next group of k is partially solved).
    pub fn scores(&self) -> Vec<f64> {
        let score = self.score_of();
        (0..self.num_prompts() as u32).map(score).collect()
    }

    /// The score of a prompt, any prompt (never-observed ones by family).
    fn score_of(&self) -> impl Fn(u32) -> f64 + Sync + '_ {
        let base = self.score_base();
        let unseen: Vec<f64> = match &self.families {
            None => vec![self.unseen_score(None)],
            Some(f) => (0..f.count).map(|k| self.unseen_score(Some(k))).collect(),
        };
        move |id| match self.last[id as usize] {
            NEVER => unseen[self.family_of(id).unwrap_or(0)],
            _ => self.observed_score(base, id),
        }
    }

    /// Scalars describing the policy now (docs/policies.md#ratedps).
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![
            ("switch_rate", self.main.rate),
            (
                "population_mean_rate",
                dot(&self.main.population, &self.grid.rates),
            ),
            (
                "population_partial",
                dot(&self.main.population, &self.partial),
            ),
            (
                "observed_share",
                self.seen.len() as f64 / self.num_prompts() as f64,
            ),
        ];
        if let Some(first) = self.shadows.first().filter(|s| s.groups > 0) {
            let best = self.best_loglik();
            out.push(("switch_rate_loglik", best / first.groups as f64));
        }
        out
    }

    fn best_loglik(&self) -> f64 {
        self.shadows
            .iter()
            .map(|s| s.log_predictive)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// The candidate with the best predictive log-likelihood so far; ties go to the start value
    /// when it is among them, else to the smallest.
    fn chosen_switch_rate(&self) -> f64 {
        let best = self.best_loglik();
        let tied: Vec<f64> = self
            .shadows
            .iter()
            .filter(|s| s.log_predictive == best)
            .map(|s| s.rate)
            .collect();
        if tied.contains(&START_SWITCH_RATE) {
            START_SWITCH_RATE
        } else {
            tied.into_iter().fold(f64::INFINITY, f64::min)
        }
    }

    /// Bytes held per prompt: the main filter, the selection's columns, the shadows and the
    /// per-step histories, over the number of prompts.
    pub fn bytes_per_prompt(&self) -> f64 {
        let f64s = |f: &Filter| {
            f.post.capacity()
                + f.mixture.capacity()
                + f.unswitched.capacity()
                + f.family_sums.capacity()
        };
        let floats: usize = f64s(&self.main)
            + self.shadows.iter().map(f64s).sum::<usize>()
            + self.offset.capacity();
        let words = self.last.capacity()
            + self.main.place.capacity()
            + self
                .shadows
                .iter()
                .map(|f| f.place.capacity())
                .sum::<usize>()
            + self.key.capacity()
            + self.seen.capacity()
            + self.sample.capacity()
            + 2 * self.queue.capacity();
        let bytes =
            8 * floats + 4 * words + self.families.as_ref().map_or(0, |f| 4 * f.of.capacity());
        (bytes as f64 + self.num_prompts() as f64 / 8.0) / self.num_prompts() as f64
    }

    /// The `count` age revisits: never-observed prompts first (a fixed keyed order), then the observed
    /// ones by the step of their last look, each step's in a keyed order.
    fn least_recently_observed(&mut self, count: usize) -> Vec<u32> {
        let order = Order::new(
            self.cfg.seed,
            stream::RATEDPS_REVISIT,
            0,
            self.num_prompts(),
        );
        let mut out = self.first_unseen(&order, count);
        while let Some(&(step, id)) = self.queue.front() {
            if self.last[id as usize] == step {
                break;
            }
            self.queue.pop_front(); // stale: observed again since
        }
        for &(step, id) in &self.queue {
            if out.len() == count {
                break;
            }
            if self.last[id as usize] == step && !self.pending.contains(id) {
                out.push(id);
            }
        }
        out
    }

    /// The never-observed prompts not handed out, the `count` first in `order`.
    fn first_unseen(&self, order: &Order, count: usize) -> Vec<u32> {
        let n = self.num_prompts();
        let pending_unseen = self
            .pending
            .ids()
            .iter()
            .chain(self.pending.earlier())
            .filter(|&&id| self.last[id as usize] == NEVER)
            .count();
        let free = n - self.seen.len() - pending_unseen;
        order.first(n, count, free, |id| {
            self.last[id as usize] == NEVER && !self.pending.contains(id)
        })
    }

    /// This step's keyed order, which breaks every tie among scores and draws.
    pub(crate) fn tie_order(&self) -> Order {
        Order::new(
            self.cfg.seed,
            stream::RATEDPS_TIE,
            self.step,
            self.num_prompts(),
        )
    }

    /// The `count` best-scored prompts not handed out: score, then this step's keyed order.
    fn best_scored(&self, count: usize) -> Vec<u32> {
        if count == 0 {
            return Vec::new();
        }
        let tie = self.tie_order();
        if self.families.is_some() {
            return self.best_scored_with_families(count, &tie);
        }
        let observed = self.best_observed(count, &tie);
        let unseen_score = self.unseen_score(None) as f32;
        let above = observed.iter().filter(|c| c.score > unseen_score).count();
        let unseen = self.first_unseen(&tie, count.saturating_sub(above));
        let mut all: Vec<Candidate> = unseen
            .into_iter()
            .map(|id| Candidate {
                score: unseen_score,
                key: tie.key(id),
                id,
            })
            .chain(observed)
            .collect();
        all.sort_unstable();
        all.truncate(count);
        all.into_iter().map(|c| c.id).collect()
    }

    /// The `count` best observed prompts not handed out, best first. A bar read from a sample of
    /// the scores first keeps only the prompts at or above it (a plain pass, no heap); when fewer
    /// than `count` free prompts clear it, every observed prompt is ranked.
    fn best_observed(&self, count: usize, tie: &Order) -> Vec<Candidate> {
        let base = self.score_base();
        let score = |id: u32| self.observed_score(base, id) as f32;
        let ranked = |ids: &[u32]| {
            best_of(
                ids.iter().map(|&id| (id, score(id))),
                count,
                tie,
                &self.pending,
            )
        };
        let cleared = self
            .sampled_bar(base, count)
            .and_then(|bar| self.best_at_a_bar(bar, count, tie, &score));
        let mut best = cleared.unwrap_or_else(|| self.par_seen(ranked));
        best.sort_unstable();
        best.truncate(count);
        best
    }

    /// The `count` best free observed prompts when at least `count` free ones score `bar` or
    /// more: every free one above it, then those at it in the keyed order (walked from the front,
    /// so a large tie, e.g. prompts drifted back to the population, costs no key per prompt).
    fn best_at_a_bar(
        &self,
        bar: f32,
        count: usize,
        tie: &Order,
        score: &(impl Fn(u32) -> f32 + Sync),
    ) -> Option<Vec<Candidate>> {
        let classify = |ids: &[u32]| {
            let (mut above, mut at) = (Vec::new(), 0usize);
            for &id in ids {
                let s = score(id);
                if s > bar {
                    above.push((id, s));
                } else if s == bar {
                    at += 1;
                }
            }
            vec![(above, at)]
        };
        let passes: Vec<(Vec<(u32, f32)>, usize)> = match self.key_bounds(bar) {
            Some(bounds) => self.par_keys(&bounds, |unsure, sure_at| {
                let mut out = classify(unsure);
                out[0].1 += sure_at;
                out
            }),
            None => self.par_seen(classify),
        };
        let at_bar = |id: u32| self.last[id as usize] != NEVER && score(id) == bar;
        let pending_at = self.in_flight_ids().filter(|&id| at_bar(id)).count();
        let tied = passes.iter().map(|p| p.1).sum::<usize>() - pending_at;
        let above: Vec<(u32, f32)> = passes.into_iter().flat_map(|p| p.0).collect();
        let free = above
            .iter()
            .filter(|(id, _)| !self.pending.contains(*id))
            .count();
        if free + tied < count {
            return None;
        }
        let mut best = best_of(above.into_iter(), count, tie, &self.pending);
        let wanted = count.saturating_sub(best.len());
        let fits = |id: u32| at_bar(id) && !self.pending.contains(id);
        best.extend(
            tie.first(self.num_prompts(), wanted, tied, fits)
                .into_iter()
                .map(|id| Candidate {
                    score: bar,
                    key: tie.key(id),
                    id,
                }),
        );
        Some(best)
    }

    /// Every id handed out and not yet observed.
    fn in_flight_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.pending
            .ids()
            .iter()
            .chain(self.pending.earlier())
            .copied()
    }

    /// What an observed prompt's key says of its f32 score against `bar` (None: the keys cannot
    /// be read now). Conservative: each bound sits inside (or below) the f32 rounding interval of
    /// `bar` by more than the rounding of the score, of the key and of the D history can move a
    /// prompt, so every prompt the keys leave unsure is scored exactly.
    fn key_bounds(&self, bar: f32) -> Option<KeyBounds> {
        let scale = *self.main.unswitched.get(self.key_ref)?;
        if !(scale >= KEY_SCALE_MIN) {
            return None;
        }
        let base = self.score_base();
        let to_key = |score: f64| (score - base) / scale;
        let lowest = (bar as f64 + bar.next_down() as f64) / 2.0;
        let highest = (bar as f64 + bar.next_up() as f64) / 2.0;
        let (floor, at_lo, at_hi) = (
            to_key(lowest - SCORE_SLACK),
            to_key(lowest + SCORE_SLACK),
            to_key(highest - SCORE_SLACK),
        );
        let bounds = KeyBounds {
            floor: f32_at_most(floor - KEY_SLACK * floor.abs()),
            at_lo: f32_at_least(at_lo + KEY_SLACK * at_lo.abs()),
            at_hi: f32_at_most(at_hi - KEY_SLACK * at_hi.abs()),
        };
        [bounds.floor, bounds.at_lo, bounds.at_hi]
            .iter()
            .all(|b| b.is_finite())
            .then_some(bounds)
    }

    /// `f(unsure ids, how many are surely at the bar)` over the observed prompts in parallel
    /// chunks, skipping those surely below it: a pass over every prompt's 4-byte key (a
    /// never-observed one is -inf) unless few are observed.
    fn par_keys<T: Send>(
        &self,
        bounds: &KeyBounds,
        f: impl Fn(&[u32], usize) -> Vec<T> + Sync,
    ) -> Vec<T> {
        if 4 * self.seen.len() < self.num_prompts() {
            return self.par_seen(|ids| {
                let (unsure, at) = bounds.split(ids.iter().map(|&id| (id, self.key[id as usize])));
                f(&unsure, at)
            });
        }
        self.key
            .par_chunks(CHUNK)
            .enumerate()
            .flat_map_iter(|(c, keys)| {
                let (unsure, at) = bounds.split_run((c * CHUNK) as u32, keys);
                f(&unsure, at)
            })
            .collect()
    }

    /// `f` over the observed prompts, in parallel chunks when there are many; results joined.
    fn par_seen<T: Send>(&self, f: impl Fn(&[u32]) -> Vec<T> + Sync) -> Vec<T> {
        if self.seen.len() <= CHUNK {
            f(&self.seen)
        } else {
            self.seen.par_chunks(CHUNK).flat_map_iter(&f).collect()
        }
    }

    /// A score that about `BAR_MARGIN` x (`count` + the ids handed out) observed prompts reach,
    /// read from `BAR_SAMPLE` evenly spaced observed prompts; None when the sample cannot place it
    /// (few observed prompts, or a large share wanted).
    fn sampled_bar(&self, base: f64, count: usize) -> Option<f32> {
        let n = self.seen.len();
        let wanted = BAR_MARGIN * (count + self.pending.len()) as f64;
        if n < 4 * BAR_SAMPLE {
            return None;
        }
        let rank = (wanted / n as f64 * BAR_SAMPLE as f64).ceil() as usize;
        if rank + 1 >= BAR_SAMPLE / 2 {
            return None;
        }
        let stride = n / BAR_SAMPLE;
        let mut sample: Vec<f32> = (0..BAR_SAMPLE)
            .map(|j| self.observed_score(base, self.seen[j * stride]) as f32)
            .collect();
        let (_, &mut bar, _) = sample.select_nth_unstable_by(rank, |a, b| b.total_cmp(a));
        Some(bar)
    }

    /// `count` free prompts drawn one after another, each with chance proportional to its score
    /// among those left (docs/method.md#rate-dps-selection): by rejection from this step's hashed
    /// stream (uniform id, accepted with chance its score), then, past `64 count + 4096` draws,
    /// the rest by keyed exponentials over every free prompt.
    fn sampled_by_score(&self, count: usize) -> Vec<u32> {
        let score = self.score_of();
        let n = self.num_prompts() as u128;
        let draw = |j: u64| rng::key(&[self.cfg.seed, stream::RATEDPS_SAMPLE, self.step, j]);
        let mut chosen = Vec::with_capacity(count);
        let mut taken = HashSet::with_capacity(count);
        let cap = 64 * count as u64 + 4096;
        let mut j = 0;
        while chosen.len() < count && j < cap {
            let id = ((draw(2 * j) as u128 * n) >> 64) as u32;
            let u = rng::unit_f64(draw(2 * j + 1));
            if u < score(id) && !self.pending.contains(id) && taken.insert(id) {
                chosen.push(id);
            }
            j += 1;
        }
        let rest = count - chosen.len();
        chosen.extend(self.sampled_by_keys(rest, &taken, &score));
        chosen
    }

    /// Efraimidis-Spirakis: the `count` free prompts not in `taken` with the largest ln(u) / s,
    /// u hashed per (step, id); a key of -inf (s = 0) ranks last, in the tie order.
    fn sampled_by_keys(
        &self,
        count: usize,
        taken: &HashSet<u32>,
        score: &(impl Fn(u32) -> f64 + Sync),
    ) -> Vec<u32> {
        if count == 0 {
            return Vec::new();
        }
        let (seed, step) = (self.cfg.seed, self.step);
        let tie = self.tie_order();
        let mut keyed: Vec<(f64, u64, u32)> = (0..self.num_prompts() as u32)
            .into_par_iter()
            .filter(|&id| !self.pending.contains(id) && !taken.contains(&id))
            .map(|id| {
                let u = rng::unit_f64(rng::key(&[
                    seed,
                    stream::RATEDPS_SAMPLE_ALL,
                    step,
                    id as u64,
                ]));
                let s = score(id);
                let k = if s > 0.0 {
                    u.ln() / s
                } else {
                    f64::NEG_INFINITY
                };
                (k, tie.key(id), id)
            })
            .collect();
        let first =
            |a: &(f64, u64, u32), b: &(f64, u64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if keyed.len() > count {
            keyed.select_nth_unstable_by(count - 1, first);
            keyed.truncate(count);
        }
        keyed.sort_unstable_by(first);
        keyed.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Thompson sampling (docs/method.md#rate-dps-selection): the `count` free prompts whose rate
    /// drawn from their predicted distribution has the largest partial chance (f32), ties in
    /// this step's keyed order.
    fn thompson(&self, count: usize) -> Vec<u32> {
        self.best_drawn(count, &self.thompson_drawn())
    }

    fn thompson_drawn(&self) -> Drawn {
        let partial = self.partial.iter().map(|&p| p as f32).collect();
        Drawn::new(partial, stream::RATEDPS_THOMPSON)
    }

    /// The stranding revisits (docs/method.md#rate-dps-selection): the `count` free prompts
    /// whose rate r drawn from their predicted distribution has the largest
    /// f_k(r) k r (1 - r)^k (f32), ties in this step's keyed order.
    fn stranding(&self, count: usize) -> Vec<u32> {
        self.best_drawn(count, &self.stranding_drawn())
    }

    /// The chance (1 - r)^k that a group shows 0 of k falls by k r (1 - r)^k per unit of
    /// logit(r), and a group moves the prompt only when it is partially solved (f_k(r)): their
    /// product, per grid rate, is the expected drop per group in the chance it stays unsolved.
    fn stranding_drawn(&self) -> Drawn {
        let k = self.group_size as f64;
        let value = (self.grid.rates.iter().zip(&self.partial))
            .map(|(&r, &f)| (f * k * r * (1.0 - r).powf(k)) as f32)
            .collect();
        Drawn::new(value, stream::RATEDPS_RESCUE)
    }

    /// The `count` free prompts whose draw (`drawn`) has the largest value, ties in this step's
    /// keyed order. Walks that order from its front for draws at the grid's largest value; one
    /// pass over every free prompt when the walk cannot settle it.
    fn best_drawn(&self, count: usize, drawn: &Drawn) -> Vec<u32> {
        if count == 0 {
            return Vec::new();
        }
        let tie = self.tie_order();
        self.drawn_walk(count, &tie, drawn)
            .unwrap_or_else(|| self.drawn_pass(count, &tie, drawn))
    }

    /// The value at the rate prompt `id` draws this step (`pi`: scratch of G values).
    fn draw(&self, id: u32, drawn: &Drawn, pi: &mut [f64]) -> f32 {
        self.main
            .prior_into(&self.look(id), self.cfg.family_shrink, pi);
        self.drawn_value(id, pi, drawn)
    }

    /// The value at the rate prompt `id` draws from its predicted distribution `pi`: the first
    /// rate where the running sum of `pi` reaches a hashed uniform of (`drawn`'s stream, step,
    /// id); the last rate if rounding leaves the sum below it.
    fn drawn_value(&self, id: u32, pi: &[f64], drawn: &Drawn) -> f32 {
        let u = rng::unit_f64(rng::key(&[
            self.cfg.seed,
            drawn.stream,
            self.step,
            id as u64,
        ]));
        let mut total = 0.0;
        let j = pi
            .iter()
            .position(|&p| {
                total += p;
                total >= u
            })
            .unwrap_or(pi.len() - 1);
        drawn.value[j]
    }

    /// The first `count` free prompts in `tie`'s order whose draw is the grid's largest value:
    /// no other prompt can rank before them. None when `64 count + 4096` draws, or the whole
    /// order, do not find them.
    fn drawn_walk(&self, count: usize, tie: &Order, drawn: &Drawn) -> Option<Vec<u32>> {
        let n = self.num_prompts() as u64;
        let cap = 64 * count + 4096;
        let g = self.grid.len();
        let mut priors = vec![0.0; WALK_BLOCK as usize * g];
        let (mut out, mut draws) = (Vec::with_capacity(count), 0);
        let mut block = Vec::with_capacity(WALK_BLOCK as usize);
        for start in (0..tie.size()).step_by(WALK_BLOCK as usize) {
            block.clear();
            block.extend(
                (start..(start + WALK_BLOCK).min(tie.size()))
                    .map(|k| tie.inverse(k))
                    .filter(|&id| id < n && !self.pending.contains(id as u32))
                    .map(|id| id as u32),
            );
            // A block's predictions first: their reads, random over N, then overlap.
            for (&id, pi) in block.iter().zip(priors.chunks_exact_mut(g)) {
                self.main
                    .prior_into(&self.look(id), self.cfg.family_shrink, pi);
            }
            for (id, pi) in block.iter().zip(priors.chunks_exact(g)) {
                if draws == cap {
                    return None;
                }
                draws += 1;
                if self.drawn_value(*id, pi, drawn) == drawn.top {
                    out.push(*id);
                    if out.len() == count {
                        return Some(out);
                    }
                }
            }
        }
        None
    }

    /// Every free prompt's draw, the best `count` (value, then key): one pass over N.
    fn drawn_pass(&self, count: usize, tie: &Order, drawn: &Drawn) -> Vec<u32> {
        self.best_of_every(count, tie, || {
            let mut pi = vec![0.0; self.grid.len()];
            move |id| self.draw(id, drawn, &mut pi)
        })
    }

    /// With families, never-observed prompts score by family: one pass over every prompt.
    fn best_scored_with_families(&self, count: usize, tie: &Order) -> Vec<u32> {
        let score = self.score_of();
        self.best_of_every(count, tie, || |id| score(id) as f32)
    }

    /// The `count` free prompts with the best values (value, then key) over every prompt, in
    /// parallel chunks; `value_in_chunk` makes each chunk's valuer (which may keep scratch space).
    fn best_of_every<V: FnMut(u32) -> f32>(
        &self,
        count: usize,
        tie: &Order,
        value_in_chunk: impl Fn() -> V + Sync,
    ) -> Vec<u32> {
        let ids: Vec<u32> = (0..self.num_prompts() as u32).collect();
        let mut best: Vec<Candidate> = ids
            .par_chunks(CHUNK)
            .flat_map_iter(|chunk| {
                let mut value = value_in_chunk();
                let free = chunk.iter().filter(|&&id| !self.pending.contains(id));
                best_of(free.map(|&id| (id, value(id))), count, tie, &self.pending)
            })
            .collect();
        best.sort_unstable();
        best.truncate(count);
        best.into_iter().map(|c| c.id).collect()
    }

    /// What the step's groups say at each rate.
    /// A step's groups show few distinct counts (k + 1 at one group size): each is worked out
    /// once.
    fn evidence(&self, obs: &Observations) -> Evidence {
        let mut ll = vec![0.0; self.grid.len()];
        let mut out = Evidence::default();
        let mut first: HashMap<(u64, u32), usize> = HashMap::new();
        for (i, group) in obs.groups().iter().enumerate() {
            match first.entry((group.successes.to_bits(), group.n_rollouts)) {
                Entry::Occupied(at) => out.repeat(*at.get(), self.grid.len()),
                Entry::Vacant(at) => {
                    at.insert(i);
                    self.grid
                        .log_binomial(group.successes, group.n_rollouts, &mut ll);
                    out.push(&ll);
                }
            }
        }
        out
    }

    /// The shadows' looks and evidence: the groups of the fit sample.
    fn shadow_looks(&self, obs: &Observations, evidence: &Evidence) -> (Vec<Look>, Evidence) {
        let (mut looks, mut rows, mut from) = (Vec::new(), Vec::new(), 0);
        for (i, group) in obs.groups().iter().enumerate() {
            match search_from(&self.sample, from, group.id) {
                Ok(row) => {
                    looks.push(Look {
                        row,
                        ..self.look(group.id)
                    });
                    rows.push(i);
                    from = row + 1;
                }
                Err(at) => from = at,
            }
        }
        (looks, evidence.subset(&rows, self.grid.len()))
    }

    /// b_i and the key of the given observed prompts.
    fn refresh_offsets(&mut self, ids: &[u32]) {
        let g = self.grid.len();
        for &id in ids {
            let i = id as usize;
            let t0 = self.last[i] as usize;
            let p = self.main.row(i);
            let then = &self.main.mixture[t0 * g..(t0 + 1) * g];
            self.offset[i] = dot(&self.partial, p) - dot(&self.partial, then);
        }
        self.refresh_keys(ids);
    }

    fn refresh_keys(&mut self, ids: &[u32]) {
        let d = &self.main.unswitched;
        let Some(&scale) = d.get(self.key_ref) else {
            return;
        };
        for &id in ids {
            let i = id as usize;
            self.key[i] = (self.offset[i] * d[self.last[i] as usize] / scale) as f32;
        }
    }

    /// Keys relative to the latest step once D(key_ref) is too small to read them against (every
    /// ~190 steps at a switch rate of 0.2): O(N), rare.
    fn rebase_keys(&mut self) {
        let d = &self.main.unswitched;
        let readable = |t: usize| d.get(t).is_some_and(|&s| s >= KEY_SCALE_MIN);
        let latest = d.len().saturating_sub(1);
        if readable(self.key_ref) || !readable(latest) {
            return; // still readable, or no step is (a switch rate of 1: exact scores only)
        }
        self.key_ref = latest;
        let seen = std::mem::take(&mut self.seen);
        self.refresh_keys(&seen);
        self.seen = seen;
    }

    /// The score's k after a step: the fixed one, or the most common group size (ties to the larger).
    fn next_group_size(&self, obs: &Observations) -> u64 {
        if let Some(k) = self.cfg.group_size {
            return k;
        }
        let mut sizes: Vec<u32> = obs.groups().iter().map(|g| g.n_rollouts).collect();
        if sizes.is_empty() {
            return self.group_size;
        }
        sizes.sort_unstable();
        let (mut best, mut best_count, mut run) = (sizes[0], 0usize, 0usize);
        for (i, &s) in sizes.iter().enumerate() {
            run = if i > 0 && sizes[i - 1] == s {
                run + 1
            } else {
                1
            };
            if run >= best_count {
                (best, best_count) = (s, run);
            }
        }
        best as u64
    }

    /// Appends the step's observed ids to the revisit queue in their keyed order.
    fn enqueue(&mut self, ids: &[u32]) {
        let order = Order::new(
            self.cfg.seed,
            stream::RATEDPS_REVISIT,
            self.step + 1,
            self.num_prompts(),
        );
        let mut keyed: Vec<(u64, u32)> = ids.iter().map(|&id| (order.key(id), id)).collect();
        keyed.sort_unstable();
        self.queue
            .extend(keyed.into_iter().map(|(_, id)| (self.step as u32, id)));
        if self.queue.len() > 2 * self.seen.len() + 1024 {
            let last = &self.last;
            self.queue.retain(|&(step, id)| last[id as usize] == step);
        }
    }

    /// The revisit queue, from the last looks alone.
    fn rebuild_queue(&mut self) {
        let mut entries: Vec<(u32, u64, u32)> = self
            .seen
            .iter()
            .map(|&id| {
                let step = self.last[id as usize];
                let order = Order::new(
                    self.cfg.seed,
                    stream::RATEDPS_REVISIT,
                    step as u64 + 1,
                    self.num_prompts(),
                );
                (step, order.key(id), id)
            })
            .collect();
        entries.sort_unstable();
        self.queue = entries
            .into_iter()
            .map(|(step, _, id)| (step, id))
            .collect();
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The `count` best of `(id, score)` pairs not in `pending`, in no particular order; keys are
/// computed only for candidates that may enter.
fn best_of(
    candidates: impl Iterator<Item = (u32, f32)>,
    count: usize,
    tie: &Order,
    pending: &Pending,
) -> Vec<Candidate> {
    let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(count + 1);
    for (id, score) in candidates {
        if heap.len() == count {
            let worst = heap.peek().expect("full");
            if score < worst.score || (score == worst.score && tie.key(id) > worst.key) {
                continue;
            }
        }
        if pending.contains(id) {
            continue;
        }
        heap.push(Candidate {
            score,
            key: tie.key(id),
            id,
        });
        if heap.len() > count {
            heap.pop();
        }
    }
    heap.into_vec()
}

fn check_families(families: Vec<i64>, num_prompts: usize) -> Result<Families> {
    if families.len() != num_prompts {
        return invalid(format!(
            "families must hold one id per prompt: {} values for {num_prompts} prompts",
            families.len()
        ));
    }
    if let Some((i, f)) = families
        .iter()
        .enumerate()
        .find(|(_, &f)| f < 0 || f >= num_prompts as i64)
    {
        return invalid(format!("families[{i}] = {f} is outside [0, {num_prompts})"));
    }
    let count = families.iter().max().map_or(0, |&m| m as usize + 1);
    Ok(Families {
        of: families.into_iter().map(|f| f as u32).collect(),
        count,
    })
}

/// The shadows' prompts: every prompt when there are at most `size`, else those whose hashed
/// uniform u(seed ^ salt, 0, id) is below size / N.
fn fit_sample(num_prompts: usize, size: u64, seed: u64) -> Vec<u32> {
    if num_prompts as u64 <= size {
        return (0..num_prompts as u32).collect();
    }
    let share = size as f64 / num_prompts as f64;
    (0..num_prompts as u32)
        .into_par_iter()
        .filter(|&id| Dice::new(seed ^ SAMPLE_SALT, 0, id as i64).uniform(1) < share)
        .collect()
}

impl Selector for RateDps {
    type Config = RateDpsConfig;
    type State = RateDpsState;

    fn config(&self) -> &RateDpsConfig {
        &self.cfg
    }

    fn num_prompts(&self) -> usize {
        self.last.len()
    }

    fn step(&self) -> u64 {
        self.step
    }

    /// Revisits first (a share of the batch: the best stranding draws or the prompts observed
    /// least recently), then the best scores, a sample by score or the best Thompson draws.
    fn select(&mut self, batch_size: usize) -> Result<Vec<u32>> {
        self.pending.check_room(self.num_prompts(), batch_size)?;
        let revisits =
            ((self.cfg.revisit * batch_size as f64 + 0.5).floor() as usize).min(batch_size);
        let mut ids = match self.cfg.revisit_by.as_str() {
            "age" => self.least_recently_observed(revisits),
            _ => self.stranding(revisits),
        };
        for &id in &ids {
            self.pending.insert(id);
        }
        let rest = batch_size - ids.len();
        let best = match self.cfg.selection.as_str() {
            "sample" => self.sampled_by_score(rest),
            "thompson" => self.thompson(rest),
            _ => self.best_scored(rest),
        };
        for &id in &best {
            self.pending.insert(id);
        }
        ids.extend(best);
        Ok(ids)
    }

    fn pending(&self) -> &Pending {
        &self.pending
    }

    fn pending_mut(&mut self) -> &mut Pending {
        &mut self.pending
    }

    /// Counts, or graded groups read as n x mean successes (a mean in [0, 1]).
    fn accepts(&self, obs: &Observations) -> Result<()> {
        if self.step + 1 >= NEVER as u64 {
            return invalid("RateDPS counts steps in 32 bits; this run has used them all");
        }
        obs.check_unit_rewards("RateDPS")
    }

    /// The shadows take the step first; the main filter then transitions at the best candidate.
    /// A group that arrives late is a look at the prompt's rate now.
    fn update(&mut self, obs: &Observations) {
        let evidence = self.evidence(obs);
        if !self.shadows.is_empty() {
            let (looks, rows) = self.shadow_looks(obs, &evidence);
            let shrink = self.cfg.family_shrink;
            // In turn: a step's shadow work is small (about B x sample / N groups each), and
            // waking pool threads for it costs more on a busy machine.
            for shadow in &mut self.shadows {
                shadow.observe(&looks, &rows, shrink);
            }
            self.main.rate = self.chosen_switch_rate();
        }
        let looks: Vec<Look> = obs.groups().iter().map(|g| self.look(g.id)).collect();
        self.main.observe(&looks, &evidence, self.cfg.family_shrink);
        let ids: Vec<u32> = obs.groups().iter().map(|g| g.id).collect();
        let first_looks: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| self.last[id as usize] == NEVER)
            .collect();
        for &id in &ids {
            self.last[id as usize] = self.step as u32;
        }
        insert_sorted(&mut self.seen, &first_looks);
        let k = self.next_group_size(obs);
        if k != self.group_size {
            self.group_size = k;
            self.partial = self.grid.partial_chances(k as u32);
            let seen = std::mem::take(&mut self.seen);
            self.refresh_offsets(&seen);
            self.seen = seen;
        } else {
            self.refresh_offsets(&ids);
        }
        self.rebase_keys();
        self.enqueue(&ids);
        self.step += 1;
    }

    fn state(&self) -> RateDpsState {
        let last_step = self
            .last
            .iter()
            .map(|&t| if t == NEVER { -1 } else { t as i64 })
            .collect();
        RateDpsState {
            step: self.step,
            last_step,
            group_size: self.group_size,
            switch_rate: self.main.rate,
            flight: self.pending.state(),
            main: filter_state(std::slice::from_ref(&self.main)),
            shadow: filter_state(&self.shadows),
        }
    }

    /// A policy with these options (and families) continued from `state`; refuses a state that
    /// does not fit.
    fn restore(&self, state: RateDpsState) -> Result<Self> {
        let n = self.num_prompts();
        let families = self
            .families
            .as_ref()
            .map(|f| f.of.iter().map(|&x| x as i64).collect());
        let mut r = RateDps::with_families(n, self.cfg.clone(), families)?;
        if state.step + 1 >= NEVER as u64 {
            return invalid(format!("step {} is too large", state.step));
        }
        let steps = state.step as usize;
        for (i, &t) in state.last_step.iter().enumerate() {
            if t < -1 || t >= state.step as i64 {
                return invalid(format!(
                    "last_step[{i}] = {t} is outside [-1, {})",
                    state.step
                ));
            }
            r.last[i] = if t < 0 { NEVER } else { t as u32 };
        }
        let k = state.group_size;
        if k == 0 || k > u32::MAX as u64 || self.cfg.group_size.is_some_and(|fixed| fixed != k) {
            return invalid(format!("group_size {k} does not fit these options"));
        }
        let rate_ok = match self.cfg.switch_rate {
            Some(fixed) => state.switch_rate == fixed,
            None => {
                state.switch_rate == START_SWITCH_RATE
                    || self.cfg.switch_rates.contains(&state.switch_rate)
            }
        };
        if !rate_ok {
            return invalid(format!(
                "switch_rate {} is not one of these options' rates",
                state.switch_rate
            ));
        }
        r.seen = (0..n as u32)
            .filter(|&id| r.last[id as usize] != NEVER)
            .collect();
        let main_rows: Vec<Option<usize>> =
            (0..n).map(|i| (r.last[i] != NEVER).then_some(i)).collect();
        r.main = restore_filters(&state.main, vec![r.main], &main_rows, steps, "")?.remove(0);
        r.main.rate = state.switch_rate;
        let shadow_rows: Vec<Option<usize>> = r
            .sample
            .iter()
            .map(|&id| (r.last[id as usize] != NEVER).then_some(id as usize))
            .collect();
        let shadows = std::mem::take(&mut r.shadows);
        r.shadows = restore_filters(&state.shadow, shadows, &shadow_rows, steps, "shadow_")?;
        if let Some(f) = &r.families {
            let of = &f.of;
            let seen = &r.seen;
            r.main
                .count_families(seen.iter().map(|&id| of[id as usize] as usize));
            for s in &mut r.shadows {
                s.count_families(shadow_rows.iter().flatten().map(|&id| of[id] as usize));
            }
        }
        r.group_size = k;
        r.partial = r.grid.partial_chances(k as u32);
        r.step = state.step;
        r.key_ref = steps.saturating_sub(1);
        let seen = std::mem::take(&mut r.seen);
        r.refresh_offsets(&seen);
        r.seen = seen;
        r.rebuild_queue();
        r.pending = Pending::restore(n, &state.flight)?;
        Ok(r)
    }
}

impl Predictor for RateDps {
    /// The binomial predictive of the rate distribution for a group of `n_rollouts`.
    fn predicted(&self, id: u32, n_rollouts: u32) -> [f64; 3] {
        let pi = self.rate_distribution(id);
        let mut out = [0.0; 3];
        for (p, c) in pi.iter().zip(self.grid.state_chances(n_rollouts)) {
            for s in 0..3 {
                out[s] += p * c[s];
            }
        }
        out
    }
}

fn filter_state(filters: &[Filter]) -> FilterState {
    let cat = |part: fn(&Filter) -> Vec<f64>| filters.iter().flat_map(part).collect::<Vec<f64>>();
    FilterState {
        post: cat(Filter::posts),
        population: cat(|f| f.population.clone()),
        switches: cat(|f| {
            let mut s = f.switches.clone();
            s.push(f.switches_total);
            s
        }),
        mixture: cat(|f| f.mixture.clone()),
        unswitched: cat(|f| f.unswitched.clone()),
        family_sums: cat(|f| f.family_sums.clone()),
        log_predictive: cat(|f| vec![f.log_predictive]),
        groups: filters.iter().map(|f| f.groups as i64).collect(),
    }
}

/// `filters` (fresh, of the right sizes) continued from `state`, checked: `rows` says for each
/// row whether its prompt has been observed.
fn restore_filters(
    state: &FilterState,
    mut filters: Vec<Filter>,
    rows: &[Option<usize>],
    steps: usize,
    prefix: &str,
) -> Result<Vec<Filter>> {
    let count = filters.len();
    let g = filters.first().map_or(0, |f| f.grid);
    let families = filters.first().map_or(0, |f| f.family_counts.len());
    let sizes = [
        ("post", state.post.len(), rows.len() * g),
        ("population", state.population.len(), g),
        ("switches", state.switches.len(), g + 1),
        ("mixture", state.mixture.len(), (steps + 1) * g),
        ("unswitched", state.unswitched.len(), steps),
        ("family_sums", state.family_sums.len(), families * g),
        ("log_predictive", state.log_predictive.len(), 1),
        ("groups", state.groups.len(), 1),
    ];
    for (name, got, per_filter) in sizes {
        if got != count * per_filter {
            return invalid(format!(
                "{prefix}{name} holds {got} values, expected {count} x {per_filter}"
            ));
        }
    }
    let finite = |name: &str, v: &[f64]| -> Result<()> {
        match v.iter().position(|x| !x.is_finite() || *x < 0.0) {
            Some(i) => invalid(format!(
                "{prefix}{name}[{i}] = {} is not a finite number >= 0",
                v[i]
            )),
            None => Ok(()),
        }
    };
    for name in [
        "post",
        "population",
        "switches",
        "mixture",
        "unswitched",
        "family_sums",
    ] {
        let v = match name {
            "post" => &state.post,
            "population" => &state.population,
            "switches" => &state.switches,
            "mixture" => &state.mixture,
            "unswitched" => &state.unswitched,
            _ => &state.family_sums,
        };
        finite(name, v)?;
    }
    if state.unswitched.iter().any(|&d| d > 1.0) {
        return invalid(format!("{prefix}unswitched holds a chance above 1"));
    }
    if state.groups.iter().any(|&x| x < 0) || state.log_predictive.iter().any(|x| !x.is_finite()) {
        return invalid(format!(
            "{prefix}log_predictive and groups must be finite, groups >= 0"
        ));
    }
    let distribution = |v: &[f64]| (v.iter().sum::<f64>() - 1.0).abs() <= 1e-6;
    let rows_per = rows.len() * g;
    for (k, f) in filters.iter_mut().enumerate() {
        let post = &state.post[k * rows_per..(k + 1) * rows_per];
        for (row, observed) in rows.iter().enumerate() {
            if observed.is_some() && !distribution(&post[row * g..(row + 1) * g]) {
                return invalid(format!("{prefix}post of row {row} is not a distribution"));
            }
        }
        let population = &state.population[k * g..(k + 1) * g];
        if !distribution(population) {
            return invalid(format!("{prefix}population is not a distribution"));
        }
        f.set_posts(post, |row| rows[row].is_some());
        f.population = population.to_vec();
        f.switches = state.switches[k * (g + 1)..(k + 1) * (g + 1) - 1].to_vec();
        f.switches_total = state.switches[(k + 1) * (g + 1) - 1];
        f.mixture = state.mixture[k * (steps + 1) * g..(k + 1) * (steps + 1) * g].to_vec();
        f.unswitched = state.unswitched[k * steps..(k + 1) * steps].to_vec();
        f.family_sums = state.family_sums[k * families * g..(k + 1) * families * g].to_vec();
        f.log_predictive = state.log_predictive[k];
        f.groups = state.groups[k] as u64;
    }
    Ok(filters)
}

/// Adds the sorted ids `fresh`, none of them in the sorted `seen`, to `seen` in place: each one's
/// slot is found from the last one's, then, from the back, the ids above a slot move up in one
/// copy (no new list a step: `seen` holds up to N ids).
fn insert_sorted(seen: &mut Vec<u32>, fresh: &[u32]) {
    let mut from = 0;
    let slots: Vec<usize> = fresh
        .iter()
        .map(|&id| {
            from = search_from(seen, from, id).unwrap_or_else(|at| at);
            from
        })
        .collect();
    let mut end = seen.len();
    seen.resize(end + fresh.len(), 0);
    for (k, (&id, &at)) in fresh.iter().zip(&slots).enumerate().rev() {
        seen.copy_within(at..end, at + k + 1);
        seen[at + k] = id;
        end = at;
    }
}

/// `binary_search` of `id` in the sorted `ids`, every id before `from` smaller: gallops up from
/// `from`, so that a walk over sorted ids costs the log of each gap, not of the list, and stays
/// in cache.
fn search_from(ids: &[u32], from: usize, id: u32) -> std::result::Result<usize, usize> {
    let (mut lo, mut width) = (from, 1);
    while lo + width <= ids.len() && ids[lo + width - 1] < id {
        lo += width;
        width *= 2;
    }
    let hi = (lo + width).min(ids.len());
    match ids[lo..hi].binary_search(&id) {
        Ok(i) => Ok(lo + i),
        Err(i) => Err(lo + i),
    }
}

#[cfg(test)]
mod tests;
