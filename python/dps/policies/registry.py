"""Policies by name: the one table behind replay scenarios, the trainer's config and the CLI.

make_policy("dps", num_prompts=7500, seed=0, decay=0.7)
make_policy("ds", ...)                # dynamic sampling over a uniform loader
make_policy("dps+ds", ..., lo=0.1)    # the gate over another selector
make_policy("ds", ..., batch_size=16) # rounds capped to the full batches the dataset holds (the trainer)
make_policy("mypkg.mod:MyPolicy", ...)  # a user's Policy subclass
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from dps.policies.base import CONTRACT, Policy
from dps.policies.builtin import BOTS, DEFAULT_MAX_ROUNDS, DPS, GRESO, HistoryResampling, MoPPS, RateDPS, Uniform
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
    "ratedps": RateDPS,
    "rate_dps": RateDPS,
}
GATES = ("ds", "dynamic_sampling")
#: Options that belong to the gate when a name combines a selector with it.
GATE_OPTIONS = ("lo", "hi", "max_rounds")
POLICY_NAMES = sorted(SELECTORS) + list(GATES) + ["<selector>+ds", "<module>:<Class>"]


def import_policy_class(path: str) -> Callable[..., Policy]:
    """The class named by 'module:Class', checked to be a Policy that implements every abstract
    method. The module is imported from `sys.path`, else from the current folder."""
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"a policy class is named 'module:Class', not {path!r}")
    try:
        with _current_folder_last():
            cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(
            f"cannot import policy class {path!r} ({e}); the module is looked for on PYTHONPATH and in the current "
            "folder"
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise ValueError(f"{path!r} is not a dps.Policy subclass")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise ValueError(f"{path!r} does not implement {', '.join(missing)} ({CONTRACT})")
    return cls


@contextlib.contextmanager
def _current_folder_last() -> Iterator[None]:
    """Let `import` find a module in the current folder (the `dps` command does not put it on
    sys.path, `python -m` does), after every other place."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _construct_user_policy(path: str, num_prompts: int, seed: int, options: dict[str, Any]) -> Policy:
    cls = import_policy_class(path)
    try:
        return cls(num_prompts=num_prompts, seed=seed, **options)
    except TypeError as e:
        call = ", ".join([f"num_prompts={num_prompts}", f"seed={seed}", *(f"{k}={v!r}" for k, v in options.items())])
        raise ValueError(
            f"cannot construct {cls.__name__}({call}) ({e}); a policy class takes num_prompts and seed as keywords, "
            f"and each option of its own ({CONTRACT})"
        ) from e


def make_policy(name: str, num_prompts: int, seed: int = 0, *, batch_size: int | None = None, **options: Any) -> Policy:
    """Build a policy by name; unknown names and options are ValueErrors that name them.

    With `batch_size` (a trainer's B), a policy that rolls out whole batches in rounds (a DS gate,
    GRESO with rounds="batch") gets its `max_rounds` (default DEFAULT_MAX_ROUNDS) capped by
    `capped_rounds`, so that every round is a full batch of fresh prompts. (`run_step` itself
    stops once a step has used every prompt; the cap only drops a final, partial round.)
    """
    rounds = options.get("max_rounds", DEFAULT_MAX_ROUNDS)
    if batch_size is not None and rounds_in_batches(name, options) and _is_int(rounds):  # else the gate refuses it
        options["max_rounds"] = capped_rounds(num_prompts, batch_size, rounds)
    key = name.strip().lower()
    try:
        if ":" in name:
            return _construct_user_policy(name.strip(), num_prompts, seed, options)
        selector_name, plus, gate = key.partition("+")
        if key in GATES or (plus and gate in GATES):
            gate_options = {k: options.pop(k) for k in GATE_OPTIONS if k in options}
            selector = make_policy(selector_name if plus else "uniform", num_prompts, seed, **options)
            return DynamicSampling(selector, **gate_options)
        if key not in SELECTORS:
            raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
        try:
            return SELECTORS[key](num_prompts=num_prompts, seed=seed, **options)
        except ValueError as e:  # an option's value: say whose
            raise ValueError(f"policy {name!r}: {e}") from e
    except TypeError as e:
        raise ValueError(_bad_options(name, SELECTORS.get(key), options, e)) from e


def _bad_options(name: str, cls: Any, options: dict[str, Any], error: TypeError) -> str:
    """A built-in's unknown option named beside the options it takes (the closest first); else the error."""
    unknown = re.search(r"unexpected keyword argument '(\w+)'", str(error))
    if unknown is None or cls is None:
        return f"policy {name!r}: bad options {sorted(options)} ({error})"
    own = [p for p in inspect.signature(cls).parameters if p not in ("num_prompts", "seed")]
    close = difflib.get_close_matches(unknown[1], own, n=1)
    takes = f"its options: {', '.join(own)}" if own else "it takes no options"
    return f"policy {name!r}: unknown option {unknown[1]!r} ({takes})" + (f"; perhaps {close[0]}" if close else "")


def rounds_in_batches(name: str, options: dict[str, Any]) -> bool:
    """Whether the named policy rolls out whole batches in rounds: a DS gate, or GRESO with rounds="batch"."""
    key = name.strip().lower()
    if ":" in key:
        return False
    _, plus, gate = key.partition("+")
    return key in GATES or bool(plus and gate in GATES) or (key == "greso" and options.get("rounds") == "batch")


def capped_rounds(num_prompts: int, batch_size: int, max_rounds: int = DEFAULT_MAX_ROUNDS) -> int:
    """`max_rounds` limited to the number of full batches the dataset holds (at least 1)."""
    return max(1, min(max_rounds, num_prompts // max(batch_size, 1)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
