"""``pretrain``: train an embedded model (:mod:`hrf_core.models.pretrain`; the classifier and the cards:
:mod:`hrf_core.study.digits_quality`) and write its card."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hrf_core.commands.base import Command


class Pretrain(Command):
    """``pretrain NAME [--out DIR] [--seed N] [--threads N] [--steps N] [--no-eval] [--eval-n N]``."""

    name = "pretrain"
    help = "train the embedded models (see python -m hrf_core pretrain --help)"
    description = "Pretrain an embedded default model."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core.models.pretrain import CHECKPOINTS, NAMES
        from hrf_core.study.digits_quality import QUALITY_DEFAULTS

        parser.add_argument("name", choices=NAMES)
        parser.add_argument("--out", type=Path, default=None, help="output folder (default: checkpoints/NAME)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
        parser.add_argument("--steps", type=int, default=None,
                            help="digits16(-cond): training steps (default from the recipe)")
        parser.add_argument("--classifier", type=Path, default=CHECKPOINTS / "digits16-classifier",
                            help="digits16(-cond): classifier used for the quality section of the card")
        parser.add_argument("--no-eval", action="store_true", help="digits16(-cond): skip the quality measurement")
        parser.add_argument("--eval-n", type=int, default=QUALITY_DEFAULTS["n"],
                            help="digits16(-cond): samples for the quality measurement (digits16-cond: per guidance "
                                 "scale)")

    def run(self, args: argparse.Namespace) -> int:
        import numpy as np
        import torch

        from hrf_core.models.pretrain import CHECKPOINTS, train_ddpm
        from hrf_core.study.digits_quality import (
            digits_quality,
            train_classifier,
            update_ddpm_quality,
            write_classifier_card,
            write_ddpm_card,
        )

        torch.set_num_threads(args.threads)
        np.random.seed(args.seed)
        out = args.out or CHECKPOINTS / args.name
        if args.name == "digits16-classifier":
            cfg = train_classifier(out, seed=args.seed)
            write_classifier_card(out)
            print(f"held-out accuracy {cfg['heldout_accuracy']:.4f}, "
                  f"real IS {cfg['inception_score_real_heldout']:.3f}, "
                  f"{cfg['training']['train_seconds']:.0f} s -> {out}")
            return 0
        info = train_ddpm(out, seed=args.seed, recipe={"steps": args.steps} if args.steps else None,
                          conditional=args.name == "digits16-cond")
        print(f"trained in {info['train_seconds']:.0f} s -> {out}", flush=True)
        write_ddpm_card(out)
        if not args.no_eval:
            if not (args.classifier / "model.safetensors").is_file():
                print(f"no classifier at {args.classifier}: skipping the quality measurement")
                return 0
            q = digits_quality(out, args.classifier, n=args.eval_n)
            update_ddpm_quality(out, q)
            print(json.dumps(q, indent=2))
        return 0


COMMAND = Pretrain()
main = COMMAND.main
