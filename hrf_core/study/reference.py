"""DDPO's own trajectory as the reference a run is judged against: the early-stopping frontier.

A :class:`ReferenceCurve` holds, per seed, DDPO's reward gain and diversity metrics at its evaluated
epochs, all on evaluations of the same size. It comes from DDPO runs on disk with the same model,
reward and evaluation size (no KL penalty), or else from ``ddpo_reference.json`` beside the model's
weights (written by the ``frontier-digits`` experiment, with the metrics also recomputed on the first
64 evaluation samples, the size the app's digits presets use). :meth:`ReferenceCurve.at` reads the
curve where its reward gain first reaches a level, as :mod:`hrf_core.study.frontier` does.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrf_core import methods
from hrf_core.methods import Handover
from hrf_core.store.runs import Run, RunStore
from hrf_core.study.frontier import crossing, interpolate

REFERENCE_FILE = "ddpo_reference.json"


@dataclass
class ReferenceCurve:
    """DDPO's trajectories, one per seed: ``{"seed", "gain": [...], <metric>: [...]}`` on ``samples`` evaluations."""

    source: str
    samples: int
    seeds: list[dict]

    @property
    def metrics(self) -> list[str]:
        return sorted({k for s in self.seeds for k in s if k not in ("seed", "gain", "epochs")})

    def at(self, gain: float) -> dict[str, tuple[float, float, int]]:
        """{metric: (mean, std, n seeds)} where each seed's gain first reaches ``gain`` (seeds that never do are
        left out)."""
        out: dict[str, tuple[float, float, int]] = {}
        for metric in self.metrics:
            values = [v for v in (value_at(seed, gain, metric) for seed in self.seeds) if v is not None]
            if values:
                out[metric] = (statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0,
                               len(values))
        return out

    @property
    def reach(self) -> float:
        """The largest gain every seed reaches (the curve's reliable range)."""
        return min(max(s["gain"]) for s in self.seeds) if self.seeds else 0.0

    def band(self, metric: str, points: int = 24) -> dict:
        """The curve at ``points`` gains up to :attr:`reach`: gain, mean, low and high over seeds (for drawing)."""
        gains = np.linspace(0.0, self.reach, points).tolist() if self.reach > 0 else [0.0]
        mean, low, high = [], [], []
        for g in gains:
            values = [v for v in (value_at(seed, g, metric) for seed in self.seeds) if v is not None]
            mean.append(statistics.fmean(values) if values else None)
            low.append(min(values) if values else None)
            high.append(max(values) if values else None)
        return {"gain": gains, "mean": mean, "low": low, "high": high}


def value_at(seed: dict, gain: float, metric: str) -> float | None:
    """One seed's ``metric`` where its gain first reaches ``gain``; None if it never does."""
    if metric not in seed:
        return None
    spot = crossing(np.asarray(seed["gain"], dtype=float), gain)
    if spot is None:
        return None
    value = interpolate(np.asarray(seed[metric], dtype=float), spot)
    return value if math.isfinite(value) else None


def _metric_series(rows: list[dict]) -> dict[str, list[float]]:
    keys = sorted({k for r in rows for k in r if "@" in k and k.startswith(("is_", "vendi_", "class_entropy"))})
    return {k.split("@", 1)[0]: [float(r.get(k, math.nan)) for r in rows] for k in keys}


def from_runs(runs: list[Run], samples: int, rows_of=None) -> ReferenceCurve | None:
    """A curve from DDPO runs (no KL, no diversity bonus) evaluated on ``samples`` samples; None if there is none
    with two points."""
    seeds = []
    for run in runs:
        config = run.config
        if config.get("method") != methods.reference().name or float(config.get("kl_coef") or 0) or \
                float(config.get("diversity_weight") or 0) or \
                int(config.get("eval_samples") or 0) != samples:
            continue
        rows = [r for r in (rows_of(run) if rows_of else run.metrics()) if isinstance(r.get("reward_mean"), float)]
        if len(rows) < 2 or rows[0].get("epoch") != 0:
            continue
        seeds.append({"seed": config.get("seed"), "run": run.run_id,
                      "gain": [r["reward_mean"] - rows[0]["reward_mean"] for r in rows], **_metric_series(rows)})
    if not seeds:
        return None
    names = ", ".join(s["run"] for s in seeds[:3]) + (" …" if len(seeds) > 3 else "")
    return ReferenceCurve(source=f"DDPO run{'s' if len(seeds) > 1 else ''} on disk: {names}", samples=samples,
                          seeds=[{k: v for k, v in s.items() if k != "run"} for s in seeds])


