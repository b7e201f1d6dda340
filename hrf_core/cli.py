"""``python -m hrf_core``: train, resume, sample, export, pretrain and experiment from the shell.

Bad input prints one clear line (``error: ...``) and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from hrf_core import trackers
from hrf_core.config import ADVANTAGE_SCOPES, METHODS, OUTSIDE_WINDOW, PRESETS, TrainConfig

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit 2
        self.exit(EXIT_USAGE, f"error: {message}\n")


def parse_window(text: str) -> tuple[int, int]:
    """``"20:40"`` -> (20, 40)."""
    try:
        start, end = (int(v) for v in text.split(":"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"window must look like START:END, got {text!r}") from error
    return start, end


def parse_cluster(text: str) -> tuple[int, int, int]:
    """``"0:20x10"`` -> (0, 20, 10): window 0:20 for 10 epochs."""
    try:
        window, epochs = text.split("x")
        return (*parse_window(window), int(epochs))
    except (ValueError, argparse.ArgumentTypeError) as error:
        raise argparse.ArgumentTypeError(f"cluster must look like START:ENDxEPOCHS, got {text!r}") from error


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m hrf_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="fine-tune a base model (DDPO / HRF / HRF sliding / HRF-D)")
    defaults = TrainConfig()
    train.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset (flags override it)")
    train.add_argument("--model", help=f"registry name, Hub id or local diffusers folder (default {defaults.model})")
    train.add_argument("--reward", help=f"reward: a registered name (default {defaults.reward}; ink, symmetry, "
                       "digit:<d>, ...) or your own function of images in [-1, 1] (N, C, H, W) -> (N,) floats, "
                       "as path/to/file.py:function or module:function")
    train.add_argument("--method", choices=METHODS, help=f"fine-tuning method (default {defaults.method})")
    train.add_argument("--window", type=parse_window, help="HRF window START:END over DDIM step indices "
                       f"0..K (0 = pure noise; default {defaults.window[0]}:{defaults.window[1]})")
    train.add_argument("--start-mode", choices=("uniform", "fixed"), help="HRF start: uniform in the window per "
                       "batch, or the window start")
    train.add_argument("--cluster", type=parse_cluster, action="append", dest="clusters",
                       help="HRF sliding cluster START:ENDxEPOCHS (repeat; default 0:20x5 then 20:40x5)")
    train.add_argument("--outside", dest="outside_window", choices=OUTSIDE_WINDOW,
                       help="what samples the steps before the window: tuned (the fine-tuned network, the paper's "
                            "HRF; default) or base (window-only: the frozen base model, in training, evaluation "
                            "and checkpoint sampling)")
    train.add_argument("--start-source", choices=("policy", "base"),
                       help="trajectory-of-interest images from the current policy or the frozen base model")
    train.add_argument("--epochs", type=int, help=f"training epochs (default {defaults.epochs})")
    train.add_argument("--samples", type=int, dest="samples_per_epoch",
                       help=f"samples per epoch (default {defaults.samples_per_epoch})")
    train.add_argument("--batch-size", type=int, help=f"sampling batch (default {defaults.batch_size})")
    train.add_argument("--siblings", type=int, help=f"re-noised copies per image, B (default {defaults.siblings})")
    train.add_argument("--steps", type=int, dest="num_steps", help=f"DDIM steps K (default {defaults.num_steps})")
    train.add_argument("--lr", type=float, help=f"AdamW learning rate (default {defaults.lr})")
    train.add_argument("--clip-range", type=float, help=f"PPO clip range (default {defaults.clip_range})")
    train.add_argument("--adv-clip", type=float, help=f"advantage clip (default {defaults.adv_clip})")
    train.add_argument("--adv-scope", choices=ADVANTAGE_SCOPES,
                       help="standardise advantages per epoch, per batch, or per re-noised image (HRF)")
    train.add_argument("--window-scaled-clip", action="store_true", default=None,
                       help="scale both clips by (K - start) / K (the paper's HRF clipping)")
    train.add_argument("--updates", type=int, dest="updates_per_epoch", help="optimiser steps per epoch")
    train.add_argument("--kl-coef", type=float, help="KL penalty to the frozen base model (DPOK), nats per pixel "
                       "per trained step (default 0: off)")
    train.add_argument("--eval-every", type=int, help="evaluate every N epochs")
    train.add_argument("--eval-samples", type=int, help="evaluation samples (fixed seed)")
    train.add_argument("--checkpoint-every", type=int, help="checkpoint every N epochs (the last is always saved)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--device", help="auto (cuda, then cpu), cpu or cuda[:N]")
    train.add_argument("--bf16", action="store_true", default=None,
                       help="bf16 autocast for the UNet in sampling and training (measure its drift: bench/gpu_check.py)")
    train.add_argument("--grad-checkpointing", action="store_true", default=None,
                       help="recompute the UNet's activations in the backward: less memory, slower updates")
    train.add_argument("--out", default="runs", help="run store folder (default runs)")
    train.add_argument("--name", help="run id (default: time stamp, method and reward)")
    train.add_argument("--report-to", choices=trackers.TRACKERS, action="append",
                       help="also log to this tracker (repeat): trackio, tensorboard or wandb")

    resume = sub.add_parser("resume", help="continue a run from its latest (or a given) checkpoint")
    resume.add_argument("run_dir", help="the run folder, e.g. runs/20261126-101500-hrf-jpeg-compressibility")
    resume.add_argument("--checkpoint", help="a checkpoint folder of that run (default: the latest)")
    resume.add_argument("--epochs", type=int, help="new total number of epochs")
    resume.add_argument("--report-to", choices=trackers.TRACKERS, action="append",
                        help="also log to this tracker (repeat): trackio, tensorboard or wandb")

    sample = sub.add_parser("sample", help="sample a grid from a base model or a checkpoint")
    source = sample.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="registry name, Hub id or local diffusers folder")
    source.add_argument("--checkpoint", help="a run checkpoint folder (runs/<id>/checkpoints/epoch-NNNN)")
    sample.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    sample.add_argument("--steps", type=int, default=40, help="DDIM steps (default 40)")
    sample.add_argument("--eta", type=float, default=1.0, help="DDIM eta (default 1.0)")
    sample.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    sample.add_argument("--handover", type=int, default=0,
                        help="hand-over step S: steps < S sample with the base model, steps >= S with the checkpoint "
                             "(default 0: the checkpoint only; S = K gives the base model's samples)")
    sample.add_argument("--base", help="the base model for --handover (default: the checkpoint's run's model)")
    sample.add_argument("--out", required=True, help="output PNG grid")
    sample.add_argument("--array", help="also save the samples as .npy: float32 in [0,1], shape (n, C, H, W)")

    sub.add_parser("pretrain", help="train the embedded models (see python -m hrf_core pretrain --help)")

    base_metrics = sub.add_parser("base-metrics", help="evaluate a base model and save the metrics beside it")
    base_metrics.add_argument("--model", default="digits16", help="registry name or local diffusers folder")
    base_metrics.add_argument("--rewards", nargs="+", default=["jpeg-compressibility", "jpeg-incompressibility"])
    base_metrics.add_argument("--device", default="cpu")

    sub.add_parser("experiment", help="run frontier-digits (see python -m hrf_core experiment frontier-digits --help)")
    sub.add_parser("frontier", help="compare runs at matched reward and compute against DDPO "
                   "(see python -m hrf_core frontier --help)")
    sub.add_parser("animate", help="replay a run as a GIF (see python -m hrf_core animate --help)")
    sub.add_parser("locality", help="where a reward is decided: its per-step variance profile "
                   "(see python -m hrf_core locality --help)")
    sub.add_parser("locality-study", help="profiles of the experiment's tasks and how far they predict the "
                   "frontier (see python -m hrf_core locality-study --help)")
    sub.add_parser("examples", help="regenerate the example runs that ship (see python -m hrf_core examples --help)")
    sub.add_parser("export", help="a run checkpoint as a diffusers pipeline with a model card, optionally pushed to "
                   "the Hub (see python -m hrf_core export --help)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a ``train`` command line: preset, then every flag that was given."""
    config = PRESETS[args.preset] if args.preset else TrainConfig()
    fields = ("model", "reward", "method", "window", "start_mode", "clusters", "start_source", "outside_window",
              "epochs",
              "samples_per_epoch", "batch_size", "siblings", "num_steps", "lr", "clip_range", "adv_clip",
              "adv_scope", "window_scaled_clip", "updates_per_epoch", "kl_coef", "eval_every", "eval_samples",
              "checkpoint_every", "seed", "device", "bf16", "grad_checkpointing")
    changes = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    if "clusters" in changes:
        changes["clusters"] = tuple(changes["clusters"])
    return config.replace(**changes).validate()


