"""Time the policy inside verl's step: DPSTrainer's prompt path and replay buffer at the paper's
MATH size (N = 7500 prompts, B = 256, k = 8) against a real TransferQueue, on CPU.

The rollout is `SeededRollout` (rewards written into TransferQueue, no model), so the "step"
timed here is verl's sampling machinery only: dispatch, polling, eviction, refill, plus the
stand-in's writes. A real step adds generation and the actor update on GPUs, which this does
not run; the policy's seconds per step are what carry over.

    make test-verl   # builds .venv-verl
    OMP_NUM_THREADS=1 .venv-verl/bin/python benchmarks/bench_verl_step.py [--steps 5]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import ray
import transfer_queue as tq

from dps.integrations.verl.testing import SeededRollout, clear_partition, cpu_config, cpu_trainer, run_steps

N, B, K = 7500, 256, 8


def measure(policy: str, options: dict, steps: int) -> dict[str, float]:
    success = np.random.default_rng(0).beta(0.6, 0.6, size=N)  # many prompts near 0 or 1, as in MATH
    rollout = SeededRollout(success, k=K, seed=0)
    with tempfile.TemporaryDirectory() as out:
        config = cpu_config(out, B, {"policy": policy, "options": options, "log": False})
        trainer = cpu_trainer(config, rollout, N)
        run_steps(trainer, 1)  # warm-up: first calls, TransferQueue connections
        rollout.seconds = 0.0
        rows = run_steps(trainer, steps)
    clear_partition()
    step = sum(r["step_seconds"] for r in rows)
    policy_s = sum(r["dps/policy_seconds"] for r in rows)
    read_s = sum(r["dps/read_rewards_seconds"] for r in rows)
    return {
        "groups_per_step": float(np.mean([r["dps/groups_rolled_out"] for r in rows])),
        "step_ms": 1000 * step / steps,
        "rollout_standin_ms": 1000 * rollout.seconds / steps,
        "policy_ms": 1000 * policy_s / steps,
        "read_rewards_ms": 1000 * read_s / steps,
        "policy_share": policy_s / step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init()
    try:
        print(f"N = {N}, B = {B}, k = {K}, {args.steps} steps after one warm-up step")
        print(
            "| policy | groups rolled out / step | CPU step (ms) | of which rollout stand-in (ms) |"
            " policy select+admit+observe (ms) | reading rewards from TQ (ms) | policy share of the CPU step |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, options in (("dps", {"decay": 0.7}), ("dps+ds", {"decay": 0.7, "max_rounds": 4})):
            m = measure(name, options, args.steps)
            print(
                f"| {name} | {m['groups_per_step']:.0f} | {m['step_ms']:.0f} | {m['rollout_standin_ms']:.0f} | "
                f"{m['policy_ms']:.2f} | {m['read_rewards_ms']:.1f} | {100 * m['policy_share']:.2f}% |"
            )
    finally:
        tq.close()
        ray.shutdown()


if __name__ == "__main__":
    main()
