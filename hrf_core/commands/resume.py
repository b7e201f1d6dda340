"""``resume``: continue a run from its latest (or a given) checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command


class Resume(Command):
    name = "resume"
    help = "continue a run from its latest (or a given) checkpoint"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core.share import trackers

        parser.add_argument("run_dir", help="the run folder, e.g. runs/20261126-101500-hrf-jpeg-compressibility")
        parser.add_argument("--checkpoint", help="a checkpoint folder of that run (default: the latest)")
        parser.add_argument("--epochs", type=int, help="new total number of epochs")
        parser.add_argument("--report-to", choices=trackers.TRACKERS, action="append",
                            help="also log to this tracker (repeat): trackio, tensorboard or wandb")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.commands.training import train
        from hrf_core.rl.distributed import init_from_env
        from hrf_core.rl.launch import continue_run, prepare_reward
        from hrf_core.share import trackers
        from hrf_core.store import liveness
        from hrf_core.store.runs import open_run

        if args.epochs is not None and args.epochs <= 0:
            raise ValueError(f"epochs must be >= 1, got {args.epochs}")
        run = open_run(args.run_dir)
        report_to = trackers.require(args.report_to)
        prepare_reward(run.config.get("reward", ""), run.config.get("model", ""))
        dist, device = init_from_env(run.config.get("device", "auto"))
        if dist.is_main:  # held before its metrics are truncated; a run another process trains is refused
            liveness.hold(run.path)
        launch = continue_run(run, args.epochs, Path(args.checkpoint) if args.checkpoint else None,
                              report_to=report_to, device=device, dist=dist)
        return train(launch)


COMMAND = Resume()
main = COMMAND.main
