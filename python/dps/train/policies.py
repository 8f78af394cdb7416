"""Policy names for the trainer -> policy objects, through the package's one registry
(`dps.policies.registry.make_policy`), with the round caps a small dataset needs."""

from __future__ import annotations

from typing import Any

from dps.policies.base import Policy
from dps.policies.registry import GATES, POLICY_NAMES, make_policy as _registry_make

__all__ = ["make_policy", "POLICY_NAMES"]


def make_policy(name: str, num_prompts: int, seed: int, options: dict[str, Any] | None = None,
                batch_size: int = 1) -> Policy:
    """Build the named policy (``dps``, ``uniform``, ``ds``, ``dps+ds``, ``greso``, ...,
    ``module:Class``).

    Gates that select in rounds (dynamic sampling, GRESO) hand out ``batch_size`` fresh prompts
    per round, so their ``max_rounds`` is capped at ``num_prompts // batch_size``: the step loop
    would otherwise ask the selector for prompts it no longer has in that step.
    """
    opts = dict(options or {})
    key = name.strip().lower()
    _, plus, gate = key.partition("+")
    rounds_cap = max(1, num_prompts // max(batch_size, 1))
    if ":" not in key and (key in GATES or (plus and gate in GATES) or key == "greso"):
        opts["max_rounds"] = max(1, min(int(opts.get("max_rounds", 10)), rounds_cap))
    return _registry_make(name, num_prompts, seed, **opts)
