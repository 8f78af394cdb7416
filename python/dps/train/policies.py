"""Policy names for the trainer -> policy objects (built-ins from `dps`, or a user's class)."""

from __future__ import annotations

import importlib
from typing import Any

from dps.policies.base import Policy

BUILTIN = {
    "dps": "DPS",
    "uniform": "Uniform",
    "us": "Uniform",
    "hr": "HistoryResampling",
    "history_resampling": "HistoryResampling",
    "mopps": "MoPPS",
    "greso": "GRESO",
}
GATE_KEYS = ("lo", "hi", "max_rounds")
POLICY_NAMES = sorted(BUILTIN) + ["ds", "dps+ds", "<module>:<Class>"]


def _cls(name: str) -> Any:
    import dps

    try:
        return getattr(dps, name)
    except AttributeError:
        raise ValueError(f"policy {name} is not available: the Rust extension dps._core is not built") from None


def make_policy(name: str, num_prompts: int, seed: int, options: dict[str, Any] | None = None,
                batch_size: int = 1) -> Policy:
    """Build the named policy. ``ds`` is dynamic sampling over uniform; ``X+ds`` gates selector X.

    Gate options (``lo``, ``hi``, ``max_rounds``) go to the gate, the rest to the selector.
    ``module:Class`` imports a user's Policy subclass, constructed as
    ``Class(num_prompts=..., seed=..., **options)``.
    """
    opts = dict(options or {})
    key = name.strip().lower()
    try:
        if ":" in name:
            mod, _, cls_name = name.partition(":")
            try:
                cls = getattr(importlib.import_module(mod), cls_name)
            except (ImportError, AttributeError) as e:
                raise ValueError(f"policy {name!r}: cannot import it ({e})") from e
            pol = cls(num_prompts=num_prompts, seed=seed, **opts)
            if not isinstance(pol, Policy):
                raise ValueError(f"policy {name!r} is not a dps.Policy subclass")
            return pol
        if key == "ds" or key.endswith("+ds"):
            sel_name = "uniform" if key == "ds" else key[: -len("+ds")]
            if sel_name not in BUILTIN:
                raise ValueError(f"policy {name!r}: unknown selector {sel_name!r}")
            gate_opts = {k: opts.pop(k) for k in GATE_KEYS if k in opts}
            # Each round hands out batch_size fresh prompts: never ask for more rounds than the
            # dataset can fill (run_step would ask the selector for prompts it no longer has).
            gate_opts["max_rounds"] = max(1, min(int(gate_opts.get("max_rounds", 10)), num_prompts // max(batch_size, 1)))
            selector = _cls(BUILTIN[sel_name])(num_prompts=num_prompts, seed=seed, **opts)
            return _cls("DynamicSampling")(selector=selector, num_prompts=num_prompts, seed=seed, **gate_opts)
        if key not in BUILTIN:
            raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")
        if key == "greso":  # GRESO gates in rounds too: cap them like DS's
            opts["max_rounds"] = max(1, min(int(opts.get("max_rounds", 10)), num_prompts // max(batch_size, 1)))
        return _cls(BUILTIN[key])(num_prompts=num_prompts, seed=seed, **opts)
    except TypeError as e:
        raise ValueError(f"policy {name!r}: bad options {sorted(opts)} ({e})") from e
