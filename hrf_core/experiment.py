"""The paper-reproduction experiment on the embedded model, with the reviewers' ablations.

``python -m hrf_core experiment paper-digits [--seeds 0 1 2] [--tasks ...] [--epochs N]``

Every arm uses the same samples per epoch and the same number of epochs:

- ``base``: the base model, no training;
- ``ddpo``: DDPO from pure noise, every step trained;
- ``hrf-early`` / ``hrf-late``: HRF with the window [0, K/2) / [K/2, K), start ~ U per batch;
- ``hrf-sliding``: the paper's two clusters, [0, K/2) then [K/2, K), half of the epochs each;
- ``hrf-d``: the dynamic start finder;
- ``random-start`` (ablation): re-noised starts with s ~ U{0..K-1} per batch, all later steps trained;
- ``renoise-fixed`` (ablation): "DDPO from re-noised start states without sliding": every batch
  starts from re-noised states at the fixed step K/2 and trains all steps from there.

Each trained arm is evaluated every ``--eval-every`` epochs on 64 fixed-seed samples (the run
store's curve), and at the end on ``--final-samples`` (default 1,000) samples from pure noise with
fixed seeds: reward mean and std, classifier Inception Score, Vendi on classifier features and on
pixels, class-histogram entropy. ``docs/RESULTS.md`` is generated from the runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from hrf_core import REPO_ROOT
from hrf_core.config import TrainConfig
from hrf_core.evaluation import Evaluator
from hrf_core.imaging import image_grid
from hrf_core.models import BaseModel, load_base_model, resolve_device
from hrf_core.rewards import REWARDS, make_reward
from hrf_core.runs import RunStore, read_json, write_json
from hrf_core.sampling import sample_from
from hrf_core.trainer import Trainer

ARMS = ("base", "ddpo", "hrf-early", "hrf-late", "hrf-sliding", "hrf-d", "random-start", "renoise-fixed")
DEFAULT_TASKS = ("jpeg-compressibility", "jpeg-incompressibility")
FINAL_SEED = 2024
#: The metrics of the final evaluation, in table order: (key prefix, column title).
COLUMNS = (("reward_mean", "reward"), ("is_classifier", "IS (classifier)"),
           ("vendi_classifier", "Vendi (classifier)"), ("vendi_pixel", "Vendi (pixels)"),
           ("class_entropy", "class entropy (bits)"))


def arm_config(arm: str, task: str, seed: int, epochs: int, num_steps: int, **common) -> TrainConfig:
    """The TrainConfig of one trained arm (all arms share ``common``)."""
    k, half = num_steps, num_steps // 2
    arms = {
        "ddpo": dict(method="ddpo", window=(0, k)),
        "hrf-early": dict(method="hrf", window=(0, half)),
        "hrf-late": dict(method="hrf", window=(half, k)),
        "hrf-sliding": dict(method="hrf-sliding", clusters=((0, half, max(1, epochs // 2)),
                                                             (half, k, max(1, epochs - epochs // 2)))),
        "hrf-d": dict(method="hrf-d"),
        "random-start": dict(method="hrf", window=(0, k)),
        "renoise-fixed": dict(method="hrf", window=(half, k), start_mode="fixed"),
    }
    return TrainConfig(reward=task, seed=seed, epochs=epochs, num_steps=num_steps, checkpoint_every=epochs,
                       extra={"experiment": "paper-digits", "arm": arm}, **arms[arm], **common).validate()


def final_evaluation(model: BaseModel, rewards: dict, n: int, num_steps: int, evaluator: Evaluator,
                     folder: Path) -> dict:
    """Metrics of ``n`` fixed-seed samples for each task's reward; writes grid.png and final_eval.json."""
    images = sample_from(model, n, FINAL_SEED, num_steps=num_steps, eta=1.0)
    results = {task: evaluator(images, fn(images).float().cpu()) for task, fn in rewards.items()}
    folder.mkdir(parents=True, exist_ok=True)
    image_grid(images[:64], scale=2).save(folder / "grid.png")
    write_json(folder / "final_eval.json", results)
    return results


