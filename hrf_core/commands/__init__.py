"""The subcommands of ``python -m hrf_core``, one module each behind :class:`~hrf_core.commands.base.Command`.

Adding a command is one module here (a ``Command`` subclass: its name, help line, flags and ``run``; its
``COMMAND`` instance and ``main``) and one entry in :data:`COMMANDS`. The modules import the library only inside
``add_arguments`` and ``run``, so listing the commands loads nothing else. :mod:`hrf_core.cli` dispatches.
"""

from __future__ import annotations

from hrf_core.commands import (
    animate,
    base_metrics,
    examples,
    experiment,
    export,
    frontier,
    locality,
    locality_study,
    measure,
    pretrain,
    resume,
    sample,
    train,
)
from hrf_core.commands.base import Command, Group

__all__ = ["COMMANDS", "Command", "Group"]

#: Every command by name, in the order ``python -m hrf_core --help`` lists them.
COMMANDS: dict[str, Command] = {module.COMMAND.name: module.COMMAND for module in (
    train, resume, sample, measure, pretrain, base_metrics, experiment, frontier, animate, locality, locality_study,
    examples, export)}
