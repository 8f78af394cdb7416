"""Selection policies: the `Policy` interface, the built-in Rust-backed policies, the gate."""

from dps.policies.base import Policy, StepResult, run_step

__all__ = ["Policy", "StepResult", "run_step"]
