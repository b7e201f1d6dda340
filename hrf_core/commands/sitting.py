"""The sitting every experiment shares: its flags (:func:`add_sitting_arguments`: seeds, schedule, batches, model,
device, the backend its units run on, where the runs and the report go) and how its units run
(:func:`run_sitting`). Each experiment's command (``frontier_digits``, ``prompts_digits``) adds its own flags and
builds its settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose where an experiment's units run (read by
    :func:`hrf_core.study.backends.backend_from_arguments`)."""
    from hrf_core.study.backends import BACKENDS, RAY_INSTALL

    parser.add_argument("--backend", choices=BACKENDS, default="pool",
                        help=f"where units run: processes on this machine (pool) or a Ray cluster (ray; {RAY_INSTALL})")
    parser.add_argument("--address", help="the Ray cluster to join (default: $RAY_ADDRESS, else the one `ray start` "
                                          "started on this machine)")
    parser.add_argument("--jobs", type=int,
                        help="units at once: pool processes (default 1); on Ray a cap (default: what the cluster "
                             "holds)")
    parser.add_argument("--threads", type=int,
                        help="torch threads per unit, and on Ray its CPUs (default: pool cores / jobs, Ray 1)")
    parser.add_argument("--gpus-per-unit", type=float,
                        help="GPUs each Ray task asks for; a fraction shares one (default: 0 with --device cpu, "
                             "else 1)")
    parser.add_argument("--shard", help="run only the i-th of N disjoint parts of the units, as i/N (default: "
                                        "a SLURM job array's task, from $SLURM_ARRAY_TASK_ID)")


def add_sitting_arguments(parser: argparse.ArgumentParser, name: str, defaults) -> None:
    """The flags every experiment shares: seeds, schedule, batches, model, device, backend, where the runs and the
    report go. ``defaults``: the experiment's settings dataclass instance."""
    from hrf_core import REPO_ROOT

    parser.add_argument("--seeds", type=int, nargs="+", default=defaults.seeds)
    parser.add_argument("--tasks", nargs="+", default=defaults.tasks)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--eval-samples", type=int, default=defaults.eval_samples)
    parser.add_argument("--samples", type=int, default=defaults.samples, help="samples per epoch (every arm)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--siblings", type=int, default=defaults.siblings)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="DDIM steps K")
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--device", default="cpu")
    add_backend_arguments(parser)
    parser.add_argument("--out", default=f"runs/{name}", help="the experiment's run store")
    parser.add_argument("--docs", default=str(REPO_ROOT / "docs"), help="where RESULTS.md and results/ go")
    parser.add_argument("--report-only", action="store_true", help="regenerate the report from the runs in --out")


def run_sitting(args: argparse.Namespace, settings, name: str, build=None, report_to: tuple[str, ...] = ()) -> bool:
    """Run this sitting's units on the backend the flags name (unless ``--report-only``). Returns whether the
    report should be written now: not after one shard, which ends before the others."""
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.report_only:
        return True
    from hrf_core.study.backends import backend_from_arguments
    from hrf_core.study.sweep import parse_shard
    from hrf_core.study.units import run_experiment

    out = Path(args.out).resolve()  # a worker on another node or in another folder finds the same store
    shard = parse_shard(args.shard)
    with backend_from_arguments(args, out) as backend:
        progress = run_experiment(settings, out, backend, args.device, report_to, shard, build=build)
    failed = [unit_name for unit_name, unit in progress["units"].items() if unit.get("error")]
    if failed:
        print(f"{len(failed)} units failed: {', '.join(failed)}")
    if shard is not None:  # shards end at different times: one report, once, over the shared store
        print(f"shard {shard[0]}/{shard[1]} finished; once every shard has, merge them with: python -m hrf_core "
              f"experiment {name} --report-only --out {out} (and this run's settings)")
        return False
    return True
