"""The example runs that ship with the app: finished duels on the visible rewards, metrics and grids only.

``python -m hrf_core examples`` trains, through the job manager, the duels of :data:`DUELS` (a preset
against DDPO, same seed and settings as the app's digits presets) and copies each half into
``checkpoints/examples/`` without weights or evaluation arrays, grids downscaled, so a fresh app (or a
Space whose run store was wiped) shows finished DDPO-vs-HRF comparisons at once. ``--only REWARD``
retrains one duel and keeps the others' folders.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from hrf_core import CHECKPOINTS_DIR
from hrf_core.config import PRESETS
from hrf_core.runs import Run, RunStore, read_json, write_json

EXAMPLES_DIR = CHECKPOINTS_DIR / "examples"


@dataclass(frozen=True)
class Duel:
    """One shipped duel: ``preset`` against ``digits-ddpo`` on ``reward``; its halves are numbered
    ``order`` and ``order + 1`` (the Runs table lists examples by that number)."""

    reward: str
    order: int
    preset: str = "digits-hrf-late"
    window: tuple[int, int] | None = None  # the preset's window unless given


DUELS = (Duel("ink", 1), Duel("digit:3", 3),
         # window-only HRF where the frontier experiment found it helps most: [30,40) on JPEG incompressibility,
         # above early-stopped DDPO at 25, 50 and 75% of its gain (docs/RESULTS.md, point 9)
         Duel("jpeg-incompressibility", 5, "digits-hrf-window-only", window=(30, 40)))
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


def generate(target: Path = EXAMPLES_DIR, epochs: int = 12, seed: int = 0,
             only: tuple[str, ...] = ()) -> list[Path]:
    """Train the duels of :data:`DUELS` (those on the rewards in ``only``, if given) and export them to
    ``target``, replacing those duels' earlier folders; returns the example folders written."""
    from hrf_core.jobs import JobManager, default_torch_threads

    duels = [d for d in DUELS if not only or d.reward in only]
    if not duels:
        raise ValueError(f"no shipped duel on {', '.join(only)}; choose from {', '.join(d.reward for d in DUELS)}")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        store = RunStore(scratch)
        manager = JobManager(store, torch_threads=default_torch_threads())
        exported: list[Path] = []
        for duel in duels:
            for old in [*target.glob(f"example-{duel.order}-*"), *target.glob(f"example-{duel.order + 1}-*")]:
                shutil.rmtree(old)
            hrf = PRESETS[duel.preset].replace(reward=duel.reward, epochs=epochs, seed=seed)
            if duel.window is not None:
                hrf = hrf.replace(window=duel.window)
            ddpo = PRESETS["digits-ddpo"].replace(reward=duel.reward, epochs=epochs, seed=seed)
            first, second = manager.start_duel(hrf, ddpo)
            started = time.time()
            manager.wait()
            snap = manager.snapshot()
            if snap.state != "done":
                raise RuntimeError(f"the {duel.reward} duel ended {snap.status}")
            print(f"{duel.reward}: duel of {epochs} + {epochs} epochs in {time.time() - started:.0f} s")
            orders = {first: str(duel.order), second: str(duel.order + 1)}
            names = {run_id: f"example-{order}-{run_id.split('-', 2)[-1]}" for run_id, order in orders.items()}
            for run_id, order in orders.items():
                folder = export(store.get(run_id), target, order)
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
    parser.add_argument("--only", nargs="+", default=(), metavar="REWARD",
                        help=f"retrain only these duels ({', '.join(d.reward for d in DUELS)}); keep the others")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        raise ValueError("--epochs must be >= 1")
    folders = generate(Path(args.out), args.epochs, args.seed, tuple(args.only))
    total = sum(folder_size(f) for f in folders)
    print(f"wrote {len(folders)} example runs to {args.out} ({total / 1e6:.2f} MB)")
    return 0
