"""Compare runs at matched reward and at matched compute, against DDPO's own earlier epochs.

A method that raises the reward slowly looks diverse after N epochs for free, so every comparison
here is made where the runs have the same reward gain (or the same compute) as the DDPO run of the
same model, reward and seed: that DDPO run's evaluated epochs are the early-stopping frontier.

For a run, the reward gain g_e = reward_e - reward_0 and the diversity metrics m_e are known at its
evaluated epochs. At a level L (a reward gain, or a compute count), the read-off is the linear
interpolation at the first crossing: the first e with g_e < L <= g_{e+1} gives
w = (L - g_e) / (g_{e+1} - g_e) and m(L) = (1 - w) m_e + w m_{e+1}. A run that never reaches L has
no value there ("not reached").

Uncertainty. Intervals are seed-level: the 95% interval of the mean over seeds is a Student t-interval on the
per-seed values (per-seed differences to the same seed's DDPO for a ``delta``, so the pairing of the fixed-seed
evaluation samples is kept), and a percentile bootstrap over seeds only from 8 seeds on (:func:`seed_interval`).
One seed gives no interval and no "above" or "below" call. Resampling the evaluation samples within a seed (the
earlier intervals) left 3 seeds with 10 distinct resamples and claimed more than they carry. Every cell carries its
n; a call from fewer than :data:`MIN_HEADLINE_SEEDS` seeds is not a headline claim.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrf_core import methods
from hrf_core.methods import Handover
from hrf_core.store.runs import Run, is_run_folder

#: Metrics read off at matched reward, by key prefix (the row keys end in ``@N``): diversity, and a prompted run's
#: alignment to its prompts.
METRIC_PREFIXES = ("is_", "vendi_", "class_entropy", "prompt_alignment")
#: Metrics computed from an older run's saved arrays when its rows lack them (the calibrated HOG measure and the
#: prompt alignment came after).
BACKFILLED = ("vendi_hog", "vendi_hog_within", "prompt_alignment", "vendi_hog_within_on_prompt")
#: The Δs a matched-reward row holds, by key: to the same seed's early-stopped DDPO, and (reward levels only: the
#: hand-over spends no compute of its own) to the same seed's hand-over.
VS_DDPO, VS_HANDOVER = "delta_vs_ddpo", "delta_vs_handover"
DEFAULT_FRACTIONS = (0.25, 0.5, 0.75)
DEFAULT_COMPUTE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
INTERVAL_NOTE = ("95% seed-level intervals of the mean: a t-interval on the per-seed values (per-seed Δ for a "
                 "difference) below 8 seeds, a bootstrap over the seeds from 8; none with 1 seed")


# ---------------------------------------------------------------------------------------- trajectories
@dataclass
class Trajectory:
    """One run's evaluated points: reward gain, compute and metrics per evaluation (x ascending in time)."""

    run: Run
    config: dict
    arm: str
    seed: int
    epochs: list[int]
    gains: np.ndarray  # (E,) reward_e - reward_0
    compute: np.ndarray  # (E,) cumulative UNet forward-equivalents
    metrics: dict[str, np.ndarray]  # name (without @N) -> (E,)
    eval_samples: int
    eval_files: list[Path | None] = field(default_factory=list)
    splits: list[int | None] = field(default_factory=list)  # a hand-over run's S per point (else None)
    prompts: list[list[str] | None] = field(default_factory=list)  # each point's prompts, in their index order
    _arrays: dict = field(default_factory=dict, repr=False)

    def arrays(self, index: int) -> dict | None:
        """The saved per-sample arrays of evaluation ``index`` (numpy), cached."""
        if index not in self._arrays:
            path = self.eval_files[index]
            if path is None or not path.is_file():
                self._arrays[index] = None
            else:
                from safetensors.numpy import load_file

                from hrf_core.measure.metrics import prompt_classes, with_derived_features

                arrays = with_derived_features(load_file(str(path)))
                prompts = self.prompts[index] if index < len(self.prompts) else None
                if "prompt_class" not in arrays and prompts and "probs.classifier" in arrays:
                    classes = prompt_classes(prompts, arrays["probs.classifier"].shape[1])
                    if classes is not None:  # an evaluation saved before prompt_class was
                        arrays["prompt_class"] = classes
                self._arrays[index] = arrays
        return self._arrays[index]

    def backfill(self, names: Iterable[str]) -> None:
        """Add the metrics ``names`` the rows lack (an evaluation logged before a measure existed) from the saved
        arrays, on all the samples: NaN at a point without them. Only a metric every evaluation can give is added."""
        missing = [name for name in names if name not in self.metrics]
        points = [self.arrays(i) for i in range(len(self.epochs))] if missing else []
        for name in missing:
            values = np.array([math.nan if a is None else metric_from_arrays(name, a, np.arange(len(a["rewards"])))
                               for a in points])
            if np.isfinite(values).all():
                self.metrics[name] = values


