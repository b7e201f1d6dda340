"""Every import points down a floor (docs/ARCHITECTURE.md, "Floors"), and no module imports itself round a circle.

The graph is read from the library's syntax trees: every ``import`` of ``hrf_core``, lazy ones (inside functions)
and ``TYPE_CHECKING`` ones too. The package's ``__init__.py`` is no floor: it loads the settings, so that every
config validates (:func:`hrf_core.config.add_check`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from hrf_core import REPO_ROOT

#: Lowest first: a module may import its own floor's and those below (``config``, ``methods``, ``settings`` and
#: ``presets`` are the run's description, each importing only those before it).
FLOORS = (
    ("imaging", "downloads", "commandline", "registry"),
    ("store",),
    ("models",),
    ("measure",),
    ("rewards",),
    ("config",),
    ("methods",),
    ("settings",),
    ("presets",),
    ("share",),
    ("rl",),
    ("study",),
    ("cli", "commands", "__main__"),
)
#: Imports that still point up, each a floor's part that other work is moving (issue #40): none may be added.
#: This work's floors (the description, ``share``, ``rl``) have none.
STILL_UP: set[tuple[str, str]] = set()  # every import points down a floor (docs/ARCHITECTURE.md)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, dict[str, list[int]]]:
    """``{module: {imported module: [lines]}}`` of every import of a library module by another (``root``: the folder
    holding ``hrf_core``); ``from package import name`` imports ``package.name`` when that is a module."""
    paths = {module_name(p, root): p for p in sorted((root / "hrf_core").rglob("*.py"))}
    graph: dict[str, dict[str, list[int]]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            else:
                continue
            for target in targets:
                while target not in paths and "." in target:
                    target = target.rpartition(".")[0]
                if target in paths and target not in (module, "hrf_core"):
                    graph.setdefault(module, {}).setdefault(target, []).append(node.lineno)
    return graph


def floor_of(module: str) -> int | None:
    """The floor of ``hrf_core.<top>...`` (None: the package itself, or a module on no floor)."""
    top = module.split(".")[1] if "." in module else None
    return next((i for i, names in enumerate(FLOORS) if top in names), None)


def upward(graph: dict[str, dict[str, list[int]]]) -> set[tuple[str, str]]:
    """The imports from a floor to a higher one."""
    return {(a, b) for a, targets in graph.items() for b in targets
            if floor_of(a) is not None and floor_of(b) is not None and floor_of(b) > floor_of(a)}


def circles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (each a circle of imports), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_module_imports_itself_round_a_circle():
    assert circles(import_graph(REPO_ROOT)) == []


def test_every_import_points_down_a_floor():
    graph = import_graph(REPO_ROOT)
    up = upward(graph)
    assert up == STILL_UP, {f"{a} -> {b} (line {graph[a][b][0]})" for a, b in up ^ STILL_UP}
    description_and_above = {"config", "methods", "settings", "presets", "share", "rl"}
    assert not [pair for pair in up if pair[0].split(".")[1] in description_and_above]
    assert graph.get("hrf_core.config", {}) == {}  # the config imports nothing of the library
    every_module = {module_name(p, REPO_ROOT) for p in (REPO_ROOT / "hrf_core").rglob("*.py")}
    assert {m for m in every_module if floor_of(m) is None} == {"hrf_core"}  # every module has its floor


def test_the_import_checks_can_fail(tmp_path):
    """A lazy import up a floor, a ``TYPE_CHECKING`` one back (a circle), a relative one, and the package's own."""
    package = tmp_path / "hrf_core"
    (package / "rl").mkdir(parents=True)
    (package / "__init__.py").write_text("from hrf_core import settings\n")
    (package / "settings.py").write_text("")
    (package / "config.py").write_text("def validate():\n    from hrf_core import settings\n")
    (package / "rl" / "__init__.py").write_text("")
    (package / "rl" / "update.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                              "    from hrf_core.rl.trainer import Trainer\n")
    (package / "rl" / "trainer.py").write_text("from .update import PolicyUpdate\nfrom hrf_core.config import X\n")
    graph = import_graph(tmp_path)
    assert graph == {"hrf_core": {"hrf_core.settings": [1]}, "hrf_core.config": {"hrf_core.settings": [2]},
                     "hrf_core.rl.update": {"hrf_core.rl.trainer": [3]},
                     "hrf_core.rl.trainer": {"hrf_core.rl.update": [1], "hrf_core.config": [2]}}
    assert upward(graph) == {("hrf_core.config", "hrf_core.settings")}
    assert circles(graph) == [["hrf_core.rl.trainer", "hrf_core.rl.update"]]


def test_a_config_validates_whichever_module_was_imported_first():
    """The settings register the config's check when the package loads: a fresh interpreter that imports only the
    config refuses a bad one with the settings' one line. (Seen failing without ``hrf_core/__init__.py``'s import
    of the settings: the bad config then passed.)"""
    code = ("from hrf_core.config import TrainConfig\n"
            "try:\n    TrainConfig(samples_per_epoch=8, batch_size=3, siblings=1).validate()\n"
            "except ValueError as error:\n    print(type(error).__name__, error)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout == "SettingError samples_per_epoch (8) must be a multiple of batch_size (3)\n"


def test_the_picture_of_the_house_has_the_floors_of_the_code():
    """docs/ARCHITECTURE.md's picture lists the floors, top first, as :data:`FLOORS` has them."""
    text = (REPO_ROOT / "docs" / "ARCHITECTURE.md").read_text()
    picture = text.split("## The house", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    drawn = [tuple(name.strip() for name in line.split(None, 1)[1].split("  ")[0].split(","))
             for line in picture.splitlines()[1:] if line[:6].strip().isdigit()]
    assert drawn[::-1] == list(FLOORS)
