"""Replay a run as an animated GIF: one frame per evaluated epoch.

``animate RUN_DIR --out run.gif``: :func:`hrf_core.share.animate.animate`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command


class Animate(Command):
    name = "animate"
    help = "replay a run as a GIF (see python -m hrf_core animate --help)"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run_dir", help="a run folder")
        parser.add_argument("--out", required=True, help="the GIF to write")
        parser.add_argument("--seconds-per-frame", type=float, default=0.6)

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.share.animate import animate
        from hrf_core.store.runs import open_run

        if not args.out.lower().endswith(".gif"):
            raise ValueError(f"--out must be a .gif file, got {args.out}")
        path = animate(open_run(args.run_dir), Path(args.out), args.seconds_per_frame)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return 0


COMMAND = Animate()
main = COMMAND.main
