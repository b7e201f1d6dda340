"""``measure``: the diversity measures the app shows, of a sample array, as one JSON object."""

from __future__ import annotations

import argparse
import json

from hrf_core.commands.base import Command


class Measure(Command):
    name = "measure"
    help = "the diversity measures the app shows, of a sample array, as one JSON object"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("array", help="a .npy of float32 in [0, 1], shape (n, C, H, W) (what `sample --array` "
                            "writes)")
        parser.add_argument("--labels", help="a .npy of n integers: each row's prompt (within-prompt measures)")
        parser.add_argument("--model", help="the base model the samples come from: their shape must be its images'")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.measure.evaluation import measure_files

        print(json.dumps(measure_files(args.array, args.labels, args.model)))
        return 0


COMMAND = Measure()
main = COMMAND.main
