"""The experiment at its smallest, for the backend tests: 4 units (DDPO and its hand-over, 2 seeds, 2 epochs)
on the tiny model, and the checks that two stores hold the same results bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from hrf_core import REPO_ROOT
from hrf_core.study.arms import NAME

#: Wall-clock fields of a metrics row (everything else must match across backends).
WALL_CLOCK = {"seconds", "sample_seconds", "update_seconds", "eval_seconds", "logged_at"}
UNITS = ["jpeg-compressibility-ddpo-seed0", "jpeg-compressibility-ddpo-seed1",
         "jpeg-compressibility-handover-seed0", "jpeg-compressibility-handover-seed1"]


def args(model: Path, root: Path, epochs: int = 2) -> list[str]:
    """The command line after ``python -m hrf_core experiment``: store ``root/runs``, report ``root/docs``."""
    return [NAME, "--model", str(model), "--epochs", str(epochs), "--steps", "10", "--samples", "8", "--batch-size",
            "4", "--siblings", "2", "--eval-every", "1", "--eval-samples", "8", "--seeds", "0", "1", "--tasks",
            "jpeg-compressibility", "--arms", "ddpo", "handover", "--threads", "1",
            "--handover-every", "5", "--out", str(root / "runs"), "--docs", str(root / "docs"), "--reference", ""]


def command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "hrf_core", "experiment", *argv]


def run(*argv: str, env: dict | None = None, timeout: float = 480) -> subprocess.CompletedProcess:
    """The experiment's command line in a process of its own (a driver, as a user starts it)."""
    return subprocess.run(command(*argv), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
                          env={**os.environ, **(env or {})})


def metric_rows(run_folder: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK}
            for line in (run_folder / "metrics.jsonl").read_text().splitlines()]


def weights(run_folder: Path) -> dict[str, dict]:
    return {c.name: load_file(next((c / "unet").glob("*.safetensors")))
            for c in sorted((run_folder / "checkpoints").glob("epoch-*"))}


def assert_same_runs(store: Path, reference: Path, names=UNITS) -> None:
    """Every run of ``names`` is finished in both stores, with equal metric rows (wall-clock fields aside) and
    equal checkpoint weights, bit for bit."""
    for name in names:
        for root in (store, reference):
            assert json.loads((root / name / "status.json").read_text())["state"] == "done", (root, name)
        assert metric_rows(store / name) == metric_rows(reference / name), name
        mine, theirs = weights(store / name), weights(reference / name)
        assert mine.keys() == theirs.keys(), name
        for checkpoint, tensors in mine.items():
            assert tensors.keys() == theirs[checkpoint].keys()
            assert all(torch.equal(tensors[k], theirs[checkpoint][k]) for k in tensors), (name, checkpoint)
