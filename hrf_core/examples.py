"""The example runs that ship with the app: finished duels on the visible rewards, metrics and grids only.

``python -m hrf_core examples`` trains, through the job manager, one duel per visible reward (HRF on
the late window [20, 40) against DDPO, same seed and settings as the app's digits presets) and copies
each half into ``checkpoints/examples/`` without weights or evaluation arrays, grids downscaled, so a
fresh app (or a Space whose run store was wiped) shows a finished DDPO-vs-HRF comparison at once.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from hrf_core import CHECKPOINTS_DIR
from hrf_core.config import PRESETS
from hrf_core.runs import Run, RunStore, read_json, write_json

EXAMPLES_DIR = CHECKPOINTS_DIR / "examples"
DUELS = (("ink", "1"), ("digit:3", "3"))  # (reward, run-id prefix of the pair)
GRID_SIZE = 192  # pixels: grids are downscaled to at most this


def export(run: Run, target: Path, order: str) -> Path:
    """Copy ``run`` as an example: config (marked ``example``), status, metrics and small grids; no weights."""
    folder = target / f"example-{order}-{run.run_id.split('-', 2)[-1]}"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "grids").mkdir(parents=True)
    config = run.config
    config["extra"] = {**config.get("extra", {}), "example": True}
    write_json(folder / "config.json", config)
    write_json(folder / "status.json", run.status)
    (folder / "metrics.jsonl").write_text((run.path / "metrics.jsonl").read_text())
    for grid in run.grids():
        with Image.open(grid) as image:
            small = image.copy()
        small.thumbnail((GRID_SIZE, GRID_SIZE), Image.NEAREST)
        small.save(folder / "grids" / grid.name, optimize=True)
    return folder


def generate(target: Path = EXAMPLES_DIR, epochs: int = 12, seed: int = 0) -> list[Path]:
    """Train the duels (HRF [20,40) vs DDPO) and export them to ``target``; returns the example folders."""
    from hrf_core.jobs import JobManager, default_torch_threads

    with tempfile.TemporaryDirectory() as scratch:
        store = RunStore(scratch)
        manager = JobManager(store, torch_threads=default_torch_threads())
        exported: list[Path] = []
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for reward, prefix in DUELS:
            hrf = PRESETS["digits-hrf-late"].replace(reward=reward, epochs=epochs, seed=seed)
            ddpo = PRESETS["digits-ddpo"].replace(reward=reward, epochs=epochs, seed=seed)
            first, second = manager.start_duel(hrf, ddpo)
            started = time.time()
            manager.wait()
            snap = manager.snapshot()
            if snap.state != "done":
                raise RuntimeError(f"the {reward} duel ended {snap.status}")
            print(f"{reward}: duel of {epochs} + {epochs} epochs in {time.time() - started:.0f} s")
            runs = {run_id: store.get(run_id) for run_id in (first, second)}
            names = {}
            for order, run_id in zip((prefix, str(int(prefix) + 1)), (first, second), strict=True):
                names[run_id] = f"example-{order}-{run_id.split('-', 2)[-1]}"
            for order, run_id in zip((prefix, str(int(prefix) + 1)), (first, second), strict=True):
                folder = export(runs[run_id], target, order)
                config = read_json(folder / "config.json")
                config["extra"]["duel_with"] = names[config["extra"]["duel_with"]]
                write_json(folder / "config.json", config)
                exported.append(folder)
    return exported


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def cli_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hrf_core examples", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(EXAMPLES_DIR), help=f"where the examples go (default {EXAMPLES_DIR})")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        raise ValueError("--epochs must be >= 1")
    folders = generate(Path(args.out), args.epochs, args.seed)
    total = sum(folder_size(f) for f in folders)
    print(f"wrote {len(folders)} example runs to {args.out} ({total / 1e6:.2f} MB)")
    return 0
