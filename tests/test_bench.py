"""The benchmark scripts run their code paths on the CPU (their figures come from real hardware)."""

from __future__ import annotations

import importlib.util
import json
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


def test_gpu_check_stable_diffusion_case_code_path_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert load("gpu_check").main(["--device", "cpu", "--tiny", "--sections", "sd", "--out", str(out)]) == 0
    result = json.loads(out.read_text())["stable_diffusion"]
    assert [r["method"] for r in result["rows"]] == ["ddpo", "hrf"]
    assert all(r["epoch_seconds"] > 0 and r["samples_per_gpu_minute"] > 0 and r["estimated_gb"] >= 0
               for r in result["rows"])
    assert "samples per GPU-minute" in capsys.readouterr().out


def test_backend_dispatch_code_path():
    result = load("backends").dispatch("pool", 3, jobs=1, threads=1)
    assert result["workers"] == 1 and result["first_round_s"] > 0 and result["per_unit_ms"] > 0