def metric_name(key: str) -> str:
    """``vendi_classifier@256`` -> ``vendi_classifier``."""
    return key.split("@", 1)[0]


def load_trajectory(run: Run) -> Trajectory | None:
    """A run's evaluated points (epoch 0 = the base model first); None if it has fewer than two."""
    config = run.config
    rows = [r for r in run.metrics() if isinstance(r.get("reward_mean"), (int, float))]
    rows.sort(key=lambda r: r.get("order", r.get("epoch", 0)))
    if len(rows) < 2:
        return None
    keys = sorted({k for r in rows for k in r if "@" in k and k.startswith(METRIC_PREFIXES)})
    base_reward = rows[0]["reward_mean"]
    n = int(rows[0].get("eval_samples") or (int(keys[0].split("@")[1]) if keys else 0))
    metrics = {metric_name(k): np.array([float(r.get(k, math.nan)) for r in rows]) for k in keys}
    trajectory = Trajectory(
        run=run, config=config, arm=methods.arm_label(config), seed=int(config.get("seed", 0)),
        epochs=[int(r.get("epoch", 0)) for r in rows],
        gains=np.array([r["reward_mean"] - base_reward for r in rows]),
        compute=np.array([float(r.get("compute", 0.0)) for r in rows]),
        metrics=metrics, eval_samples=n,
        eval_files=[Path(r["eval_file"]) if r.get("eval_file") else run.eval_path(int(r.get("epoch", 0)))
                    for r in rows],
        splits=[int(r["handover"]) if isinstance(r.get("handover"), int) else None for r in rows],
        prompts=[list(r["per_prompt"]) if isinstance(r.get("per_prompt"), dict) else None for r in rows])
    trajectory.backfill(BACKFILLED)
    return trajectory


def crossing(xs: np.ndarray, level: float) -> tuple[int, float] | None:
    """(i, w) of the first crossing xs[i] < level <= xs[i+1], w in (0, 1]; None if never reached.

    A level at or below xs[0] reads the first point (i = 0, w = 0).
    """
    if level <= xs[0]:
        return 0, 0.0
    for i in range(len(xs) - 1):
        if xs[i] < level <= xs[i + 1]:
            return i, float((level - xs[i]) / (xs[i + 1] - xs[i]))
    return None


def interpolate(values: np.ndarray, at: tuple[int, float]) -> float:
    i, w = at
    if w == 0.0:
        return float(values[i])
    return float((1 - w) * values[i] + w * values[i + 1])


