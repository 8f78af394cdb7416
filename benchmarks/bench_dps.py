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

from dps import DPS  # noqa: E402
from reference_dps import ReferenceDPS  # noqa: E402

DECAY = 0.7


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


def fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40_000, 1_000_000, 10_000_000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--loop-max", type=int, default=40_000, help="largest N timed with the Python loop")
    args = parser.parse_args()
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
