"""``prompts-digits``: which method keeps diversity *within a prompt* best, at matched reward?

``experiment prompts-digits [--seeds 0 1 2] [--jobs 2 | --backend ray] [--shard i/N] [--report-only]``: the
experiment of :mod:`hrf_core.study.prompts_experiment` (its arms are listed there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command
from hrf_core.commands.sitting import add_sitting_arguments, run_sitting
from hrf_core.study.prompts_experiment import NAME


class PromptsDigits(Command):
    name = NAME
    help = "which method keeps diversity within a prompt best, at matched reward"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core.study.prompts_experiment import Settings

        d = Settings()
        add_sitting_arguments(parser, self.name, d)
        parser.add_argument("--prompts", nargs="+", default=d.prompts)
        parser.add_argument("--guidance", nargs="*", default=[f"{t}={g:g}" for t, g in d.guidance.items()],
                            metavar="TASK=SCALE", help="guidance per task (others: 1)")
        parser.add_argument("--tracker-tasks", nargs="*", default=d.tracker_tasks)
        parser.add_argument("--diversity-weights", type=float, nargs="*", default=d.diversity_weights,
                            help="also run ddpo, window-only hrf[30,40) and the hand-over with each diversity weight")
        parser.add_argument("--arms", nargs="*", default=d.arms,
                            help="run only these arms (e.g. ddpo handover 'hrf[30,40)/image/wo'); default all")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.study import prompts_experiment as study
        from hrf_core.study.arms import handover_source

        try:
            guidance = {t: float(g) for t, g in (item.split("=", 1) for item in args.guidance)}
        except ValueError:
            raise ValueError("--guidance takes TASK=SCALE pairs, e.g. alignment=0.5") from None
        settings = study.Settings(seeds=args.seeds, tasks=args.tasks, prompts=args.prompts, guidance=guidance,
                                  tracker_tasks=args.tracker_tasks, epochs=args.epochs, eval_every=args.eval_every,
                                  eval_samples=args.eval_samples, samples=args.samples, batch_size=args.batch_size,
                                  siblings=args.siblings, lr=args.lr, steps=args.steps, model=args.model,
                                  diversity_weights=args.diversity_weights, arms=args.arms)
        for task in settings.tasks:  # a bad combination fails now, not in a worker an hour later
            for arm in study.arms_of(task, settings):
                if handover_source(arm) is None:
                    study.arm_config(task, arm, settings.seeds[0], settings, args.device)
        if not run_sitting(args, settings, self.name, build=study.build_units):
            return 0
        print(f"wrote {study.write_report(Path(args.out).resolve(), Path(args.docs))}")
        return 0


COMMAND = PromptsDigits()