def _progress_callback(epochs: int):
    from tqdm import tqdm

    bar = tqdm(total=epochs, unit="epoch", dynamic_ncols=True)

    def on_epoch(report) -> None:
        m = report.metrics
        line = f"epoch {report.epoch}/{report.epochs}"
        if "reward_mean" in m:
            vendi = "  ".join(f"{k} {m[k]:.3f}" for k in sorted(m) if k.startswith("vendi_"))
            line += f"  eval reward {m['reward_mean']:.4f} ± {m['reward_std']:.4f}  {vendi}"
        if "train_reward_mean" in m:
            line += f"  train reward {m['train_reward_mean']:.4f}  kl {m['approx_kl']:.2e}"
        line += f"  {m.get('seconds', 0.0):.1f}s"
        bar.write(line)
        if report.epoch > 0:
            bar.update(1)

    return on_epoch, bar


@contextmanager
def _stop_on_signals(stop_event: threading.Event):
    """While training: SIGINT and SIGTERM ask the trainer to stop cooperatively (the last completed epoch's
    checkpoint is kept); under torchrun every rank gets the signal, and the ranks stop together at their next
    sync point. A second Ctrl-C interrupts at once. The previous handlers come back afterwards."""
    import signal

    def handler(signum, frame):
        if stop_event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop_event.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run_trainer(trainer, start_epoch: int, report_to: tuple[str, ...] = ()) -> int:
    with _stop_on_signals(trainer.stop_event), trackers.RunTrackers(report_to, trainer.run).attach(trainer):
        return _train_with_progress(trainer, start_epoch)


