"""Where the app keeps its runs, and the one line the page says about it (no gradio).

In order:

1. ``HRF_RUNS_DIR`` when set (the operator chose);
2. on a Hugging Face Space (``SPACE_ID`` is set) with persistent storage mounted and writable at ``/data``
   (``HRF_DATA_DIR`` moves it, for tests): ``/data/runs``, and the page says runs are kept there;
3. the repository's ``runs/`` when it is writable; otherwise a folder in the system's temporary directory,
   so the app never needs to write into its own code. On a Space without persistent storage, or in a
   temporary folder, the page says that runs are lost at restart.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hrf_core import REPO_ROOT

DATA_DIR_VARIABLE = "HRF_DATA_DIR"
DEFAULT_DATA_DIR = "/data"


@dataclass(frozen=True)
class RunsLocation:
    path: Path
    note: str = ""  # one line for the page; empty when there is nothing to say
    persistent: bool = True


def _writable(folder: Path) -> bool:
    """Whether runs can be written in ``folder`` (or created in its nearest existing parent)."""
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def runs_location(env: Mapping[str, str] | None = None, repo_root: Path = REPO_ROOT) -> RunsLocation:
    """Where runs go in this environment (``env``: default ``os.environ``)."""
    env = os.environ if env is None else env
    if env.get("HRF_RUNS_DIR"):
        return RunsLocation(Path(env["HRF_RUNS_DIR"]))
    space = bool(env.get("SPACE_ID"))
    if space:
        data = Path(env.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR)
        if data.is_dir() and _writable(data):
            return RunsLocation(data / "runs", f"Runs are kept in this Space's persistent storage ({data / 'runs'}): "
                                               "they survive restarts.")
    local = repo_root / "runs"
    path = local if _writable(local) else Path(tempfile.gettempdir()) / "hrf-runs"
    if space:
        return RunsLocation(path, "This Space has no persistent storage: runs are lost when it restarts (attach "
                                  "persistent storage in the Space's settings, or set HRF_RUNS_DIR).", False)
    if path != local:
        return RunsLocation(path, f"{local} is not writable: runs go to {path} and are lost at restart "
                                  "(set HRF_RUNS_DIR to keep them).", False)
    return RunsLocation(path)
