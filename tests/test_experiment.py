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


def metric_rows(path):
    drop = {"seconds", "sample_seconds", "update_seconds", "eval_seconds", "logged_at"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_frontier_experiment_parallel_equals_serial(tiny_model_dir, tmp_path):
    """Every arm runs, the hand-over sweep follows DDPO, the report is written; 2 processes = 1 process."""
    from hrf_core.frontier_experiment import NAME, run_name

    common = ["--model", str(tiny_model_dir), "--epochs", "2", "--steps", "10", "--samples", "8", "--batch-size",
              "4", "--siblings", "2", "--eval-every", "1", "--eval-samples", "8", "--seeds", "0", "--tasks",
              "jpeg-compressibility", "--threads", "1", "--resamples", "50", "--handover-every", "5"]
    for jobs, name in ((2, "parallel"), (1, "serial")):
        code = cli_main([NAME, *common, "--jobs", str(jobs), "--out", str(tmp_path / name / "runs"),
                         "--docs", str(tmp_path / name / "docs"), "--reference", str(tmp_path / name / "ref.json")])
        assert code == 0
    runs = sorted(p.name for p in (tmp_path / "serial" / "runs").iterdir() if p.is_dir())
    assert len(runs) == 9 and run_name("jpeg-compressibility", "hrf[20,40)", 0) in runs
    for run in runs:  # identical numbers whether the arms ran one after another or side by side
        assert metric_rows(tmp_path / "serial" / "runs" / run) == metric_rows(tmp_path / "parallel" / "runs" / run)
    handover = metric_rows(tmp_path / "serial" / "runs" / run_name("jpeg-compressibility", "handover", 0))
    assert [r["handover"] for r in handover] == [10, 5, 0]
    ddpo = metric_rows(tmp_path / "serial" / "runs" / run_name("jpeg-compressibility", "ddpo", 0))
    assert handover[0]["reward_mean"] == ddpo[0]["reward_mean"]  # S = K: the base model's evaluation
    assert handover[-1]["reward_mean"] == ddpo[-1]["reward_mean"]  # S = 0: the final DDPO checkpoint's
    report = (tmp_path / "serial" / "docs" / "RESULTS.md").read_text()
    assert "at matched reward" in report and "| ddpo+kl0.1 |" in report and "| handover |" in report
    assert (tmp_path / "serial" / "docs" / "results" / "frontier.png").stat().st_size > 0
    reference = json.loads((tmp_path / "serial" / "ref.json").read_text())
    assert reference["rewards"]["jpeg-compressibility"]["curves"][0]["seed"] == 0
    progress = json.loads((tmp_path / "serial" / "runs" / "progress.json").read_text())
    assert all(unit["error"] is None for unit in progress["units"].values())
    # finished units are skipped when the experiment is run again
    assert cli_main([NAME, *common, "--jobs", "1", "--out", str(tmp_path / "serial" / "runs"), "--docs",
                     str(tmp_path / "serial" / "docs"), "--reference", ""]) == 0
    progress = json.loads((tmp_path / "serial" / "runs" / "progress.json").read_text())
    assert progress["units"][run_name("jpeg-compressibility", "ddpo", 0)]["result"]["skipped"]