def _train_with_progress(trainer, start_epoch: int) -> int:
    main = trainer.dist.is_main
    if main:
        on_epoch, bar = _progress_callback(trainer.config.epochs)
        bar.update(start_epoch)
        trainer.callbacks.append(on_epoch)
    try:
        state = trainer.train()
    except KeyboardInterrupt:
        trainer.stop_event.set()
        return 130
    finally:
        if main:
            bar.close()
    if main:
        print(f"{state}: {trainer.run.path}")
    return 130 if state == "stopped" else 0


def _distributed(config_device: str):
    """(Dist, device) of this process: torchrun's rank and its device, or the single process."""
    from hrf_core.distributed import init_from_env

    return init_from_env(config_device)


def prepare_reward(name: str, model: str) -> None:
    """Make ``name`` usable here: a registered name, or a code reference the user typed (imported now).

    A custom reward is tried on two random images of the model's shape, so a wrong output shape or NaN
    fails with one line before a run starts.
    """
    import torch

    from hrf_core.models import model_folder, sample_shape_of
    from hrf_core.rewards import (
        BUILT_IN,
        REWARDS,
        is_reference,
        make_reward,
        register_from_env,
        register_reference,
    )

    register_from_env()
    if name not in REWARDS and is_reference(name):
        register_reference(name)
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; choose one of: {', '.join(REWARDS)}, or give "
                         "path/to/file.py:function")
    if name not in BUILT_IN:
        make_reward(name)(torch.rand(2, *sample_shape_of(model_folder(model))) * 2 - 1)


