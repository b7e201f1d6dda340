"""``python -m hrf_core``: train, resume, sample, export, pretrain and experiment from the shell.

Bad input prints one clear line (``error: ...``) and exits with code 2. ``--offline`` (anywhere on the line, any
command) says the network is unreachable: nothing is downloaded, and weights that are not cached fall back to a
labelled proxy or are refused before anything starts (:mod:`hrf_core.downloads`, docs/OFFLINE.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from hrf_core import settings
from hrf_core.commandline import EXIT_USAGE, Parser
from hrf_core.config import TrainConfig
from hrf_core.presets import PRESETS
from hrf_core.share import trackers


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting the command line shows (:data:`hrf_core.settings.TABLE`), checked by
    :func:`config_from_args` as the page and the API check theirs."""
    defaults = TrainConfig()
    for setting in settings.on("cli"):
        default = getattr(defaults, setting.name)
        shown = {"window": settings.format_window(default) if setting.kind == "window" else None,
                 "clusters": " then ".join(f"{s}:{e}x{n}" for s, e, n in default) if setting.kind == "clusters"
                 else None}.get(setting.kind, default)
        text = f"{setting.help} (default {shown})" if setting.kind != "bool" else setting.help
        if setting.kind == "bool":
            parser.add_argument(setting.flag, dest=setting.name, action="store_true", default=None, help=text)
        elif setting.kind == "clusters":
            parser.add_argument(setting.flag, dest=setting.name, action="append", metavar="START:ENDxEPOCHS",
                                help=text)
        else:
            choices = setting.choice_labels()
            metavar = "{" + ",".join(choices) + "}" if choices else setting.name.split("_")[-1].upper()
            parser.add_argument(setting.flag, dest=setting.name, metavar=metavar, help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m hrf_core", description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="never download: weights that are not cached fall "
                        "back to a labelled proxy or are refused before a run starts (docs/OFFLINE.md)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = sub.add_parser("train", help="fine-tune a base model (DDPO / HRF / HRF sliding / HRF-D)")
    train.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset (flags override it)")
    add_setting_flags(train)
    train.add_argument("--prompts-file", metavar="FILE", help="read the prompts from a text file, one per line "
                       "(instead of --prompts)")
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
    sample.add_argument("--prompts", help="a prompted model's prompts, taken in turn (as --prompts of train; default: "
                        "the checkpoint's run's)")
    sample.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the checkpoint's "
                        "run's, else 1)")
    sample.add_argument("--out", required=True, help="output PNG grid")
    sample.add_argument("--array", help="also save the samples as .npy: float32 in [0,1], shape (n, C, H, W)")

    measure = sub.add_parser("measure", help="the diversity measures the app shows, of a sample array, as one JSON "
                             "object")
    measure.add_argument("array", help="a .npy of float32 in [0, 1], shape (n, C, H, W) (what `sample --array` "
                         "writes)")
    measure.add_argument("--labels", help="a .npy of n integers: each row's prompt (within-prompt measures)")
    measure.add_argument("--model", help="the base model the samples come from: their shape must be its images'")

    sub.add_parser("pretrain", help="train the embedded models (see python -m hrf_core pretrain --help)")

    base_metrics = sub.add_parser("base-metrics", help="evaluate a base model and save the metrics beside it")
    base_metrics.add_argument("--model", default="digits16", help="registry name or local diffusers folder")
    base_metrics.add_argument("--rewards", nargs="+", default=["jpeg-compressibility", "jpeg-incompressibility"])
    base_metrics.add_argument("--device", default="cpu")

    sub.add_parser("experiment", help="run an experiment: frontier-digits or prompts-digits (see python -m hrf_core "
                   "experiment NAME --help)")
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
    """The TrainConfig of a ``train`` command line: the preset (or the defaults), then every flag that was given,
    each checked by the settings table (a refusal names the flag)."""
    config = PRESETS[args.preset] if args.preset else TrainConfig()
    if getattr(args, "prompts_file", None):  # the command line alone reads files: the page and the API never do
        from hrf_core.models.prompt_sets import read_prompt_file

        if args.prompts is not None:
            raise ValueError("give --prompts or --prompts-file, not both")
        args.prompts = list(read_prompt_file(args.prompts_file))
    try:
        changes = {s.name: settings.parse(s.name, getattr(args, s.name)) for s in settings.on("cli")
                   if getattr(args, s.name) is not None}
        config = config.replace(**changes)
        if "window" not in changes:  # a default (or preset) window the user never typed follows --steps, as on the page
            config = config.replace(window=settings.fit_window(settings.format_window(config.window),
                                                               config.num_steps))
        settings.check(config)
    except settings.SettingError as error:
        raise ValueError(error.render(settings.flag)) from None
    return config


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


