"""The interface every ``python -m hrf_core`` subcommand implements: its name, its line in the listing, its flags
and what it runs.

A command is one object (a :class:`Command` subclass instance, registered in :mod:`hrf_core.commands`). Its
parser is a :class:`~hrf_core.commandline.Parser`: bad input is one line (``error: ...``) and exit code 2. Its
``run`` raises ``ValueError`` for bad input found later (unreadable files, bad combinations); the dispatcher
(:mod:`hrf_core.cli`) prints that as one line too. A :class:`Group` is a command whose first word picks one of
its own commands (``experiment frontier-digits``).
"""

from __future__ import annotations

import argparse
from typing import ClassVar

from hrf_core.commandline import Parser

PROG = "python -m hrf_core"


class Command:
    """One subcommand. ``name``: the word that calls it; ``help``: its line in its parent's ``--help``;
    ``description``: the first paragraph of its own ``--help`` (None: none)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    description: ClassVar[str | None] = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this command's flags and positionals to ``parser``."""

    def run(self, args: argparse.Namespace) -> int:
        """Do it; an exit code (0: done). Bad input: ``ValueError`` with one line."""
        raise NotImplementedError

    def parser(self, prog: str = PROG) -> Parser:
        """This command's own parser (``prog``: the words before its name)."""
        parser = Parser(prog=f"{prog} {self.name}", description=self.description)
        self.add_arguments(parser)
        return parser

    def main(self, argv: list[str] | None = None) -> int:
        """Parse ``argv`` (the words after the command's name) and run; bad input after parsing raises ValueError."""
        return self.run(self.parser().parse_args(argv))


def add_commands(parser: argparse.ArgumentParser, commands: dict[str, Command], dest: str,
                 only: str | None = None) -> None:
    """One subparser per command under ``parser`` (its ``dest`` says which was given), each with the command's help
    line and description; ``only``: fill in that command's arguments alone (the others are listed, not built)."""
    sub = parser.add_subparsers(dest=dest, required=True, parser_class=Parser)
    for name, command in commands.items():
        subparser = sub.add_parser(name, help=command.help, description=command.description)
        if only is None or only == name:
            command.add_arguments(subparser)


class Group(Command):
    """A command whose first word picks one of ``commands`` (by name)."""

    dest: ClassVar[str] = "name"

    def commands(self) -> dict[str, Command]:
        """The group's commands by name, in the listing's order."""
        raise NotImplementedError

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_commands(parser, self.commands(), self.dest)

    def run(self, args: argparse.Namespace) -> int:
        return self.commands()[getattr(args, self.dest)].run(args)