def shipped(folder: Path, reward: str, samples: int) -> ReferenceCurve | None:
    """The curve in ``folder/ddpo_reference.json`` for ``reward``, at ``samples`` (or the nearest size it has)."""
    try:
        data = json.loads((Path(folder) / REFERENCE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    entry = data.get("rewards", {}).get(reward)
    if not entry or not entry.get("curves"):
        return None
    sizes = sorted({int(n) for c in entry["curves"] for n in c["samples"]})
    size = min(sizes, key=lambda n: (abs(n - samples), -n))
    seeds = [{"seed": c["seed"], **c["samples"][str(size)]} for c in entry["curves"] if str(size) in c["samples"]]
    experiment = data.get("experiment", "an experiment")
    note = "" if size == samples else f"; its evaluations have {size} samples, this run's {samples}"
    return ReferenceCurve(source=f"shipped reference ({experiment}, {len(seeds)} seeds{note})", samples=size,
                          seeds=seeds)


def merge_shipped(old: dict, new: dict) -> dict:
    """``ddpo_reference.json`` with ``new``'s curves merged into ``old``'s, per reward and evaluation size: a size's
    curves come from the file whose curves there have more seeds (then more evaluated epochs; a tie goes to
    ``new``), so a small experiment never replaces a wider reference, and rewards only ``old`` has stay."""
    def by_size(entry: dict) -> dict[str, dict]:  # size -> {seed: (epochs, points)}
        out: dict[str, dict] = {}
        for curve in entry.get("curves", []):
            for size, points in curve.get("samples", {}).items():
                out.setdefault(size, {})[curve["seed"]] = (curve.get("epochs"), points)
        return out

    def width(seeds: dict) -> tuple[int, int]:
        return len(seeds), min((len(points.get("gain", [])) for _, points in seeds.values()), default=0)

    rewards = dict(old.get("rewards", {}))
    for reward, entry in new.get("rewards", {}).items():
        mine, theirs = by_size(rewards.get(reward, {})), by_size(entry)
        sizes = {size: mine[size] if size in mine and (size not in theirs or width(mine[size]) > width(theirs[size]))
                 else theirs[size] for size in {*mine, *theirs}}
        curves: dict = {}
        for size in sorted(sizes, key=int):
            for seed, (epochs, points) in sizes[size].items():
                curve = curves.setdefault(seed, {"seed": seed, "epochs": epochs, "samples": {}})
                curve["samples"][size] = points
        rewards[reward] = {**rewards.get(reward, {}), **{k: v for k, v in entry.items() if k != "curves"},
                           "curves": [curves[seed] for seed in sorted(curves)]}
    return {**old, **{k: v for k, v in new.items() if k != "rewards"}, "rewards": rewards}


def write_shipped(path: Path, data: dict) -> Path:
    """Merge ``data`` into the reference file at ``path`` (:func:`merge_shipped`) and write it atomically."""
    from hrf_core.store.runs import read_json, write_json

    old = read_json(Path(path), {}) or {}
    write_json(Path(path), merge_shipped(old, data) if old else data)
    return Path(path)


def runs_of(store: RunStore, model: str, reward: str) -> list[Run]:
    """The store's own runs of this model and reward (one walk, for :func:`find` and :func:`handover_curve`)."""
    return [r for r in store.own_runs() if r.config.get("model") == model and r.config.get("reward") == reward]


def find(store: RunStore, model: str, reward: str, samples: int, exclude: str | None = None,
         rows_of=None, runs: list[Run] | None = None) -> ReferenceCurve | None:
    """DDPO's curve for this model, reward and evaluation size: from runs on disk (``runs``: already
    :func:`runs_of`), else the shipped one."""
    runs = runs_of(store, model, reward) if runs is None else runs
    curve = from_runs([r for r in runs if r.run_id != exclude], samples, rows_of)
    if curve is not None:
        return curve
    from hrf_core.models.registry import MODELS

    spec = MODELS.get(model)
    folder = Path(spec.location) if spec is not None and spec.source == "embedded" else Path(model)
    return shipped(folder, reward, samples) if folder.is_dir() else None


def handover_curve(store: RunStore, model: str, reward: str, seed, samples: int, rows_of=None,
                   runs: list[Run] | None = None) -> ReferenceCurve | None:
    """The training-free hand-over's curve for this model, reward and seed: a finished ``handover`` run (the base
    model before S, a DDPO checkpoint from S; rows from S = K to 0) evaluated on ``samples`` samples, else None.
    ``runs``: already :func:`runs_of`."""
    for run in runs_of(store, model, reward) if runs is None else runs:
        config = run.config
        if config.get("method") != Handover.name or config.get("seed") != seed \
                or int(config.get("eval_samples") or 0) != samples \
                or run.status.get("state") != "done":
            continue
        rows = [r for r in (rows_of(run) if rows_of else run.metrics()) if isinstance(r.get("reward_mean"), float)]
        if len(rows) < 2:
            continue
        source = (config.get("extra") or {}).get("source_run", "a DDPO run")
        return ReferenceCurve(source=f"hand-over of {source}", samples=samples, seeds=[
            {"seed": seed, "gain": [r["reward_mean"] - rows[0]["reward_mean"] for r in rows], **_metric_series(rows)}])
    return None
