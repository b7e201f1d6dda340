"""``frontier-digits``: every method at matched reward and compute against DDPO's own trajectory.

``experiment frontier-digits [--seeds 0 1 2] [--jobs 2 | --backend ray] [--shard i/N] [--report-only]``: the
experiment of :mod:`hrf_core.study.experiment` (its arms are listed there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command
from hrf_core.commands.experiment import add_sitting_arguments, run_sitting
from hrf_core.study.experiment import NAME


class FrontierDigits(Command):
    name = NAME
    help = "every method at matched reward and compute against DDPO's own trajectory"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core import CHECKPOINTS_DIR
        from hrf_core.share import trackers
        from hrf_core.study.experiment import ABLATION_BASES, Settings

        defaults = Settings()
        add_sitting_arguments(parser, self.name, defaults)
        parser.add_argument("--kl-coefs", type=float, nargs="+", default=defaults.kl_coefs)
        parser.add_argument("--diversity-weights", type=float, nargs="*", default=defaults.diversity_weights,
                            help="also run ddpo, window-only hrf[30,40) and the hand-over with each diversity weight")
        parser.add_argument("--handover-every", type=int, default=defaults.handover_every)
        parser.add_argument("--ablation-tasks", nargs="*", default=defaults.ablation_tasks,
                            help=f"tasks that also run {', '.join(ABLATION_BASES)} with per-image advantages")
        parser.add_argument("--window-only-tasks", nargs="*", default=defaults.window_only_tasks,
                            help="tasks that also run the window-only arms")
        parser.add_argument("--arms", nargs="*", default=[],
                            help="run only these arms (e.g. ddpo handover 'hrf[20,40)/image/wo' suggested/wo); "
                                 "default all")
        parser.add_argument("--reference", default="",
                            help="also write the app's DDPO reference curves here (e.g. "
                            f"{CHECKPOINTS_DIR / 'digits16' / 'ddpo_reference.json'}), merged per reward and "
                            "evaluation size into what the file has (a curve with more seeds is kept); default: "
                            "nowhere")
        parser.add_argument("--previous",
                            help="an earlier sitting's frontier.json: the arms this store lacks join every table")
        parser.add_argument("--report-to", choices=trackers.TRACKERS, action="append",
                            help="also log each run to this tracker (repeat): trackio, tensorboard or wandb")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.rewards.registry import REWARDS
        from hrf_core.share import trackers
        from hrf_core.study import experiment

        report_to = trackers.require(args.report_to)
        for task in args.tasks:
            if task not in REWARDS:
                raise ValueError(f"unknown task {task!r}; choose from {', '.join(REWARDS)}")
        settings = experiment.Settings(
            seeds=args.seeds, tasks=args.tasks, epochs=args.epochs, eval_every=args.eval_every,
            eval_samples=args.eval_samples, samples=args.samples, batch_size=args.batch_size,
            siblings=args.siblings, steps=args.steps, lr=args.lr, kl_coefs=args.kl_coefs,
            diversity_weights=args.diversity_weights,
            handover_every=args.handover_every, model=args.model, ablation_tasks=args.ablation_tasks,
            window_only_tasks=args.window_only_tasks, arms=args.arms,
            suggested=experiment.suggested_starts(args.tasks, args.model, args.steps))
        for task in settings.tasks:  # fail on a bad combination now, not in a worker an hour later
            for arm in experiment.arms_of(task, settings):
                if experiment.handover_source(arm) is None:
                    experiment.arm_config(task, arm, settings.seeds[0], settings, args.device)
        if not run_sitting(args, settings, self.name, report_to=report_to):
            return 0
        report = experiment.write_report(Path(args.out).resolve(), Path(args.docs),
                                         Path(args.reference) if args.reference else None,
                                         args.resamples, Path(args.previous) if args.previous else None)
        print(f"wrote {report}")
        return 0


COMMAND = FrontierDigits()
