"""``python -m hrf_core export RUN [--epoch N] --out DIR [--push-to-hub REPO]``: a run checkpoint as a
diffusers pipeline folder with a model card, optionally uploaded to the Hugging Face Hub
(:mod:`hrf_core.share.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command


class Export(Command):
    name = "export"
    help = ("a run checkpoint as a diffusers pipeline with a model card, optionally pushed to the Hub "
            "(see python -m hrf_core export --help)")
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run", help="a run folder, or the id of a run in --runs")
        parser.add_argument("--runs", default="runs", help="the run store of a run id (default runs)")
        parser.add_argument("--epoch", type=int, help="the checkpoint's epoch (default: the latest)")
        parser.add_argument("--out", required=True, help="the folder to write (new or empty)")
        parser.add_argument("--push-to-hub", metavar="REPO",
                            help="also upload it to this Hub model repo (namespace/name)")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.share.export import (
            check_repo_id,
            checkpoint_of,
            empty_target,
            export_checkpoint,
            find_run,
            push_to_hub,
        )

        run = find_run(args.run, args.runs)
        checkpoint = checkpoint_of(run, args.epoch)
        empty_target(Path(args.out))
        repo = check_repo_id(args.push_to_hub) if args.push_to_hub else None
        out = export_checkpoint(run, checkpoint, Path(args.out), repo)
        print(f"wrote {out} ({run.run_id}, {checkpoint.name})")
        if repo:
            print(f"pushed to {push_to_hub(out, repo, f'HRF Explorer: {run.run_id}, {checkpoint.name}')}")
        return 0


COMMAND = Export()
main = COMMAND.main
