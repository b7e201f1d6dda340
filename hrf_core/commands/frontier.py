"""Compare runs at matched reward and at matched compute, against DDPO's own earlier epochs.

``frontier RUN_DIR ...``: :func:`hrf_core.study.frontier.frontier` of the runs, one table per model and reward.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command


class Frontier(Command):
    name = "frontier"
    help = "compare runs at matched reward and compute against DDPO (see python -m hrf_core frontier --help)"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core.study.frontier import DEFAULT_COMPUTE_FRACTIONS, DEFAULT_FRACTIONS

        parser.add_argument("run_dirs", nargs="+", help="run folders, or folders holding runs")
        parser.add_argument("--json", help="write the full comparison here")
        parser.add_argument("--levels", type=float, nargs="+", default=list(DEFAULT_FRACTIONS),
                            help="reward levels as fractions of DDPO's final reward gain (default 0.25 0.5 0.75)")
        parser.add_argument("--compute-levels", type=float, nargs="+", default=list(DEFAULT_COMPUTE_FRACTIONS),
                            help="compute levels as fractions of DDPO's final compute")
        parser.add_argument("--metric", default=None, help="the metric of the printed table (default: IS)")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.store.runs import write_json
        from hrf_core.study.frontier import frontier
        from hrf_core.study.tables import table

        if any(not 0 < f <= 2 for f in args.levels):
            raise ValueError("--levels must be fractions in (0, 2]")
        result = frontier(args.run_dirs, args.levels, args.compute_levels)
        if args.json:
            write_json(Path(args.json), result)
        for group in result["groups"].values():
            metrics = sorted({k for arm in group["arms"].values() for row in arm["matched_reward"]
                              for k in row["values"] if k not in ("epoch", "compute", "gain")})
            metric = args.metric or next((m for m in metrics if m.startswith("is_")), metrics[0] if metrics else "gain")
            print(f"{group['model']} · {group['reward']}: {metric} at matched reward gain "
                  f"(fractions of DDPO's final gain {group['reference']['final_gain']:.4g}); "
                  f"{group['eval_samples']} evaluation samples, mean ± std over seeds [95% interval]")
            print("\n".join(table(group, metric)))
            print()
        if args.json:
            print(f"wrote {args.json}")
        return 0


COMMAND = Frontier()
main = COMMAND.main
