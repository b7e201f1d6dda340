"""What the page says and shows on a projector (views only, no browser): rounded standing lines, one colour per
method, grids labelled by prompt, conditioning mismatches as one line, the preset turning "custom", prompts with
spaces, a saturated reward flagged, the CPU memory line, unique Runs headers and the Results summary."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from explorer.views import compare, live, results, runs, train
from hrf_core import methods
from hrf_core.measure.headline import MetricKeys
from hrf_core.presets import PRESETS
from hrf_core.rewards.registry import REWARDS
from hrf_core.store.runs import RunStore


def test_standing_line_is_rounded_with_one_level_of_brackets():
    curve = SimpleNamespace(source="shipped reference (frontier-digits, 3 seeds)", metrics={"is_classifier"},
                            reach=0.5, at=lambda gain: {"is_classifier": (8.123456, 0.4321, 3)})
    rows = [{"epoch": 0, "reward_mean": 0.1, "is_classifier@64": 9.0},
            {"epoch": 1, "reward_mean": 0.18826, "is_classifier@64": 8.87654}]
    line = live.standing(rows, curve, MetricKeys("vendi_classifier@64", "Vendi", "is_classifier@64"))
    assert "gain +0.088," in line and "IS 8.12 ± 0.43" in line and "this run: IS 8.88" in line
    assert line.count("3 seeds") == 1  # the source says it: not twice
    depth = max(len(re.findall(r"\(", part)) for part in re.split(r"\)", line))
    assert depth <= 1, line  # no nested brackets


def test_a_run_and_its_duel_partner_carry_their_methods_colours(tmp_path):
    store = RunStore(tmp_path)
    for name, method in (("a", "hrf"), ("b", "ddpo")):
        store.create({"model": "m", "reward": "ink", "method": method, "window": [5, 10], "prompts": ["3", "7"]},
                      name=name)
    payloads = [live.run_payload(store.get(n), []) for n in ("a", "b")]
    assert [p["color"] for p in payloads] == [methods.color_of("hrf"), methods.color_of("ddpo")]
    assert payloads[0]["color"] != payloads[1]["color"] and payloads[0]["prompts"] == ["3", "7"]


def test_compare_grids_have_a_row_per_prompt_and_a_coloured_caption():
    images = torch.rand(12, 1, 8, 8) * 2 - 1
    prompts = ["3", "7"] * 6  # round robin: 6 samples of each
    grid, labels = compare.prompt_grid(images, prompts, columns=4)
    assert labels == ["3", "3", "7", "7"]  # each prompt on rows of its own, 4 wide (the last row padded)
    assert grid.height > grid.width / 2
    plain, none = compare.prompt_grid(images, None, columns=4)
    assert none is None
    out = compare.captioned(grid, "B · HRF 4–9 · epoch 2", methods.color_of("hrf"), labels)
    assert compare.pil_text("HRF 4–9 · epoch 2") == "HRF 4-9 · epoch 2"  # the built-in font has no en dash
    assert out.width > grid.width and out.height > grid.height  # labels on the left, the caption above
    hex_color = methods.color_of("hrf").lstrip("#")
    rgb = tuple(int(hex_color[i:i + 2], 16) for i in (0, 2, 4))
    caption = out.crop((out.width - grid.width, 0, out.width, out.height - grid.height)).convert("RGB")
    assert rgb in {pixel for _, pixel in caption.getcolors(100_000)}  # the caption is drawn in the method's colour


def test_sources_with_different_conditioning_give_one_line():
    plain = compare.Source(load="digits16", family="digits16", label="digits16 (base)")
    prompted = compare.Source(load="x", family="digits16-cond", label="HRF 4–9 · epoch 2", prompts=("3", "7"),
                              method="hrf")
    line = compare.conditioning_mismatch(plain, prompted)
    assert "unconditional" in line and "\n" not in line and "digits16-cond (base)" in line
    assert compare.conditioning_mismatch(prompted, prompted) == ""
    assert plain.color == compare.BASE_COLOR and prompted.color == methods.color_of("hrf")


def test_the_preset_matches_until_a_field_changes():
    values = train.form_from_config(PRESETS[train.DEFAULT_PRESET])
    assert train.preset_matches(train.DEFAULT_PRESET, values)
    assert not train.preset_matches(train.DEFAULT_PRESET, {**values, "epochs": values["epochs"] + 1})
    assert not train.preset_matches(train.DEFAULT_PRESET, {**values, "reward": "symmetry"})
    assert not train.preset_matches(train.NO_PRESET, values)


@pytest.mark.skipif(not (Path(__file__).parents[2] / "checkpoints" / "digits16-cond" / "unet").is_dir(),
                    reason="digits16-cond is not shipped here")
def test_class_prompts_never_download(monkeypatch):
    """The form asks on every edit: a Hub model's prompt with spaces is left alone without any download."""
    from hrf_core.models import registry

    def no_download(*args, **kwargs):
        raise AssertionError("the form tried to download a model")

    monkeypatch.setattr(registry, "model_folder", no_download)
    assert train.class_prompts("CompVis/stable-diffusion-v1-4", "a photo of a cat") == "a photo of a cat"
    assert train.class_prompts("digits16-cond", "3 7") == "3,7"


