//! One RateDPS filter in its lazy form (docs/method.md#rate-dps-cost): per row (a prompt of the
//! filter's domain) the posterior at its last look; per step the mixture M_t and, per step of a
//! last look, the chance that no switch happened since. A prompt last looked at at step t0 with
//! posterior p predicts, at step t,
//!
//! ```text
//! pi(t) = M_t + D(t0) (p - M_t0),     kept(t) = D(t0) p,     D(t0) = prod_{s=t0}^{t-1} (1 - rho_s),
//! ```
//!
//! so a step touches only the prompts it observes, and the O(T) table D. Arithmetic in f64.

/// What a step's groups say: per group, its likelihood at every rate over the largest one
/// (exp(log L - top)), and that top.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub likelihood: Vec<f64>,
    pub top: Vec<f64>,
}

impl Evidence {
    pub fn push(&mut self, ll: &[f64]) {
        let top = ll.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.likelihood.extend(ll.iter().map(|x| (x - top).exp()));
        self.top.push(top);
    }

    /// Group `i`'s evidence again, for a group with the same counts.
    pub fn repeat(&mut self, i: usize, grid: usize) {
        self.likelihood.extend_from_within(i * grid..(i + 1) * grid);
        self.top.push(self.top[i]);
    }

    /// The groups `rows` of this evidence.
    pub fn subset(&self, rows: &[usize], grid: usize) -> Self {
        Evidence {
            likelihood: rows
                .iter()
                .flat_map(|&r| &self.likelihood[r * grid..(r + 1) * grid])
                .copied()
                .collect(),
            top: rows.iter().map(|&r| self.top[r]).collect(),
        }
    }
}

/// How a prompt is looked at in a step: its row in the filter, the step of its last look (None:
/// never), and its family when families are on.
#[derive(Clone, Copy, Debug)]
pub struct Look {
    pub row: usize,
    pub last: Option<usize>,
    pub family: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub grid: usize,
    /// rho: the chance of a switch at each step's transition.
    pub rate: f64,
    /// g: what a switch draws.
    pub population: Vec<f64>,
    /// The decayed switch evidence per rate (S) and its total (sigma).
    pub switches: Vec<f64>,
    pub switches_total: f64,
    /// The posterior at each looked-at row's last look, G values a row, in the order the rows
    /// were first looked at (`place`): a step's first looks fill memory in sequence instead of
    /// each touching, at 10^6 rows, a page of its own that the kernel must map and clear.
    pub post: Vec<f64>,
    /// Each row's place in `post` (NO_PLACE: never looked at).
    pub place: Vec<u32>,
    /// (T + 1) x G: M_0 .. M_T.
    pub mixture: Vec<f64>,
    /// T values: D(t0) for t0 = 0 .. T - 1.
    pub unswitched: Vec<f64>,
    /// F x G: per family, the sum of its observed members' posteriors (empty without families).
    pub family_sums: Vec<f64>,
    /// Per family, its observed members (derived from the last looks).
    pub family_counts: Vec<u64>,
    /// The log predictive of the groups scored so far, and how many.
    pub log_predictive: f64,
    pub groups: u64,
}

/// The place of a row never looked at.
const NO_PLACE: u32 = u32::MAX;

/// The weight of a step's switch evidence halves after this many steps.
pub const POPULATION_HALF_LIFE: f64 = 10.0;

