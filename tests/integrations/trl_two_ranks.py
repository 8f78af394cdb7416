"""Run by tests/integrations/test_trl.py under `torch.distributed.run --nproc_per_node 2`: two CPU
processes (gloo) train two generations; each rank writes the prompt ids of the rows it scored."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import trl_tiny  # noqa: E402

from dps import DPS  # noqa: E402

out = Path(sys.argv[1])
torch.set_num_threads(1)
rows: dict[str, list[int]] = defaultdict(list)
holder: dict = {}


def accuracy(prompts, completions, prompt_id, **kwargs):
    rows[str(holder["trainer"].dps_generation)].extend(int(p) for p in prompt_id)
    return trl_tiny.accuracy(prompts, completions, prompt_id)


# per-device 4 rows x 2 ranks x steps_per_generation 2 = 16 completions = B 4 x k 4 per generation
trainer = trl_tiny.trainer(
    str(out / "run"),
    DPS(trl_tiny.N_PROMPTS, decay=0.5, seed=0),
    max_steps=4,
    reward_funcs=[accuracy, trl_tiny.format_bonus],
    per_device_train_batch_size=4,
    save_steps=100,
)
holder["trainer"] = trainer
selected: list = []
original = trainer._select


def recording_select():
    ids = original()
    selected.append(ids.tolist())
    return ids


trainer._select = recording_select
trainer.train()
rank = trainer.accelerator.process_index
(out / f"rows-rank{rank}.json").write_text(json.dumps({**rows, "selected": selected}))
