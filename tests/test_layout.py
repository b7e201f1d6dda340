"""The library stands alone: ``hrf_core`` imports nothing of the app (``explorer``, ``app``) nor gradio."""

from __future__ import annotations

import ast
from pathlib import Path

from hrf_core import REPO_ROOT

APP_PACKAGES = ("explorer", "app", "gradio")


def app_imports(path: Path) -> list[str]:
    """``line: module`` of every import in ``path`` of an app package (``APP_PACKAGES``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        found += [f"{node.lineno}: {name}" for name in names if name.split(".")[0] in APP_PACKAGES]
    return found


def test_the_library_imports_nothing_of_the_app():
    offenders = {str(p.relative_to(REPO_ROOT)): hits for p in sorted((REPO_ROOT / "hrf_core").rglob("*.py"))
                 if (hits := app_imports(p))}
    assert not offenders, offenders


def test_the_import_check_can_fail(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\ndef f():\n    from explorer.views import common\n    import gradio as gr\n")
    assert app_imports(module) == ["3: explorer.views", "4: gradio"]


# -- one of each: an algorithm is defined in one place ---------------------------------------------------------
def library_files(root: Path) -> list[Path]:
    return sorted((root / "hrf_core").rglob("*.py"))


def walks_timesteps(iterable: ast.expr) -> bool:
    """Whether a loop walks a time grid itself: ``timesteps``, ``x.timesteps``, a slice of it, or ``enumerate`` of
    one (a loop over what ``denoise(...)`` yields does not)."""
    while True:
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Name) and iterable.func.id == "enumerate":
            iterable = iterable.args[0]
        elif isinstance(iterable, ast.Subscript):
            iterable = iterable.value
        else:
            return getattr(iterable, "id", getattr(iterable, "attr", None)) == "timesteps"


def one_of_each(root: Path) -> dict[str, list[str]]:
    """Where each algorithm that must exist once is defined (``path:line``), read from the library's syntax trees.

    ``inception_score``: its ``def``; the DDIM step loop: a ``for`` over a scheduler's ``timesteps``; the file
    hash: a ``def`` whose name says sha256; the trainer-state file: the string literal of its name; the
    prompted-or-not check: the refusal's text."""
    found: dict[str, list[str]] = {"inception_score": [], "DDIM step loop": [], "sha256 of a file": [],
                                   "trainer-state file name": [], "prompted-or-not check": []}
    for path in library_files(root):
        where = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "inception_score":
                found["inception_score"].append(f"{where}:{node.lineno}")
            if isinstance(node, ast.FunctionDef) and "sha256" in node.name:
                found["sha256 of a file"].append(f"{where}:{node.lineno}")
            if isinstance(node, ast.For) and walks_timesteps(node.iter):
                found["DDIM step loop"].append(f"{where}:{node.lineno}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value == "trainer_state.safetensors":
                    found["trainer-state file name"].append(f"{where}:{node.lineno}")
                if "is unconditional: it takes no prompts" in node.value:
                    found["prompted-or-not check"].append(f"{where}:{node.lineno}")
    return found


def test_each_algorithm_is_defined_once():
    found = one_of_each(REPO_ROOT)
    assert {what: len(places) for what, places in found.items()} == dict.fromkeys(found, 1), found
    assert [places[0].split(":")[0] for places in found.values()] == [
        "hrf_core/measure/metrics.py", "hrf_core/models/ddim.py", "hrf_core/models/weights.py",
        "hrf_core/store/checkpoints.py", "hrf_core/rl/prompting.py"]


def test_the_one_of_each_check_can_fail(tmp_path):
    copy = tmp_path / "hrf_core" / "m.py"
    copy.parent.mkdir()
    copy.write_text("def inception_score(p):\n    return p\n\nfor t in scheduler.timesteps[2:]:\n    pass\n"
                    "for i, t in enumerate(timesteps):\n    pass\nfor x in denoise(s.timesteps):\n    pass\n"
                    "def sha256_file(p):\n    pass\nNAME = 'trainer_state.safetensors'\n"
                    "E = f'model {m} is unconditional: it takes no prompts'\n")
    assert one_of_each(tmp_path) == {"inception_score": ["hrf_core/m.py:1"],
                                     "DDIM step loop": ["hrf_core/m.py:4", "hrf_core/m.py:6"],
                                     "sha256 of a file": ["hrf_core/m.py:10"],
                                     "trainer-state file name": ["hrf_core/m.py:12"],
                                     "prompted-or-not check": ["hrf_core/m.py:13"]}


# -- no module imports another's private name -------------------------------------------------------------------
def private_imports(path: Path, package: str) -> list[str]:
    """``line: module.name`` of every ``from hrf_core... import _name`` in ``path`` (``package``: its package, for
    relative imports): a name with a leading underscore belongs to its own module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level:
            parts = package.split(".")
            module = ".".join(parts[:len(parts) - node.level + 1] + ([module] if module else []))
        if module.split(".")[0] != "hrf_core":
            continue
        found += [f"{node.lineno}: {module}.{alias.name}" for alias in node.names
                  if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_module_imports_a_private_name_of_another():
    offenders = {}
    for path in library_files(REPO_ROOT):
        package = ".".join(path.relative_to(REPO_ROOT).parent.parts)
        if hits := private_imports(path, package):
            offenders[str(path.relative_to(REPO_ROOT))] = hits
    assert not offenders, offenders


def test_the_private_name_check_can_fail(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from hrf_core.cli import _Parser, build_parser\nfrom hrf_core import __version__\n"
                      "def f():\n    from .base import _unet_dir\n    from os import _exit\n")
    assert private_imports(module, "hrf_core.models") == ["1: hrf_core.cli._Parser",
                                                           "4: hrf_core.models.base._unet_dir"]


# -- measure holds pure metrics: it imports nothing above its floor ---------------------------------------------
#: The floors above ``measure`` (docs/ARCHITECTURE.md, "Floors").
ABOVE_MEASURE = ("rewards", "config", "methods", "settings", "presets", "rl", "share", "study", "cli", "commands")


def imports_above(path: Path, floors: tuple[str, ...]) -> list[str]:
    """Every ``hrf_core.<floor>...`` module ``path`` imports (lazy imports too), for the floors named."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        found += [name for name in names if name.split(".")[0] == "hrf_core" and name.count(".")
                  and name.split(".")[1] in floors]
    return found


def test_measure_imports_nothing_above_it():
    found = {str(p.relative_to(REPO_ROOT)): hits for p in sorted((REPO_ROOT / "hrf_core" / "measure").rglob("*.py"))
             if (hits := imports_above(p, ABOVE_MEASURE))}
    assert not found, found


def test_the_floor_check_can_fail(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from hrf_core.measure import metrics\ndef f():\n"
                      "    from hrf_core.rl.sampling import sample_from\n    import hrf_core.study.frontier\n")
    assert imports_above(module, ABOVE_MEASURE) == ["hrf_core.rl.sampling", "hrf_core.study.frontier"]
