"""``base-metrics``: evaluate a base model and save the metrics beside it."""

from __future__ import annotations

import argparse

from hrf_core.commands.base import Command


class BaseMetrics(Command):
    name = "base-metrics"
    help = "evaluate a base model and save the metrics beside it"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", default="digits16", help="registry name or local diffusers folder")
        parser.add_argument("--rewards", nargs="+", default=["jpeg-compressibility", "jpeg-incompressibility"])
        parser.add_argument("--device", default="cpu")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.config import TrainConfig
        from hrf_core.measure.evaluation import write_base_metrics

        c = TrainConfig()
        print(write_base_metrics(args.model, args.rewards, c.num_steps, c.eval_eta, c.eval_samples, c.eval_seed,
                                 args.device))
        return 0


COMMAND = BaseMetrics()
main = COMMAND.main
