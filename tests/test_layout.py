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