# ------------------------------------------------------------------------------------- recomputed metrics
def metric_from_arrays(name: str, arrays: dict, index: np.ndarray) -> float:
    """Recompute metric ``name`` (e.g. ``vendi_classifier``) on the samples ``index`` of saved arrays.

    Uses :mod:`hrf_core.measure.metrics` (vendi-score underneath), the functions the trainer's evaluation uses.
    NaN when the arrays lack what the metric needs.
    """
    from hrf_core.measure import metrics

    if name == "reward_mean":
        return float(arrays["rewards"][index].mean())
    if name == "prompt_alignment":
        return metrics.prompt_alignment(arrays, index)
    if name.endswith(metrics.WITHIN + metrics.ON_PROMPT):
        return metrics.within_prompt(name[: -len(metrics.WITHIN + metrics.ON_PROMPT)], arrays, index, on_prompt=True)
    if name.endswith(metrics.WITHIN):
        return metrics.within_prompt(name[: -len(metrics.WITHIN)], arrays, index)
    if name.startswith("vendi_") and "_q" not in name:
        embedding = name[len('vendi_'):]
        feats = arrays.get(f"features.{embedding}")
        return metrics.embedding_vendi(embedding, feats[index]) if feats is not None else math.nan
    if name.startswith("is_"):
        probs = arrays.get(f"probs.{name[len('is_'):]}")
        return metrics.inception_score(probs[index])[0] if probs is not None else math.nan
    if name == "class_entropy":
        probs = arrays.get("probs.classifier")
        return metrics.class_entropy(probs[index].argmax(1), probs.shape[1]) if probs is not None else math.nan
    return math.nan


# ------------------------------------------------------------------------------------------ read-offs
@dataclass
class ReadOff:
    """One run at one level: the interpolated values (empty where not reached)."""

    reached: bool
    values: dict[str, float]


def read_off(trajectory: Trajectory, level: float, axis: str, names: Iterable[str]) -> ReadOff:
    """Metrics of ``trajectory`` where its reward gain (``axis="reward"``) or compute reaches ``level``."""
    xs = trajectory.gains if axis == "reward" else trajectory.compute
    at = crossing(xs, level)
    if at is None:
        return ReadOff(False, {})
    values = {"epoch": interpolate(np.array(trajectory.epochs, dtype=float), at),
              "compute": interpolate(trajectory.compute, at), "gain": interpolate(trajectory.gains, at)}
    for name in names:
        if name in trajectory.metrics:
            values[name] = interpolate(trajectory.metrics[name], at)
    return ReadOff(True, values)


#: A claim the reading may make a headline of needs at least this many seeds.
MIN_HEADLINE_SEEDS = 5
#: Below this many seeds the interval is a t-interval; from it on, a percentile bootstrap over the seeds.
BOOTSTRAP_MIN_SEEDS = 8
LEVEL = 0.95


def seed_interval(values: list[float], level: float = LEVEL, seed: int = 0) -> list[float] | None:
    """The ``level`` interval of the mean of per-seed values (e.g. per-seed Δ to DDPO): a Student t-interval
    (``scipy.stats.t``) below :data:`BOOTSTRAP_MIN_SEEDS` seeds, else a percentile bootstrap over the seeds
    (``scipy.stats.bootstrap``); None with fewer than 2 seeds."""
    from scipy import stats

    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    n = len(x)
    if n < 2:
        return None
    if n >= BOOTSTRAP_MIN_SEEDS:
        res = stats.bootstrap((x,), np.mean, confidence_level=level, method="percentile", n_resamples=4000,
                              random_state=np.random.default_rng(seed))
        return [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))
    if sem == 0.0:
        return [mean, mean]
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    return [float(low), float(high)]


def summarise(estimates: list[float]) -> dict:
    """Mean, std and n over seeds, and the 95% seed-level interval of the mean (:func:`seed_interval`)."""
    out = {"mean": statistics.fmean(estimates), "std": statistics.pstdev(estimates) if len(estimates) > 1 else 0.0,
           "n": len(estimates)}
    ci = seed_interval(estimates)
    if ci is not None:
        out["ci"] = ci
    return out


