"""Diagnostic: HRF checkpoints sampled only inside their trained window, against early-stopped DDPO.

    python scripts/window_only.py --runs RUN_STORE [--tasks symmetry ...] [--epoch 24] [--json out.json]

An HRF run trains steps >= its window start s only, yet its evaluations sample every step with the
fine-tuned network. Here each HRF run of a ``frontier-digits`` store is sampled again on the
experiment's own evaluation set (same noise seed and sample count) with hand-over at S = s: the
base model for steps < s, the checkpoint from s on. Each point, "everywhere" (the run's own
evaluation) and "window only", is placed against the same seed's DDPO trajectory at the same reward
gain (IS Δ, as in docs/RESULTS.md). One checkpoint per run: point estimates, no interval.
Prints a Markdown table (mean over seeds, seed range); about 20 s per run on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere as a script

from hrf_core.measure.metrics import evaluate_samples, metric_key
from hrf_core.rewards.registry import make_reward
from hrf_core.rl.sampling import sample_images
from hrf_core.store.runs import Run
from hrf_core.study.arms import run_name
from hrf_core.study.frontier import crossing, interpolate, load_trajectory

ARMS = ("hrf[20,40)", "hrf[30,40)", "hrf[20,40)/image", "hrf[30,40)/image")


def delta_vs_ddpo(ddpo, gain: float, value: float, name: str = "is_classifier") -> float | None:
    """``value`` minus the same seed's DDPO ``name`` at the same reward gain; None beyond DDPO's reach."""
    at = crossing(ddpo.gains, gain)
    return None if at is None else value - interpolate(ddpo.metrics[name], at)


def measure(store: Path, task: str, arm: str, seed: int, epoch: int, handover: int | None = None,
            metric: str = "is", embedding: str = "classifier") -> dict | None:
    """One HRF run's final point sampled everywhere (its own evaluation) and window-only.

    ``handover``: the step the checkpoint takes over at (default: the run's window start s); None if the
    run, its checkpoint or its DDPO partner is missing, or the run has no fixed window. ``metric`` on
    ``embedding`` (``metrics.metric_key``): the diversity figure, Inception Score of the digits classifier by default.
    """
    run_dir, ddpo_dir = store / run_name(task, arm, seed), store / run_name(task, "ddpo", seed)
    checkpoint = Run(run_dir).checkpoint_dir(epoch)
    if not checkpoint.is_dir() or not ddpo_dir.is_dir():
        return None
    config = Run(run_dir).config
    if config.get("method") != "hrf" or not config.get("window"):
        return None
    own, ddpo = load_trajectory(Run(run_dir)), load_trajectory(Run(ddpo_dir))
    n, seed_eval = own.eval_samples, int(config["eval_seed"])
    base_reward = next(r["reward_mean"] for r in Run(ddpo_dir).metrics() if "reward_mean" in r)
    images = sample_images(str(checkpoint), n=n, seed=seed_eval, num_steps=int(config["num_steps"]),
                           eta=float(config["eval_eta"]), device="cpu", early=config["model"],
                           handover=int(config["window"][0]) if handover is None else handover)
    m = evaluate_samples(images, make_reward(task)(images), embeddings=(embedding,))
    key = metric_key(metric, embedding, n)
    name = key.split("@")[0]
    final = float(ddpo.gains[-1])
    i = own.epochs.index(epoch)
    g_all, v_all = float(own.gains[i]), float(own.metrics[name][i])
    g_win, v_win = m["reward_mean"] - base_reward, m[key]
    return {"task": task, "arm": arm, "seed": seed,
            "everywhere": [g_all / final, v_all, delta_vs_ddpo(ddpo, g_all, v_all, name)],
            "window_only": [g_win / final, v_win, delta_vs_ddpo(ddpo, g_win, v_win, name)]}


def summary(rows: list[dict], label: str = "IS") -> list[str]:
    """A Markdown table: per task and arm, the mean over seeds and the seed range of the Δ."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["arm"])].append(row)
    lines = [f"| task | arm | sampled everywhere: gain (% of DDPO's), {label}, {label} Δ "
             f"| window only: gain, {label}, {label} Δ |",
             "|---|---|---|---|"]

    def cell(rs: list[dict], key: str) -> str:
        gain, is_ = np.mean([r[key][0] for r in rs]) * 100, np.mean([r[key][1] for r in rs])
        d = [r[key][2] for r in rs if r[key][2] is not None]
        delta = f"{np.mean(d):+.2f} ({min(d):+.2f} to {max(d):+.2f})" if d else "beyond DDPO"
        return f"{gain:+.0f}%, {is_:.2f}, {delta}" + ("" if len(d) == len(rs) else f" ({len(d)}/{len(rs)} seeds)")

    for (task, arm), rs in groups.items():
        lines.append(f"| {task} | {arm} | {cell(rs, 'everywhere')} | {cell(rs, 'window_only')} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, type=Path, help="a frontier-digits run store")
    parser.add_argument("--tasks", nargs="+", default=["symmetry", "digit:3", "ink", "jpeg-compressibility",
                                                        "jpeg-incompressibility"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epoch", type=int, default=24, help="the checkpoint epoch (default 24, the last)")
    parser.add_argument("--metric", default="is", help="diversity metric: is or vendi (default is)")
    parser.add_argument("--embedding", default="classifier", help="its embedding (default classifier)")
    parser.add_argument("--json", type=Path, help="also write the per-run points here")
    args = parser.parse_args(argv)
    rows = []
    for task in args.tasks:
        for arm in ARMS:
            for seed in args.seeds:
                row = measure(args.runs, task, arm, seed, args.epoch, metric=args.metric, embedding=args.embedding)
                if row is not None:
                    rows.append(row)
                    print(f"{task} {arm} seed {seed}: {row}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print("\n".join(summary(rows, "IS" if args.metric == "is" else f"{args.metric} ({args.embedding})")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