def run_experiment(args: argparse.Namespace) -> dict:
    """Train and evaluate every (task, seed, arm); returns the collected records."""
    device = resolve_device(args.device)
    store = RunStore(Path(args.out))
    common = dict(samples_per_epoch=args.samples, batch_size=args.batch_size, siblings=args.siblings, lr=args.lr,
                  eval_every=args.eval_every, eval_samples=args.eval_samples, device=str(device))
    records: list[dict] = []
    base = load_base_model(args.model, device)
    evaluator = Evaluator(base.sample_shape, device)
    started_all = time.perf_counter()
    # the base model: one sample set, rewarded for every task
    started = time.perf_counter()
    base_eval = final_evaluation(base, {t: make_reward(t) for t in args.tasks}, args.final_samples, args.steps,
                                 evaluator, Path(args.out) / "base")
    for task in args.tasks:
        for seed in args.seeds:
            records.append({"task": task, "arm": "base", "seed": seed, "final": base_eval[task], "curve": [],
                            "train_seconds": 0.0, "eval_seconds": time.perf_counter() - started,
                            "run": "base"})
    for task in args.tasks:
        for seed in args.seeds:
            for arm in args.arms:
                if arm == "base":
                    continue
                config = arm_config(arm, task, seed, args.epochs, args.steps, model=args.model, **common)
                run = store.create(config.to_dict(), name=f"{task}-{arm}-seed{seed}")
                print(f"[{time.perf_counter() - started_all:7.0f}s] {task} {arm} seed {seed}: {run.path}", flush=True)
                started = time.perf_counter()
                trainer = Trainer(config, run, base=load_base_model(args.model, device))
                trainer.train()
                train_seconds = time.perf_counter() - started
                started = time.perf_counter()
                final = final_evaluation(trainer.base, {task: trainer.reward_fn}, args.final_samples, args.steps,
                                         evaluator, run.path / "final")[task]
                records.append({"task": task, "arm": arm, "seed": seed, "final": final, "run": run.run_id,
                                "curve": run.metrics(), "train_seconds": train_seconds,
                                "eval_seconds": time.perf_counter() - started})
    summary = {"settings": {k: v for k, v in vars(args).items() if k not in ("docs",)},
               "device": str(device), "torch_threads": torch.get_num_threads(),
               "total_seconds": time.perf_counter() - started_all, "records": records}
    write_json(Path(args.out) / "summary.json", summary)
    return summary


# -- aggregation and the report ----------------------------------------------------------------------
def metric(final: dict, prefix: str) -> float | None:
    """The value of ``prefix@N`` (or ``prefix`` itself) in a final-evaluation dict."""
    if prefix in final:
        return final[prefix]
    return next((v for k, v in final.items() if k.startswith(prefix + "@")), None)


def aggregate(records: list[dict]) -> dict:
    """{task: {arm: {column: (mean, std, n)}, ...}} over seeds, plus wall times."""
    table: dict = {}
    for task in dict.fromkeys(r["task"] for r in records):
        table[task] = {}
        for arm in dict.fromkeys(r["arm"] for r in records if r["task"] == task):
            rows = [r for r in records if r["task"] == task and r["arm"] == arm]
            entry = {}
            for prefix, _ in COLUMNS:
                values = [v for v in (metric(r["final"], prefix) for r in rows) if v is not None]
                if values:
                    entry[prefix] = (statistics.fmean(values), statistics.pstdev(values), len(values))
            entry["reward_spread"] = (statistics.fmean(r["final"]["reward_std"] for r in rows), 0.0, len(rows))
            entry["wall_seconds"] = (statistics.fmean(r["train_seconds"] + r["eval_seconds"] for r in rows),
                                     0.0, len(rows))
            table[task][arm] = entry
    return table


