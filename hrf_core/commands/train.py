"""``train``: fine-tune a base model; its flags come from the settings table (:data:`hrf_core.settings.TABLE`)."""

from __future__ import annotations

import argparse

from hrf_core.commands.base import Command


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting the command line shows (:data:`hrf_core.settings.TABLE`), checked by
    :func:`config_from_args` as the page and the API check theirs."""
    from hrf_core import settings
    from hrf_core.config import TrainConfig

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


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of a ``train`` command line: the preset (or the defaults), then every flag that was given,
    each checked by the settings table (a refusal names the flag)."""
    from hrf_core import settings
    from hrf_core.config import TrainConfig
    from hrf_core.presets import PRESETS

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


class Train(Command):
    name = "train"
    help = "fine-tune a base model (DDPO / HRF / HRF sliding / HRF-D)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hrf_core.presets import PRESETS
        from hrf_core.share import trackers

        parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset (flags override it)")
        add_setting_flags(parser)
        parser.add_argument("--prompts-file", metavar="FILE", help="read the prompts from a text file, one per line "
                            "(instead of --prompts)")
        parser.add_argument("--out", default="runs", help="run store folder (default runs)")
        parser.add_argument("--name", help="run id (default: time stamp, method and reward)")
        parser.add_argument("--report-to", choices=trackers.TRACKERS, action="append",
                            help="also log to this tracker (repeat): trackio, tensorboard or wandb")

    def run(self, args: argparse.Namespace) -> int:
        """Train a new run; under ``torchrun`` every rank runs this, rank 0 creates and writes the run."""
        from hrf_core import settings
        from hrf_core.commands.training import train
        from hrf_core.models.registry import load_base_model
        from hrf_core.rl.distributed import init_from_env, layout
        from hrf_core.rl.launch import start_run
        from hrf_core.rl.memory import check_fits
        from hrf_core.share import trackers
        from hrf_core.store.runs import RunStore

        config = config_from_args(args)
        report_to = trackers.require(args.report_to)
        dist, device = init_from_env(config.device)  # torchrun's rank and its device, or the single process
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
        return train(launch)


COMMAND = Train()
main = COMMAND.main
