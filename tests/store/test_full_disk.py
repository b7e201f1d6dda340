"""A full disk is one clear line and nothing is lost (#24): no temporary debris, every logged epoch and the last
good checkpoint kept, the run resumable from it; ``HRF_MAX_STORE_GB`` refuses runs before they start."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import small_config

from explorer.jobs import JobManager
from hrf_core.cli import main
from hrf_core.rl.launch import resume_training
from hrf_core.rl.trainer import Trainer
from hrf_core.store import checkpoints, runs
from hrf_core.store.runs import RunStore, StoreFullError, is_disk_full

ENOSPC = OSError(errno.ENOSPC, "No space left on device")
TIMING = {"seconds", "sample_seconds", "update_seconds", "eval_seconds", "logged_at"}


def debris(folder: Path) -> list[Path]:
    """Temporary files or folders a write left behind (``*.tmp``, ``.name.XXXX.tmp``, ``*.old``)."""
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".old"))]


def rows_of(run) -> list[dict]:
    """Every line of metrics.jsonl parsed (a torn line fails here), timings dropped."""
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def final_weights(run) -> dict:
    return load_file(str(run.checkpoints()[-1] / "unet" / "diffusion_pytorch_model.safetensors"))


def fail_checkpoint_of(monkeypatch, epoch: int) -> None:
    """The checkpoint of ``epoch`` hits a full disk half-way (its optimiser file is half written)."""
    real = checkpoints.save_file

    def save_file(tensors, path, metadata=None):
        if f"epoch-{epoch:04d}" in str(path):
            Path(path).write_bytes(b"\0" * 1000)  # what a write cut short leaves
            raise ENOSPC
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoints, "save_file", save_file)


def test_disk_full_is_recognised_in_every_form():
    from safetensors import SafetensorError

    assert is_disk_full(ENOSPC) and is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    wrapped = RuntimeError("could not save")
    wrapped.__cause__ = ENOSPC
    assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied")) and not is_disk_full(ValueError("x"))


def test_a_full_disk_at_a_checkpoint_keeps_everything_and_resumes(tiny_model_dir, tmp_path, monkeypatch):
    config = small_config(tiny_model_dir, epochs=3, checkpoint_every=1)
    whole = RunStore(tmp_path / "whole").create(config.to_dict())
    Trainer(config, whole).train()

    run = RunStore(tmp_path / "full").create(config.to_dict())
    fail_checkpoint_of(monkeypatch, 2)
    with pytest.raises(StoreFullError) as caught:
        Trainer(config, run).train()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("the disk holding the run store is full")
    assert "the checkpoint of epoch 2 was not written" in message
    assert "kept metrics up to epoch 2 and the checkpoint of epoch 1" in message
    assert f"python -m hrf_core resume {run.path}` continues from epoch 1" in message
    assert debris(run.path) == []
    assert [p.name for p in run.checkpoints()] == ["epoch-0001"]
    assert rows_of(run) == rows_of(whole)[:3]  # epochs 0, 1, 2: whole lines, as an uninterrupted run wrote them
    assert run.status["state"] == "failed" and run.status["message"] == f"StoreFullError: {message}"

    monkeypatch.undo()  # space freed
    assert resume_training(run).train() == "done"
    assert rows_of(run) == rows_of(whole)  # epoch 2 once, as if nothing had happened
    a, b = final_weights(run), final_weights(whole)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_while_logging_cuts_the_torn_row(tiny_model_dir, tmp_path, monkeypatch):
    config = small_config(tiny_model_dir, epochs=2, checkpoint_every=1)
    run = RunStore(tmp_path).create(config.to_dict())
    real = runs._write_all
    before: list[bytes] = []

    def write_all(fd, data):
        if b'"epoch": 2' in data:
            before.append((run.path / "metrics.jsonl").read_bytes())
            os.write(fd, data[: len(data) // 2])  # half the row reaches the disk
            raise ENOSPC
        real(fd, data)

    monkeypatch.setattr(runs, "_write_all", write_all)
    with pytest.raises(StoreFullError, match="the metrics of epoch 2 was not written .* kept metrics up to epoch 1 "
                                             "and the checkpoint of epoch 1"):
        Trainer(config, run).train()
    assert (run.path / "metrics.jsonl").read_bytes() == before[0]  # the half row is cut off, epochs 0-1 intact
    assert [r["epoch"] for r in rows_of(run)] == [0, 1] and debris(run.path) == []
    monkeypatch.undo()
    assert resume_training(run).train() == "done" and [r["epoch"] for r in rows_of(run)] == [0, 1, 2]


def test_the_cli_says_a_full_disk_in_one_line_and_exits_2(tiny_model_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    fail_checkpoint_of(monkeypatch, 2)
    small = ["--steps", "10", "--samples", "8", "--batch-size", "4", "--siblings", "2", "--eval-samples", "8",
             "--device", "cpu", "--epochs", "2", "--checkpoint-every", "1"]
    assert main(["train", "--model", str(tiny_model_dir), "--window", "5:10", "--out", str(out), "--name", "d",
                 *small]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: the disk holding the run store is full"), lines
    assert f"resume {out / 'd'}" in lines[0] and debris(out) == []
    monkeypatch.undo()
    assert main(["resume", str(out / "d")]) == 0
    assert [json.loads(x)["epoch"] for x in (out / "d" / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]


def test_the_job_manager_shows_a_full_disk_as_its_reason_and_stays_usable(tiny_model_dir, tmp_path, monkeypatch):
    manager = JobManager(RunStore(tmp_path / "runs"), preflight=None, torch_threads=1)
    fail_checkpoint_of(monkeypatch, 1)
    run_id = manager.start(small_config(tiny_model_dir, epochs=1))
    assert manager.wait(120)
    snap = manager.snapshot()
    assert snap.state == "failed" and snap.error.startswith("StoreFullError: the disk holding the run store is full")
    assert "no checkpoint yet: free some space and start the run again" in snap.error
    assert debris(manager.store.get(run_id).path) == [] and not manager.busy


def test_a_duel_refused_by_a_full_disk_leaves_no_run_folder(tmp_path, monkeypatch):
    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=lambda *a: None, preflight=None)
    real, written = runs.write_json, []

    def write_json(path, data):
        written.append(path)
        if len(written) > 2:  # the first run's config and status fit, the second run's config does not
            raise ENOSPC
        real(path, data)

    monkeypatch.setattr(runs, "write_json", write_json)
    with pytest.raises(StoreFullError, match="is full: no run was started"):
        manager.start_duel(small_config("m"), small_config("m", method="ddpo", window=(0, 10)))
    assert list((tmp_path / "runs").iterdir()) == [] and not manager.busy


def test_a_store_over_its_limit_refuses_runs_before_they_start(tiny_model_dir, tmp_path, monkeypatch, capsys):
    store = RunStore(tmp_path / "runs")
    done = store.create(small_config(tiny_model_dir).to_dict(), name="old")
    (done.path / "ballast").write_bytes(b"\0" * 5000)
    monkeypatch.setenv("HRF_MAX_STORE_GB", "0.000004")  # 4,000 bytes
    with pytest.raises(StoreFullError, match=r"holds 0.00 GB, over HRF_MAX_STORE_GB=0.000004: .* nothing was started"):
        store.create({"method": "hrf"})
    assert [r.run_id for r in store.list()] == ["old"]
    with pytest.raises(ValueError, match="over HRF_MAX_STORE_GB"):
        JobManager(store, preflight=None).start(small_config(tiny_model_dir))
    with pytest.raises(StoreFullError):
        resume_training(done)
    assert main(["train", "--model", str(tiny_model_dir), "--out", str(store.root)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "over HRF_MAX_STORE_GB" in lines[0]
    assert [r.run_id for r in store.list()] == ["old"]
    monkeypatch.setenv("HRF_MAX_STORE_GB", "1")
    assert store.create({"method": "hrf"}).path.is_dir()
    monkeypatch.setenv("HRF_MAX_STORE_GB", "lots")
    with pytest.raises(ValueError, match="HRF_MAX_STORE_GB must be a positive number of gigabytes"):
        store.create({"method": "hrf"})


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A 12 MB tmpfs (needs root, or CAP_SYS_ADMIN); the test is skipped where it cannot be mounted."""
    folder = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(folder)],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"cannot mount a tmpfs here: {error}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_real_full_tmpfs_keeps_the_run_resumable(tiny_model_dir, small_tmpfs):
    config = small_config(tiny_model_dir, epochs=3, checkpoint_every=1)
    run = RunStore(small_tmpfs / "runs").create(config.to_dict())
    trainer = Trainer(config, run)
    steps = trainer.steps()
    assert [next(steps), next(steps)] == [0, 1]  # the base model's evaluation, then epoch 1 and its checkpoint
    checkpoint_bytes = sum(p.stat().st_size for p in run.checkpoints()[0].rglob("*") if p.is_file())
    ballast = small_tmpfs / "ballast"
    stat = os.statvfs(small_tmpfs)
    # room for epoch 2's grid, arrays and row, not for its checkpoint
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    try:
        os.posix_fallocate(fd, 0, stat.f_bavail * stat.f_frsize - 64 * 1024)
    finally:
        os.close(fd)
    assert checkpoint_bytes > 64 * 1024
    with pytest.raises(StoreFullError, match="the checkpoint of epoch 2 was not written"):
        next(steps)
    assert debris(run.path) == [] and [p.name for p in run.checkpoints()] == ["epoch-0001"]
    assert [r["epoch"] for r in rows_of(run)] == [0, 1, 2]
    assert run.status["state"] == "failed"
    ballast.unlink()  # space freed
    assert resume_training(run).train() == "done"
    assert [r["epoch"] for r in rows_of(run)] == [0, 1, 2, 3]
    assert [p.name for p in run.checkpoints()] == ["epoch-0001", "epoch-0002", "epoch-0003"]
