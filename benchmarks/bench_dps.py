"""One DPS step (filter update of every prompt + top-B selection) against two references:

- numpy: the same equations, vectorised over prompts (float32 state, like ours);
- Python loop: the per-prompt reference of docs/method.md#filter (tests/reference_dps.py), the
  shape of the paper's released sampler.

"ours" is the median step over 100 steps (60 at N > 10^6). A prompt whose unobserved update has
reached a fixed point is skipped (rust/dps/kernel.rs), so after some tens of steps a step costs
about the recently observed prompts plus the selection scan; "every prompt updated" is the
filter's step 1, before any prompt has settled: what a step costs right after a reload, or at a
decay close to 1, where prompts take long to settle. The references update every prompt every step.

All timings come from this one run on this machine. Usage:
    .venv/bin/python benchmarks/bench_dps.py [--sizes 40000 1000000 10000000] [--batch 256]

`--rate-dps` instead times RateDPS against DPS in the same run (docs/method.md#rate-dps-cost), a
step = observe + select through the Python API, median of 100 steps, the best of three runs that
alternate the two policies, in two regimes: from a fresh start (most prompts never observed, as
above) and after a warm start that observed every prompt once (RateDPS then scans every prompt's
score; DPS is timed from step 100 on, once its prompts have settled):
    .venv/bin/python benchmarks/bench_dps.py --rate-dps --sizes 1000000 --batches 256 1000
`--rate-dps-selection` picks RateDPS's selection, by default the policy's own ("thompson": the
best partial chances at rates drawn from each prompt's prediction); `top` times the best scores,
`sample` the slots after the revisits drawn in proportion to the score. `--rate-dps-revisit-by`
picks the revisit rule, by default the policy's own ("stranding": the best draws of the expected
drop in a prompt's chance of staying unsolved); `age` times the prompts observed least recently.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dps import DPS, RateDPS  # noqa: E402
from dps._core import RateDpsCore  # noqa: E402
from reference_dps import ReferenceDPS  # noqa: E402

DECAY = 0.7
#: RateDPS's own default selection (the core's), the one the bench times unless told otherwise.
RATE_DPS_SELECTION: str = RateDpsCore.SELECTION
#: RateDPS's own default revisit rule (the core's), the one the bench times unless told otherwise.
RATE_DPS_REVISIT_BY: str = RateDpsCore.REVISIT_BY


def numpy_step_factory(n: int):
    alpha = np.ones((n, 3, 3), np.float32)
    post = np.full((n, 3), 1 / 3, np.float32)
    prior = post.copy()
    eye = np.eye(3, dtype=np.float32)
    lam = np.float32(DECAY)

    def observe(ids, n_correct, n_rollouts):
        nonlocal alpha, prior, post
        states = np.where(n_correct == 0, 0, np.where(n_correct == n_rollouts, 2, 1))
        a_obs = alpha[ids]
        transition = a_obs / a_obs.sum(axis=1, keepdims=True)
        xi = transition[np.arange(len(ids)), states, :] * post[ids]
        z = xi.sum(axis=1)
        new_post = prior
        new_post[ids] = eye[states]
        alpha *= lam
        alpha += 1 - lam
        ok = z > 0
        alpha[ids[ok], states[ok], :] += xi[ok] / z[ok, None]
        column_sums = alpha.sum(axis=1)
        prior = (alpha * (new_post / column_sums)[:, None, :]).sum(axis=2)
        prior /= prior.sum(axis=1, keepdims=True)
        post = new_post

    def select(batch):
        score = prior[:, 1]
        top = np.argpartition(-score, batch)[:batch]
        return top[np.argsort(-score[top], kind="stable")]

    def predicted():
        return prior

    return observe, select, predicted


def outcomes(rng, ids):
    return rng.binomial(8, rng.uniform(0, 1, len(ids))), np.full(len(ids), 8)


def time_steps(observe, select, batch, steps, rng):
    """(first step, median step) seconds; step = observe + select, starting at the filter's step 1."""
    ids = select(batch)
    times = []
    for _ in range(steps):
        c, n = outcomes(rng, ids)
        t0 = time.perf_counter()
        observe(ids, c, n)
        ids = select(batch)
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_size(n, batch, python_loop):
    rng = np.random.default_rng(0)
    gc.collect()
    before = rss_bytes()
    ours = DPS(num_prompts=n, decay=DECAY)
    ours.observe([0], [4], [8])  # touch every page
    rss_per_prompt = (rss_bytes() - before) / n
    steps = 100 if n <= 10**6 else 60
    t_full, t_ours = time_steps(ours.observe, ours.select, batch, steps, rng)

    np_observe, np_select, np_predicted = numpy_step_factory(n)
    t_numpy = time_steps(np_observe, np_select, batch, 5 if n <= 10**6 else 2, rng)[1]

    t_loop = None
    if python_loop:
        ref = ReferenceDPS(n, DECAY, [[1.0] * 3] * 3)

        def loop_observe(ids, c, k):
            ref.observe({int(i): (int(x), int(y)) for i, x, y in zip(ids, c, k, strict=True)})

        t_loop = time_steps(loop_observe, ref.select, batch, 2, rng)[1]
    return {
        "n": n,
        "ours": t_ours,
        "full": t_full,
        "numpy": t_numpy,
        "loop": t_loop,
        "bytes": ours.bytes_per_prompt(),
        "rss": rss_per_prompt,
    }


