"""The tests' small experiment on each backend, and what a Ray cluster costs per unit.

Runs the 4-unit experiment of ``tests/small_experiment.py`` (DDPO and its hand-over, 2 seeds, 2 epochs, the tiny
model, 1 thread per unit) as a user would, one driver command each: on the pool with 1 and 2 processes, and on a
local two-node Ray cluster (``tests/ray_cluster.py``: a head and a worker node of 1 CPU each, bound to 127.0.0.1).
Per backend:

- ``command``: the driver's wall time, start to exit (interpreter, connecting, units, report);
- ``sitting``: the progress file's wall time, from the first unit handed to the backend to the last one back;
- ``in units``: the sum of the units' own seconds, measured in the workers;
- ``overhead / unit`` = (sitting x workers - in units) / units: the time a worker slot spends outside a unit
  (starting worker processes and torch, scheduling, moving arguments and results, idle slots while a hand-over
  waits for its DDPO run), divided among the units.

Then the dispatch cost alone, with no-op units (``time.sleep(0)``) on 2 workers: the first round on fresh workers
(process start, imports) and the mean per unit over ``--noop`` more; and how long ``--backend ray`` takes to refuse
an address where nothing listens (the tests check the one line and exit 2, not the time).

    python bench/backends.py [--noop 40] [--json backends.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def experiment(model: Path, root: Path, extra: list[str], env: dict | None = None) -> dict:
    import small_experiment

    started = time.perf_counter()
    result = small_experiment.run(*small_experiment.args(model, root), *extra, env=env)
    command = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(extra)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    progress = json.loads((root / "runs" / "progress.json").read_text())
    units = progress["units"].values()
    inside = sum(u["seconds"] for u in units)
    sitting = progress["wall_seconds"]
    return {"backend": progress["backend"], "workers": progress["workers"], "nodes": progress["nodes"],
            "units": len(units), "command_s": command, "sitting_s": sitting, "in_units_s": inside,
            "overhead_per_unit_s": (sitting * progress["workers"] - inside) / len(units)}


def dispatch(name: str, count: int, **options) -> dict:
    """No-op units on a backend: the first round (fresh workers) and the mean per unit over ``count`` more."""
    from hrf_core.study.backends import open_backend
    from hrf_core.study.sweep import Unit, run_units

    with open_backend(name, **options) as backend:
        started = time.perf_counter()
        run_units([Unit(f"warm{i}", time.sleep, (0.0,)) for i in range(backend.workers)], backend)
        first = time.perf_counter() - started
        started = time.perf_counter()
        run_units([Unit(f"noop{i}", time.sleep, (0.0,)) for i in range(count)], backend)
        per_unit = (time.perf_counter() - started) / count
    return {"backend": name, "workers": backend.workers, "first_round_s": first, "per_unit_ms": 1e3 * per_unit}


def refusal() -> float:
    """Seconds to refuse a Ray address where nothing listens (in this process: no interpreter start)."""
    from ray_cluster import free_port

    from hrf_core.study.backends import open_backend

    started = time.perf_counter()
    try:
        with open_backend("ray", address=f"127.0.0.1:{free_port()}"):
            pass
    except ValueError:
        return time.perf_counter() - started
    raise SystemExit("an address where nothing listens was not refused")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop", type=int, default=40, help="no-op units timed after the first round")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    from conftest import make_scheduler, make_tiny_unet
    from ray_cluster import ENV, LocalCluster

    out: dict = {"cpus": os.cpu_count(), "experiment": [], "dispatch": []}
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        tmp = Path(tmp)
        model = tmp / "tiny-model"
        make_tiny_unet().save_pretrained(model / "unet", safe_serialization=True)
        make_scheduler().save_pretrained(model / "scheduler")
        for jobs in (1, 2):
            out["experiment"].append(experiment(model, tmp / f"pool{jobs}", ["--jobs", str(jobs)]))
        out["dispatch"].append(dispatch("pool", args.noop, jobs=2, threads=1))
        started = time.perf_counter()
        cluster = LocalCluster(tmp / "ray")
        try:
            cluster.add_worker()
            out["cluster_start_s"] = time.perf_counter() - started
            out["experiment"].append(experiment(model, tmp / "ray-run", ["--backend", "ray", "--address",
                                                                          cluster.address], env=ENV))
            os.environ.update(ENV)
            out["dispatch"].append(dispatch("ray", args.noop, address=cluster.address, threads=1))
            out["refusal_s"] = refusal()
        finally:
            cluster.close()
    print(f"{out['cpus']}-core machine; the local Ray cluster (head + worker node) started in "
          f"{out['cluster_start_s']:.1f} s")
    print("| backend | workers | units | command | sitting | in units | overhead / unit |")
    print("|---|---|---|---|---|---|---|")
    for r in out["experiment"]:
        print(f"| {r['backend']} | {r['workers']} | {r['units']} | {r['command_s']:.1f} s | {r['sitting_s']:.1f} s | "
              f"{r['in_units_s']:.1f} s | {r['overhead_per_unit_s']:.1f} s |")
    print("\n| no-op units on | workers | first round (fresh workers) | then per unit |")
    print("|---|---|---|---|")
    for r in out["dispatch"]:
        print(f"| {r['backend']} | {r['workers']} | {r['first_round_s']:.1f} s | {r['per_unit_ms']:.1f} ms |")
    print(f"\nan address where nothing listens refused in {out['refusal_s'] * 1e3:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
