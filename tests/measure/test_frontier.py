"""Matched-reward and matched-compute read-offs, seed aggregation and paired intervals, on hand-made runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrf_core.commands.frontier import main as cli_main
from hrf_core.measure import metrics
from hrf_core.store.runs import RunStore
from hrf_core.study.frontier import (
    crossing,
    frontier,
    seed_interval,
    summarise,
)
from hrf_core.study.tables import format_value, position


def make_run(store: RunStore, name: str, method: str, seed: int, gains, is_values, compute=None, arrays=None,
             kl_coef: float = 0.0, reward: str = "jpeg-compressibility"):
    config = {"model": "digits16", "reward": reward, "method": method, "seed": seed, "window": [20, 40],
              "kl_coef": kl_coef, "num_steps": 40, "extra": {}}
    run = store.create(config, name=name)
    compute = compute if compute is not None else [100 * e for e in range(len(gains))]
    for epoch, (gain, value, spent) in enumerate(zip(gains, is_values, compute, strict=True)):
        run.append_metrics({"epoch": epoch, "reward_mean": -0.5 + gain, "is_classifier@8": value,
                            "vendi_classifier@8": value / 2, "compute": spent, "eval_samples": 8})
        if arrays is not None:
            run.save_eval(arrays[epoch], epoch)
    return run


def test_crossing_is_the_first_one():
    xs = np.array([0.0, 0.02, 0.01, 0.03])
    assert crossing(xs, 0.01) == (0, 0.5)
    # 0.01 -> 0.03 after the dip: the first upward crossing of 0.025
    assert crossing(xs, 0.025) == (2, pytest.approx(0.75))
    assert crossing(xs, 0.04) is None
    assert crossing(xs, -0.1) == (0, 0.0)


def test_matched_reward_hand_computed(tmp_path):
    store = RunStore(tmp_path)
    for seed, shift in ((0, 0.0), (1, 0.2)):
        make_run(store, f"ddpo-{seed}", "ddpo", seed, [0, 0.01, 0.02, 0.03], [9, 8 + shift, 6 + shift, 4])
        make_run(store, f"hrf-{seed}", "hrf", seed, [0, 0.005, 0.01, 0.015], [9, 8.8, 8.5, 8.2 + shift],
                 compute=[0, 40, 80, 120])
    result = frontier([tmp_path], fractions=(0.5, 0.75), compute_fractions=(0.4,))
    group = result["groups"]["digits16|jpeg-compressibility"]
    assert group["reference"]["final_gain"] == pytest.approx(0.03)
    ddpo, hrf = group["arms"]["ddpo"], group["arms"]["hrf[20,40)"]
    half = ddpo["matched_reward"][0]
    # gain 0.015: halfway between epochs 1 and 2: IS (8 + 6) / 2 = 7 (seed 0) and 7.2 (seed 1)
    assert half["values"]["is_classifier"]["mean"] == pytest.approx(7.1)
    assert half["values"]["is_classifier"]["std"] == pytest.approx(0.1)
    assert half["values"]["epoch"]["mean"] == pytest.approx(1.5)
    mine = hrf["matched_reward"][0]
    assert mine["reached"] == 2 and mine["values"]["is_classifier"]["mean"] == pytest.approx(8.3)
    assert mine["delta_vs_ddpo"]["is_classifier"]["mean"] == pytest.approx(8.3 - 7.1)
    assert mine["values"]["compute"]["mean"] == pytest.approx(120)  # compute spent to get there
    assert hrf["matched_reward"][1]["reached"] == 0  # 75% = 0.0225: never reached
    # matched compute: 40% of DDPO's 300 = 120: HRF's last point (IS 8.2, 8.4); DDPO at epoch 1.2:
    # 8 + 0.2 (6 - 8) = 7.6 and 8.2 + 0.2 (6.2 - 8.2) = 7.8, so the difference is 0.6 for both seeds
    at_compute = hrf["matched_compute"][0]
    assert at_compute["values"]["gain"]["mean"] == pytest.approx(0.015)
    assert at_compute["delta_vs_ddpo"]["is_classifier"]["mean"] == pytest.approx(0.6)


def test_needs_a_ddpo_reference(tmp_path):
    store = RunStore(tmp_path)
    make_run(store, "kl", "ddpo", 0, [0, 0.01], [9, 8], kl_coef=0.1)  # DDPO+KL is an arm, not the frontier
    with pytest.raises(ValueError, match="no DDPO reference"):
        frontier([tmp_path])


def eval_arrays(seed: int, n: int = 8, classes: int = 4, bias: float = 0.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=gen) * 3
    logits[:, 0] += bias
    return {"rewards": torch.randn(n, generator=gen) * 0.01 + bias * 0.01,
            "probs.classifier": torch.softmax(logits, 1), "features.classifier": torch.rand(n, 5, generator=gen)}


def point_metrics(arrays) -> dict:
    probs, feats = arrays["probs.classifier"], arrays["features.classifier"]
    return {"reward": float(arrays["rewards"].mean()), "is": metrics.inception_score(probs)[0],
            "vendi": metrics.vendi_score(feats)}


def test_one_seed_gives_no_interval_however_many_samples_it_has(tmp_path):
    store = RunStore(tmp_path)
    sets = [eval_arrays(e, bias=e) for e in range(3)]
    values = [point_metrics(a) for a in sets]
    gains = [v["reward"] - values[0]["reward"] for v in values]
    for name, method in (("ddpo-0", "ddpo"), ("same-0", "hrf")):  # an "arm" whose evaluations equal DDPO's
        run = make_run(store, name, method, 0, gains, [v["is"] for v in values], arrays=sets)
        rows = run.metrics()
        for row, v in zip(rows, values, strict=True):
            row["vendi_classifier@8"] = v["vendi"]
        (run.path / "metrics.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    group = frontier([tmp_path], fractions=(0.5,))["groups"]["digits16|jpeg-compressibility"]
    row = group["arms"]["hrf[20,40)"]["matched_reward"][0]
    # one seed: no seed-level interval, so no "above" / "below" call however many samples it has
    assert "ci" not in row["values"]["is_classifier"] and "ci" not in row["delta_vs_ddpo"]["is_classifier"]
    assert row["delta_vs_ddpo"]["is_classifier"]["mean"] == pytest.approx(0.0)
    assert position(row["delta_vs_ddpo"]["is_classifier"], 1, 1) == "undetermined"
    assert group["eval_samples"] == 8


def test_seed_level_intervals_hand_computed():
    # 3 seeds: mean 2, sd 1, t(0.975, 2) = 4.302653: 2 -+ 4.302653 / sqrt(3)
    assert seed_interval([1.0, 2.0, 3.0]) == pytest.approx([2 - 2.484138, 2 + 2.484138], abs=1e-5)
    assert seed_interval([0.5]) is None and seed_interval([0.2, 0.2]) == [0.2, 0.2]
    summary = summarise([1.0, 2.0, 3.0])
    assert summary["n"] == 3 and summary["ci"] == pytest.approx(seed_interval([1.0, 2.0, 3.0]))
    assert "n=3" in format_value(summary)
    # from 8 seeds a percentile bootstrap over seeds: inside the range of the values, around the mean
    values = [0.1, 0.4, 0.2, 0.5, 0.3, 0.6, 0.2, 0.3, 0.4]
    low, high = seed_interval(values)
    assert min(values) <= low < np.mean(values) < high <= max(values)
    assert position({"mean": 2.0, "ci": [0.1, 3.9]}, 3, 3) == "above"
    assert position({"mean": -2.0, "ci": [-3.9, -0.1]}, 3, 3) == "below"


def test_cli_writes_json_and_a_table(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    make_run(store, "ddpo-0", "ddpo", 0, [0, 0.01, 0.02], [9, 8, 7])
    make_run(store, "hrf-0", "hrf", 0, [0, 0.008, 0.016], [9, 8.9, 8.7])
    assert cli_main([str(tmp_path / "runs"), "--json", str(tmp_path / "out.json")]) == 0
    text = capsys.readouterr().out
    assert "| hrf[20,40) |" in text and "8 evaluation samples" in text and (tmp_path / "out.json").is_file()


def test_standing_table_counts_tasks_on_or_above_ddpo():
    from hrf_core.study.tables import standing, standing_table

    def row(low, high, reached=3):
        return {"reached": reached, "n": 3, "delta_vs_ddpo": {"is_classifier": {"mean": (low + high) / 2,
                                                                                 "ci": [low, high]}}}

    assert standing(row(0.1, 0.5)) == "above" and standing(row(-0.5, -0.1)) == "below"
    assert standing(row(-0.1, 0.5)) == "on" and standing(row(0.1, 0.5, reached=2)) == "not reached"
    levels = [{"fraction": 0.25}, {"fraction": 0.5}]

    def group(reward, arms):
        return {"reward": reward, "reward_levels": levels, "arms": arms}

    old = {"groups": {"a": group("ink", {"hrf": {"matched_reward": [row(0.1, 0.2), row(-0.3, -0.1)]}}),
                      "b": group("jpeg", {"hrf": {"matched_reward": [row(-0.1, 0.2), row(0.1, 0.2, 1)]}})}}
    new = {"groups": {"a": group("ink", {"wo": {"matched_reward": [row(0.1, 0.2), row(0.2, 0.4)]},
                                         "hrf": {"matched_reward": [row(-0.5, -0.2), row(-0.3, -0.1)]}})}}
    lines, best = standing_table([old, new])
    low_n = " n=3 · not a headline"  # every cell says its seeds; fewer than 5 is never a headline
    assert lines[2] == f"| hrf | 1/2 (1 below){low_n} | 0/2 (1 below, 1 not reached){low_n} |"  # ink: the newer
    assert lines[3] == f"| wo | 1/1 (1 above){low_n} | 1/1 (1 above){low_n} |"
    assert best == "wo"
    # 5 calls made (the "not reached" cell is none): chance alone puts about 0.25 of them off 0
    assert lines[-1].startswith("Chance alone: with no difference anywhere, about 0.3 of these 5 95% intervals")
    five = {"groups": {"a": group("ink", {"hrf": {"matched_reward": [{**row(0.1, 0.2, 5), "n": 5}] * 2}})}}
    assert standing_table([five])[0][2] == "| hrf | 1/1 (1 above) n=5 | 1/1 (1 above) n=5 |"


def test_window_only_against_the_hand_over_at_its_split_hand_computed(tmp_path):
    """A window-only run [20, 40) is read where its gain reaches the same seed's hand-over at S = 20; an arm
    sampled with the tuned network everywhere gets no such comparison; a seed that never gets there counts."""
    from hrf_core.study.tables import handover_rows

    store = RunStore(tmp_path)
    for seed in (0, 1):
        make_run(store, f"ddpo-{seed}", "ddpo", seed, [0, 0.01, 0.02, 0.03], [9, 8, 6, 4])
        handover = store.create({"model": "digits16", "reward": "jpeg-compressibility", "method": "handover",
                                 "seed": seed, "num_steps": 40, "extra": {"arm": "handover"}}, name=f"handover-{seed}")
        for order, (split, gain, value) in enumerate(((40, 0.0, 9.0), (30, 0.01, 8.5), (20, 0.02, 8.0),
                                                      (10, 0.025, 6.0), (0, 0.03, 4.0))):
            handover.append_metrics({"epoch": order, "order": order, "handover": split, "reward_mean": -0.5 + gain,
                                     "is_classifier@8": value, "compute": 0, "eval_samples": 8})
        wo = make_run(store, f"wo-{seed}", "hrf", seed, [0, 0.01, 0.03 if seed == 0 else 0.015],
                      [9, 8.9, 8.4 + seed], compute=[0, 50, 100])
        config = {**wo.config, "outside_window": "base", "extra": {"arm": "hrf[20,40)/wo"}}
        (wo.path / "config.json").write_text(__import__("json").dumps(config))
        make_run(store, f"tuned-{seed}", "hrf", seed, [0, 0.01, 0.02], [9, 8, 7])
    result = frontier([tmp_path])
    group = result["groups"]["digits16|jpeg-compressibility"]
    assert "vs_handover" not in group["arms"]["hrf[20,40)"]  # tuned outside the window: no split to share
    versus = group["arms"]["hrf[20,40)/wo"]["vs_handover"]
    assert versus["split"] == 20 and versus["n"] == 2
    assert versus["handover_gain"]["mean"] == pytest.approx(0.02)
    assert versus["final_gain"]["mean"] == pytest.approx((0.03 + 0.015) / 2)
    # seed 0 reaches 0.02 halfway from epoch 1 (8.9) to 2 (8.4): 8.65 - 8.0; seed 1 ends at 0.015: not reached
    assert versus["reached"] == 1 and versus["delta"]["is_classifier"]["mean"] == pytest.approx(0.65)
    # final evaluations against the hand-over's 8.0: 8.4 and 9.4
    assert versus["delta_final"]["is_classifier"]["mean"] == pytest.approx(0.9)
    rows = handover_rows([result])
    assert len(rows) == 3 and "| hrf[20,40)/wo | 20 |" in rows[2] and "not reached (1/2 seeds)" in rows[2]


def test_every_arm_against_the_hand_over_at_matched_reward_hand_computed(tmp_path):
    """``delta_vs_handover``: each arm's metric where its gain reaches the level, minus the same seed's hand-over's
    where the hand-over's gain (growing as its split moves earlier) reaches it; the standing table counts it."""
    from hrf_core.study.tables import standing_table, table

    store = RunStore(tmp_path)
    for seed in (0, 1):
        make_run(store, f"ddpo-{seed}", "ddpo", seed, [0, 0.01, 0.02, 0.03], [9, 8, 6, 4])
        handover = store.create({"model": "digits16", "reward": "jpeg-compressibility", "method": "handover",
                                 "seed": seed, "num_steps": 40, "extra": {"arm": "handover"}}, name=f"handover-{seed}")
        for order, (split, gain, value) in enumerate(((40, 0.0, 9.0), (20, 0.02, 8.0), (0, 0.03, 4.0))):
            handover.append_metrics({"epoch": order, "order": order, "handover": split, "reward_mean": -0.5 + gain,
                                     "is_classifier@8": value, "compute": 0, "eval_samples": 8})
        make_run(store, f"hrf-{seed}", "hrf", seed, [0, 0.02, 0.03], [9, 8.5 + seed, 8])
    result = frontier([tmp_path], fractions=(0.5,))
    group = result["groups"]["digits16|jpeg-compressibility"]
    row = group["arms"]["hrf[20,40)"]["matched_reward"][0]
    # gain 0.015: the HRF run at 3/4 of the way to epoch 1 (9 - 0.75 * (9 - 8.5 - seed)); the hand-over at 3/4 of
    # the way to S = 20 (9 - 0.75 * 1 = 8.25): Δ -0.125 (seed 0), +0.625 (seed 1)
    deltas = [9 - 0.75 * (0.5 - s) - 8.25 for s in (0, 1)]
    assert row["delta_vs_handover"]["is_classifier"]["mean"] == pytest.approx(np.mean(deltas))
    assert row["delta_vs_handover"]["is_classifier"]["n"] == 2
    # against DDPO at gain 0.015 (IS 7): the same run's values minus 7
    assert row["delta_vs_ddpo"]["is_classifier"]["mean"] == pytest.approx(np.mean([9 - 0.75 * (0.5 - s) - 7
                                                                                    for s in (0, 1)]))
    assert "delta_vs_handover" not in group["arms"]["hrf[20,40)"]["matched_compute"][0] or not \
        group["arms"]["hrf[20,40)"]["matched_compute"][0]["delta_vs_handover"]  # the hand-over spends no compute
    rows, _ = standing_table([result], "is_classifier", against="delta_vs_handover")
    assert [r.split(" |")[0] for r in rows[2:4]] == ["| ddpo", "| hrf[20,40)"]  # the hand-over is the baseline
    assert "| handover |" not in "\n".join(rows)
    cells = table(group, "is_classifier", against="delta_vs_handover")
    assert f"Δ {np.mean(deltas):.2f}" in "\n".join(cells)
