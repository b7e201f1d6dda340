"""A one-epoch smoke version of the paper experiment: every arm runs, the report is generated."""

from __future__ import annotations

import json

import pytest

from hrf_core.experiment import ARMS, aggregate, cli_main


@pytest.mark.slow
def test_paper_experiment_smoke(tiny_model_dir, tmp_path):
    out, docs = tmp_path / "runs", tmp_path / "docs"
    code = cli_main(["paper-digits", "--model", str(tiny_model_dir), "--epochs", "1", "--steps", "10",
                     "--samples", "8", "--batch-size", "4", "--siblings", "2", "--eval-every", "1",
                     "--eval-samples", "8", "--final-samples", "8", "--tasks", "jpeg-compressibility",
                     "--device", "cpu", "--out", str(out), "--docs", str(docs)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    arms = [r["arm"] for r in summary["records"]]
    assert arms == list(ARMS)
    trained = [r for r in summary["records"] if r["arm"] != "base"]
    assert all((out / r["run"] / "metrics.jsonl").is_file() for r in trained)  # runs land in the run store
    configs = {r["arm"]: json.loads((out / r["run"] / "config.json").read_text()) for r in trained}
    assert configs["random-start"]["window"] == [0, 10] and configs["renoise-fixed"]["start_mode"] == "fixed"
    assert len({c["samples_per_epoch"] for c in configs.values()}) == 1  # same budget for every arm
    report = (docs / "RESULTS.md").read_text()
    assert "| ddpo |" in report and "python -m hrf_core experiment paper-digits" in report
    assert (docs / "results" / "reward_vs_vendi.png").stat().st_size > 0
    assert (docs / "results" / "grid-jpeg-compressibility-hrf-late.png").is_file()


def test_aggregate_mean_and_std_over_seeds():
    records = [{"task": "t", "arm": "a", "seed": s, "final": {"reward_mean": r, "reward_std": 1.0,
                                                            "vendi_classifier@8": v},
                "train_seconds": 1.0, "eval_seconds": 1.0} for s, r, v in ((0, 1.0, 2.0), (1, 3.0, 4.0))]
    entry = aggregate(records)["t"]["a"]
    assert entry["reward_mean"] == (2.0, 1.0, 2) and entry["vendi_classifier"] == (3.0, 1.0, 2)
