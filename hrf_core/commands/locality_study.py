"""``locality-digits``: where each task's reward is decided, and how far that predicts the frontier.

``locality-study --store runs/frontier-digits [--frontier docs/results/frontier.json]``: the study of
:mod:`hrf_core.study.locality_study`; writes ``docs/results/locality.{json,png,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command


class LocalityStudy(Command):
    name = "locality-study"
    help = ("profiles of the experiment's tasks and how far they predict the frontier "
            "(see python -m hrf_core locality-study --help)")
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core import REPO_ROOT
        from hrf_core.study.locality_study import TASKS

        parser.add_argument("--store", required=True, help="a frontier-digits run store (its DDPO runs are profiled)")
        parser.add_argument("--frontier", default=str(REPO_ROOT / "docs" / "results" / "frontier.json"))
        parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        parser.add_argument("--trunks", type=int, default=128, help="trunks per checkpoint profile")
        parser.add_argument("--resamples", type=int, default=400)
        parser.add_argument("--docs", default=str(REPO_ROOT / "docs"))
        parser.add_argument("--report-only", action="store_true", help="no new profiles: tables from what is saved")
        parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS,
                            help="profile these tasks' checkpoints")
        parser.add_argument("--merge", nargs="*", default=[], help="other locality.json files whose checkpoint "
                            "profiles join this one's (e.g. from a second process over other tasks)")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core import CHECKPOINTS_DIR
        from hrf_core.store.runs import read_json, write_json
        from hrf_core.study.arms import DDPO_ARM
        from hrf_core.study.locality import SHIPPED_FILE
        from hrf_core.study.locality_study import (
            TASKS,
            frontier_outcomes,
            markdown,
            profile_checkpoints,
            rank_correlations,
            write_figure,
        )

        results = Path(args.docs) / "results"
        results.mkdir(parents=True, exist_ok=True)
        out_file = results / "locality.json"
        shipped = read_json(CHECKPOINTS_DIR / "digits16" / SHIPPED_FILE, {}) or {}
        if not shipped.get("rewards"):
            raise ValueError("no shipped base-model profiles: run `python -m hrf_core locality --model digits16 "
                             f"--reward {' '.join(TASKS)} --trunks 256 --ship`")
        data = read_json(out_file, {}) or {}
        data["base"] = {t: shipped["rewards"][t] for t in TASKS if t in shipped["rewards"]}
        write_json(out_file, data)
        for other in args.merge:
            data.setdefault(DDPO_ARM, {}).update((read_json(Path(other), {}) or {}).get(DDPO_ARM, {}))
        write_json(out_file, data)
        if not args.report_only:
            data = profile_checkpoints(Path(args.store), args.seeds, out_file, args.trunks, args.resamples,
                                       tuple(args.tasks))
            data["base"] = {t: shipped["rewards"][t] for t in TASKS if t in shipped["rewards"]}
        frontier = read_json(Path(args.frontier), None)
        if frontier is None:
            raise ValueError(f"no frontier results at {args.frontier}")
        data["outcomes"] = frontier_outcomes(frontier)
        data["correlations"] = rank_correlations(data["base"], data["outcomes"])
        write_json(out_file, data)
        write_figure(data["base"], data.get(DDPO_ARM, {}), results / "locality.png")
        (results / "locality.md").write_text("\n".join(markdown(data, args.seeds)))
        print("\n".join(markdown(data, args.seeds)))
        return 0


COMMAND = LocalityStudy()
main = COMMAND.main
