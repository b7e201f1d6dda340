"""``frontier-digits``: every method at matched reward and compute against DDPO's own trajectory.

``python -m hrf_core experiment frontier-digits [--seeds 0 1 2] [--jobs 2 | --backend ray] [--shard i/N]
[--report-only]``

Arms (all on the embedded digits model, the same samples per epoch, epochs and evaluations):

- ``ddpo``: every step from pure noise; its evaluated epochs are the early-stopping frontier;
- ``ddpo+kl<c>``: DDPO with the KL penalty to the frozen base model (DPOK), coefficient c;
- ``hrf[20,40)`` / ``hrf[30,40)``: HRF windows, start ~ U per batch;
- ``hrf-d``: the dynamic start finder;
- ``random-start`` (ablation): re-noised starts with s ~ U{0..K-1}, all later steps trained;
- ``renoise-fixed`` (ablation): re-noised starts at the fixed step K/2, no sliding;
- ``hrf-sliding``: the paper's schedule: the window [0, K/2) for the first half of the epochs, then
  [K/2, K);
- ``<hrf arm>/image`` (ablation, on ``--ablation-tasks``): each HRF window and HRF-D again, with
  advantages standardised over each re-noised image's siblings (``adv_scope="image"``, what the
  paper's code gets from batch = B = 5) instead of over the epoch;
- ``<hrf arm>/wo`` (window-only, on ``--window-only-tasks``): the steps before the window sample with
  the frozen base model, in training and evaluation alike (``outside_window="base"``): HRF [20,40) and
  [30,40) with per-image advantages, the window the task's locality profile suggests
  (:func:`hrf_core.study.locality.suggest_window`), and [20,40) with a KL penalty of 0.1 (``+kl0.1``);
- ``handover``: no training: the base model for steps < S and the final DDPO checkpoint for steps
  >= S, for S from K down to 0, evaluated like an epoch (a whole frontier from one DDPO run);
- ``<arm>+div<w>`` (each w of ``--diversity-weights``, none by default): the diversity bonus of weight w in the
  advantage (docs/METHOD.md, "The diversity bonus"): ``ddpo+div<w>``, window-only ``hrf[30,40)/image/wo+div<w>``
  and ``handover+div<w>``, the hand-over to the final checkpoint of ``ddpo+div<w>``.

The JPEG tasks run every arm; the visible rewards (``ink``, ``digit:3``, ``symmetry``) the DDPO, HRF
and hand-over arms. Units run on a backend (:mod:`hrf_core.study.backends`: ``--jobs`` processes here, or
``--backend ray`` on a Ray cluster), or one shard at a time (``--shard i/N``, a SLURM job array), and are
resumable: a finished run is skipped, an unfinished one continues from its checkpoint, a failed unit is tried
once more. ``progress.json`` (one per shard) is rewritten as each unit ends; ``docs/RESULTS.md`` and its figures
are generated from the runs at the end (or with ``--report-only`` at any time, which merges the shards). The arms
are :mod:`hrf_core.study.arms`, the units :mod:`hrf_core.study.units`, the report :mod:`hrf_core.study.report`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command
from hrf_core.commands.sitting import add_sitting_arguments, run_sitting
from hrf_core.study.arms import NAME


class FrontierDigits(Command):
    name = NAME
    help = "every method at matched reward and compute against DDPO's own trajectory"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core import CHECKPOINTS_DIR
        from hrf_core.share import trackers
        from hrf_core.study.arms import ABLATION_BASES, Settings

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
        from hrf_core.study import arms, report

        report_to = trackers.require(args.report_to)
        for task in args.tasks:
            if task not in REWARDS:
                raise ValueError(f"unknown task {task!r}; choose from {', '.join(REWARDS)}")
        settings = arms.Settings(
            seeds=args.seeds, tasks=args.tasks, epochs=args.epochs, eval_every=args.eval_every,
            eval_samples=args.eval_samples, samples=args.samples, batch_size=args.batch_size,
            siblings=args.siblings, steps=args.steps, lr=args.lr, kl_coefs=args.kl_coefs,
            diversity_weights=args.diversity_weights,
            handover_every=args.handover_every, model=args.model, ablation_tasks=args.ablation_tasks,
            window_only_tasks=args.window_only_tasks, arms=args.arms,
            suggested=arms.suggested_starts(args.tasks, args.model, args.steps))
        for task in settings.tasks:  # fail on a bad combination now, not in a worker an hour later
            for arm in arms.arms_of(task, settings):
                if arms.handover_source(arm) is None:
                    arms.arm_config(task, arm, settings.seeds[0], settings, args.device)
        if not run_sitting(args, settings, self.name, report_to=report_to):
            return 0
        written = report.write_report(Path(args.out).resolve(), Path(args.docs),
                                         Path(args.reference) if args.reference else None,
                                         Path(args.previous) if args.previous else None)
        print(f"wrote {written}")
        return 0


COMMAND = FrontierDigits()
