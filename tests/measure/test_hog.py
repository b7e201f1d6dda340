"""The second calibrated diversity measure (HOG descriptors): it passes the calibration suite, it is scikit-image's HOG
under vendi-score's Vendi, the bonus never reads it, and older evaluations get it from their saved pixels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hrf_core import REPO_ROOT
from hrf_core.measure import calibrated, calibration, diversity, hog
from hrf_core.measure.metrics import evaluate_samples, with_derived_features, within_prompt
from hrf_core.rewards.headline import metric_keys


@pytest.fixture(scope="module")
def heldout():
    return calibration.heldout_digits()


@pytest.mark.parametrize("scope", ["within", "across"])
def test_the_hog_measure_passes_the_suite(heldout, scope):
    result = calibration.suite(calibration.app_measures(scope)["vendi_hog"], scope, *heldout)
    assert result.passed, result.failures
    ladder = [v for k, v in result.values.items() if k == "full" or k.startswith(("k=", "classes="))]
    assert ladder == sorted(ladder, reverse=True)  # collapse lowers it at every step
    # every identity-keeping edit moves it by at most 3% (the rule allows 5%)
    assert max(abs(result.values[e] / result.values["full"] - 1) for e in calibration.EDITS) < 0.03
    row = calibration.table({"vendi_hog": result})[2]  # the table in docs/METHOD.md is this run's
    assert row in (REPO_ROOT / "docs" / "METHOD.md").read_text(), row


def test_it_is_scikit_images_hog_under_vendi_scores_vendi(heldout):
    """A float64 reference built by hand from the libraries: min-max, blur, HOG, unit length, RBF, score_K."""
    from skimage.feature import hog as sk_hog
    from skimage.filters import gaussian
    from vendi_score import vendi

    images = heldout[0][:12]
    rows = []
    for x in images:
        u = ((x[0].double().numpy() + 1) / 2).clip(0, 1)
        u = (u - u.min()) / max(u.max() - u.min(), 1e-3)
        f = sk_hog(gaussian(u, sigma=0.7, mode="nearest", preserve_range=True), orientations=9,
                   pixels_per_cell=(4, 4), cells_per_block=(4, 4), block_norm="L2-Hys")
        rows.append(f / np.linalg.norm(f))
    f = np.stack(rows)
    assert f.shape == (12, 144)
    assert np.allclose(hog.features(images).numpy(), f, atol=1e-12)
    d2 = ((f[:, None] - f[None]) ** 2).sum(-1)
    k = np.exp(-d2 / (2 * hog.BANDWIDTH ** 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert hog.vendi(images) == pytest.approx(float(vendi.score_K(k)), rel=1e-7)
    dimmer = (((images + 1) / 2) * 0.6 + 0.2) * 2 - 1  # a contrast change is undone by the per-image min-max
    assert hog.vendi(dimmer) == pytest.approx(hog.vendi(images), rel=1e-6)
    assert hog.vendi(images[:1].repeat(5, 1, 1, 1)) == pytest.approx(1.0, abs=1e-6)
    assert hog.is_calibrated((1, 16, 16)) and not hog.is_calibrated((3, 64, 64))
    assert hog.features(torch.zeros(2, 3, 32, 32)).shape[0] == 2  # colour images: one HOG over the channels
    with pytest.raises(ValueError, match="at least 16x16"):
        hog.features(torch.zeros(2, 1, 8, 8))


def test_the_bonus_does_not_read_it_and_a_bonus_run_is_judged_on_it(heldout):
    """The bonus's kernel is the RBF measure's; a run trained with it leads with the HOG measure (never with the
    kernel it was trained to raise), a run without it with the RBF measure, as before."""
    images, labels = heldout
    x = images[:40]
    assert diversity.READS == calibrated.NAME != hog.NAME
    assert np.allclose(diversity.diversity_kernel(x), calibrated.similarity(x).numpy(), atol=0)
    from hrf_core.measure.evaluation import Evaluator

    metrics = Evaluator((1, 16, 16))(x, torch.zeros(40), prompts=[str(int(c)) for c in labels[:40]])
    assert metrics["vendi_hog@40"] == pytest.approx(hog.vendi(x), rel=1e-5)
    assert metric_keys([metrics], "ink").diversity == "vendi_rbf_within@40"
    bonus = metric_keys([metrics], "ink", diversity_weight=1.0)
    assert bonus.diversity == "vendi_hog_within@40" and "HOG" in bonus.diversity_label
    unconditional = {k: v for k, v in metrics.items() if "_within" not in k}
    assert metric_keys([unconditional], "digit:3", diversity_weight=1.0).diversity == "vendi_hog@40"
    assert metric_keys([unconditional], "ink", diversity_weight=1.0).diversity == "vendi_classifier@40"


def test_an_older_evaluation_gets_it_from_its_saved_pixels(heldout):
    images, labels = heldout
    x = images[:30]
    arrays: dict = {}
    evaluate_samples(x, embeddings=["pixel", "rbf"], arrays=arrays)  # saved before the HOG measure existed
    arrays["prompt_index"] = labels[:30] % 3
    assert "features.hog" not in arrays
    derived = with_derived_features({k: v.numpy() for k, v in arrays.items()})
    assert np.allclose(derived["features.hog"], hog.features(x).numpy(), atol=1e-5)
    direct = {**arrays, "features.hog": hog.features(x)}
    assert within_prompt("vendi_hog", derived) == pytest.approx(within_prompt("vendi_hog", direct), rel=1e-5)
    assert "features.hog" not in with_derived_features({"features.pixel": np.zeros((4, 768))})  # not 1x16x16


def test_the_shipped_bonus_duel_stands_on_it_whichever_half_is_shown(tmp_path):
    """The Live plot of the diversity-bonus example duel: both halves on one axis, the HOG measure, whether the
    bonus half or its plain DDPO partner is selected (on the RBF axis the bonus run would be judged by its own
    training signal)."""
    from explorer.jobs import JobManager
    from explorer.views import live
    from hrf_core.store.runs import RunStore
    from hrf_core.study.examples import EXAMPLES_DIR

    manager = JobManager(RunStore(tmp_path, examples=EXAMPLES_DIR), preflight=None)
    bonus = next(r for r in manager.store.list() if r.config.get("diversity_weight"))
    for run_id in (bonus.run_id, bonus.config["extra"]["duel_with"]):
        state = live.live_state(manager, run_id)
        assert state["keys"]["diversity"] == "vendi_hog_within@63", run_id
        assert len(state["runs"]) == 2
