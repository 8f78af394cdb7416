"""Policies by name: the one table behind replay scenarios, the trainer's config and the CLI.

make_policy("dps", num_prompts=7500, seed=0, decay=0.7)
make_policy("ds", ...)                # dynamic sampling over a uniform loader
make_policy("dps+ds", ..., lo=0.1)    # the gate over another selector
make_policy("mypkg.mod:MyPolicy", ...)  # a user's Policy subclass
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from dps.policies.base import Policy
from dps.policies.builtin import BOTS, DPS, GRESO, HistoryResampling, MoPPS, Uniform
from dps.policies.gate import DynamicSampling

#: Each built-in selector, constructed as cls(num_prompts=..., seed=..., **options).
SELECTORS: dict[str, Callable[..., Policy]] = {
    "dps": DPS,
    "uniform": Uniform,
    "us": Uniform,
    "hr": HistoryResampling,
    "history_resampling": HistoryResampling,
    "mopps": MoPPS,
    "greso": GRESO,
    "bots": BOTS,
}
GATES = ("ds", "dynamic_sampling")
#: Options that belong to the gate when a name combines a selector with it.
GATE_OPTIONS = ("lo", "hi", "max_rounds")
POLICY_NAMES = sorted(SELECTORS) + list(GATES) + ["<selector>+ds", "<module>:<Class>"]


def import_policy_class(path: str) -> Callable[..., Policy]:
    """The class named by 'module:Class', checked to be a Policy."""
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"a policy class is named 'module:Class', not {path!r}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import policy class {path!r} ({e})") from e
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise ValueError(f"{path!r} is not a dps.Policy subclass")
    return cls


def make_policy(name: str, num_prompts: int, seed: int = 0, **options: Any) -> Policy:
    """Build a policy by name; unknown names and options are ValueErrors that name them."""
    key = name.strip().lower()
    try:
        if ":" in name:
            return import_policy_class(name.strip())(num_prompts=num_prompts, seed=seed, **options)
        selector_name, plus, gate = key.partition("+")
        if key in GATES or (plus and gate in GATES):
            gate_options = {k: options.pop(k) for k in GATE_OPTIONS if k in options}
            selector = make_policy(selector_name if plus else "uniform", num_prompts, seed, **options)
            return DynamicSampling(selector, **gate_options)
        if key not in SELECTORS:
            raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
        return SELECTORS[key](num_prompts=num_prompts, seed=seed, **options)
    except TypeError as e:
        raise ValueError(f"policy {name!r}: bad options {sorted(options)} ({e})") from e
