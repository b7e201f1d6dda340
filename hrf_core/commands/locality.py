"""Where is a reward decided? The share of its variance already fixed at each denoising step.

``locality --model M --reward R [R ...] [--checkpoint C] [--json out.json]``: the profiles of
:mod:`hrf_core.study.locality`, as tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrf_core.commands.base import Command


class Locality(Command):
    name = "locality"
    help = "where a reward is decided: its per-step variance profile (see python -m hrf_core locality --help)"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core.study.locality import ProfileSettings

        defaults = ProfileSettings()
        parser.add_argument("--model", default="digits16", help="registry name, Hub id or local diffusers folder")
        parser.add_argument("--checkpoint", help="a run checkpoint folder: profile the fine-tuned model instead")
        parser.add_argument("--reward", nargs="+", required=True,
                            help="registered reward names (all share the branches)")
        parser.add_argument("--trunks", type=int, default=defaults.trunks)
        parser.add_argument("--branches", type=int, default=defaults.branches)
        parser.add_argument("--steps", type=int, default=defaults.num_steps, help="DDIM steps K")
        parser.add_argument("--eta", type=float, default=defaults.eta)
        parser.add_argument("--probes", type=int, nargs="+", default=[],
                            help="step indices (default every 5th and K-1)")
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--resamples", type=int, default=defaults.resamples,
                            help="bootstrap resamples over trunks")
        parser.add_argument("--device", default="auto")
        parser.add_argument("--json", help="write the profiles here")
        parser.add_argument("--ship", action="store_true", help="write them beside the embedded model (base only)")

    def run(self, args: argparse.Namespace) -> int:
        from hrf_core.models.registry import load_base_model
        from hrf_core.rewards.registry import make_reward
        from hrf_core.study.locality import ProfileSettings, format_table, profile, write_shipped

        settings = ProfileSettings(trunks=args.trunks, branches=args.branches, num_steps=args.steps, eta=args.eta,
                                   probes=tuple(args.probes), seed=args.seed, resamples=args.resamples).validate()
        rewards = {name: make_reward(name) for name in args.reward}  # unknown names: ValueError before any sampling
        model = load_base_model(args.checkpoint or args.model, args.device)
        label = {"model": args.model, "checkpoint": args.checkpoint}
        profiles = profile(model, rewards, settings, label=label)
        if args.json:
            from hrf_core.store.runs import write_json

            write_json(Path(args.json), profiles)
        if args.ship:
            if args.checkpoint:
                raise ValueError("--ship writes base-model profiles: drop --checkpoint")
            print(f"wrote {write_shipped(args.model, profiles)}")
        print("\n".join(format_table(profiles)))
        seconds = next(iter(profiles.values()))["seconds"]
        print(f"\n{settings.trunks} trunks x {settings.branches} branches, {len(settings.probes)} probes: "
              f"{next(iter(profiles.values()))['unet_rows']} UNet rows in {seconds:.1f} s")
        return 0


COMMAND = Locality()
main = COMMAND.main