def _hold(dist, run) -> None:
    """Rank 0 holds the run's training lock while this process trains it (:mod:`hrf_core.liveness`); a run that
    another process trains is refused (RunBusy: one line, exit 2)."""
    from hrf_core import liveness

    if dist.is_main:
        liveness.hold(run.path)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a new run; under ``torchrun`` every rank runs this, rank 0 creates and writes the run."""
    from hrf_core.distributed import layout
    from hrf_core.models import load_base_model, model_folder
    from hrf_core.runs import Run, RunStore
    from hrf_core.trainer import Trainer

    config = config_from_args(args)
    report_to = trackers.require(args.report_to)
    model_folder(config.model)  # fail fast on unknown or offline models, before creating a run
    prepare_reward(config.reward, config.model)
    dist, device = _distributed(config.device)
    config.check_processes(dist.world)  # before a run folder is made
    ranks = layout(dist, device)
    if dist.active:
        config = config.replace(extra={**config.extra, "distributed": ranks})
    path = str(RunStore(args.out).create(config.to_dict(), name=args.name).path) if dist.is_main else None
    run = Run(Path(dist.broadcast_object(path)))
    _hold(dist, run)
    trainer = Trainer(config, run, stop_event=threading.Event(), base=load_base_model(config.model, device), dist=dist)
    return _run_trainer(trainer, 0, report_to)


def cmd_resume(args: argparse.Namespace) -> int:
    from hrf_core.runs import open_run
    from hrf_core.trainer import resume_training

    if args.epochs is not None and args.epochs <= 0:
        raise ValueError(f"epochs must be >= 1, got {args.epochs}")
    run = open_run(args.run_dir)
    report_to = trackers.require(args.report_to)
    prepare_reward(run.config.get("reward", ""), run.config.get("model", ""))
    dist, device = _distributed(run.config.get("device", "auto"))
    _hold(dist, run)  # before its metrics are truncated
    trainer = resume_training(run, Path(args.checkpoint) if args.checkpoint else None, args.epochs, device=device,
                              dist=dist, stop_event=threading.Event())
    return _run_trainer(trainer, trainer.epoch, report_to)


def cmd_sample(args: argparse.Namespace) -> int:
    from hrf_core.sampling import sample_images, save_samples

    if args.n <= 0 or args.steps <= 1 or args.eta < 0:
        raise ValueError("--n must be >= 1, --steps >= 2 and --eta >= 0")
    name = args.model or args.checkpoint
    base = None
    if args.handover:
        from hrf_core.runs import run_of_checkpoint

        if not args.checkpoint:
            raise ValueError("--handover needs --checkpoint (the model for the steps >= S)")
        run = run_of_checkpoint(args.checkpoint)
        base = args.base or (run.config.get("model") if run is not None else None)
        if not base:
            raise ValueError(f"{args.checkpoint} is not a run checkpoint: name the base model with --base")
    images = sample_images(name, n=args.n, seed=args.seed, num_steps=args.steps, eta=args.eta, device=args.device,
                           early=base, handover=args.handover)
    save_samples(images, Path(args.out), Path(args.array) if args.array else None)
    print(f"wrote {args.out}" + (f" and {args.array}" if args.array else ""))
    return 0


FORWARDED = ("pretrain", "experiment", "frontier", "animate", "examples", "locality", "locality-study", "export")  # subcommands whose arguments belong to their own module's parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        if "torch" in sys.modules:  # a torchrun rank leaves its process group
            from hrf_core.distributed import shutdown

            shutdown()


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in FORWARDED:
        try:
            module = __import__(f"hrf_core.{argv[0].replace('-', '_')}", fromlist=["cli_main"])
            return module.cli_main(argv[1:])
        except ValueError as error:
            return _usage_error(error)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "sample":
            return cmd_sample(args)
        if args.command == "base-metrics":
            from hrf_core.evaluation import write_base_metrics

            c = TrainConfig()
            print(write_base_metrics(args.model, args.rewards, c.num_steps, c.eval_eta, c.eval_samples, c.eval_seed,
                                     args.device))
            return 0
    except ValueError as error:  # bad input, unreadable weights or configs: hrf_core raises ValueError for all
        return _usage_error(error)
    return EXIT_USAGE


def _usage_error(error: ValueError) -> int:
    """Print ``error: <message>`` on one line (a multi-line message is joined) and return exit code 2."""
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    return EXIT_USAGE
