"""``sample``: a grid (and optionally the array) from a base model or a checkpoint, or a hand-over of the two."""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command


class Sample(Command):
    name = "sample"
    help = "sample a grid from a base model or a checkpoint"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--model", help="registry name, Hub id or local diffusers folder")
        source.add_argument("--checkpoint", help="a run checkpoint folder (runs/<id>/checkpoints/epoch-NNNN)")
        parser.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
        parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
        parser.add_argument("--steps", type=int, default=40, help="DDIM steps (default 40)")
        parser.add_argument("--eta", type=float, default=1.0, help="DDIM eta (default 1.0)")
        parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
        parser.add_argument("--handover", type=int, default=0,
                            help="hand-over step S: steps < S sample with the base model, steps >= S with the "
                                 "checkpoint (default 0: the checkpoint only; S = K gives the base model's samples)")
        parser.add_argument("--base", help="the base model for --handover (default: the checkpoint's run's model)")
        parser.add_argument("--prompts", help="a prompted model's prompts, taken in turn (as --prompts of train; "
                            "default: the checkpoint's run's)")
        parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the "
                            "checkpoint's run's, else 1)")
        parser.add_argument("--out", required=True, help="output PNG grid")
        parser.add_argument("--array", help="also save the samples as .npy: float32 in [0,1], shape (n, C, H, W)")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core import settings
        from hrf_core.rl.sampling import round_robin, sample_images, save_samples
        from hrf_core.store.runs import run_of_checkpoint

        if args.n <= 0 or args.steps <= 1 or args.eta < 0:
            raise ValueError("--n must be >= 1, --steps >= 2 and --eta >= 0")
        name = args.model or args.checkpoint
        base = None
        run = run_of_checkpoint(args.checkpoint) if args.checkpoint else None
        prompts, guidance = None, args.guidance
        if args.prompts:
            try:
                prompts = settings.parse("prompts", args.prompts)
            except settings.SettingError as error:
                raise ValueError(error.render(settings.flag)) from None
        elif run is not None and run.config.get("prompts"):  # a prompted run's checkpoint: its prompts
            prompts = tuple(run.config["prompts"])
        if guidance is None:  # the checkpoint's run's guidance, whoever chose the prompts
            guidance = float(run.config.get("guidance", 1.0)) if run is not None else 1.0
        if args.handover:
            if not args.checkpoint:
                raise ValueError("--handover needs --checkpoint (the model for the steps >= S)")
            base = args.base or (run.config.get("model") if run is not None else None)
            if not base:
                raise ValueError(f"{args.checkpoint} is not a run checkpoint: name the base model with --base")
        rows = round_robin(prompts, args.n) if prompts else None
        images = sample_images(name, n=args.n, seed=args.seed, num_steps=args.steps, eta=args.eta, device=args.device,
                               early=base, handover=args.handover, prompts=rows,
                               guidance=guidance)
        save_samples(images, Path(args.out), Path(args.array) if args.array else None)
        print(f"wrote {args.out}" + (f" and {args.array}" if args.array else ""))
        return 0


COMMAND = Sample()
main = COMMAND.main
