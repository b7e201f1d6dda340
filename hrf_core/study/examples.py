"""The example runs that ship with the app: finished duels on the visible rewards, metrics and grids only.

``python -m hrf_core examples`` trains, through the job manager, the duels of :data:`DUELS` (a preset
against DDPO, same seed and settings as the app's presets) and copies each half into
``checkpoints/examples/`` without weights or evaluation arrays, grids downscaled, so a fresh app (or a
Space whose run store was wiped) shows finished DDPO-vs-HRF comparisons at once. ``--only NAME``
retrains one duel and keeps the others' folders.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from hrf_core import CHECKPOINTS_DIR
from hrf_core.presets import PRESETS
from hrf_core.store.runs import Run, RunStore, write_json

EXAMPLES_DIR = CHECKPOINTS_DIR / "examples"


@dataclass(frozen=True)
class Duel:
    """One shipped duel: ``preset`` against ``partner`` (a DDPO preset of the same model) on ``reward``; its
    halves are numbered ``order`` and ``order + 1`` (the Runs table lists examples by that number)."""

    reward: str
    order: int
    preset: str = "digits-hrf-late"
    window: tuple[int, int] | None = None  # the preset's window unless given
    partner: str = "digits-ddpo"
    guidance: float | None = None  # both halves' guidance scale (a conditional model); the preset's unless given
    label: str = ""  # the name ``--only`` takes; the reward unless given

    @property
    def name(self) -> str:
        return self.label or self.reward

    def configs(self, epochs: int, seed: int) -> tuple:
        """The two halves' configs: (the preset's, its DDPO partner's)."""
        hrf = PRESETS[self.preset].replace(reward=self.reward, epochs=epochs, seed=seed)
        if self.window is not None:
            hrf = hrf.replace(window=self.window)
        if self.guidance is not None:
            hrf = hrf.replace(guidance=self.guidance)
        return hrf, PRESETS[self.partner].replace(reward=self.reward, epochs=epochs, seed=seed, guidance=hrf.guidance)


DUELS = (Duel("ink", 1), Duel("digit:3", 3),
         # window-only HRF where the frontier experiment found it helps most: [30,40) on JPEG incompressibility,
         # above early-stopped DDPO at 25, 50 and 75% of its gain (docs/RESULTS.md, point 9)
         Duel("jpeg-incompressibility", 5, "digits-hrf-window-only", window=(30, 40)),
         # prompted: HRF [20,40) against DDPO with per-prompt advantages on the class-conditional model, where the
         # prompts experiment found HRF's within-prompt diversity on or above early-stopped DDPO's (RESULTS.md)
         Duel("ink", 7, "digits-cond-hrf-late", partner="digits-cond-ddpo", guidance=1.0, label="prompted-ink"),
         # the diversity bonus (lambda 0.3) against plain DDPO, both with per-prompt advantages: the prompts
         # experiment found its within-prompt HOG Vendi above early-stopped DDPO's and the hand-over's at 75% of DDPO's
         # gain, at DDPO's reward speed and prompt alignment (docs/results/headline)
         Duel("ink", 9, "digits-cond-ddpo-diverse", partner="digits-cond-ddpo", guidance=1.0,
              label="prompted-ink-diverse"))
GRID_SIZE = 192  # pixels: grids are downscaled to at most this


def export(run: Run, target: Path, order: str) -> Path:
    """Copy ``run`` as an example: config (marked ``example``), status, metrics and small grids; no weights."""
    folder = target / f"example-{order}-{run.run_id.split('-', 2)[-1]}"
    if folder.exists():
        shutil.rmtree(folder)
    example = Run(folder)
    example.grids_dir.mkdir(parents=True)
    config = run.config
    config["extra"] = {**config.get("extra", {}), "example": True}
    example.write_config(config)
    write_json(example.status_path, run.status)
    example.metrics_path.write_text(run.metrics_path.read_text())
    for grid in run.grids():
        with Image.open(grid) as image:
            small = image.copy()
        small.thumbnail((GRID_SIZE, GRID_SIZE), Image.NEAREST)
        small.save(example.grids_dir / grid.name, optimize=True)
    return folder


def generate(target: Path = EXAMPLES_DIR, epochs: int = 12, seed: int = 0,
             only: tuple[str, ...] = ()) -> list[Path]:
    """Train the duels of :data:`DUELS` (those on the rewards in ``only``, if given) and export them to
    ``target``, replacing those duels' earlier folders; returns the example folders written."""
    import torch

    from hrf_core.rl.launch import create_runs, default_torch_threads, duel, open_trainer, preflight

    duels = [d for d in DUELS if not only or d.name in only]
    if not duels:
        raise ValueError(f"no shipped duel named {', '.join(only)}; choose from {', '.join(d.name for d in DUELS)}")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        store = RunStore(scratch)
        torch.set_num_threads(default_torch_threads())
        exported: list[Path] = []
        for duel_spec in duels:
            hrf, ddpo = duel_spec.configs(epochs, seed)
            for config in (hrf, ddpo):
                preflight(config)
            runs = create_runs(store, [hrf, ddpo])
            started = time.time()
            result = duel([open_trainer(config, run).steps() for config, run in zip((hrf, ddpo), runs, strict=True)])
            if result != "done":  # the shipped examples stay as they were
                raise RuntimeError(f"the {duel_spec.name} duel ended {result}")
            for old in [*target.glob(f"example-{duel_spec.order}-*"), *target.glob(f"example-{duel_spec.order + 1}-*")]:
                shutil.rmtree(old)  # replaced only by a finished duel
            first, second = (run.run_id for run in runs)
            print(f"{duel_spec.name}: duel of {epochs} + {epochs} epochs in {time.time() - started:.0f} s")
            orders = {first: str(duel_spec.order), second: str(duel_spec.order + 1)}
            names = {run_id: f"example-{order}-{run_id.split('-', 2)[-1]}" for run_id, order in orders.items()}
            for run_id, order in orders.items():
                folder = export(store.get(run_id), target, order)
                config = Run(folder).config
                config["extra"]["duel_with"] = names[config["extra"]["duel_with"]]
                Run(folder).write_config(config)
                exported.append(folder)
    return exported


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

