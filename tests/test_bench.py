"""The benchmark scripts run their code paths on the CPU (their figures come from real hardware)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_code_paths_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert load("gpu_check").main(["--device", "cpu", "--tiny", "--epochs", "1", "--drift-epochs", "1",
                                   "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["job"]["state"] == "done"
    assert {"is_inception@16", "vendi_clip@16", "vendi_inception@16"} <= set(result["job"]["embeddings"])
    assert len(result["memory_paper_preset"]) == 4
    assert all(r["rows_per_second"] > 0 for r in result["throughput"]["results"])
    assert result["bf16_drift"]["bf16"]["first_ratio_deviation"][0] is not None
    assert "trained rows/s" in capsys.readouterr().out



def test_diversity_cost_code_path(tiny_model_dir):
    result = load("diversity").main(["--model", str(tiny_model_dir), "--steps", "4", "--samples", "8", "--batch", "4",
                                     "--epochs", "1", "--reward", "ink", "--pixel-sizes", "8"])
    for arm in ("ddpo", "hrf[30,40)/image"):
        assert result[arm]["ratio_median"] > 0 and result[arm]["bonus_alone_s"] > 0
    assert result["pixels_8"] > 0


def test_locality_cost_code_path(tiny_model_dir):
    result = load("locality").main(["--model", str(tiny_model_dir), "--trunks", "2", "--branches", "2", "--steps",
                                    "4", "--rewards", "ink"])
    assert result["unet_rows"] == 2 * 4 + sum(2 * 2 * (4 - p) for p in (0, 3))  # trunks x K + branches
    assert result["ratio"] > 0 and result["probes"] == [0, 3]


def gpu_check(out: Path, *args: str) -> subprocess.Popen:
    """bench/gpu_check.py on tiny models on the CPU, as its own process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HRF_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--tiny",
                             "--out", str(out), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_gpu_check_stops_within_its_budget_with_every_finished_section_on_disk(tmp_path):
    """--budget 30: the process is gone within 30 s (its start included, plus the interpreter's own start), and
    every section it finished has its JSON; the Stable Diffusion sections (first in order) have their figures."""
    out = tmp_path / "gpu_check.json"
    started = time.monotonic()
    process = gpu_check(out, "--budget", "30")
    log, _ = process.communicate(timeout=120)
    wall = time.monotonic() - started
    assert wall <= 30 + 1.5, f"{wall:.1f} s for a 30 s budget\n{log}"
    assert process.returncode in (0, 3), log
    result = json.loads(out.read_text())
    finished = set(result["section_seconds"])
    assert finished and finished | set(result["skipped"]) <= set(load("gpu_check").ORDER)
    for name in finished:
        assert json.loads((tmp_path / f"gpu_check.{name}.json").read_text())["section"] == name
    written = {p.name.split(".")[1] for p in tmp_path.glob("gpu_check.*.json")}
    assert written == finished
    assert {"sd-hrf", "sd-ddpo"} <= finished, f"the first two sections (seconds here) did not finish\n{log}"
    sd = result["stable_diffusion"]
    assert [r["method"] for r in sd["rows"]] == ["hrf", "ddpo"]
    for row in sd["rows"]:
        assert row["epoch_seconds"] > 0 and row["samples_per_gpu_minute"] > 0 and row["estimated_gb"] >= 0
        assert row["trained_steps_per_sample"] > 0 and row["gflops_per_forward_row"] > 0 and row["tflops"] > 0
        assert {"first_ratio_deviation", "clip_fraction", "approx_kl"} <= set(row)
    if process.returncode == 0:
        assert "samples per GPU-minute" in log


def test_gpu_check_killed_mid_section_keeps_the_sections_before(tmp_path):
    """SIGKILL while the second section runs: the first section's JSON (and the summary) survive whole."""
    out = tmp_path / "gpu_check.json"
    process = gpu_check(out, "--sections", "throughput", "drift", "--budget", "120")
    first, second = tmp_path / "gpu_check.throughput.json", tmp_path / "gpu_check.drift.json"
    deadline = time.monotonic() + 90
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the check ended before it could be killed mid-section"
    assert json.loads(first.read_text())["throughput"]["results"]
    assert not second.exists()
    assert set(json.loads(out.read_text())["section_seconds"]) == {"throughput"}


def test_backend_dispatch_code_path():
    result = load("backends").dispatch("pool", 3, jobs=1, threads=1)
    assert result["workers"] == 1 and result["first_round_s"] > 0 and result["per_unit_ms"] > 0


def test_gpu_check_refuses_missing_weights_in_one_line_naming_what_to_bring(tmp_path, capsys):
    """--sd-model of a folder without weights: exit 2 before anything runs, one line naming the folder to bring;
    nothing is downloaded (HF_HUB_OFFLINE)."""
    (tmp_path / "sd" / "unet").mkdir(parents=True)
    assert load("gpu_check").main(["--device", "cpu", "--tiny", "--sd-model", str(tmp_path / "sd"), "--sections",
                                   "sd", "--out", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no Stable Diffusion weights" in err and "unet/, vae/, text_encoder/" in err
    assert not (tmp_path / "out.json").exists()
