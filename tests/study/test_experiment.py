"""The frontier-digits experiment end to end on a tiny model: every arm runs, hand-over follows DDPO,
the report is written, and 2 processes give the same numbers as 1 (on the small experiment of the backend tests)."""

from __future__ import annotations

import json

import pytest

from hrf_core.commands.experiment import main as cli_main


def metric_rows(path):
    drop = {"seconds", "sample_seconds", "update_seconds", "eval_seconds", "logged_at"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_pool_of_two_processes_gives_the_serial_results(serial_experiment, tiny_model_dir, tmp_path):
    """The small experiment (tests/small_experiment.py) with ``--jobs 2``: metrics and weights bit for bit
    those of ``--jobs 1`` (the session's ``serial_experiment``, which the Ray and shard tests compare with too)."""
    import small_experiment

    assert cli_main([*small_experiment.args(tiny_model_dir, tmp_path), "--jobs", "2"]) == 0
    small_experiment.assert_same_runs(tmp_path / "runs", serial_experiment / "runs")


@pytest.mark.slow
def test_frontier_experiment_runs_every_arm_and_reports(tiny_model_dir, tmp_path):
    """Every arm runs, the hand-over sweep follows DDPO, the report is written, a rerun skips what is done."""
    from hrf_core.study.arms import NAME, run_name

    common = ["--model", str(tiny_model_dir), "--epochs", "2", "--steps", "10", "--samples", "8", "--batch-size",
              "4", "--siblings", "2", "--eval-every", "1", "--eval-samples", "8", "--seeds", "0", "--tasks",
              "jpeg-compressibility", "--threads", "1", "--handover-every", "5"]
    serial = tmp_path / "serial"
    assert cli_main([NAME, *common, "--jobs", "1", "--out", str(serial / "runs"), "--docs", str(serial / "docs"),
                     "--reference", str(serial / "ref.json")]) == 0
    runs = sorted(p.name for p in (tmp_path / "serial" / "runs").iterdir() if p.is_dir())
    assert len(runs) == 16 and run_name("jpeg-compressibility", "hrf[20,40)", 0) in runs
    ablation = json.loads((tmp_path / "serial" / "runs" / run_name("jpeg-compressibility", "hrf-d/image", 0)
                           / "config.json").read_text())
    assert ablation["method"] == "hrf-d" and ablation["adv_scope"] == "image"
    window_only = json.loads((tmp_path / "serial" / "runs" / run_name("jpeg-compressibility",
                                                                      "hrf[20,40)/image/wo+kl0.1", 0)
                              / "config.json").read_text())
    assert (window_only["outside_window"], window_only["adv_scope"], window_only["kl_coef"]) == ("base", "image", 0.1)
    report = (tmp_path / "serial" / "docs" / "RESULTS.md").read_text()
    assert "## Which method is on or above early-stopped DDPO?" in report
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
    first_wall = progress["wall_seconds"]
    # finished units are skipped when the experiment is run again
    assert cli_main([NAME, *common, "--jobs", "1", "--out", str(tmp_path / "serial" / "runs"), "--docs",
                     str(tmp_path / "serial" / "docs"), "--reference", ""]) == 0
    progress = json.loads((tmp_path / "serial" / "runs" / "progress.json").read_text())
    assert progress["units"][run_name("jpeg-compressibility", "ddpo", 0)]["result"]["skipped"]
    assert progress["wall_seconds"] >= first_wall  # a second sitting adds to the first
    # a unit cut off mid-run stays out of the report
    import shutil

    cut = tmp_path / "serial" / "runs" / "jpeg-compressibility-cut-seed0"
    shutil.copytree(tmp_path / "serial" / "runs" / run_name("jpeg-compressibility", "hrf[20,40)", 0), cut)
    config = json.loads((cut / "config.json").read_text())
    (cut / "config.json").write_text(json.dumps({**config, "extra": {**config["extra"], "arm": "cut"}}))
    (cut / "status.json").write_text(json.dumps({"state": "running"}))
    assert cli_main([NAME, *common, "--report-only", "--out", str(tmp_path / "serial" / "runs"), "--docs",
                     str(tmp_path / "serial" / "docs"), "--reference", ""]) == 0
    report = (tmp_path / "serial" / "docs" / "RESULTS.md").read_text()
    assert "| hrf[20,40) |" in report and "| cut |" not in report
    assert "## Window-only training against the training-free hand-over at the same split" in report
    assert "| jpeg-compressibility | hrf[20,40)/image/wo | 5 |" in report  # S = 20 of 40 at K = 10
    # an earlier sitting's arms (and tasks) that this store lacks join every table, marked; its own arms win
    earlier = json.loads((tmp_path / "serial" / "docs" / "results" / "frontier.json").read_text())
    group = next(iter(earlier["groups"].values()))
    group["arms"]["old-arm"] = group["arms"]["hrf[20,40)"]
    group["arms"]["ddpo"] = {**group["arms"]["ddpo"], "seeds": [99]}
    earlier["groups"]["digits16|ink"] = {**group, "reward": "ink", "arms": {"ddpo": group["arms"]["ddpo"],
                                                                           "ink-arm": group["arms"]["hrf[20,40)"]}}
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    assert cli_main([NAME, *common, "--report-only", "--out", str(tmp_path / "serial" / "runs"), "--docs",
                     str(tmp_path / "serial" / "docs"), "--reference", "",
                     "--previous", str(tmp_path / "earlier.json")]) == 0
    report = (tmp_path / "serial" / "docs" / "RESULTS.md").read_text()
    assert "| old-arm ¹ |" in report and "| ink-arm ¹ |" in report and "## ink" in report
    assert "¹ From an earlier sitting (same settings and seeds; its Δ against that sitting's DDPO runs): old-arm." \
        in report
    merged = json.loads((tmp_path / "serial" / "docs" / "results" / "frontier.json").read_text())
    assert merged["groups"][next(iter(earlier["groups"]))]["arms"]["ddpo"]["seeds"] == [0]  # this sitting's
    check_window_only(tmp_path / "serial" / "runs")


def check_window_only(store):
    """scripts/window_only.py re-samples a run on its own evaluation set: hand-over at S = 0 reproduces
    the run's final evaluation; at the window start it is a different, valid point."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "window_only.py"
    spec = importlib.util.spec_from_file_location("window_only", path)
    window_only = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(window_only)
    PIXEL = {"metric": "vendi", "embedding": "pixel"}  # the tiny model has no classifier
    same = window_only.measure(store, "jpeg-compressibility", "hrf[20,40)", 0, epoch=2, handover=0, **PIXEL)
    assert same["window_only"][:2] == pytest.approx(same["everywhere"][:2], rel=1e-9, abs=1e-12)
    row = window_only.measure(store, "jpeg-compressibility", "hrf[20,40)", 0, epoch=2, **PIXEL)
    assert row["everywhere"] == same["everywhere"] and row["window_only"][1] >= 1.0  # a Vendi, from other samples
    assert window_only.measure(store, "jpeg-compressibility", "ddpo", 0, epoch=2) is None  # no window
    assert "| jpeg-compressibility | hrf[20,40) |" in "\n".join(window_only.summary([row]))


def test_units_run_arm_by_arm_every_seed_first(tmp_path):
    """A cut-off experiment leaves whole arms (every task and seed), DDPO before anything that waits on it."""
    from hrf_core.study.arms import Settings
    from hrf_core.study.units import build_units

    units = build_units(Settings(seeds=[0, 1], tasks=["jpeg-compressibility", "ink"]), tmp_path)
    names = [u.name for u in units]
    assert names[:6] == ["jpeg-compressibility-ddpo-seed0", "jpeg-compressibility-ddpo-seed1", "ink-ddpo-seed0",
                         "ink-ddpo-seed1", "jpeg-compressibility-hrf-20-40-seed0",
                         "jpeg-compressibility-hrf-20-40-seed1"]
    assert names.index("jpeg-compressibility-handover-seed1") > names.index("jpeg-compressibility-ddpo-seed1")
    assert names[-2:] == ["jpeg-compressibility-hrf-sliding-seed0", "jpeg-compressibility-hrf-sliding-seed1"]
    assert len(names) == len(set(names)) == 2 * (16 + 9) and "ink-hrf-30-40-image-seed1" in names
    # window-only arms right after the hand-over; a suggested window joins them; --arms picks a subset
    assert names.index("ink-hrf-20-40-image-wo-seed0") > names.index("ink-handover-seed1")
    settings = Settings(seeds=[0], tasks=["ink"], suggested={"ink": 15}, arms=["ddpo", "suggested/wo"])
    assert [u.name for u in build_units(settings, tmp_path)] == ["ink-ddpo-seed0", "ink-hrf-15-40-image-wo-seed0"]


def test_arm_overrides_compose_suffixes():
    from hrf_core.study.arms import arm_overrides

    assert arm_overrides("hrf[20,40)/image/wo+kl0.1", 40) == dict(
        method="hrf", window=(20, 40), adv_scope="image", outside_window="base", kl_coef=0.1)
    assert arm_overrides("ddpo+kl1", 40) == dict(method="ddpo", window=(0, 40), kl_coef=1.0)


@pytest.mark.slow
def test_a_cut_off_unit_continues_or_starts_again_to_the_same_numbers(tiny_model_dir, tmp_path):
    """A unit cut off after its last checkpoint (before "done") continues from the checkpoint before it; one cut
    off before any checkpoint starts again in its own folder; both end as an uninterrupted run."""
    import shutil

    import small_experiment

    from hrf_core.study.arms import Settings, arm_config
    from hrf_core.study.units import train_unit

    settings = Settings(model=str(tiny_model_dir), epochs=2, steps=10, samples=8, batch_size=4, siblings=2,
                        eval_every=1, eval_samples=8)
    config = arm_config("jpeg-compressibility", "ddpo", 0, settings).to_dict()
    name = "jpeg-compressibility-ddpo-seed0"
    assert train_unit(config, str(tmp_path / "whole"), name) == {"run": name}
    assert train_unit(config, str(tmp_path / "whole"), name)["skipped"]
    for case, cut in (("late", lambda run: None), ("early", lambda run: shutil.rmtree(run / "checkpoints"))):
        run = tmp_path / case / name
        shutil.copytree(tmp_path / "whole" / name, run)
        (run / "status.json").write_text(json.dumps({"state": "running"}))  # its process died
        cut(run)
        result = train_unit(config, str(tmp_path / case), name)
        assert result == ({"run": name, "resumed": 1} if case == "late" else {"run": name})
        assert [p.name for p in (tmp_path / case).iterdir()] == [name]  # the same folder, no "-1"
        small_experiment.assert_same_runs(tmp_path / case, tmp_path / "whole", [name])


def test_a_store_filled_seed_by_seed_reports_every_seed(tmp_path):
    """A sitting per seed (``--seeds 0``, then ``--seeds 1`` into the same store): the report's settings hold the
    seeds of the finished runs, not the last sitting's."""
    from hrf_core.store.runs import RunStore
    from hrf_core.study.arms import Settings
    from hrf_core.study.units import report_settings

    store = RunStore(tmp_path)
    runs = [store.create({"model": "digits16", "reward": "ink", "seed": seed}, name=f"ink-ddpo-seed{seed}").path
            for seed in (1, 0)]
    assert report_settings(Settings(seeds=[1]), runs).seeds == [0, 1]
    assert report_settings(Settings(seeds=[3]), []).seeds == [3]


def test_the_report_names_a_command_that_runs_its_store_again():
    """The header's command parses with the experiment's own parser into the store's seeds, tasks, epochs and arms."""
    import shlex

    from hrf_core.commands.frontier_digits import COMMAND
    from hrf_core.study.arms import Settings
    from hrf_core.study.report import regenerate_command

    arms = ["ddpo", "handover", "hrf[20,40)", "ddpo+div1", "handover+div1"]
    command = regenerate_command("frontier-digits", Settings(seeds=[0, 1, 2], tasks=["ink", "symmetry"], epochs=18),
                                 arms)
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "hrf_core", "experiment"] and words[4] == "frontier-digits"
    args = COMMAND.parser().parse_args(words[5:])
    assert (args.seeds, args.tasks, args.epochs, args.arms, args.diversity_weights) == (
        [0, 1, 2], ["ink", "symmetry"], 18, arms, [1.0])


def test_a_table_with_bonus_arms_says_their_calibrated_vendi_is_no_evidence():
    from hrf_core.study.report import bonus_note

    assert bonus_note(["ddpo", "handover", "hrf[20,40)"]) == []
    note = " ".join(bonus_note(["ddpo", "ddpo+div1", "handover+div1"]))
    assert "(ddpo+div1, handover+div1)" in note and "not evidence" in note