def test_class_prompts_accept_spaces():
    assert train.class_prompts("digits16-cond", "3 7") == "3,7"
    assert train.class_prompts("digits16-cond", "3, 7") == "3, 7"
    assert train.class_prompts("digits16", "a photo of a cat") == "a photo of a cat"  # not class-conditional
    config = train.config_from_form({"model": "digits16-cond", "prompts": "3 7", "reward": "alignment"},
                                    base=PRESETS[train.DEFAULT_PRESET])
    assert config.prompts == ("3", "7")


def test_a_saturated_reward_is_flagged_before_start(tmp_path):
    store = RunStore(tmp_path)
    run = store.create({"model": "digits16-cond", "reward": "alignment", "method": "hrf", "prompts": ["3", "7"]},
                       name="saturated")
    run.append_metrics({"epoch": 0, "reward_mean": 0.993})
    assert REWARDS["alignment"].saturated(0.993) and not REWARDS["alignment"].saturated(0.9)
    assert train.base_reward(store, "digits16-cond", "alignment", "3,7") == pytest.approx(0.993)
    assert "Saturated" in train.reward_info("alignment", "digits16-cond", "3,7", store)
    assert train.base_reward(store, "digits16-cond", "alignment", "1,2") is None  # other prompts: not measured
    assert "Saturated" not in train.reward_info("alignment", "digits16-cond", "1,2", store)


def test_memory_line_on_a_cpu_names_this_computer(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("a GPU: the line names its free memory")
    values = train.form_from_config(PRESETS[train.DEFAULT_PRESET].replace(model=str(tiny_model_dir)))
    line = train.memory_line(values)
    assert line.startswith("Memory: ") and "this computer" in line and "activations" not in line


def test_runs_table_headers_are_unique_and_the_continue_hint_has_no_backticks(tmp_path):
    assert len(set(runs.RUN_COLUMNS)) == len(runs.RUN_COLUMNS)
    assert len(runs.RUN_WIDTHS) == len(runs.RUN_COLUMNS)
    store = RunStore(tmp_path)
    run = store.create({"model": "m", "reward": "ink", "method": "hrf", "epochs": 2, "window": [5, 10]}, name="r")
    (run.path / "checkpoints" / "epoch-0001" / "unet").mkdir(parents=True)
    _, hint = runs.continue_hint(run)
    assert "`" not in hint and "epoch 1" in hint
    row = runs.runs_table(store)[0]
    method = row[runs.RUN_COLUMNS.index("method")]
    assert methods.color_of("hrf") in method and runs.RUN_DATATYPES[runs.RUN_COLUMNS.index("method")] == "html"


def test_results_summary_comes_first_and_sections_fold():
    text = ("# Results: a question?\n\nintro\n\n## Which method?\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nBest row: "
            "**handover**.\n\n## Reading\n\n**1. The first finding.** Detail.\n\n**2. The second.** More.\n")
    answer = results.summary(text)
    assert [line for line in answer.splitlines() if line] == ["1. The first finding.", "2. The second.",
                                   "Best method against early-stopped DDPO at matched reward: **handover**."]
    intro, sections = results.folded(text)
    assert intro.startswith("# Results") and len(sections) == 2
    assert sections[0].startswith("<details><summary>Which method?</summary>") and "| 1 | 2 |" in sections[0]


def test_the_report_figures_colour_each_arm_by_its_method():
    """Results' figures use the page's method colours: DDPO's arm is DDPO's colour, every HRF window a shade of
    HRF's blue (never another method's hue), the hand-over orange; an /image arm shares its base's colour."""
    from matplotlib.colors import to_rgb

    from hrf_core.methods import color_of
    from hrf_core.study.arms import arm_method
    from hrf_core.study.report import arm_colors

    arms = ["ddpo", "hrf[20,40)", "hrf[30,40)", "hrf[20,40)/image", "handover", "hrf-d", "renoise-fixed", "ddpo+kl0.1"]
    colors = arm_colors(arms)
    assert colors["ddpo"] == to_rgb(color_of("ddpo")) and colors["handover"] == to_rgb(color_of("handover"))
    assert colors["hrf[20,40)"] == to_rgb(color_of("hrf")) and colors["hrf[20,40)/image"] == colors["hrf[20,40)"]
    assert colors["hrf-d"] == to_rgb(color_of("hrf-d"))
    assert arm_method("renoise-fixed") == "hrf" and arm_method("hrf-d/image") == "hrf-d"
    assert arm_method("handover+div1") == "handover" and arm_method("hrf[30,40)/image/wo") == "hrf"
    blue = to_rgb(color_of("hrf"))
    order = sorted(range(3), key=lambda i: blue[i])
    for arm in ("hrf[30,40)", "renoise-fixed"):  # a shade of blue: the same order of the channels
        assert colors[arm] != blue and sorted(range(3), key=lambda i: colors[arm][i]) == order
    assert len({colors[a] for a in ("hrf[20,40)", "hrf[30,40)", "renoise-fixed")}) == 3
