"""Policy names for the trainer -> policy objects, through the package's one registry
(`dps.policies.registry.make_policy`), with the round caps a small dataset needs."""

from __future__ import annotations

from typing import Any

from dps.policies.base import Policy
from dps.policies.registry import GATES, POLICY_NAMES
from dps.policies.registry import make_policy as _registry_make

__all__ = ["make_policy", "capped_rounds", "POLICY_NAMES"]

DEFAULT_MAX_ROUNDS = 10


def make_policy(
    name: str, num_prompts: int, seed: int, options: dict[str, Any] | None = None, batch_size: int = 1
) -> Policy:
    """Build the named policy (``dps``, ``uniform``, ``ds``, ``dps+ds``, ``greso``, ...,
    ``module:Class``).

    Gates that select in rounds of ``batch_size`` fresh prompts (dynamic sampling, GRESO with
    ``rounds="batch"``) get their ``max_rounds`` capped by :func:`capped_rounds` so that every
    round is a full batch. (``run_step`` itself stops once a step has used every prompt; the cap
    only drops a final, partial round.) GRESO's released rounds have no cap unless one is given.
    """
    opts = dict(options or {})
    key = name.strip().lower()
    _, plus, gate = key.partition("+")
    batch_rounds = key == "greso" and opts.get("rounds") == "batch"
    if ":" not in key and (key in GATES or (plus and gate in GATES) or batch_rounds):
        opts["max_rounds"] = capped_rounds(num_prompts, batch_size, int(opts.get("max_rounds", DEFAULT_MAX_ROUNDS)))
    return _registry_make(name, num_prompts, seed, **opts)


def capped_rounds(num_prompts: int, batch_size: int, max_rounds: int = DEFAULT_MAX_ROUNDS) -> int:
    """``max_rounds`` limited to the number of full batches the dataset holds (at least 1)."""
    return max(1, min(max_rounds, num_prompts // max(batch_size, 1)))
