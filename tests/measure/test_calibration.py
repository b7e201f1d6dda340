"""The calibration suite: the measure the plots lead with must pass it on held-out digits (docs/METHOD.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hrf_core import REPO_ROOT
from hrf_core.measure import calibrated, calibration
from hrf_core.measure.metrics import evaluate_samples
from hrf_core.rewards.headline import metric_keys


@pytest.fixture(scope="module")
def heldout():
    return calibration.heldout_digits()


def test_the_primary_measure_passes_the_suite_within_a_class(heldout):
    result = calibration.suite(calibration.app_measures("within")["vendi_rbf"], "within", *heldout)
    assert result.passed, result.failures
    values = result.values
    assert values["full"] > values["k=8"] > values["k=4"] > values["k=2"] > values["k=1"]
    assert values["k=1"] < 1.1  # one digit (plus a little noise) is about one
    # the table in docs/METHOD.md is this run's
    row = calibration.table({"vendi_rbf": result})[2]
    assert row in (REPO_ROOT / "docs" / "METHOD.md").read_text(), row


def test_the_unconditional_axis_passes_the_suite_across_classes(heldout):
    result = calibration.suite(calibration.app_measures("across")["vendi_classifier"], "across", *heldout)
    assert result.passed, result.failures
    assert result.values["thicken"] <= result.values["full"]  # thicker strokes do not raise it


def test_the_suite_fails_the_classifier_within_a_class(heldout):
    """Today's within-prompt measure, measured the same way: thickening the very same digits raises it."""
    result = calibration.suite(calibration.app_measures("within")["vendi_classifier"], "within", *heldout)
    assert not result.passed
    assert any(f.startswith("thicken") for f in result.failures)
    assert result.values["thicken"] - result.values["full"] > 0.2


def test_similarity_is_a_kernel_and_its_vendi_is_vendi_scores(heldout):
    from vendi_score import vendi

    images = heldout[0][:20]
    k = calibrated.similarity(images)
    assert k.shape == (20, 20) and k.dtype == torch.float64
    assert torch.allclose(k, k.T) and torch.all(torch.diagonal(k) == 1) and bool((k > 0).all())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert calibrated.vendi(images) == pytest.approx(float(vendi.score_K(k.numpy())), rel=1e-12)
    # a contrast change x -> a x + b is undone by the per-image min-max; identical images are similarity 1
    dimmer = (((images + 1) / 2) * 0.6 + 0.2) * 2 - 1
    assert torch.allclose(calibrated.similarity(dimmer), k, atol=1e-9)
    assert calibrated.vendi(images[:1].repeat(5, 1, 1, 1)) == pytest.approx(1.0, abs=1e-6)
    assert calibrated.is_calibrated((1, 16, 16)) and not calibrated.is_calibrated((3, 64, 64))
    with pytest.raises(ValueError, match="N>0"):
        calibrated.similarity(torch.zeros(0, 1, 16, 16))


def test_the_evaluation_logs_the_calibrated_measure_and_the_plots_lead_with_it(heldout):
    images, labels = heldout
    x = images[:40]
    prompts = [str(int(c)) for c in labels[:40]]
    from hrf_core.measure.evaluation import Evaluator

    metrics = Evaluator((1, 16, 16))(x, torch.zeros(40), prompts=prompts)
    assert metrics["vendi_rbf@40"] == pytest.approx(calibrated.vendi(x), rel=1e-5)
    assert np.isfinite(metrics["vendi_rbf_within@40"])
    prompted = metric_keys([metrics])
    assert prompted.diversity == "vendi_rbf_within@40" and "calibrated" in prompted.diversity_label
    unconditional = {k: v for k, v in metrics.items() if "_within" not in k}
    assert metric_keys([unconditional]).diversity == "vendi_classifier@40"
    # a reward that reads the classifier never gets the classifier's axis
    assert metric_keys([unconditional], "digit:3").diversity == "vendi_rbf@40"
    assert metric_keys([unconditional], "digit:3").inception is None  # the classifier's IS too
    assert metric_keys([unconditional], "ink").inception == "is_classifier@40"
    rgb = {"vendi_clip@8": 3.0, "vendi_inception@8": 2.0, "vendi_pixel@8": 4.0}  # CLIP rewards read CLIP
    assert metric_keys([rgb]).diversity == "vendi_clip@8"
    assert metric_keys([rgb], "aesthetic").diversity == "vendi_inception@8"
    old = {k: v for k, v in metrics.items() if "rbf" not in k and "hog" not in k}  # logged before the calibrated ones
    assert "uncalibrated" in metric_keys([old]).diversity_label
    assert evaluate_samples(x, embeddings=["rbf"])["vendi_rbf@40"] == pytest.approx(calibrated.vendi(x), rel=1e-5)


def test_the_live_plot_of_a_prompted_run_stands_on_the_calibrated_measure(tmp_path):
    from explorer.jobs import JobManager
    from explorer.views import live
    from hrf_core.store.runs import RunStore

    store = RunStore(tmp_path / "runs")
    for name, method, rewards, within in (("ddpo-a", "ddpo", [0.30, 0.32, 0.34], [3.0, 2.0, 1.0]),
                                          ("hrf-b", "hrf", [0.30, 0.31], [3.0, 2.9])):
        run = store.create({"model": "m", "reward": "ink", "method": method, "seed": 0, "eval_samples": 8,
                            "epochs": 2, "window": [5, 10], "kl_coef": 0.0, "prompts": ["3", "7"]}, name=name)
        for epoch, (reward, value) in enumerate(zip(rewards, within, strict=True)):
            run.append_metrics({"epoch": epoch, "reward_mean": reward, "is_classifier@8": 9.0,
                                "vendi_classifier_within@8": 1.5 + epoch, "vendi_rbf_within@8": value,
                                "seconds": 1.0})
        run.set_status("done", 2, 2, "finished")
    state = live.live_state(JobManager(store, preflight=None), "hrf-b")
    assert state["keys"]["diversity"] == "vendi_rbf_within@8"
    assert "calibrated" in state["keys"]["diversity_label"]
    assert "early-stopped DDPO had calibrated Vendi 2.50" in state["status"]["standing"]  # gain 0.01: 3 -> 2


@pytest.mark.slow
def test_the_bandwidth_is_the_base_models_median_distance():
    """calibrated.BANDWIDTH and hog.BANDWIDTH were fixed once on 256 samples of digits16 (seed 0, K = 40, eta = 1):
    they reproduce."""
    from hrf_core.measure import hog
    from hrf_core.rl.sampling import sample_images

    images = sample_images("digits16", n=256, seed=0, num_steps=40, eta=1.0, device="cpu")
    assert calibrated.fit_bandwidth(images) == pytest.approx(calibrated.BANDWIDTH, abs=1e-3)
    assert hog.fit_bandwidth(images) == pytest.approx(hog.BANDWIDTH, abs=1e-3)