impl Filter {
    pub fn new(rows: usize, grid: usize, rate: f64, families: usize) -> Self {
        Filter {
            grid,
            rate,
            population: vec![1.0 / grid as f64; grid],
            switches: vec![0.0; grid],
            switches_total: 0.0,
            post: Vec::with_capacity(rows * grid),
            place: vec![NO_PLACE; rows],
            mixture: vec![0.0; grid],
            unswitched: Vec::new(),
            family_sums: vec![0.0; families * grid],
            family_counts: vec![0; families],
            log_predictive: 0.0,
            groups: 0,
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.unswitched.len()
    }

    fn mixture_at(&self, t: usize) -> &[f64] {
        &self.mixture[t * self.grid..(t + 1) * self.grid]
    }

    /// The posterior at the last look of `row`, a row looked at before.
    pub fn row(&self, row: usize) -> &[f64] {
        let at = self.place[row] as usize;
        &self.post[at * self.grid..(at + 1) * self.grid]
    }

    /// The place of `row` in `post`; at its first look, a new one after the others.
    fn place_of(&mut self, row: usize) -> usize {
        if self.place[row] == NO_PLACE {
            self.place[row] = (self.post.len() / self.grid) as u32;
            self.post.resize(self.post.len() + self.grid, 0.0);
        }
        self.place[row] as usize
    }

    /// rows x G: each row's posterior at its last look, zeros for a row never looked at.
    pub fn posts(&self) -> Vec<f64> {
        let g = self.grid;
        let mut out = vec![0.0; self.place.len() * g];
        for (row, &at) in self.place.iter().enumerate() {
            if at != NO_PLACE {
                out[row * g..(row + 1) * g].copy_from_slice(self.row(row));
            }
        }
        out
    }

    /// Takes `posts` (rows x G) for the rows `looked` says were looked at, in row order.
    pub fn set_posts(&mut self, posts: &[f64], looked: impl Fn(usize) -> bool) {
        self.post.clear();
        self.place.fill(NO_PLACE);
        for row in (0..self.place.len()).filter(|&row| looked(row)) {
            let (g, at) = (self.grid, self.place_of(row));
            self.post[at * g..(at + 1) * g].copy_from_slice(&posts[row * g..(row + 1) * g]);
        }
    }

    /// What a never-observed prompt of `family` predicts: the population, or its family's
    /// observed posteriors with `shrink` prompts' worth of the population.
    pub fn unseen_into(&self, family: Option<usize>, shrink: f64, out: &mut [f64]) {
        match family {
            None => out.copy_from_slice(&self.population),
            Some(f) => {
                let sums = &self.family_sums[f * self.grid..(f + 1) * self.grid];
                let total = self.family_counts[f] as f64 + shrink;
                for ((o, s), g) in out.iter_mut().zip(sums).zip(&self.population) {
                    *o = (s + shrink * g) / total;
                }
            }
        }
    }

    /// The predicted rate distribution of the coming step.
    pub fn prior_into(&self, look: &Look, shrink: f64, out: &mut [f64]) {
        let Some(t0) = look.last else {
            return self.unseen_into(look.family, shrink, out);
        };
        let d = self.unswitched[t0];
        let (now, then) = (self.mixture_at(self.steps()), self.mixture_at(t0));
        let p = self.row(look.row);
        for (j, o) in out.iter_mut().enumerate() {
            *o = now[j] + d * (p[j] - then[j]);
        }
    }

    /// The step's groups, each with its likelihood at every rate scaled by exp(-top) (`top`: the
    /// largest log-likelihood): score them, take their evidence, refit the population, then the
    /// transition at this filter's rate.
    pub fn observe(&mut self, looks: &[Look], evidence: &Evidence, shrink: f64) {
        let g = self.grid;
        let mut prior = vec![0.0; g];
        let (mut switched, mut switched_total) = (vec![0.0; g], 0.0);
        let mut step_loglik = 0.0;
        // (family, the row's posterior before this look if it had one) for the family sums
        let mut family_updates: Vec<(usize, Option<Vec<f64>>, usize)> = Vec::new();
        // Every look's place first: these reads, random over the rows, then overlap.
        let places: Vec<usize> = looks.iter().map(|look| self.place_of(look.row)).collect();
        for (((look, likelihood), top), at) in looks
            .iter()
            .zip(evidence.likelihood.chunks_exact(g))
            .zip(&evidence.top)
            .zip(places)
        {
            self.prior_into(look, shrink, &mut prior);
            let total: f64 = prior.iter().zip(likelihood).map(|(p, l)| p * l).sum();
            step_loglik += top + total.ln();
            // A first look keeps nothing (its row is new).
            let d = look.last.map(|t0| self.unswitched[t0]);
            if let Some(f) = look.family {
                family_updates.push((f, look.last.map(|_| self.row(look.row).to_vec()), look.row));
            }
            let row = &mut self.post[at * g..(at + 1) * g];
            for j in 0..g {
                let kept = d.map_or(0.0, |d| d * row[j]);
                let e = (prior[j] - kept) * likelihood[j] / total;
                switched[j] += e;
                switched_total += e;
                row[j] = prior[j] * likelihood[j] / total;
            }
        }
        self.log_predictive += step_loglik;
        self.groups += looks.len() as u64;
        let keep = 0.5f64.powf(1.0 / POPULATION_HALF_LIFE);
        for (s, e) in self.switches.iter_mut().zip(&switched) {
            *s = keep * *s + e;
        }
        self.switches_total = keep * self.switches_total + switched_total;
        if self.switches_total > 0.0 {
            for (p, s) in self.population.iter_mut().zip(&self.switches) {
                *p = s / self.switches_total;
            }
        }
        for (f, old, row) in family_updates {
            let new = self.row(row).to_vec();
            let sums = &mut self.family_sums[f * g..(f + 1) * g];
            match old {
                Some(old) => sums.iter_mut().zip(&old).for_each(|(s, o)| *s -= o),
                None => self.family_counts[f] += 1,
            }
            sums.iter_mut().zip(&new).for_each(|(s, n)| *s += n);
        }
        self.transition();
    }

    /// M_{T+1} = (1 - rho) M_T + rho g; every D(t0) takes a factor 1 - rho, and D(T) = 1 - rho.
    fn transition(&mut self) {
        let rho = self.rate;
        let next: Vec<f64> = self
            .mixture_at(self.steps())
            .iter()
            .zip(&self.population)
            .map(|(m, g)| (1.0 - rho) * m + rho * g)
            .collect();
        self.mixture.extend(next);
        self.unswitched.push(1.0);
        for d in &mut self.unswitched {
            *d *= 1.0 - rho;
        }
    }

    /// The family counts from the rows' last looks (after a restore).
    pub fn count_families(&mut self, families: impl Iterator<Item = usize>) {
        self.family_counts.iter_mut().for_each(|c| *c = 0);
        for f in families {
            self.family_counts[f] += 1;
        }
    }
}