# ---------------------------------------------------------------------------------------------- frontier
def group_runs(trajectories: list[Trajectory]) -> dict[tuple[str, str], list[Trajectory]]:
    groups: dict[tuple[str, str], list[Trajectory]] = {}
    for t in trajectories:
        groups.setdefault((str(t.config.get("model")), str(t.config.get("reward"))), []).append(t)
    return groups


def is_reference(trajectory: Trajectory) -> bool:
    """DDPO with no KL penalty and no diversity bonus: the early-stopping frontier the other arms are compared
    with."""
    config = trajectory.config
    reference = methods.reference().name
    return config.get("method") == reference and not float(config.get("kl_coef") or 0.0) and \
        not float(config.get("diversity_weight") or 0.0) and trajectory.arm == reference


def compare_group(trajectories: list[Trajectory], fractions=DEFAULT_FRACTIONS,
                  compute_fractions=DEFAULT_COMPUTE_FRACTIONS) -> dict:
    """The matched-reward and matched-compute comparison of one (model, reward) group."""
    references = {t.seed: t for t in trajectories if is_reference(t)}
    if not references:
        raise ValueError("no DDPO reference run (method ddpo, kl_coef 0) in this group: the frontier needs one "
                         "per seed")
    sizes = {t.eval_samples for t in trajectories}
    n = max(sizes)
    names = sorted({k for t in trajectories for k in t.metrics})
    final_gain = statistics.fmean(float(t.gains[-1]) for t in references.values())
    final_compute = statistics.fmean(float(t.compute[-1]) for t in references.values())
    # Each arm's Δ at matched reward, seed by seed: to early-stopped DDPO (the frontier) and to the training-free
    # hand-over (the method to beat: its gain grows as its split S moves earlier).
    baselines = {VS_DDPO: references, VS_HANDOVER: {t.seed: t for t in trajectories if t.arm == Handover.name}}
    arms: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        arms.setdefault(t.arm, []).append(t)
    result = {
        "eval_samples": n,
        "reference": {"arm": methods.reference().name, "seeds": sorted(references), "final_gain": final_gain,
                      "final_compute": final_compute},
        "reward_levels": [{"fraction": f, "gain": f * final_gain} for f in fractions],
        "compute_levels": [{"fraction": f, "compute": f * final_compute} for f in compute_fractions],
        "arms": {},
    }
    for arm, runs in arms.items():
        entry: dict = {"seeds": sorted(t.seed for t in runs), "runs": [t.run.run_id for t in runs],
                       "method": runs[0].config.get("method")}
        for axis, levels in (("reward", [lv["gain"] for lv in result["reward_levels"]]),
                             ("compute", [lv["compute"] for lv in result["compute_levels"]])):
            rows = []
            for level in levels:
                own: dict = {}
                deltas: dict[str, dict] = {key: {} for key in baselines}
                reached = []
                for t in runs:
                    mine = read_off(t, level, axis, names)
                    if not mine.reached:
                        continue
                    reached.append(t.seed)
                    for name in ["epoch", "compute", "gain", *names]:
                        if name in mine.values:
                            own.setdefault(name, []).append(mine.values[name])
                    for key, by_seed in baselines.items():
                        baseline = by_seed.get(t.seed)
                        if baseline is None or (key == VS_HANDOVER and axis != "reward"):
                            continue
                        theirs = read_off(baseline, level, axis, names)
                        for name in names:
                            if theirs.reached and name in mine.values and name in theirs.values:
                                deltas[key].setdefault(name, []).append(mine.values[name] - theirs.values[name])
                row = {"level": level, "reached": len(reached), "n": len(runs), "seeds": reached,
                       "values": {k: summarise(v) for k, v in own.items()},
                       **{key: {k: summarise(v) for k, v in d.items()} for key, d in deltas.items()}}
                rows.append(row)
            entry[f"matched_{axis}"] = rows
        last = {name: [float(t.metrics[name][-1]) for t in runs if name in t.metrics] for name in names}
        falls = [float(t.gains.max() - t.gains[-1]) for t in runs]  # reward lost since the run's best evaluation
        entry["final"] = {"gain": summarise([float(t.gains[-1]) for t in runs]),
                          "fall": {**summarise(falls), "max": max(falls)},
                          "compute": summarise([float(t.compute[-1]) for t in runs]),
                          "epochs": summarise([float(t.epochs[-1]) for t in runs]),
                          **{k: summarise(v) for k, v in last.items() if v}}
        result["arms"][arm] = entry
    handovers = {t.seed: t for t in trajectories if t.arm == Handover.name}
    for arm, runs in arms.items():
        splits = {methods.window_only_split(t.config) for t in runs}
        if handovers and len(splits) == 1 and None not in splits:
            result["arms"][arm]["vs_handover"] = versus_handover(runs, handovers, splits.pop(), names)
    return result


