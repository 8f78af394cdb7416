"""`dps verl`: verl's PPO entry point with the dps trainer (verl is imported only when it runs)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "verl",
        help="run verl's PPO trainer with a dps policy choosing the prompts (needs verl 0.9.1)",
        description="verl's V1 trainer in mode 'dps' with its Hydra config (python/dps/integrations/verl/config/"
        "dps_trainer.yaml); every argument is a Hydra override, as with `python -m verl.trainer.main_ppo`, "
        "e.g. dps verl data.train_files=train.parquet dps.policy=dps dps.options='{decay: 0.5}'.",
    )
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides (KEY=VALUE ...)")
    p.set_defaults(func=_verl)


def _verl(args: argparse.Namespace) -> int:
    try:
        from dps.integrations.verl.__main__ import main as verl_main
    except ModuleNotFoundError as e:
        raise ValueError(f"dps verl needs verl 0.9.1 (pip install 'verl[verl-core]==0.9.1'); {e}") from e
    sys.argv = ["dps verl", *args.overrides]
    verl_main()
    return 0
