"""Data-parallel training with torchrun and 2 gloo processes on the CPU: the same weights as one process,
resume with 2 processes, and a stop that reaches one rank ends both cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
SMALL = ["--method", "hrf", "--window", "5:10", "--steps", "10", "--samples", "16", "--batch-size", "4",
         "--siblings", "2", "--eval-samples", "8", "--device", "cpu", "--lr", "1e-3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.slow


def cli(args: list[str], processes: int = 1, timeout: float = 180) -> subprocess.CompletedProcess:
    launcher = TORCHRUN if processes == 2 else [sys.executable]
    result = subprocess.run([*launcher, "-m", "hrf_core", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def max_weight_difference(a: Path, b: Path) -> float:
    wa = load_file(str(next((a / "unet").glob("*.safetensors"))))
    wb = load_file(str(next((b / "unet").glob("*.safetensors"))))
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def test_two_processes_take_the_same_steps_as_one_and_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "runs"
    common = ["train", "--model", str(tiny_model_dir), *SMALL, "--epochs", "2", "--checkpoint-every", "1",
              "--out", str(out)]
    cli([*common, "--name", "one"])
    cli([*common, "--name", "two"], processes=2)
    differences = [max_weight_difference(out / "one" / "checkpoints" / f"epoch-000{e}",
                                         out / "two" / "checkpoints" / f"epoch-000{e}") for e in (1, 2)]
    assert max(differences) <= 1e-4, differences  # the gradient sums differ only in their order
    one = [json.loads(x) for x in (out / "one" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (out / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in two] == [0, 1, 2]  # rank 0 alone writes the store
    assert one[1]["starts"] == two[1]["starts"] and one[1]["train_reward_mean"] == two[1]["train_reward_mean"]
    assert one[1]["rows_trained"] == two[1]["rows_trained"]  # compute counted over both ranks
    config = json.loads((out / "two" / "config.json").read_text())
    assert config["extra"]["distributed"]["world_size"] == 2
    assert [r["rank"] for r in config["extra"]["distributed"]["ranks"]] == [0, 1]

    cli(["resume", str(out / "one"), "--epochs", "3"])
    cli(["resume", str(out / "two"), "--epochs", "3"], processes=2)
    third = max_weight_difference(out / "one" / "checkpoints" / "epoch-0003",
                                  out / "two" / "checkpoints" / "epoch-0003")
    assert third <= 1e-4, third
    assert [json.loads(x)["epoch"] for x in (out / "two" / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_a_stop_signalled_to_one_rank_ends_both(tiny_model_dir, tmp_path):
    out = tmp_path / "runs"
    launcher = subprocess.Popen(
        [*TORCHRUN, "-m", "hrf_core", "train", "--model", str(tiny_model_dir), *SMALL, "--epochs", "500",
         "--checkpoint-every", "100", "--out", str(out), "--name", "stop"],
        cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        metrics = out / "stop" / "metrics.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
            time.sleep(0.2)
        workers = children(launcher.pid)
        assert len(workers) == 2
        os.kill(workers[-1], signal.SIGTERM)  # one rank only: the other learns of it at the next sync point
        launcher.wait(timeout=60)  # no hang
    finally:
        if launcher.poll() is None:
            launcher.kill()
    status = json.loads((out / "stop" / "status.json").read_text())
    assert status["state"] == "stopped", status
    epoch = status["epoch"]
    folder = out / "stop" / "checkpoints"  # absent when the stop came mid-epoch before any checkpoint
    saved = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert epoch >= 1 and saved[-1:] in ([f"epoch-{epoch:04d}"], []), saved
    assert [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()] == list(range(epoch + 1))
