"""``python -m hrf_core``: an end-to-end run, resume, sampling and bad flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hrf_core.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--steps", "10", "--samples", "8", "--batch-size", "4", "--siblings", "2", "--eval-samples", "8",
         "--device", "cpu"]


@pytest.mark.slow
def test_train_resume_and_sample_end_to_end(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["train", "--model", str(tiny_model_dir), "--reward", "jpeg-compressibility", "--method", "hrf",
                 "--window", "5:10", "--epochs", "2", "--seed", "0", "--out", str(out), "--name", "demo", *SMALL])
    assert code == 0
    run = out / "demo"
    config = json.loads((run / "config.json").read_text())
    assert config["window"] == [5, 10] and config["method"] == "hrf"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    checkpoint = run / "checkpoints" / "epoch-0002"
    assert (checkpoint / "unet" / "config.json").is_file() and (checkpoint / "optimizer.safetensors").is_file()
    assert (run / "grids" / "epoch-0002.png").is_file()
    assert "epoch 2/2" in capsys.readouterr().out

    assert main(["resume", str(run), "--epochs", "3"]) == 0
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3]

    grid, array = tmp_path / "grid.png", tmp_path / "samples.npy"
    assert main(["sample", "--checkpoint", str(checkpoint), "--n", "4", "--seed", "0", "--steps", "10",
                 "--device", "cpu", "--out", str(grid), "--array", str(array)]) == 0
    samples = np.load(array)
    assert samples.shape == (4, 1, 8, 8) and samples.dtype == np.float32
    assert samples.min() >= 0 and samples.max() <= 1 and grid.stat().st_size > 0


@pytest.mark.parametrize("flags,message", [
    (["--window", "30:20"], "window 30:20"),
    (["--window", "0:41"], "window 0:41"),
    (["--window", "abc"], "START:END"),
    (["--epochs", "0"], "--epochs must be between 1 and 1000"),
    (["--model", "no-such-model"], "unknown model"),
    (["--reward", "no-such-reward"], "unknown reward"),
    (["--method", "ppo"], "--method: 'ppo' is not allowed"),
])
def test_bad_flags_exit_2_with_one_line(flags, message, tmp_path, capsys):
    try:
        code = main(["train", "--out", str(tmp_path), *flags])
    except SystemExit as exit_:  # argparse-level errors
        code = exit_.code
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines
    assert not any(tmp_path.iterdir())  # nothing started


def test_module_entry_point_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hrf_core", "train", "--window", "30:20", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and result.stderr.strip().startswith("error: --window 30:20")


def test_offline_hub_model_fails_with_instructions(tmp_path, capsys):
    """Refused before anything starts (how fast: bench/fail_fast.py)."""
    assert main(["train", "--model", "google/ddpm-celebahq-256", "--out", str(tmp_path)]) == 2
    assert "hf download" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--reward", "--method", "--window", "--epochs", "--seed", "--out", "--cluster"):
        assert flag in text


def test_bring_your_own_reward_and_kl_from_the_command_line(tiny_model_dir, tmp_path, capsys):
    from hrf_core.rewards import registry as rewards

    saved = dict(rewards.REWARDS)
    try:
        good = tmp_path / "mine.py"
        good.write_text("def bright(images):\n    return images.mean(dim=(1, 2, 3))\n\n"
                        "def bad(images):\n    return images.mean(dim=(2, 3))\n")
        out = tmp_path / "runs"
        code = main(["train", "--model", str(tiny_model_dir), "--reward", f"{good}:bright", "--method", "ddpo",
                     "--epochs", "1", "--kl-coef", "0.1", "--out", str(out), "--name", "byo", *SMALL])
        assert code == 0
        config = json.loads((out / "byo" / "config.json").read_text())
        assert config["reward"] == f"{good}:bright" and config["kl_coef"] == 0.1
        assert "kl_to_base" in json.loads((out / "byo" / "metrics.jsonl").read_text().splitlines()[1])
        capsys.readouterr()
        for reference, message in ((f"{good}:bad", "returned shape (2, 1) for 2 images"),
                                   (f"{tmp_path}/nowhere.py:f", "does not exist")):
            assert main(["train", "--model", str(tiny_model_dir), "--reward", reference, "--window", "5:10", "--out",
                         str(tmp_path / "x"), *SMALL]) == 2
            lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            assert len(lines) == 1 and message in lines[0], lines
        assert not (tmp_path / "x").exists()  # nothing started
    finally:
        rewards.REWARDS.clear()
        rewards.REWARDS.update(saved)


def test_sample_handover_identities(tiny_model_dir, tmp_path):
    out = tmp_path / "runs"
    assert main(["train", "--model", str(tiny_model_dir), "--method", "ddpo", "--epochs", "1", "--lr", "0.05",
                 "--out", str(out), "--name", "h", *SMALL]) == 0
    checkpoint = out / "h" / "checkpoints" / "epoch-0001"
    arrays = {}
    for label, flags in (("tuned", ["--checkpoint", str(checkpoint)]),
                         ("s0", ["--checkpoint", str(checkpoint), "--handover", "0"]),
                         ("sK", ["--checkpoint", str(checkpoint), "--handover", "10"]),
                         ("s5", ["--checkpoint", str(checkpoint), "--handover", "5"]),
                         ("base", ["--model", str(tiny_model_dir)])):
        path = tmp_path / f"{label}.npy"
        assert main(["sample", *flags, "--n", "4", "--steps", "10", "--device", "cpu", "--out",
                     str(tmp_path / f"{label}.png"), "--array", str(path)]) == 0
        arrays[label] = np.load(path)
    assert np.array_equal(arrays["s0"], arrays["tuned"]) and np.array_equal(arrays["sK"], arrays["base"])
    assert not np.array_equal(arrays["tuned"], arrays["base"])
    assert not np.array_equal(arrays["s5"], arrays["tuned"]) and not np.array_equal(arrays["s5"], arrays["base"])
    assert main(["sample", "--checkpoint", str(checkpoint), "--handover", "11", "--steps", "10", "--out",
                 str(tmp_path / "x.png"), "--device", "cpu"]) == 2


def test_resume_refuses_a_run_another_process_trains(tmp_path, capsys):
    """``resume`` takes the run's training lock before touching it: while another live process holds it, one line
    and exit 2, its metrics untouched."""
    from test_jobs import HOLD_AND_SLEEP

    from hrf_core.store.runs import RunStore

    run = RunStore(tmp_path).create({"model": "digits16", "reward": "jpeg-compressibility", "device": "cpu"},
                                    name="busy")
    run.append_metrics({"epoch": 0})
    run.append_metrics({"epoch": 1})
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_SLEEP, str(run.path)], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert main(["resume", str(run.path), "--epochs", "3"]) == 2
    finally:
        holder.kill()
        holder.wait(10)
    err = capsys.readouterr().err
    assert err.startswith("error: run busy is being trained by another process") and err.count("\n") == 1
    assert [r["epoch"] for r in run.metrics()] == [0, 1]
