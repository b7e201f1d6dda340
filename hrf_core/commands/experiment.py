"""``experiment NAME``: run an experiment (arms x tasks x seeds, resumable) and write its report.

Every experiment takes the same sitting flags and runs its units the same way (:mod:`hrf_core.commands.sitting`);
its own module (``frontier_digits``, ``prompts_digits``) adds its flags and builds its settings.
"""

from __future__ import annotations

from hrf_core.commands.base import Command, Group


class Experiment(Group):
    name = "experiment"
    help = ("run an experiment: frontier-digits or prompts-digits (see python -m hrf_core experiment NAME "
            "--help)")
    description = __doc__.splitlines()[0]

    def commands(self) -> dict[str, Command]:
        from hrf_core.commands import frontier_digits, prompts_digits

        return {command.name: command for command in (frontier_digits.COMMAND, prompts_digits.COMMAND)}


COMMAND = Experiment()
main = COMMAND.main
