use super::*;
use crate::rng::{self, Rng};

fn obs(n: usize, ids: &[i64], c: &[i64], k: &[i64]) -> Observations {
    Observations::new(n, ids, c, k).unwrap()
}

fn eights(len: usize) -> Vec<i64> {
    vec![8; len]
}

fn fixed(rate: f64) -> RateDpsConfig {
    RateDpsConfig {
        switch_rate: Some(rate),
        revisit: 0.0,
        ..Default::default()
    }
}

/// `cfg` with top-B selection (the best scores), which the naive sort checks.
fn top(cfg: RateDpsConfig) -> RateDpsConfig {
    RateDpsConfig {
        selection: "top".into(),
        ..cfg
    }
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

/// A group is a binomial look at the rate, for any n: the posterior is prior x C(n, c) r^c (1-r)^(n-c), normalised.
#[test]
fn a_group_is_a_binomial_look_at_the_rate() {
    let mut p = RateDps::new(4, fixed(0.0)).unwrap();
    let prior = p.rate_distribution(2);
    p.observe(&obs(4, &[2], &[3], &[11])).unwrap();
    let brute: Vec<f64> = p
        .rates()
        .iter()
        .zip(&prior)
        .map(|(r, q)| q * 165.0 * r.powi(3) * (1.0 - r).powi(8))
        .collect();
    let total: f64 = brute.iter().sum();
    let brute: Vec<f64> = brute.iter().map(|x| x / total).collect();
    // with rho = 0 the prediction is the posterior
    assert!(close(&p.rate_distribution(2), &brute, 1e-14));
}

/// First looks are switches: after one step the population is their mean posterior, and an
/// observed prompt predicts (1 - rho) posterior + rho population.
#[test]
fn the_population_is_the_switch_evidence_and_the_transition_mixes_it_in() {
    let mut p = RateDps::new(6, fixed(0.1)).unwrap();
    p.observe(&obs(6, &[0, 1, 2, 3], &[0, 2, 5, 8], &eights(4)))
        .unwrap();
    let g = p.grid.len();
    let posts: Vec<&[f64]> = (0..4).map(|i| p.main.row(i)).collect();
    let mean: Vec<f64> = (0..g)
        .map(|j| posts.iter().map(|r| r[j]).sum::<f64>() / 4.0)
        .collect();
    assert!(close(&p.main.population, &mean, 1e-14));
    let want: Vec<f64> = (0..g).map(|j| 0.9 * posts[1][j] + 0.1 * mean[j]).collect();
    assert!(close(&p.rate_distribution(1), &want, 1e-14));
    assert!(
        close(&p.rate_distribution(5), &mean, 1e-15),
        "never observed: the population"
    );
}

/// The lazy form against an eager filter that updates every prompt every step (the reference's
/// equations, written out here): predictions, switch evidence and population agree to rounding.
#[test]
fn the_lazy_filter_matches_eager_updates() {
    let (n, grid) = (40usize, Grid::new(16, 7.0));
    let g = grid.len();
    let rho = 0.05;
    let mut lazy = RateDps::new(n, fixed(rho)).unwrap();
    let mut prior = vec![1.0 / g as f64; n * g];
    let mut kept = vec![0.0; n * g];
    let mut observed = vec![false; n];
    let (mut switches, mut total) = (vec![0.0; g], 0.0);
    let mut population = vec![1.0 / g as f64; g];
    let keep = 0.5f64.powf(0.1);
    let mut rng = Rng::new(3);
    for step in 0..60 {
        let mut ids: Vec<i64> = (0..n as i64).filter(|_| rng.uniform() < 0.2).collect();
        if step % 7 == 0 {
            ids.clear();
        }
        let c: Vec<i64> = ids.iter().map(|_| rng.below(9) as i64).collect();
        lazy.observe(&obs(n, &ids, &c, &eights(ids.len()))).unwrap();
        let mut post = prior.clone();
        let mut sw = vec![0.0; g];
        for (&id, &ci) in ids.iter().zip(&c) {
            let i = id as usize;
            let mut ll = vec![0.0; g];
            grid.log_binomial(ci as f64, 8, &mut ll);
            let top = ll.iter().cloned().fold(f64::MIN, f64::max);
            let l: Vec<f64> = ll.iter().map(|x| (x - top).exp()).collect();
            let z: f64 = (0..g).map(|j| prior[i * g + j] * l[j]).sum();
            for j in 0..g {
                sw[j] += (prior[i * g + j] - kept[i * g + j]) * l[j] / z;
                post[i * g + j] = prior[i * g + j] * l[j] / z;
            }
            observed[i] = true;
        }
        let sum: f64 = sw.iter().sum();
        for j in 0..g {
            switches[j] = keep * switches[j] + sw[j];
        }
        total = keep * total + sum;
        if total > 0.0 {
            population = switches.iter().map(|s| s / total).collect();
        }
        for i in 0..n {
            let was = ids.contains(&(i as i64));
            for j in 0..g {
                let k = if was {
                    post[i * g + j]
                } else {
                    kept[i * g + j]
                };
                kept[i * g + j] = if observed[i] { (1.0 - rho) * k } else { 0.0 };
                prior[i * g + j] = if observed[i] {
                    (1.0 - rho) * post[i * g + j] + rho * population[j]
                } else {
                    population[j]
                };
            }
        }
        for i in 0..n {
            assert!(
                close(
                    &lazy.rate_distribution(i as u32),
                    &prior[i * g..(i + 1) * g],
                    1e-12
                ),
                "step {step} prompt {i}"
            );
        }
        assert!(close(&lazy.main.population, &population, 1e-12));
    }
}

/// A world whose rates are redrawn from a fixed population with chance rho each step: the fit
/// finds rho among the candidates.
#[test]
fn the_online_fit_finds_the_switch_rate_of_a_switching_world() {
    let n = 400;
    let mut rng = Rng::new(4);
    let draw = |rng: &mut Rng| 1.0 / (1.0 + (-2.0 * rng.normal()).exp());
    for true_rho in [0.01, 0.1] {
        let mut p = RateDps::new(
            n,
            RateDpsConfig {
                revisit: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        let mut rates: Vec<f64> = (0..n).map(|_| draw(&mut rng)).collect();
        for _ in 0..150 {
            for r in rates.iter_mut() {
                if rng.uniform() < true_rho {
                    *r = draw(&mut rng);
                }
            }
            let mut ids: Vec<u32> = (0..n as u32).collect();
            rng.shuffle(&mut ids);
            observe_at_rates(&mut p, n, &ids[..100], &rates, &mut rng);
        }
        assert_eq!(p.switch_rate(), true_rho);
    }
}

#[test]
fn the_start_value_holds_while_the_candidates_tie() {
    let mut p = RateDps::new(10, RateDpsConfig::default()).unwrap();
    assert_eq!(p.switch_rate(), START_SWITCH_RATE);
    p.observe(&obs(10, &[0, 1, 2, 3, 4], &[0, 8, 4, 2, 6], &eights(5)))
        .unwrap();
    assert_eq!(
        p.switch_rate(),
        START_SWITCH_RATE,
        "first looks only: every candidate ties"
    );
}

/// How many of `batch` slots go to revisits.
fn revisit_count(p: &RateDps, batch: usize) -> usize {
    ((p.cfg.revisit * batch as f64 + 0.5).floor() as usize).min(batch)
}

/// The free prompts, observed least recently first (by last step, then that step's key): the
/// naive revisit order of every selection.
fn by_age(p: &RateDps) -> Vec<u32> {
    let n = p.num_prompts();
    let mut free: Vec<u32> = (0..n as u32)
        .filter(|&id| !p.pending.contains(id))
        .collect();
    let age = |id: u32| {
        let last = p.last[id as usize];
        let (rank, step) = if last == NEVER {
            (0u64, 0u64)
        } else {
            (last as u64 + 1, last as u64 + 1)
        };
        (
            rank,
            Order::new(p.cfg.seed, stream::RATEDPS_REVISIT, step, n).key(id),
        )
    };
    free.sort_by_key(|&id| age(id));
    free
}

/// The naive revisits of `count` slots: the first `count` free prompts by age, or the naive
/// stranding draws.
fn naive_revisits(p: &RateDps, count: usize) -> Vec<u32> {
    match p.cfg.revisit_by.as_str() {
        "age" => by_age(p)[..count].to_vec(),
        by => {
            assert_eq!(by, "stranding");
            let k = p.group_size as f64;
            let value: Vec<f32> = (p.rates().iter().zip(&p.partial))
                .map(|(&r, &f)| (f * k * r * (1.0 - r).powf(k)) as f32)
                .collect();
            naive_drawn(p, count, &value, stream::RATEDPS_RESCUE)
        }
    }
}

/// The naive top-B selection: the revisits, then every other free prompt sorted by (score, this
/// step's key).
fn naive_select(p: &RateDps, batch: usize) -> Vec<u32> {
    assert_eq!(p.cfg.selection, "top", "the naive sort is top-B selection");
    let revisits = revisit_count(p, batch);
    let mut out = naive_revisits(p, revisits);
    let scores = p.scores();
    let tie = p.tie_order();
    let mut rest: Vec<Candidate> = (0..p.num_prompts() as u32)
        .filter(|id| !p.pending.contains(*id) && !out.contains(id))
        .map(|id| Candidate {
            score: scores[id as usize] as f32,
            key: tie.key(id),
            id,
        })
        .collect();
    rest.sort_unstable();
    out.extend(rest.iter().take(batch - revisits).map(|c| c.id));
    out
}

/// Selection (the keyed walk over never-observed prompts, the observed scan, the revisit queue)
/// equals sorting every prompt, early (most prompts never observed) and late, with a second round.
#[test]
fn selection_equals_sorting_every_prompt() {
    for (n, batch, revisit, seed) in [
        (3000usize, 64usize, 0.125, 1u64),
        (700, 100, 0.25, 2),
        (5000, 40, 0.0, 3),
    ] {
        let cfg = top(RateDpsConfig {
            revisit,
            seed,
            ..Default::default()
        });
        let mut p = RateDps::new(n, cfg).unwrap();
        let mut rng = Rng::new(seed);
        let rates: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
        for step in 0..40 {
            let want = naive_select(&p, batch);
            let mut ids = p.select(batch).unwrap();
            assert_eq!(ids, want, "n {n} step {step}");
            if step % 5 == 2 {
                let want = naive_select(&p, batch / 2);
                let more = p.select(batch / 2).unwrap();
                assert_eq!(more, want, "second round, step {step}");
                ids.extend(more);
            }
            observe_at_rates(&mut p, n, &ids, &rates, &mut rng);
        }
    }
}

/// With every prompt observed (many tied scores), the sampled bar's pass selects what sorting
/// every prompt selects: a batch it places, a second round (ids handed out above the bar), and a
/// batch too large for the sample (every prompt ranked).
#[test]
fn the_sampled_bar_selects_what_sorting_every_prompt_selects() {
    let n = 40_000;
    let mut p = RateDps::new(n, top(RateDpsConfig::default())).unwrap();
    let mut rng = Rng::new(9);
    for start in (0..n).step_by(10_000) {
        let ids: Vec<i64> = (start as i64..(start + 10_000) as i64).collect();
        let c: Vec<i64> = ids.iter().map(|_| rng.below(9) as i64).collect();
        p.observe(&obs(n, &ids, &c, &eights(ids.len()))).unwrap();
    }
    for (step, batch) in [(0, 256usize), (1, 6000), (2, 64)] {
        let want = naive_select(&p, batch);
        let mut ids = p.select(batch).unwrap();
        assert_eq!(ids, want, "step {step}");
        let want = naive_select(&p, batch / 2);
        let more = p.select(batch / 2).unwrap();
        assert_eq!(more, want, "second round, step {step}");
        ids.extend(more);
        observe_random(&mut p, n, &ids, &mut rng);
    }
}

/// Observes the ids as selected, each with 0..=8 correct of 8 drawn from `rng`.
/// Observes a group of 8 for each of `ids`, its correct answers drawn at the prompt's rate.
fn observe_at_rates(p: &mut RateDps, n: usize, ids: &[u32], rates: &[f64], rng: &mut Rng) {
    let c: Vec<i64> = ids
        .iter()
        .map(|&i| (0..8).filter(|_| rng.uniform() < rates[i as usize]).count() as i64)
        .collect();
    let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    p.observe(&obs(n, &ids, &c, &eights(ids.len()))).unwrap();
}

fn observe_random(p: &mut RateDps, n: usize, ids: &[u32], rng: &mut Rng) {
    let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let c: Vec<i64> = ids.iter().map(|_| rng.below(9) as i64).collect();
    p.observe(&obs(n, &ids, &c, &eights(ids.len()))).unwrap();
}

/// Hundreds of steps after every prompt was observed (most scores tied at the population's, keys
/// rebased every ~190 steps at a switch rate of 0.2): the keyed pass selects what sorting every
/// prompt selects.
#[test]
fn the_keyed_pass_selects_what_sorting_every_prompt_selects_over_many_steps() {
    let n = 20_000;
    let mut p = RateDps::new(n, top(fixed(0.2))).unwrap();
    let mut rng = Rng::new(5);
    let all: Vec<i64> = (0..n as i64).collect();
    let c: Vec<i64> = all.iter().map(|_| rng.below(9) as i64).collect();
    p.observe(&obs(n, &all, &c, &eights(n))).unwrap();
    for step in 1..420 {
        let mut ids = p.select(128).unwrap();
        if step % 7 == 0 {
            let want = naive_select(&p, 64);
            let more = p.select(64).unwrap();
            assert_eq!(more, want, "step {step}");
            ids.extend(more);
        }
        observe_random(&mut p, n, &ids, &mut rng);
    }
}

#[test]
fn revisits_take_the_prompts_observed_least_recently() {
    let n = 64;
    let mut p = RateDps::new(
        n,
        RateDpsConfig {
            revisit: 0.25,
            revisit_by: "age".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let ids: Vec<i64> = (0..48).collect();
    p.observe(&obs(n, &ids, &vec![4; 48], &eights(48))).unwrap();
    let picked = p.select(8).unwrap();
    assert!(
        picked[..2].iter().all(|&id| id >= 48),
        "2 of 8 go to never-observed prompts"
    );
    let ids: Vec<i64> = picked.iter().map(|&i| i as i64).collect();
    p.observe(&obs(n, &ids, &vec![4; 8], &eights(8))).unwrap();
    let again = p.select(8).unwrap();
    assert!(again[..2].iter().all(|id| !picked.contains(id)));
}

#[test]
fn selection_is_seeded_and_ties_differ_between_seeds() {
    let pick = |seed| {
        RateDps::new(
            1000,
            RateDpsConfig {
                seed,
                ..Default::default()
            },
        )
        .unwrap()
        .select(10)
        .unwrap()
    };
    assert_eq!(pick(0), pick(0));
    assert_ne!(pick(0), pick(1));
}

#[test]
fn a_second_select_hands_out_other_prompts_and_room_is_checked() {
    halves_are_disjoint_and_room_is_checked(RateDps::new(12, RateDpsConfig::default()).unwrap());
}

/// On 12 prompts, two `select` calls of 6 in one step hand out disjoint halves, and a third
/// finds no room.
fn halves_are_disjoint_and_room_is_checked(mut p: RateDps) {
    assert_eq!(p.num_prompts(), 12);
    let first = p.select(6).unwrap();
    let second = p.select(6).unwrap();
    assert!(first.iter().all(|id| !second.contains(id)));
    assert!(p.select(1).is_err());
}

/// Two `select` calls of 5 in one step hand out what one call of 10 would, the second none of the
/// first's.
fn two_calls_continue_one(p: &mut RateDps) {
    let mut q = p.clone();
    let mut two = p.select(5).unwrap();
    let second = p.select(5).unwrap();
    assert!(second.iter().all(|id| !two.contains(id)));
    two.extend(second);
    assert_eq!(two, q.select(10).unwrap());
}

#[test]
fn group_size_follows_the_last_step_unless_fixed() {
    let mut p = RateDps::new(6, RateDpsConfig::default()).unwrap();
    p.observe(&obs(6, &[0, 1, 2], &[1, 2, 3], &[4, 4, 16]))
        .unwrap();
    assert_eq!(p.group_size(), 4);
    p.observe(&obs(6, &[0, 1], &[1, 2], &[4, 16])).unwrap();
    assert_eq!(p.group_size(), 16, "a tie goes to the larger");
    let mut q = RateDps::new(
        6,
        RateDpsConfig {
            group_size: Some(8),
            ..Default::default()
        },
    )
    .unwrap();
    q.observe(&obs(6, &[0, 1, 2], &[1, 2, 3], &[4, 4, 16]))
        .unwrap();
    assert_eq!(q.group_size(), 8);
    // the scores follow k: recomputed for every observed prompt
    let chances = p.grid.partial_chances(16);
    for id in 0..6 {
        assert!((p.scores()[id as usize] - dot(&p.rate_distribution(id), &chances)).abs() < 1e-14);
    }
}

#[test]
fn predictions_are_the_binomial_predictive() {
    let mut p = RateDps::new(3, RateDpsConfig::default()).unwrap();
    p.observe(&obs(3, &[0, 1], &[0, 5], &[8, 8])).unwrap();
    for n in [0u32, 1, 4, 8, 16] {
        for id in 0..3 {
            let got = p.predicted(id, n);
            assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            if n <= 1 {
                assert_eq!(got[1], 0.0);
            }
        }
    }
    assert_eq!(p.predicted(1, 0), [1.0, 0.0, 0.0]);
}

#[test]
fn families_of_one_change_nothing_and_a_family_shares_its_first_look() {
    let n = 30;
    let mut plain = RateDps::new(n, RateDpsConfig::default()).unwrap();
    let mut single =
        RateDps::with_families(n, RateDpsConfig::default(), Some((0..n as i64).collect())).unwrap();
    let mut rng = Rng::new(7);
    for _ in 0..8 {
        let a = plain.select(5).unwrap();
        assert_eq!(a, single.select(5).unwrap());
        let ids: Vec<i64> = a.iter().map(|&i| i as i64).collect();
        let c: Vec<i64> = ids.iter().map(|_| rng.below(9) as i64).collect();
        plain.observe(&obs(n, &ids, &c, &eights(5))).unwrap();
        single.observe(&obs(n, &ids, &c, &eights(5))).unwrap();
    }
    for id in 0..n as u32 {
        assert!(close(
            &plain.rate_distribution(id),
            &single.rate_distribution(id),
            1e-12
        ));
    }
    let mut twins =
        RateDps::with_families(4, RateDpsConfig::default(), Some(vec![0, 0, 1, 1])).unwrap();
    twins.observe(&obs(4, &[0, 2], &[8, 0], &[8, 8])).unwrap();
    assert!(twins.predicted(1, 8)[2] > 0.4 && twins.predicted(3, 8)[2] < 0.4);
}

#[test]
fn bad_options_and_families_are_refused() {
    let bad = [
        RateDpsConfig {
            grid: 1,
            ..Default::default()
        },
        RateDpsConfig {
            logit_max: f64::NAN,
            ..Default::default()
        },
        RateDpsConfig {
            switch_rate: Some(1.0),
            ..Default::default()
        },
        RateDpsConfig {
            switch_rates: vec![],
            ..Default::default()
        },
        RateDpsConfig {
            switch_rates: vec![0.1, -0.1],
            ..Default::default()
        },
        RateDpsConfig {
            revisit: 1.5,
            ..Default::default()
        },
        RateDpsConfig {
            group_size: Some(0),
            ..Default::default()
        },
        RateDpsConfig {
            family_shrink: 0.0,
            ..Default::default()
        },
        RateDpsConfig {
            fit_sample: 0,
            ..Default::default()
        },
        RateDpsConfig {
            selection: "best".into(),
            ..Default::default()
        },
        RateDpsConfig {
            revisit_by: "oldest".into(),
            ..Default::default()
        },
    ];
    for cfg in bad {
        assert!(RateDps::new(10, cfg.clone()).is_err(), "{cfg:?}");
    }
    assert!(RateDps::with_families(3, RateDpsConfig::default(), Some(vec![0, 1])).is_err());
    assert!(RateDps::with_families(3, RateDpsConfig::default(), Some(vec![0, -1, 2])).is_err());
}

#[test]
fn a_group_for_another_dataset_is_refused_without_a_change() {
    let mut p = RateDps::new(5, RateDpsConfig::default()).unwrap();
    p.observe(&obs(5, &[1], &[2], &[8])).unwrap();
    let before = p.state();
    assert!(p.observe(&obs(9, &[7], &[1], &[8])).is_err());
    assert_eq!(p.state(), before);
}

#[test]
fn restore_refuses_a_state_that_does_not_fit() {
    let mut p = RateDps::new(20, RateDpsConfig::default()).unwrap();
    crate::selector::contract::run(&mut p, 4, 5);
    let good = p.state();
    let mut bad = good.clone();
    bad.last_step[3] = 4;
    assert!(p
        .restore(bad)
        .unwrap_err()
        .to_string()
        .contains("last_step[3]"));
    let mut bad = good.clone();
    bad.main.post[0] = f64::NAN;
    assert!(p.restore(bad).is_err());
    let mut bad = good.clone();
    bad.shadow_post_truncate();
    assert!(p
        .restore(bad)
        .unwrap_err()
        .to_string()
        .contains("shadow_post"));
    let mut bad = good.clone();
    bad.switch_rate = 0.3;
    assert!(p.restore(bad).is_err());
    let mut bad = good;
    bad.group_size = 0;
    assert!(p.restore(bad).is_err());
}

impl RateDpsState {
    fn shadow_post_truncate(&mut self) {
        self.shadow.post.pop();
    }
}

#[test]
fn state_round_trip() {
    let configs = [
        top(RateDpsConfig::default()),
        RateDpsConfig {
            switch_rate: Some(0.05),
            revisit: 0.25,
            ..Default::default()
        },
        RateDpsConfig {
            fit_sample: 12,
            group_size: Some(4),
            seed: 3,
            ..Default::default()
        },
        sampling(RateDpsConfig::default()),
        thompson(RateDpsConfig::default()),
        by_age_config(RateDpsConfig::default()),
    ];
    for cfg in configs {
        crate::selector::contract::holds(RateDps::new(30, cfg).unwrap());
    }
    for cfg in [
        top(RateDpsConfig::default()),
        sampling(RateDpsConfig::default()),
        thompson(RateDpsConfig::default()),
    ] {
        let families = Some((0..30).map(|i| i % 4).collect());
        crate::selector::contract::holds(RateDps::with_families(30, cfg, families).unwrap());
    }
}

#[test]
fn the_fit_sample_is_a_hashed_share_of_the_prompts() {
    let p = RateDps::new(
        2000,
        RateDpsConfig {
            fit_sample: 200,
            ..Default::default()
        },
    )
    .unwrap();
    assert!((120..280).contains(&p.sample.len()), "{}", p.sample.len());
    assert!(p.shadows.iter().all(|s| s.place.len() == p.sample.len()));
    assert_eq!(
        RateDps::new(50, RateDpsConfig::default())
            .unwrap()
            .sample
            .len(),
        50
    );
}

#[test]
fn a_graded_group_is_read_as_n_times_its_mean_successes() {
    use crate::observe::GradedRule;
    let rule = GradedRule {
        spread_tol: 0.0,
        success_at: 1.0,
    };
    let graded = |mean: f64| Observations::graded(4, &[1], &[8], &[mean], &[0.3], rule).unwrap();
    let (mut counted, mut read) = (
        RateDps::new(4, RateDpsConfig::default()).unwrap(),
        RateDps::new(4, RateDpsConfig::default()).unwrap(),
    );
    counted.observe(&obs(4, &[1], &[3], &[8])).unwrap();
    read.observe(&graded(3.0 / 8.0)).unwrap();
    assert_eq!(read.state(), counted.state());
    // A fractional count moves the rate between its whole neighbours.
    let mut between = RateDps::new(4, RateDpsConfig::default()).unwrap();
    between.observe(&graded(3.5 / 8.0)).unwrap();
    let mean = |p: &RateDps| -> f64 {
        let pi = p.rate_distribution(1);
        pi.iter().zip(&p.grid.rates).map(|(a, r)| a * r).sum()
    };
    let mut four = RateDps::new(4, RateDpsConfig::default()).unwrap();
    four.observe(&obs(4, &[1], &[4], &[8])).unwrap();
    assert!(mean(&counted) < mean(&between) && mean(&between) < mean(&four));
    // A mean outside [0, 1] is refused, nothing changed.
    let before = read.state();
    assert!(read.observe(&graded(1.5)).is_err());
    assert_eq!(read.state(), before);
}

fn sampling(cfg: RateDpsConfig) -> RateDpsConfig {
    RateDpsConfig {
        selection: "sample".into(),
        ..cfg
    }
}

/// `p`'s selection of `count` at each of `steps` steps from the same posteriors (the step moves
/// only the draws; nothing is observed), and its scores.
fn repeated_selections(p: &mut RateDps, steps: u64, count: usize) -> Vec<Vec<u32>> {
    (0..steps)
        .map(|t| {
            p.step = t;
            p.pending.clear();
            let ids = p.select(count).unwrap();
            let mut distinct = ids.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), count, "no repeats: {ids:?}");
            ids
        })
        .collect()
}

/// Pearson's chi-square of how often each prompt came first against chances proportional to
/// `scores`.
fn chi_square_of_first_picks(selections: &[Vec<u32>], scores: &[f64]) -> f64 {
    let total: f64 = scores.iter().sum();
    let mut counts = vec![0.0; scores.len()];
    for ids in selections {
        counts[ids[0] as usize] += 1.0;
    }
    let draws = selections.len() as f64;
    counts
        .iter()
        .zip(scores)
        .map(|(c, s)| {
            let want = draws * s / total;
            (c - want).powi(2) / want
        })
        .sum()
}

/// A policy over `n` prompts with the selection `rule` sets, k = 8 and no switches (rates fixed).
fn at_k8_without_switches(n: usize, rule: fn(RateDpsConfig) -> RateDpsConfig) -> RateDps {
    RateDps::new(
        n,
        rule(RateDpsConfig {
            group_size: Some(8),
            ..fixed(0.0)
        }),
    )
    .unwrap()
}

/// Each draw takes a prompt with chance proportional to its score: the first of each selection
/// fits those chances (chi-square, 39 degrees of freedom: 72 is its 99.9% point), and neither
/// uniform picks nor the best scores would.
#[test]
fn sampling_draws_in_proportion_to_the_score() {
    let n = 40;
    let mut p = at_k8_without_switches(n, sampling);
    let ids: Vec<i64> = (0..n as i64).collect();
    let correct: Vec<i64> = ids.iter().map(|i| i % 9).collect();
    p.observe(&obs(n, &ids, &correct, &eights(n))).unwrap();
    let scores = p.scores();
    let spread =
        scores.iter().cloned().fold(0.0, f64::max) / scores.iter().cloned().fold(1.0, f64::min);
    assert!(spread > 2.0, "scores too alike to tell: {scores:?}");
    let selections = repeated_selections(&mut p, 20_000, 4);
    assert!(chi_square_of_first_picks(&selections, &scores) < 72.0);
    assert!(chi_square_of_first_picks(&selections, &vec![1.0; n]) > 200.0);
    let top = scores.iter().cloned().fold(0.0, f64::max);
    let best = (0..n).filter(|&i| scores[i] == top).count();
    let firsts: std::collections::HashSet<u32> = selections.iter().map(|ids| ids[0]).collect();
    assert!(firsts.len() > best + 30, "not only the best: {firsts:?}");
}

/// Scores too small for the rejection draws to fill the batch within the cap: the rest comes
/// from the keyed exponentials, first picks still in proportion to the score.
#[test]
fn sampling_falls_back_to_keyed_exponentials_when_scores_are_tiny() {
    let n = 40;
    let cfg = RateDpsConfig {
        grid: 3,
        logit_max: 30.0,
        group_size: Some(2),
        ..fixed(0.0)
    };
    let mut p = RateDps::new(n, sampling(cfg)).unwrap();
    let ids: Vec<i64> = (0..n as i64).collect();
    let sizes: Vec<i64> = ids.iter().map(|&i| if i < 20 { 40 } else { 41 }).collect();
    p.observe(&obs(n, &ids, &sizes, &sizes)).unwrap();
    let scores = p.scores();
    assert!(scores.iter().all(|&s| s > 0.0 && s < 1e-11), "{scores:?}");
    let steps = 3000;
    for t in 0..20 {
        p.step = t;
        p.pending.clear();
        let keyed = p.sampled_by_keys(3, &HashSet::new(), &p.score_of());
        assert_eq!(p.select(3).unwrap(), keyed, "every slot from the fallback");
    }
    let selections = repeated_selections(&mut p, steps, 3);
    let low: f64 = scores[..20].iter().sum::<f64>() / scores.iter().sum::<f64>();
    let got = selections.iter().filter(|ids| ids[0] < 20).count() as f64 / steps as f64;
    assert!(
        (low - 0.5).abs() > 0.08,
        "the groups' scores must differ: {low}"
    );
    assert!(
        (got - low).abs() < 0.04,
        "first picks {got}, scores say {low}"
    );
}

/// Prompts handed out are never drawn again; a second call of a step continues the first's
/// draws (5 then 5 is the 10 of one call); revisits come first, as with "top".
#[test]
fn sampling_skips_prompts_handed_out_and_a_second_call_continues() {
    let cfg = sampling(RateDpsConfig {
        revisit: 0.0,
        ..Default::default()
    });
    let mut p = RateDps::new(200, cfg.clone()).unwrap();
    crate::selector::contract::run(&mut p, 6, 20);
    two_calls_continue_one(&mut p);
    let r = RateDps::new(
        12,
        RateDpsConfig {
            revisit: 0.5,
            ..cfg
        },
    )
    .unwrap();
    let first = r.clone().select(6).unwrap();
    halves_are_disjoint_and_room_is_checked(r);
    let mut best = RateDps::new(
        12,
        top(RateDpsConfig {
            revisit: 0.5,
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(
        best.select(6).unwrap()[..3],
        first[..3],
        "the same revisits"
    );
}

fn thompson(cfg: RateDpsConfig) -> RateDpsConfig {
    RateDpsConfig {
        selection: "thompson".into(),
        ..cfg
    }
}

/// The naive Thompson selection: every free prompt draws a rate from its predicted distribution
/// (inverse CDF of this step's hashed uniform), all sorted by (f32 partial chance there, key).
fn naive_thompson(p: &RateDps, count: usize) -> Vec<u32> {
    let partial: Vec<f32> = p.partial.iter().map(|&x| x as f32).collect();
    naive_drawn(p, count, &partial, stream::RATEDPS_THOMPSON)
}

/// Every free prompt draws a rate from its predicted distribution (inverse CDF of a hashed
/// uniform of (`stream`, step, id)), all sorted by (`value` there, key).
fn naive_drawn(p: &RateDps, count: usize, value: &[f32], stream: u64) -> Vec<u32> {
    let n = p.num_prompts();
    let tie = Order::new(p.cfg.seed, stream::RATEDPS_TIE, p.step, n);
    let mut all: Vec<Candidate> = (0..n as u32)
        .filter(|&id| !p.pending.contains(id))
        .map(|id| {
            let u = rng::unit_f64(rng::key(&[p.cfg.seed, stream, p.step, id as u64]));
            let pi = p.rate_distribution(id);
            let mut running = 0.0;
            let mut j = pi.len() - 1;
            for (i, q) in pi.iter().enumerate() {
                running += q;
                if running >= u {
                    j = i;
                    break;
                }
            }
            Candidate {
                score: value[j],
                key: tie.key(id),
                id,
            }
        })
        .collect();
    all.sort_unstable();
    all.into_iter().take(count).map(|c| c.id).collect()
}

/// One select against the naive forms: the naive revisits, then the naive Thompson pick of
/// the rest. Returns the ids and whether the walk settled the pick (no full pass).
fn select_checked(p: &mut RateDps, batch: usize) -> (Vec<u32>, bool) {
    let revisits = revisit_count(p, batch);
    let mut q = p.clone();
    let want_revisits = naive_revisits(&q, revisits);
    for &id in &want_revisits {
        q.pending.insert(id);
    }
    let want = naive_thompson(&q, batch - revisits);
    let tie = q.tie_order();
    let walked = batch > revisits
        && q.drawn_walk(batch - revisits, &tie, &q.thompson_drawn())
            .is_some();
    let ids = p.select(batch).unwrap();
    assert_eq!(ids[..revisits], want_revisits[..], "the naive revisits");
    assert_eq!(ids[revisits..], want[..], "step {}", p.step);
    (ids, walked)
}

/// The walk (or its full pass) selects what drawing for every prompt and sorting selects, over
/// many steps, with second rounds and with families; both paths are taken.
#[test]
fn thompson_selects_what_drawing_for_every_prompt_selects() {
    let (mut walks, mut passes) = (0, 0);
    // (.., the power of a uniform that draws each prompt's rate: large, most prompts unsolved)
    for (n, batch, revisit, seed, families, power) in [
        (3000usize, 64usize, 0.125, 1u64, false, 3),
        (700, 100, 0.25, 2, false, 3),
        (5000, 40, 0.0, 3, true, 3),
        (400, 32, 0.125, 4, true, 12),
        (300, 100, 0.0, 5, false, 12),
    ] {
        let cfg = thompson(RateDpsConfig {
            revisit,
            seed,
            ..Default::default()
        });
        let fam = families.then(|| (0..n as i64).map(|i| i % 5).collect());
        let mut p = RateDps::with_families(n, cfg, fam).unwrap();
        let mut rng = Rng::new(seed);
        let rates: Vec<f64> = (0..n).map(|_| rng.uniform().powi(power)).collect();
        for step in 0..40 {
            let (mut ids, walked) = select_checked(&mut p, batch);
            if walked {
                walks += 1
            } else {
                passes += 1
            }
            if step % 5 == 2 {
                ids.extend(select_checked(&mut p, batch / 2).0);
            }
            let mut distinct = ids.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), ids.len(), "no repeats");
            observe_at_rates(&mut p, n, &ids, &rates, &mut rng);
        }
    }
    assert!(walks > 20 && passes > 5, "walks {walks}, passes {passes}");
}

/// Every prompt solved: few draws land on the middle rates, the walk passes its cap, and the
/// full pass picks what the naive form picks.
#[test]
fn thompson_falls_back_to_a_full_pass_when_few_draws_reach_the_top() {
    let n = 20_000;
    let mut p = RateDps::new(n, thompson(fixed(0.0))).unwrap();
    let ids: Vec<i64> = (0..n as i64).collect();
    for _ in 0..3 {
        p.observe(&obs(n, &ids, &eights(n), &eights(n))).unwrap();
    }
    let tie = Order::new(p.cfg.seed, stream::RATEDPS_TIE, p.step, n);
    assert!(
        p.drawn_walk(8, &tie, &p.thompson_drawn()).is_none(),
        "the walk must give up"
    );
    let (got, walked) = select_checked(&mut p, 8);
    assert!(!walked && got.len() == 8);
}

/// Prompts handed out are skipped; a second call of a step continues the first (5 then 5 is the
/// 10 of one call).
#[test]
fn thompson_skips_prompts_handed_out_and_a_second_call_continues() {
    let cfg = thompson(RateDpsConfig {
        revisit: 0.0,
        ..Default::default()
    });
    let mut p = RateDps::new(200, cfg).unwrap();
    crate::selector::contract::run(&mut p, 6, 20);
    two_calls_continue_one(&mut p);
    halves_are_disjoint_and_room_is_checked(RateDps::new(12, thompson(fixed(0.0))).unwrap());
}

/// A prompt's chance of selection grows with its predicted mass at the rates of the largest
/// partial chance, and it is not top-B: prompts below the best scores are taken too.
#[test]
fn thompson_picks_in_favour_of_mass_at_the_top_rates_but_not_only_the_best() {
    let (n, half) = (200usize, 100usize);
    let mut p = at_k8_without_switches(n, thompson);
    let ids: Vec<i64> = (0..n as i64).collect();
    // the first half seen at 4 of 8 twice (mass near 1/2), the other at 2 of 8 twice
    let c: Vec<i64> = ids
        .iter()
        .map(|&i| if (i as usize) < half { 4 } else { 2 })
        .collect();
    for _ in 0..2 {
        p.observe(&obs(n, &ids, &c, &eights(n))).unwrap();
    }
    let top = p.partial.iter().map(|&x| x as f32).fold(0.0, f32::max);
    let mass = |id: u32| -> f64 {
        let pi = p.rate_distribution(id);
        (0..pi.len())
            .filter(|&j| p.partial[j] as f32 == top)
            .map(|j| pi[j])
            .sum()
    };
    let (high, low) = (mass(0), mass(half as u32));
    assert!(high > 2.0 * low && low > 0.01, "masses {high} {low}");
    let scores = p.scores();
    assert!(scores[0] > scores[half], "the first half scores best");
    let (steps, count) = (4000, 10);
    let selections = repeated_selections(&mut p, steps, count);
    let mut picks = vec![0usize; n];
    for ids in &selections {
        for &id in ids {
            picks[id as usize] += 1;
        }
    }
    let share_high = picks[..half].iter().sum::<usize>() as f64 / (steps * count as u64) as f64;
    let picked_low = picks[half..].iter().filter(|&&k| k > 0).count();
    assert!(
        share_high > 0.6,
        "the prompts with more mass at the top: {share_high}"
    );
    assert!(share_high < 0.99, "not only the best scores: {share_high}");
    assert!(
        picked_low > half / 2,
        "prompts below the best scores picked: {picked_low}"
    );
    // within each half the prompts are alike: picks spread over them, not a fixed top-10
    assert!(picks[..half].iter().all(|&k| k > 0));
}

/// `cfg` with the age revisits (the prompts observed least recently).
fn by_age_config(cfg: RateDpsConfig) -> RateDpsConfig {
    RateDpsConfig {
        revisit_by: "age".into(),
        ..cfg
    }
}

/// `cfg` whose every slot is a revisit.
fn all_revisits(cfg: RateDpsConfig) -> RateDpsConfig {
    RateDpsConfig {
        revisit: 1.0,
        ..cfg
    }
}

/// The stranding walk and the full pass give the same ids, and those of the naive form: on
/// random states (the walk settles it) and on solved prompts (little mass at the argmax rate:
/// the walk gives up and the pass is taken).
#[test]
fn stranding_walk_and_full_pass_select_the_same_ids() {
    let (mut walks, mut passes) = (0, 0);
    for (n, count, seed, power) in [(3000usize, 24usize, 1u64, 1), (2000, 8, 2, 12)] {
        let mut p = RateDps::new(
            n,
            all_revisits(RateDpsConfig {
                seed,
                ..fixed(0.05)
            }),
        )
        .unwrap();
        let mut rng = Rng::new(seed);
        let rates: Vec<f64> = (0..n).map(|_| rng.uniform().powi(power)).collect();
        for _ in 0..30 {
            let tie = Order::new(seed, stream::RATEDPS_TIE, p.step, n);
            let drawn = p.stranding_drawn();
            let pass = p.drawn_pass(count, &tie, &drawn);
            match p.drawn_walk(count, &tie, &drawn) {
                Some(walked) => {
                    assert_eq!(walked, pass, "step {}", p.step);
                    walks += 1
                }
                None => passes += 1,
            }
            assert_eq!(pass, naive_revisits(&p, count), "step {}", p.step);
            let ids = p.select(count).unwrap();
            assert_eq!(ids, pass);
            observe_at_rates(&mut p, n, &ids, &rates, &mut rng);
        }
    }
    let n = 20_000;
    let mut solved = RateDps::new(n, all_revisits(fixed(0.0))).unwrap();
    let ids: Vec<i64> = (0..n as i64).collect();
    for _ in 0..3 {
        solved
            .observe(&obs(n, &ids, &eights(n), &eights(n)))
            .unwrap();
    }
    let tie = Order::new(0, stream::RATEDPS_TIE, solved.step, n);
    let drawn = solved.stranding_drawn();
    assert!(
        solved.drawn_walk(8, &tie, &drawn).is_none(),
        "the walk must give up"
    );
    passes += 1;
    let want = naive_revisits(&solved, 8);
    assert_eq!(solved.drawn_pass(8, &tie, &drawn), want);
    assert_eq!(solved.select(8).unwrap(), want);
    assert!(walks > 20 && passes > 0, "walks {walks}, passes {passes}");
}

/// Revisits skip the prompts handed out, and a second call of a step continues the first (5 then
/// 5 is the 10 of one call), for both rules.
#[test]
fn revisits_skip_prompts_handed_out_and_a_second_call_continues() {
    for cfg in [
        all_revisits(RateDpsConfig::default()),
        by_age_config(all_revisits(RateDpsConfig::default())),
    ] {
        let mut p = RateDps::new(200, cfg).unwrap();
        crate::selector::contract::run(&mut p, 6, 20);
        two_calls_continue_one(&mut p);
    }
}

/// With k = 1 no group is partially solved: every stranding value is 0, and the revisits are the
/// free prompts in the step's tie order.
#[test]
fn stranding_with_groups_of_one_takes_the_tie_order() {
    let n = 500;
    let cfg = all_revisits(RateDpsConfig {
        group_size: Some(1),
        ..Default::default()
    });
    let mut p = RateDps::new(n, cfg).unwrap();
    let mut rng = Rng::new(4);
    let ids: Vec<u32> = (0..300).collect();
    let ids64: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let c: Vec<i64> = ids.iter().map(|_| rng.below(2) as i64).collect();
    p.observe(&obs(n, &ids64, &c, &vec![1; ids.len()])).unwrap();
    assert!(p.stranding_drawn().value.iter().all(|&w| w == 0.0));
    let first = p.select(7).unwrap();
    let tie = Order::new(0, stream::RATEDPS_TIE, p.step, n);
    let mut ordered: Vec<u32> = (0..n as u32).collect();
    ordered.sort_by_key(|&id| tie.key(id));
    assert_eq!(first, ordered[..7]);
    assert_eq!(
        p.select(5).unwrap(),
        ordered[7..12],
        "a second call continues"
    );
}

/// Prompts whose posterior sits at the rate of the largest stranding value are revisited far
/// more often than prompts sure to be near 0.001 or near 0.9; the age rule (all observed at one
/// step) does not tell them apart.
#[test]
fn stranding_revisits_favour_prompts_at_the_rate_of_the_largest_value() {
    let per = 60usize;
    let n = 3 * per;
    let make = |by: &str| {
        let cfg = all_revisits(RateDpsConfig {
            group_size: Some(8),
            revisit_by: by.into(),
            ..fixed(0.0)
        });
        let mut p = RateDps::new(n, cfg).unwrap();
        let value = p.stranding_drawn().value;
        let best = (0..value.len())
            .max_by(|&a, &b| value[a].total_cmp(&value[b]))
            .unwrap();
        let near = |x: f64| {
            (0..p.rates().len())
                .min_by(|&a, &b| {
                    (p.rates()[a] - x)
                        .abs()
                        .total_cmp(&(p.rates()[b] - x).abs())
                })
                .unwrap()
        };
        let at = [best, near(0.001), near(0.9)].map(|j| p.rates()[j]);
        assert!(at[0] > 0.01 && at[0] < 0.5, "the argmax rate {}", at[0]);
        let ids: Vec<i64> = (0..n as i64).collect();
        let big = 2000i64;
        let c: Vec<i64> = ids
            .iter()
            .map(|&i| (at[i as usize / per] * big as f64).round() as i64)
            .collect();
        p.observe(&obs(n, &ids, &c, &vec![big; n])).unwrap();
        p
    };
    let share_at_best = |p: &mut RateDps| {
        let selections = repeated_selections(p, 1500, 12);
        let picks = selections
            .iter()
            .flatten()
            .filter(|&&id| (id as usize) < per)
            .count();
        picks as f64 / (12.0 * 1500.0)
    };
    let mut stranding = make("stranding");
    let mass = stranding.rate_distribution(0);
    assert!(
        mass.iter().cloned().fold(0.0, f64::max) > 0.9,
        "concentrated: {mass:?}"
    );
    let share = share_at_best(&mut stranding);
    assert!(share > 0.9, "stranding: share at the argmax rate {share}");
    let share_age = share_at_best(&mut make("age"));
    assert!(share_age < 0.5, "age: share at the argmax rate {share_age}");
}

#[test]
fn inserting_sorted_ids_in_place_keeps_the_list_sorted() {
    let mut rng = Rng::new(5);
    for (old, fresh) in [
        (0usize, 0usize),
        (0, 7),
        (9, 0),
        (1, 1),
        (50, 3),
        (3, 50),
        (200, 200),
    ] {
        let mut all: Vec<u32> = (0..1000).collect();
        for i in (1..all.len()).rev() {
            all.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let (mut seen, mut add) = (all[..old].to_vec(), all[old..old + fresh].to_vec());
        seen.sort_unstable();
        add.sort_unstable();
        let mut want = [seen.clone(), add.clone()].concat();
        want.sort_unstable();
        insert_sorted(&mut seen, &add);
        assert_eq!(seen, want, "{old} + {fresh}");
    }
}

#[test]
fn searching_from_a_start_agrees_with_a_binary_search() {
    let ids: Vec<u32> = (0..300).map(|i| 3 * i + i % 2).collect();
    for id in 0..950u32 {
        let want = ids.binary_search(&id);
        let start = want.unwrap_or_else(|at| at);
        for from in [0, start / 2, start.saturating_sub(1), start] {
            assert_eq!(search_from(&ids, from, id), want, "{id} from {from}");
        }
    }
    assert_eq!(search_from(&[], 0, 4), Err(0));
}

#[test]
fn posteriors_are_stored_in_first_look_order_and_saved_by_row() {
    let mut p = RateDps::new(10, fixed(0.1)).unwrap();
    p.observe(&obs(10, &[7, 2], &[1, 6], &eights(2))).unwrap();
    p.observe(&obs(10, &[2, 5], &[3, 3], &eights(2))).unwrap();
    assert_eq!(p.main.post.len(), 3 * p.grid.len());
    let (g, posts) = (p.grid.len(), p.main.posts());
    for row in 0..10 {
        let saved = &posts[row * g..(row + 1) * g];
        if [2, 5, 7].contains(&row) {
            assert_eq!(saved, p.main.row(row), "{row}");
        } else {
            assert!(saved.iter().all(|&x| x == 0.0), "{row}");
        }
    }
    let restored = p.restore(p.state()).unwrap();
    assert_eq!(restored.state(), p.state());
}