def _train(launch) -> int:
    """Train a :class:`~hrf_core.rl.launch.Launch` with a progress bar (rank 0); Ctrl-C and SIGTERM stop it
    cooperatively. Exit code 0 when done, 130 when stopped."""
    trainer = launch.trainer
    main = trainer.dist.is_main
    if main:
        on_epoch, bar = _progress_callback(trainer.config.epochs)
        bar.update(trainer.epoch)
        trainer.callbacks.append(on_epoch)
    try:
        with _stop_on_signals(trainer.stop_event):
            state = launch.train()
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
    from hrf_core.rl.distributed import init_from_env

    return init_from_env(config_device)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a new run; under ``torchrun`` every rank runs this, rank 0 creates and writes the run."""
    from hrf_core.models.registry import load_base_model
    from hrf_core.rl.distributed import layout
    from hrf_core.rl.launch import start_run
    from hrf_core.rl.memory import check_fits
    from hrf_core.store.runs import RunStore

    config = config_from_args(args)
    report_to = trackers.require(args.report_to)
    dist, device = _distributed(config.device)
    ranks = layout(dist, device)
    if dist.active:
        config = config.replace(extra={**config.extra, "distributed": ranks})
    try:  # before the weights take their share of the GPU
        check_fits(config, device, dist.world)
    except settings.SettingError as error:
        raise ValueError(error.render(settings.flag)) from None
    base = load_base_model(config.model, device)  # unreadable weights: one line, and no run folder is made
    launch = start_run(config, RunStore(args.out), args.name, report_to=report_to, trusted=True, dist=dist,
                       memory=False, base=base)  # its fit was checked above, on this device and these ranks
    return _train(launch)


def cmd_resume(args: argparse.Namespace) -> int:
    from hrf_core.rl.launch import continue_run, prepare_reward
    from hrf_core.store import liveness
    from hrf_core.store.runs import open_run

    if args.epochs is not None and args.epochs <= 0:
        raise ValueError(f"epochs must be >= 1, got {args.epochs}")
    run = open_run(args.run_dir)
    report_to = trackers.require(args.report_to)
    prepare_reward(run.config.get("reward", ""), run.config.get("model", ""))
    dist, device = _distributed(run.config.get("device", "auto"))
    if dist.is_main:  # held before its metrics are truncated; a run another process trains is refused
        liveness.hold(run.path)
    launch = continue_run(run, args.epochs, Path(args.checkpoint) if args.checkpoint else None,
                          report_to=report_to, device=device, dist=dist)
    return _train(launch)


def cmd_sample(args: argparse.Namespace) -> int:
    from hrf_core.rl.sampling import sample_images, save_samples

    if args.n <= 0 or args.steps <= 1 or args.eta < 0:
        raise ValueError("--n must be >= 1, --steps >= 2 and --eta >= 0")
    from hrf_core.rl.sampling import round_robin
    from hrf_core.store.runs import run_of_checkpoint

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


#: ``experiment NAME``: each experiment's module.
EXPERIMENTS = {"frontier-digits": "hrf_core.study.experiment", "prompts-digits": "hrf_core.study.prompts_experiment"}
#: Subcommands whose arguments belong to their own module's parser (its ``cli_main``).
FORWARDED = {
    "pretrain": "hrf_core.models.pretrain", "experiment": "hrf_core.study.experiment",
    "frontier": "hrf_core.study.frontier", "animate": "hrf_core.share.animate", "examples": "hrf_core.study.examples",
    "locality": "hrf_core.study.locality", "locality-study": "hrf_core.study.locality_study",
    "export": "hrf_core.share.export",
}


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        if "torch" in sys.modules:  # a torchrun rank leaves its process group
            from hrf_core.rl.distributed import shutdown

            shutdown()


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--offline" in argv:  # every command, its own parser or a forwarded one's
        from hrf_core import downloads

        argv = [arg for arg in argv if arg != "--offline"]
        downloads.set_offline(True)
        os.environ["HF_HUB_OFFLINE"] = "1"  # the experiments' worker processes and Ray tasks inherit the word
    if argv and argv[0] in FORWARDED:
        try:
            name = EXPERIMENTS.get(argv[1] if len(argv) > 1 else "", FORWARDED[argv[0]]) \
                if argv[0] == "experiment" else FORWARDED[argv[0]]
            module = importlib.import_module(name)
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
        if args.command == "measure":
            from hrf_core.measure.evaluation import measure_files

            print(json.dumps(measure_files(args.array, args.labels, args.model)))
            return 0
        if args.command == "base-metrics":
            from hrf_core.study.base_metrics import write_base_metrics

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
