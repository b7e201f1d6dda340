"""What the web app may serve from disk: sample grids and the Results figures, nothing else (no gradio).

The page shows a run's evaluation grids (``<run>/grids/epoch-NNNN.png``), its replay GIF (built from
those grids) and the figures of ``docs/results/``. Checkpoints, optimiser and trainer state, configs,
evaluation arrays and anything outside the store are never served. Every path is built from a
validated name, and must resolve to exactly the file it names: a symlink anywhere below the store (or
below ``docs/results``) is refused, so a link cannot smuggle in a checkpoint or a file from elsewhere.
Refusals are ``ValueError`` with one line (the web layer answers 404).
"""

from __future__ import annotations

import re
from pathlib import Path

from hrf_core.store.runs import Run, RunStore, validate_run_id

FIGURE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.png$")


def _exact(root: Path, *parts: str) -> Path:
    """``root/parts`` when it is a regular file reached without any symlink below ``root``; else ValueError."""
    base = root.resolve()
    expected = base.joinpath(*parts)
    try:
        real = expected.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ValueError(f"no file {'/'.join(parts)}") from None
    if real != expected or not real.is_file():
        raise ValueError(f"{'/'.join(parts)} is not a plain file of its folder: refused")
    return real


def grid_file(store: RunStore, run_id: str, epoch: int) -> Path:
    """The evaluation grid of ``epoch`` of a run (of the store, or a shipped example)."""
    run = store.get(run_id)  # validates the id
    if epoch < 0:
        raise ValueError(f"no grid for epoch {epoch}")
    validate_run_id(run.run_id)
    return _exact(run.path.parent, *run.grid_path(epoch).relative_to(run.path.parent).parts)


def check_grids(run: Run) -> None:
    """Refuse a run whose folder or grids reach outside it (its replay GIF is made of its grids)."""
    grids = run.grids_dir
    if grids.resolve() != run.path.parent.resolve() / run.run_id / grids.name:
        raise ValueError(f"run {run.run_id}: its grids are not a plain folder of the run: refused")
    for path in run.grids():
        _exact(run.path.parent, run.run_id, grids.name, path.name)


def figure_file(docs_dir: Path, name: str) -> Path:
    """A figure of ``docs/results/`` by file name (PNG only)."""
    if not FIGURE_PATTERN.match(name or ""):
        raise ValueError(f"invalid figure name {name!r}")
    return _exact(docs_dir, "results", name)


def figure_files(docs_dir: Path) -> list[Path]:
    """Every servable figure of ``docs/results/`` (what the Results tab may show)."""
    folder = docs_dir / "results"
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        try:
            found.append(figure_file(docs_dir, path.name))
        except ValueError:
            continue
    return found
