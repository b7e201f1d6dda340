"""``python -m hrf_core``'s commands: one module each under ``hrf_core/commands/``, all built the same way, and no
other library module parses a command line."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from hrf_core import REPO_ROOT
from hrf_core.cli import build_parser, main
from hrf_core.commandline import EXIT_USAGE, Parser
from hrf_core.commands import COMMANDS, Command, Group

COMMANDS_DIR = REPO_ROOT / "hrf_core" / "commands"
#: The modules of hrf_core/commands/ that hold no command.
HELPERS = {"__init__", "base", "training", "sitting"}
#: Where a command line may be parsed.
CLI_FILES = {"hrf_core/cli.py", "hrf_core/commandline.py"}


def every_command() -> list[tuple[str, Command]]:
    """(words, command) of every command, a group's own commands too (``experiment frontier-digits``)."""
    out = []
    for name, command in COMMANDS.items():
        out.append((name, command))
        if isinstance(command, Group):
            out += [(f"{name} {sub}", inner) for sub, inner in command.commands().items()]
    return out


def test_each_command_module_holds_one_registered_command():
    registered = {id(command) for _, command in every_command()}
    modules = sorted(p.stem for p in COMMANDS_DIR.glob("*.py") if p.stem not in HELPERS)
    for stem in modules:
        module = importlib.import_module(f"hrf_core.commands.{stem}")
        assert isinstance(module.COMMAND, Command) and id(module.COMMAND) in registered, stem
        assert module.COMMAND.name == stem.replace("_", "-") and module.COMMAND.help, stem
        if module.COMMAND.name in COMMANDS:  # a top-level command: main(argv) parses its words and runs
            assert module.main == module.COMMAND.main, stem
    assert len(modules) == len(registered)


@pytest.mark.parametrize("words,command", every_command(), ids=[words for words, _ in every_command()])
def test_each_command_parses_with_one_line_errors(words, command, capsys):
    """Every command's parser is a commandline.Parser named by its words; a bad flag is one line, exit 2, through
    ``main`` and through the command's own parser alike."""
    parser = command.parser(f"python -m hrf_core {words}".rsplit(" ", 1)[0])
    assert isinstance(parser, Parser) and parser.prog == f"python -m hrf_core {words}"
    with pytest.raises(SystemExit) as exit_:
        main([*words.split(), "--no-such-flag"])
    err = capsys.readouterr().err
    assert exit_.value.code == EXIT_USAGE and err.startswith("error: ") and err.count("\n") == 1, err


def test_every_command_is_listed_and_the_top_parser_builds_each():
    parser = build_parser()
    listing = parser.format_help()
    for name, command in COMMANDS.items():
        assert f"    {name}" in listing and command.help.split()[0] in listing
    choices = next(a for a in parser._subparsers._actions if a.dest == "command").choices
    assert list(choices) == list(COMMANDS)


# -- no other library module parses a command line -------------------------------------------------------------
def command_line_code(root: Path) -> list[str]:
    """``path:line`` of every ``import argparse`` and every ``def cli_main`` / ``build_parser`` in the library
    outside ``commands/``, ``cli.py`` and ``commandline.py``."""
    found = []
    for path in sorted((root / "hrf_core").rglob("*.py")):
        where = str(path.relative_to(root))
        if where in CLI_FILES or where.startswith("hrf_core/commands/"):
            continue
        lines = sorted(node.lineno for node in ast.walk(ast.parse(path.read_text()))
                       if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names)
                       or isinstance(node, ast.ImportFrom) and node.module in ("argparse", "hrf_core.commandline")
                       or isinstance(node, ast.FunctionDef) and node.name in ("cli_main", "build_parser"))
        found += [f"{where}:{line}" for line in lines]
    return found


def test_only_the_commands_parse_a_command_line():
    assert command_line_code(REPO_ROOT) == []


def test_the_command_line_check_can_fail(tmp_path):
    module = tmp_path / "hrf_core" / "study" / "m.py"
    module.parent.mkdir(parents=True)
    module.write_text("import argparse\ndef cli_main(argv):\n    from hrf_core.commandline import Parser\n"
                      "def build_parser():\n    pass\n")
    (tmp_path / "hrf_core" / "commands").mkdir()
    (tmp_path / "hrf_core" / "commands" / "x.py").write_text("import argparse\n")
    assert command_line_code(tmp_path) == [f"hrf_core/study/m.py:{n}" for n in (1, 2, 3, 4)]
