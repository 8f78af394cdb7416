"""Verification under a hard time limit.

A model's answer can make a verifier run for ever: Countdown's scorer hands ``9**9**9`` to
sympy, whose big-integer power is one C call that no signal interrupts. `BoundedVerifier` runs
the task's ``verify`` in a worker process: answers are sent in batches and judged one by one;
when one takes longer than ``timeout_s``, the worker is killed, that response counts as wrong
(and in ``timeouts``), a fresh worker is started and the batch goes on after it.

Workers are forked from a ``forkserver`` (a clean interpreter with the task libraries
preloaded: no torch or vLLM threads forked in a half-held state, and a replacement worker is
up in a fraction of a second) and get the task pickled once; the common path costs one pipe
round trip per batch. ``timeout_s = 0`` verifies in-process, unbounded (for tasks known to be safe).

`Task.verify` goes through `shared_verifier`: one `BoundedVerifier` per task object, kept for
the task's lifetime, so a direct call is bounded too.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from typing import Any

STARTUP_TIMEOUT_S = 300.0  # importing the task's libraries in a fresh interpreter on a loaded machine
PRELOAD = ["dps.tasks", "sympy", "reasoning_gym", "math_verify"]  # missing ones are skipped


def _context() -> Any:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


# This module does not import dps.tasks.base (which imports it): a task is typed Any here.
Example = Any
Task = Any


def in_process(task: Task) -> Callable[[Example, str], bool]:
    """The task's unbounded check: `Task.verify_in_process`, or the subclass's own `verify`
    where it overrides it (a task written before `verify` was bounded)."""
    root = next(c.__dict__["verify"] for c in reversed(type(task).__mro__) if "verify" in c.__dict__)
    if type(task).verify is not root:
        return task.verify
    return task.verify_in_process


def _warm(judge: Callable[[Example, str], bool], task: Task) -> None:
    """One verification before the clock runs: libraries initialise lazily on first use
    (math-verify's parser takes seconds), which must not count against an answer's limit."""
    try:
        ex = task.train()[0]
        judge(ex, task.reference_response(ex))
    except Exception:
        pass


def _serve(conn: Any, task: Task) -> None:
    judge = in_process(task)
    _warm(judge, task)
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the trainer is gone (even by kill -9): leave with it
            return
        if msg is None:
            return
        for i, (example, response) in enumerate(msg):
            conn.send((i, bool(judge(example, response))))


class BoundedVerifier:
    """``verify(pairs)`` -> one bool per (example, response); each judged within ``timeout_s``."""

    def __init__(self, task: Task, timeout_s: float = 5.0) -> None:
        self.task = task
        self.timeout_s = float(timeout_s)
        self.timeouts = 0  # responses judged wrong because their verification ran out of time
        self._proc: Any = None
        self._conn: Any = None
        self._ready = False

    def verify(self, pairs: list[tuple[Example, str]]) -> list[bool]:
        if self.timeout_s <= 0:
            judge = in_process(self.task)
            return [bool(judge(ex, r)) for ex, r in pairs]
        out: list[bool] = []
        while len(out) < len(pairs):
            out.extend(self._verify_some(pairs[len(out) :]))
        return out

    def _verify_some(self, pairs: list[tuple[Example, str]]) -> list[bool]:
        """Judge `pairs` in order until one times out (it is judged wrong and the worker replaced)."""
        self._start()
        self._conn.send([(example.without_images(), response) for example, response in pairs])
        out: list[bool] = []
        for i in range(len(pairs)):
            if not self._conn.poll(self.timeout_s):
                self.timeouts += 1
                self._stop(kill=True)
                out.append(False)
                return out
            j, ok = self._conn.recv()
            assert j == i
            out.append(ok)
        return out

    def launch(self) -> None:
        """Start the worker without waiting for it (it imports while the caller does other work)."""
        if self.timeout_s <= 0 or self._proc is not None:
            return
        ctx = _context()
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, self.task), daemon=True, name="dps-verifier")
        proc.start()
        child.close()
        self._proc, self._conn, self._ready = proc, parent, False

    def _start(self) -> None:
        if self._proc is not None and not self._proc.is_alive():
            self._stop(kill=True)
        self.launch()
        if self._ready:
            return
        t0 = time.monotonic()
        if not self._conn.poll(STARTUP_TIMEOUT_S) or self._conn.recv()[0] != "ready":
            self._stop(kill=True)
            raise RuntimeError(f"the verifier worker did not start within {time.monotonic() - t0:.0f} s")
        self._ready = True

    def _stop(self, kill: bool = False) -> None:
        if self._proc is None:
            return
        try:
            if kill:
                self._proc.kill()
            else:
                self._conn.send(None)
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        except (OSError, EOFError, BrokenPipeError):
            pass
        self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> BoundedVerifier:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_shared_lock = threading.Lock()
SHARED_ATTRIBUTE = "_dps_bounded_verifier"  # on the task; Task.__getstate__ drops it (same name there)


class _LockedVerifier:
    """A task's shared `BoundedVerifier`, used by one caller at a time (reward functions may run
    in threads)."""

    def __init__(self, verifier: BoundedVerifier, lock: threading.Lock, timeout_s: float) -> None:
        self.verifier, self.lock, self.timeout_s = verifier, lock, timeout_s

    def verify(self, pairs: list[tuple[Example, str]]) -> list[bool]:
        with self.lock:
            self.verifier.timeout_s = self.timeout_s
            return self.verifier.verify(pairs)


def shared_verifier(task: Task, timeout_s: float) -> _LockedVerifier:
    """The `BoundedVerifier` that `task.verify` uses: started on first use, kept on the task
    (its worker leaves when the task is collected and the pipe closes)."""
    with _shared_lock:
        entry = task.__dict__.get(SHARED_ATTRIBUTE)
        if entry is None:
            entry = (BoundedVerifier(task, timeout_s), threading.Lock())
            task.__dict__[SHARED_ATTRIBUTE] = entry
    return _LockedVerifier(entry[0], entry[1], timeout_s)
