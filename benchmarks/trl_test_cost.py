"""The policy's share of `train()` in the TRL integration test's setting (tests/integrations/trl_tiny.py:
8 optimizer steps, 4 generations of B = 4 x k = 4), from `DPSGRPOTrainer.dps_cost()`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trl_test_cost.py
"""

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import trl_tiny  # noqa: E402

from dps import DPS  # noqa: E402

torch.set_num_threads(1)
with tempfile.TemporaryDirectory() as out:
    trainer = trl_tiny.trainer(out, DPS(trl_tiny.N_PROMPTS, decay=0.5, seed=0), max_steps=8)
    trainer.train()
    cost = trainer.dps_cost()
print(
    f"train() {cost['train_s']:.2f} s wall, {cost['train_cpu_s']:.2f} s CPU; "
    f"policy {1000 * cost['policy_s']:.1f} ms wall ({100 * cost['policy_share']:.2f}%), "
    f"{1000 * cost['policy_cpu_s']:.1f} ms CPU ({100 * cost['policy_cpu_share']:.3f}%); "
    f"rollout log {cost['log_s']:.2f} s ({100 * cost['log_share']:.1f}%)"
)