def versus_handover(runs: list[Trajectory], handovers: dict[int, Trajectory], split: int, names: list[str]) -> dict:
    """A window-only run [S, K) against the training-free hand-over at the same S, seed by seed.

    Both sample steps < S with the base model; they differ in steps >= S (the window trained from the base
    against DDPO's final checkpoint). ``delta``: metric of the window-only run where its reward gain first
    reaches the hand-over's gain at S, minus the hand-over's (matched reward; seeds that never reach it are
    left out and counted in ``reached``); ``delta_final``: its final evaluation minus the hand-over's
    (different rewards). Intervals as for the DDPO deltas (seed-level, on the per-seed Δ).
    """
    handover_gain, final_gain, reached = [], [], 0
    matched: dict[str, list[float]] = {}
    final: dict[str, list[float]] = {}
    for t in runs:
        h = handovers.get(t.seed)
        if h is None or split not in h.splits:
            continue
        at = h.splits.index(split)
        handover_gain.append(float(h.gains[at]))
        final_gain.append(float(t.gains[-1]))
        mine = read_off(t, float(h.gains[at]), "reward", names)
        reached += mine.reached
        for name in names:
            if name not in t.metrics or name not in h.metrics:
                continue
            final.setdefault(name, []).append(float(t.metrics[name][-1] - h.metrics[name][at]))
            if mine.reached and name in mine.values:
                matched.setdefault(name, []).append(mine.values[name] - float(h.metrics[name][at]))
    if not handover_gain:
        return {"split": split, "n": 0}
    return {"split": split, "n": len(handover_gain), "reached": reached,
            "handover_gain": summarise(handover_gain), "final_gain": summarise(final_gain),
            "delta": {k: summarise(v) for k, v in matched.items()},
            "delta_final": {k: summarise(v) for k, v in final.items()}}


def frontier(run_dirs: Iterable[str | Path], fractions=DEFAULT_FRACTIONS,
             compute_fractions=DEFAULT_COMPUTE_FRACTIONS) -> dict:
    """Compare all runs found in ``run_dirs`` (run folders, or folders of runs), per (model, reward)."""
    trajectories = [t for run in find_runs(run_dirs) if (t := load_trajectory(run)) is not None]
    if not trajectories:
        raise ValueError("no evaluated runs found")
    groups = {}
    for (model, reward), members in group_runs(trajectories).items():
        groups[f"{model}|{reward}"] = {"model": model, "reward": reward,
                                       **compare_group(members, fractions, compute_fractions)}
    return {"groups": groups, "interval": INTERVAL_NOTE}


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Run folders among ``paths`` and their sub-folders (one level and two levels down)."""
    found: dict[Path, Run] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise ValueError(f"{raw} is not a folder")
        candidates = [path, *sorted(path.iterdir()), *sorted(p for d in path.iterdir() if d.is_dir()
                                                              for p in d.iterdir())]
        for candidate in candidates:
            if candidate.is_dir() and is_run_folder(candidate) and Run(candidate).metrics_path.is_file():
                found.setdefault(candidate.resolve(), Run(candidate.resolve()))
    return list(found.values())
