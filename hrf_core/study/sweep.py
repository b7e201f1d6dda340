"""Run independent experiment units (arms x seeds) in parallel processes, with the results of a serial run.

Each unit is a plain function call ``fn(*args)`` in a fresh process (spawned, so no state leaks from
the parent). ``jobs`` processes run at once; each gets ``threads`` torch threads (default: the
cores divided among the jobs) and, when GPUs are visible, one GPU (job slot i gets GPU i mod G, via
``CUDA_VISIBLE_DEVICES`` set before CUDA starts). A unit's result depends only on its own config,
seed and thread count, so ``jobs = J`` gives the same results as ``jobs = 1`` with the same
``threads``; the default thread count changes with ``jobs`` and CPU float sums can depend on it.

Units may depend on others (``after``): a unit starts once everything it waits for is done.
``on_done(unit, result)`` runs in the parent as each unit finishes, so partial results can be
written while the rest run.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field


@dataclass
class Unit:
    """One independent piece of work: ``fn(*args)`` (picklable), started after the units named in ``after``."""

    name: str
    fn: Callable
    args: tuple = ()
    after: tuple[str, ...] = ()
    result: object = None
    error: str | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def default_threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        return 0


_SLOT = {"slot": 0}


def _init_worker(slots, threads: int, gpus: list[str]) -> None:
    """Runs first in each worker: take a job slot, pin a GPU and set the thread count before torch starts work."""
    slot = slots.get()
    _SLOT["slot"] = slot
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(threads)


def _call(fn: Callable, args: tuple) -> tuple[object, str | None, float]:
    started = time.perf_counter()
    try:
        return fn(*args), None, time.perf_counter() - started
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which decides
        return None, f"{type(error).__name__}: {error}\n{traceback.format_exc()}", time.perf_counter() - started


def run_units(units: Sequence[Unit], jobs: int = 1, threads: int | None = None,
              on_done: Callable[[Unit], None] | None = None) -> list[Unit]:
    """Run ``units`` (respecting ``after``) on ``jobs`` processes; returns them with results or errors.

    A unit whose dependency failed is not run (its error says why). Errors never stop the others.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    threads = threads or default_threads(jobs)
    names = {u.name for u in units}
    for unit in units:
        missing = set(unit.after) - names
        if missing:
            raise ValueError(f"unit {unit.name} waits for unknown units {sorted(missing)}")
    gpus = [str(i) for i in range(_gpu_count())]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        gpus = [d.strip() for d in visible.split(",") if d.strip()]
    context = multiprocessing.get_context("spawn")
    slots = context.Manager().Queue()
    for slot in range(jobs):
        slots.put(slot)
    pending = list(units)
    done: dict[str, Unit] = {}
    running: dict[Future, Unit] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                             initargs=(slots, threads, gpus)) as pool:
        while pending or running:
            for unit in list(pending):
                failed = [d for d in unit.after if d in done and done[d].error]
                if failed:
                    unit.error = f"not run: {', '.join(failed)} failed"
                    pending.remove(unit)
                    done[unit.name] = unit
                    if on_done:
                        on_done(unit)
                    continue
                if all(d in done for d in unit.after) and len(running) < jobs:
                    running[pool.submit(_call, unit.fn, unit.args)] = unit
                    pending.remove(unit)
            if not running:
                if pending:  # nothing can start: the dependencies form a cycle
                    for unit in pending:
                        unit.error = "not run: its dependencies never finish (a cycle)"
                        done[unit.name] = unit
                    pending.clear()
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = running.pop(future)
                unit.result, unit.error, unit.seconds = future.result()
                done[unit.name] = unit
                if on_done:
                    on_done(unit)
    return [done[u.name] for u in units]