def check_agreement(n=20_000, steps=30):
    """The numpy version computes what ours computes (so the race is fair)."""
    rng = np.random.default_rng(1)
    ours = DPS(num_prompts=n, decay=DECAY)
    np_observe, _, np_predicted = numpy_step_factory(n)
    for _ in range(steps):
        ids = rng.choice(n, 256, replace=False)
        c, k = outcomes(rng, ids)
        ours.observe(ids, c, k)
        np_observe(ids, c, k)
    return float(np.abs(ours.predicted_state_probs() - np_predicted()).max())


def warm_start(policy, n, rng, chunk=50_000):
    """Every prompt observed once, in steps of `chunk` groups (a log replayed into the policy)."""
    for start in range(0, n, chunk):
        ids = np.arange(start, min(n, start + chunk))
        policy.observe(ids, *outcomes(rng, ids))


def policy_step_time(make, n, batch, warm, steps=100):
    """Median seconds of an observe + select step, over `steps` steps (after 100 unmeasured ones
    when `warm`, so that DPS's prompts have settled)."""
    rng = np.random.default_rng(0)
    policy = make(n)
    if warm:
        warm_start(policy, n, rng)
        ids = policy.select(batch)
        for _ in range(100):
            policy.observe(ids, *outcomes(rng, ids))
            ids = policy.select(batch)
    return time_steps(policy.observe, policy.select, batch, steps, rng)[1], policy.bytes_per_prompt()


def rate_dps_table(sizes, batches, selection=RATE_DPS_SELECTION, revisit_by=RATE_DPS_REVISIT_BY, repeats=3):
    name = " ".join(
        ["RateDPS"]
        + ([selection] if selection != RATE_DPS_SELECTION else [])
        + ([f"revisit_by={revisit_by}"] if revisit_by != RATE_DPS_REVISIT_BY else [])
    )
    print(f"| N | B | regime | DPS (ms/step) | {name} (ms/step) | {name} / DPS | bytes/prompt DPS | {name} |")
    print("|" + "---|" * 8)
    makers = {
        "DPS": lambda n: DPS(num_prompts=n, decay=DECAY),
        "RateDPS": lambda n: RateDPS(n, selection=selection, revisit_by=revisit_by),
    }
    for n in sizes:
        for batch in batches:
            for warm in (False, True):
                best = {name: (float("inf"), 0.0) for name in makers}
                for _ in range(repeats):
                    for name, make in makers.items():
                        t, size = policy_step_time(make, n, batch, warm)
                        best[name] = (min(best[name][0], t), size)
                        gc.collect()
                (dps_t, dps_b), (rate_t, rate_b) = best["DPS"], best["RateDPS"]
                regime = "every prompt observed once" if warm else "fresh start"
                print(
                    f"| {n:,} | {batch} | {regime} | {dps_t * 1e3:.2f} | {rate_t * 1e3:.2f} | {rate_t / dps_t:.2f}x "
                    f"| {dps_b:.0f} | {rate_b:.0f} |",
                    flush=True,
                )


def fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40_000, 1_000_000, 10_000_000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--loop-max", type=int, default=40_000, help="largest N timed with the Python loop")
    parser.add_argument("--rate-dps", action="store_true", help="time RateDPS against DPS instead")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1000], help="B values of --rate-dps")
    parser.add_argument(
        "--rate-dps-selection",
        choices=RateDPS.SELECTIONS,
        default=RATE_DPS_SELECTION,
        help=f"RateDPS's selection in --rate-dps (default: the policy's, {RATE_DPS_SELECTION})",
    )
    parser.add_argument(
        "--rate-dps-revisit-by",
        choices=RateDpsCore.REVISIT_BYS,
        default=RATE_DPS_REVISIT_BY,
        help=f"RateDPS's revisit rule in --rate-dps (default: the policy's, {RATE_DPS_REVISIT_BY})",
    )
    args = parser.parse_args()
    if args.rate_dps:
        print(f"threads: RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all')} of {os.cpu_count()} cores")
        rate_dps_table(args.sizes, args.batches, args.rate_dps_selection, args.rate_dps_revisit_by)
        return
    print(f"numpy reference agrees with ours to {check_agreement():.1e} (max |difference| of predictions)")
    print(
        f"threads: RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all')} of {os.cpu_count()} cores; B = "
        f"{args.batch}"
    )
    header = (
        "| N | ours (ms/step) | ours, every prompt updated (ms) | numpy (ms/step) | Python loop (ms/step) "
        "| numpy / ours | loop / ours | state bytes/prompt | RSS bytes/prompt |"
    )
    print(header)
    print("|" + "---|" * 9)
    for n in args.sizes:
        r = bench_size(n, args.batch, n <= args.loop_max)
        loop_ratio = "-" if r["loop"] is None else f"{r['loop'] / r['ours']:.0f}x"
        print(
            f"| {n:,} | {fmt_ms(r['ours'])} | {fmt_ms(r['full'])} | {fmt_ms(r['numpy'])} | {fmt_ms(r['loop'])} | "
            f"{r['numpy'] / r['ours']:.1f}x | {loop_ratio} | {r['bytes']:.1f} | {r['rss']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