def write_figure(records: list[dict], table: dict, path: Path) -> None:
    """Reward vs classifier-feature Vendi: the final points (mean ± std over seeds) and the in-run curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(table)
    has_classifier = any("vendi_classifier" in entry for arms in table.values() for entry in arms.values())
    x_key = "vendi_classifier" if has_classifier else "vendi_pixel"
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.2 * len(tasks), 4.8), squeeze=False)
    colors = dict(zip(ARMS, plt.get_cmap("tab10").colors, strict=False))
    for ax, task in zip(axes[0], tasks, strict=True):
        for record in records:
            if record["task"] != task or not record["curve"]:
                continue
            points = [(metric(row, x_key), row["reward_mean"]) for row in record["curve"]
                      if "reward_mean" in row and metric(row, x_key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, "-", color=colors[record["arm"]], alpha=0.25, lw=1)
        for arm, entry in table[task].items():
            if x_key not in entry:
                continue
            (x, xerr, _), (y, yerr, _) = entry[x_key], entry["reward_mean"]
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="*" if arm == "base" else "o", ms=12 if arm == "base" else 7,
                        color="black" if arm == "base" else colors[arm], label=arm, capsize=3)
        ax.set_title(task)
        ax.set_xlabel(f"Vendi score on {'classifier features' if has_classifier else 'pixels'} (higher = more diverse)")
        ax.set_ylabel("mean reward")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.suptitle("Reward vs diversity. Markers: final evaluation (mean ± std over seeds). Lines: in-run evaluations on\n"
                 "fewer samples (64), whose Vendi reads lower than on the final set: compare lines with lines.")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(entry: dict, key: str, digits: int = 3) -> str:
    if key not in entry:
        return "–"
    mean, std, n = entry[key]
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def write_report(summary: dict, docs: Path, out: Path) -> Path:
    """docs/RESULTS.md plus docs/results/{summary.json, reward_vs_vendi.png, grids}."""
    records = summary["records"]
    table = aggregate(records)
    results = docs / "results"
    results.mkdir(parents=True, exist_ok=True)
    write_figure(records, table, results / "reward_vs_vendi.png")
    grids = {}
    for record in records:
        if record["seed"] != summary["settings"]["seeds"][0]:
            continue
        source = out / "base" / "grid.png" if record["arm"] == "base" else out / record["run"] / "final" / "grid.png"
        if source.is_file():
            target = results / f"grid-{record['task']}-{record['arm']}.png"
            target.write_bytes(source.read_bytes())
            grids[(record["task"], record["arm"])] = target.name
    compact = {"settings": summary["settings"], "total_seconds": summary["total_seconds"],
               "device": summary["device"], "table": table,
               "curves": [{"task": r["task"], "arm": r["arm"], "seed": r["seed"],
                           "points": [{k: row.get(k) for k in row if k.startswith(("epoch", "reward_mean", "vendi",
                                                                                     "is_", "class_"))}
                                      for row in r["curve"]]} for r in records]}
    write_json(results / "summary.json", compact)
    settings = summary["settings"]
    seeds = " ".join(str(s) for s in settings["seeds"])
    command = (f"python -m hrf_core experiment paper-digits --seeds {seeds} --tasks {' '.join(settings['tasks'])} "
               f"--epochs {settings['epochs']} --lr {settings['lr']:g}")
    lines = [
        "# Results: does HRF keep diversity where DDPO collapses it? (embedded digits model)",
        "",
        "Generated by `hrf_core.experiment` from the runs; regenerate with:",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Setting: `{settings['model']}`, K = {settings['steps']} DDIM steps, eta = 1, {settings['samples']} samples "
        f"per epoch for every arm, {settings['epochs']} epochs, AdamW lr {settings['lr']:g}, seeds {seeds}. Final evaluation: "
        f"{settings['final_samples']} samples from pure noise with a fixed seed (the same noise for every arm). "
        f"Device: {summary['device']} ({summary.get('torch_threads')} threads); total wall time "
        f"{summary['total_seconds'] / 60:.1f} min. Mean ± std over seeds where there are several.",
        "",
        "![reward vs Vendi](results/reward_vs_vendi.png)",
        "",
    ]
    for task, arms in table.items():
        lines += [f"## {task}", "", "| arm | " + " | ".join(title for _, title in COLUMNS) +
                  " | reward spread | wall time (s) |", "|---" * (len(COLUMNS) + 3) + "|"]
        for arm, entry in arms.items():
            cells = [fmt(entry, prefix) for prefix, _ in COLUMNS]
            lines.append(f"| {arm} | " + " | ".join(cells) + f" | {fmt(entry, 'reward_spread')} | "
                         f"{entry['wall_seconds'][0]:.0f} |")
        lines += ["", " ".join(f"![{arm}](results/{grids[(task, arm)]})" for arm in arms if (task, arm) in grids),
                  "", "Grids, left to right: " + ", ".join(arm for arm in arms if (task, arm) in grids) + ".", ""]
    notes = docs / "results" / "reading.md"
    lines += ["## Reading", ""]
    lines += [notes.read_text().strip() if notes.is_file() else "_No reading written yet._", ""]
    report = docs / "RESULTS.md"
    report.write_text("\n".join(lines))
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hrf_core experiment", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=("paper-digits", "frontier-digits"),
                        help="the experiment (frontier-digits: see python -m hrf_core experiment frontier-digits -h)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (every arm)")
    parser.add_argument("--samples", type=int, default=32, help="samples per epoch (every arm)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--siblings", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40, help="DDIM steps K")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-samples", type=int, default=64, help="in-run evaluation samples")
    parser.add_argument("--final-samples", type=int, default=1000)
    parser.add_argument("--model", default="digits16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/paper-digits", help="run store folder of the experiment")
    parser.add_argument("--docs", default=str(REPO_ROOT / "docs"), help="where RESULTS.md and results/ go")
    parser.add_argument("--report-only", action="store_true", help="regenerate the report from --out/summary.json")
    return parser


def cli_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    if argv and argv[0] == "frontier-digits":
        from hrf_core import frontier_experiment

        return frontier_experiment.cli_main(argv)
    args = build_parser().parse_args(argv)
    for task in args.tasks:
        if task not in REWARDS:
            raise ValueError(f"unknown task {task!r}; choose from {', '.join(REWARDS)}")
        ok, reason = REWARDS[task].available()
        if not ok:
            raise ValueError(f"task {task!r} is unavailable: {reason}")
    if args.epochs < 1 or args.final_samples < 2:
        raise ValueError("--epochs must be >= 1 and --final-samples >= 2")
    if args.report_only:
        summary = read_json(Path(args.out) / "summary.json")
        if summary is None:
            raise ValueError(f"no summary.json in {args.out}: run the experiment first")
    else:
        summary = run_experiment(args)
    report = write_report(summary, Path(args.docs), Path(args.out))
    print(f"wrote {report} ({summary['total_seconds'] / 60:.1f} min)")
    return 0
