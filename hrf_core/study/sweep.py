"""Run an experiment's units (arm x task x seed) on a backend, in dependency order, with the results of a serial run.

Each unit is a plain function call ``fn(*args)`` (picklable). :func:`run_units` hands a unit to a backend
(:mod:`hrf_core.study.backends`: a process pool on this machine, or a Ray cluster) once everything it waits
for (``after``) is done; a unit that fails is recorded with its error and tried once more; a unit whose
dependency failed is not run. ``on_done(unit)`` runs in the caller's process as each unit ends, so partial
results can be written while the rest run.

Every backend sets the unit's torch thread count (:func:`set_threads`) before the unit starts. A unit's result
depends only on its own config, seed and thread count, so any backend and any number of workers give the same
results as ``jobs = 1`` with the same ``threads`` (CPU float sums can depend on the thread count).

:func:`shard` splits the units into N disjoint parts for job arrays (``--shard i/N``, ``$SLURM_ARRAY_TASK_ID``):
a unit stays in the part of the units it waits for.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

#: What a backend reports for one finished call: (result, error or None, seconds, where it ran).
Outcome = tuple[object, "str | None", float, str]


@dataclass
class Unit:
    """One independent piece of work: ``fn(*args)`` (picklable), started after the units named in ``after``.

    ``attempts``: how many times it was started; ``errors``: the error of each failed attempt (the last one is
    also ``error``, None once an attempt succeeds); ``where``: the host and process of its last attempt.
    """

    name: str
    fn: Callable
    args: tuple = ()
    after: tuple[str, ...] = ()
    result: object = None
    error: str | None = None
    seconds: float = 0.0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    where: str = ""


class Backend(Protocol):
    """Where units run (:mod:`hrf_core.study.backends`). ``capacity``: units in flight at most (None: no cap,
    the backend queues them); ``workers``: units it runs at once; ``threads``: torch threads per unit;
    ``nodes`` and ``cpus``: the machines and CPUs it has (for the report)."""

    name: str
    workers: int
    threads: int
    capacity: int | None
    nodes: int
    cpus: int

    def submit(self, unit: Unit) -> object: ...

    def wait(self, handles: list) -> list[tuple[object, Outcome]]:
        """Block until at least one of ``handles`` ends; the ones that ended, each with its outcome."""


def default_threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def set_threads(threads: int) -> None:
    """The unit's torch thread count; runs in the worker before the unit (OMP_NUM_THREADS only counts before
    OpenMP starts, so backends also set it in the worker's environment)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(threads)


def call(fn: Callable, args: tuple) -> Outcome:
    """``fn(*args)`` timed, its exception caught as text (the caller decides what a failure means)."""
    where = f"{socket.gethostname()} pid {os.getpid()}"
    started = time.perf_counter()
    try:
        return fn(*args), None, time.perf_counter() - started, where
    except BaseException as error:  # noqa: BLE001 - reported to the caller, which decides
        return (None, f"{type(error).__name__}: {error}\n{traceback.format_exc()}", time.perf_counter() - started,
                where)


def run_units(units: Sequence[Unit], backend: Backend, on_done: Callable[[Unit], None] | None = None,
              retries: int = 1, on_retry: Callable[[Unit], None] | None = None) -> list[Unit]:
    """Run ``units`` on ``backend`` (respecting ``after``); returns them with results or errors.

    A failed unit is started again up to ``retries`` times (``on_retry(unit)`` first; its earlier errors stay in
    ``errors``). A unit whose dependency failed is not run (its error says why). Errors never stop the others.
    """
    names = {u.name for u in units}
    for unit in units:
        missing = set(unit.after) - names
        if missing:
            raise ValueError(f"unit {unit.name} waits for unknown units {sorted(missing)}")
    pending = list(units)
    done: dict[str, Unit] = {}
    running: dict[object, Unit] = {}

    def finish(unit: Unit) -> None:
        done[unit.name] = unit
        if on_done:
            on_done(unit)

    while pending or running:
        for unit in list(pending):
            failed = [d for d in unit.after if d in done and done[d].error]
            if failed:
                unit.error = f"not run: {', '.join(failed)} failed"
                pending.remove(unit)
                finish(unit)
                continue
            if all(d in done for d in unit.after) and (backend.capacity is None or len(running) < backend.capacity):
                unit.attempts += 1
                running[backend.submit(unit)] = unit
                pending.remove(unit)
        if not running:
            if pending:  # nothing can start: the dependencies form a cycle
                for unit in pending:
                    unit.error = "not run: its dependencies never finish (a cycle)"
                    done[unit.name] = unit
                pending.clear()
            continue
        for handle, (result, error, seconds, where) in backend.wait(list(running)):
            unit = running.pop(handle)
            unit.result, unit.error, unit.seconds, unit.where = result, error, seconds, where
            if error:
                unit.errors.append(error)
                if unit.attempts <= retries:
                    if on_retry:
                        on_retry(unit)
                    pending.insert(0, unit)  # first in line: it held its place in the run order
                    continue
            finish(unit)
    return [done[u.name] for u in units]


# ------------------------------------------------------------------------------------------------ shards
def shard(units: Sequence[Unit], index: int, count: int) -> list[Unit]:
    """The ``index``-th (1-based) of ``count`` disjoint parts of ``units``, in their order.

    Units linked by ``after`` form a group that stays in one part; the groups, in the order of their first
    unit, are dealt to the parts in turn, so every part gets a share of each arm. The parts depend only on the
    units (not on what already ran), so N processes that each take one part cover every unit exactly once.
    """
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: want 1 <= i <= N")
    parent = {u.name: u.name for u in units}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for unit in units:
        for other in unit.after:
            if other in parent:
                parent[root(other)] = root(unit.name)
    order: dict[str, int] = {}
    for unit in units:
        order.setdefault(root(unit.name), len(order))
    return [u for u in units if order[root(u.name)] % count == index - 1]


def parse_shard(text: str | None, environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``"i/N"`` -> (i, N); without ``text``, a SLURM job array's task (``$SLURM_ARRAY_TASK_ID`` of
    ``$SLURM_ARRAY_TASK_COUNT``, counted from ``$SLURM_ARRAY_TASK_MIN``); None when neither is given."""
    environ = os.environ if environ is None else environ
    if text:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard {text!r}: want i/N, e.g. 1/4") from None
        if not 1 <= index <= count:
            raise ValueError(f"--shard {text}: want 1 <= i <= N")
        return index, count
    task = environ.get("SLURM_ARRAY_TASK_ID", "").strip()
    if not task:
        return None
    try:
        task_id, low = int(task), int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        high, count = int(environ["SLURM_ARRAY_TASK_MAX"]), int(environ["SLURM_ARRAY_TASK_COUNT"])
    except (KeyError, ValueError):
        raise ValueError("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_MIN/MAX/COUNT: pass --shard i/N") \
            from None
    if high - low + 1 != count:
        raise ValueError(f"the job array {low}-{high} has {count} tasks (a step or a list): pass --shard i/N "
                         "with i counted from 1")
    return task_id - low + 1, count
