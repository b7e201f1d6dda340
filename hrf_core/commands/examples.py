"""The example runs that ship with the app: finished duels on the visible rewards, metrics and grids only.

``examples [--only NAME ...]``: :func:`hrf_core.study.examples.generate`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command


class Examples(Command):
    name = "examples"
    help = "regenerate the example runs that ship (see python -m hrf_core examples --help)"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core.study.examples import DUELS, EXAMPLES_DIR

        parser.add_argument("--out", default=str(EXAMPLES_DIR), help=f"where the examples go (default {EXAMPLES_DIR})")
        parser.add_argument("--epochs", type=int, default=12)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--only", nargs="+", default=(), metavar="NAME",
                            help=f"retrain only these duels ({', '.join(d.name for d in DUELS)}); keep the others")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.study.examples import folder_size, generate

        if args.epochs < 1:
            raise ValueError("--epochs must be >= 1")
        folders = generate(Path(args.out), args.epochs, args.seed, tuple(args.only))
        total = sum(folder_size(f) for f in folders)
        print(f"wrote {len(folders)} example runs to {args.out} ({total / 1e6:.2f} MB)")
        return 0


COMMAND = Examples()
main = COMMAND.main
