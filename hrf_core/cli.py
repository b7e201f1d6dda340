"""``python -m hrf_core``: train, resume, sample, export, pretrain and experiment from the shell.

Bad input prints one clear line (``error: ...``) and exits with code 2. ``--offline`` (anywhere on the line, any
command) says the network is unreachable: nothing is downloaded, and weights that are not cached fall back to a
labelled proxy or are refused before anything starts (:mod:`hrf_core.downloads`, docs/OFFLINE.md). Each command is
one module of :mod:`hrf_core.commands`; this module reads the line and hands it to the command it names.
"""

from __future__ import annotations

import argparse
import os
import sys

from hrf_core.commandline import EXIT_USAGE, Parser
from hrf_core.commands import COMMANDS
from hrf_core.commands.base import PROG, add_commands


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line: one subparser per command. ``only``: build that command's arguments alone (a word that
    names no command: none), the others are listed by name and help line; None: every command's."""
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="never download: weights that are not cached fall "
                        "back to a labelled proxy or are refused before a run starts (docs/OFFLINE.md)")
    add_commands(parser, COMMANDS, "command", only)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        if "torch" in sys.modules:  # a torchrun rank leaves its process group
            from hrf_core.rl.distributed import shutdown

            shutdown()


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--offline" in argv:  # every command, wherever the word is
        from hrf_core import downloads

        argv = [arg for arg in argv if arg != "--offline"]
        downloads.set_offline(True)
        os.environ["HF_HUB_OFFLINE"] = "1"  # the experiments' worker processes and Ray tasks inherit the word
    named = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(named if named in COMMANDS else "").parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except ValueError as error:  # bad input, unreadable weights or configs: hrf_core raises ValueError for all
        return _usage_error(error)


def _usage_error(error: ValueError) -> int:
    """Print ``error: <message>`` on one line (a multi-line message is joined) and return exit code 2."""
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    return EXIT_USAGE
