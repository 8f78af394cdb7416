"""verl 0.9.1's own asynchronous loop (colocate_async, trainer mode dps_async) with DPS on CPUs,
3 steps end to end (`python -m dps.integrations.verl.demo --mode async`; 2-3 minutes here).

No stand-in: verl's `fit()`, warm-up batch, hf rollout generating a batch ahead of the FSDP
actor update, the async replay buffer; the policy selects step t + 1 before step t's groups are
observed, and the run's log replays.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("verl.trainer.ppo.v1", reason="verl is tested in its own venv: make test-verl")

from paths import ROOT


def test_verls_async_loop_trains_with_dps_selecting_in_flight(tmp_path):
    out = tmp_path / "async"
    dps = ROOT / ".venv" / "bin" / "dps"
    command = [sys.executable, "-m", "dps.integrations.verl.demo", "--out", str(out), "--steps", "3", "--mode", "async"]
    if dps.exists():
        command += ["--dps", str(dps)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["step_metrics"]
    assert [m["step"] for m in metrics] == [1, 2, 3] and all(m["update_actor_s"] > 0 for m in metrics)
    assert metrics[-1]["staleness_mean"] >= 1  # verl trained on groups generated a weight version earlier
    assert any(m["groups_in_flight"] > 0 for m in metrics)  # a batch still generating when a step ended
    assert summary["in_flight"]["observed_later_share"] > 0  # groups observed after the next batch was selected
    assert summary["log_replays_the_selection"]  # a fresh DPS fed the log in the run's order selects the same
    assert summary["replay"]["returncode"] == 0  # dps replay accepts the log
