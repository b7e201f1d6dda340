"""Vendi, Inception Score, class coverage/entropy, evaluate_samples and the feature extractors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hrf_core.measure.features import (
    ClassifierFeatures,
    PixelFeatures,
    make_feature_extractor,
)
from hrf_core.measure.metrics import (
    class_coverage,
    class_entropy,
    evaluate_samples,
    inception_score,
    metric_key,
    prompt_alignment,
    prompt_metrics,
    vendi_score,
    within_prompt,
)


class FakeDigitClassifier(nn.Module):
    """Class k <=> pixel (0, k) is bright. Features: the first 10 pixels in [0, 1]; confident logits."""

    def __init__(self, with_head: bool = True) -> None:
        super().__init__()
        lin = nn.Linear(10, 10)
        with torch.no_grad():
            lin.weight.copy_(torch.eye(10) * 50)
            lin.bias.zero_()
        if with_head:
            self.head = lin
        else:
            self.lin = lin
        self.feature_calls = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.feature_calls += 1
        return (x.flatten(1)[:, :10] + 1) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.head if hasattr(self, "head") else self.lin
        return layer(self.features(x))


def digit_images(classes: list[int]) -> torch.Tensor:
    """(N, 1, 16, 16) in [-1, 1]: black, with pixel (0, k) white for class k."""
    x = -torch.ones(len(classes), 1, 16, 16)
    for i, k in enumerate(classes):
        x[i, 0, 0, k] = 1.0
    return x


# ------------------------------------------------------------------------------------------------ vendi
@pytest.mark.parametrize("q", [0.5, 1, 2, "inf"])
def test_identical_samples_give_vendi_one(q: float | str) -> None:
    x = torch.randn(1, 256).repeat(64, 1)
    assert vendi_score(x, q) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("q", [0.5, 1, 2, float("inf")])
@pytest.mark.parametrize("n,d", [(6, 6), (5, 40)])  # D <= N (score_dual) and D > N (score_K)
def test_orthogonal_features_give_n(q: float, n: int, d: int) -> None:
    x = torch.zeros(n, d)
    x[torch.arange(n), torch.arange(n)] = torch.rand(n) * 10 + 0.1  # scales must not matter (cosine kernel)
    assert vendi_score(x, q) == pytest.approx(n, rel=1e-9)


def test_vendi_orders_on_a_known_spectrum() -> None:
    # e1, e1, e2, e3: eigenvalues of K/n are (1/2, 1/4, 1/4)
    x = np.eye(3)[[0, 0, 1, 2]] * np.array([[1.0], [2.0], [3.0], [0.5]])
    p = np.array([0.5, 0.25, 0.25])
    expected = {
        0.5: p.__pow__(0.5).sum() ** 2,
        1: math.exp(-(p * np.log(p)).sum()),  # 2^1.5
        2: 1 / (p ** 2).sum(),  # 8/3
        "inf": 1 / p.max(),  # 2
    }
    got = {q: vendi_score(x, q) for q in expected}
    for q in expected:
        assert got[q] == pytest.approx(expected[q], rel=1e-9), q
    assert got[0.5] > got[1] > got[2] > got["inf"]


def test_vendi_zero_vectors_are_alike_and_distinct_from_others() -> None:
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    p = np.array([2 / 3, 1 / 3])
    assert vendi_score(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("q", [0, 0.1, -1, "two"])
def test_vendi_rejects_unreliable_orders(q: object) -> None:
    with pytest.raises(ValueError, match="order q"):
        vendi_score(np.eye(3), q)  # type: ignore[arg-type]


def test_vendi_nan_features_give_nan() -> None:
    x = torch.randn(4, 3)
    x[1, 1] = float("nan")
    assert math.isnan(vendi_score(x))


# ------------------------------------------------------------------------------------- inception score
def test_within_prompt_vendi_and_is_by_hand() -> None:
    """Prompt 0: three identical samples (Vendi 1); prompt 1: two orthogonal ones (Vendi 2); within-prompt = their
    mean 1.5, where the across-prompt Vendi of all five sees more. IS within: prompt 0 one confident class (IS 1),
    prompt 1 two confident classes (IS 2). A prompt with one sample in the subset is left out."""
    features = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    probs = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    arrays = {"features.x": features, "probs.x": probs, "prompt_index": torch.tensor([0, 0, 0, 1, 1])}
    assert within_prompt("vendi_x", arrays) == pytest.approx(1.5)
    assert vendi_score(features.numpy()) > 1.5 + 0.5
    assert within_prompt("is_x", arrays) == pytest.approx(1.5, abs=1e-4)
    assert within_prompt("vendi_x", arrays, index=np.array([0, 1, 3])) == pytest.approx(1.0)  # prompt 1: 1 sample
    assert math.isnan(within_prompt("vendi_y", arrays))


def test_prompt_alignment_by_hand() -> None:
    """The classifier's probability of the digit each sample's prompt names, averaged: prompts "7", "2" (first seen
    in that order); samples 0-2 prompted "7" put 0.9, 0.6, 0.1 on class 7, samples 3-4 prompted "2" put 0.8 and 0
    on class 2 (the rest on class 0): (0.9 + 0.6 + 0.1 + 0.8 + 0) / 5 = 0.48. Text prompts name no class."""
    probs = torch.zeros(5, 10)
    for row, (cls, p) in enumerate([(7, 0.9), (7, 0.6), (7, 0.1), (2, 0.8), (2, 0.0)]):
        probs[row, cls] = p
        probs[row, 0 if cls != 0 else 1] += 1 - p
    arrays = {"probs.classifier": probs}
    out = prompt_metrics(arrays, ["7", "7", "7", "2", "2"], 5)
    assert arrays["prompt_class"].tolist() == [7, 2]
    assert out["prompt_alignment@5"] == pytest.approx(0.48)
    assert prompt_alignment(arrays, np.array([0, 3])) == pytest.approx((0.9 + 0.8) / 2)
    # within-prompt Vendi among on-prompt samples only: sample 2 (prompt "7", class 0 wins) and sample 4 (prompt "2",
    # class 0 wins) are left out; prompt "7" keeps samples 0 and 1 (orthogonal features: Vendi 2), prompt "2" keeps
    # only sample 3 (left out: one sample), so the value is prompt "7"'s alone
    arrays["features.x"] = torch.eye(5)
    assert within_prompt("vendi_x", arrays) == pytest.approx((3 + 2) / 2)
    assert within_prompt("vendi_x", arrays, on_prompt=True) == pytest.approx(2.0)
    assert within_prompt("vendi_x", arrays, index=np.array([0, 2, 3, 4]), on_prompt=True) != \
        within_prompt("vendi_x", arrays, on_prompt=True)  # a subset without sample 1: prompt "7" has 1 left
    text = {"probs.classifier": probs}
    assert "prompt_alignment@5" not in prompt_metrics(text, ["a cat", "a cat", "a dog", "a dog", "a dog"], 5)
    assert "prompt_class" not in text and math.isnan(prompt_alignment(text))


def test_one_confident_class_gives_is_one() -> None:
    probs = torch.zeros(32, 10)
    probs[:, 3] = 1.0
    assert inception_score(probs)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("k", [2, 10])
def test_confident_uniform_classes_give_is_k(k: int) -> None:
    probs = torch.eye(k).repeat(5, 1)
    mean, std = inception_score(probs)
    assert mean == pytest.approx(k)
    assert std == 0.0


def test_is_unconfident_predictions_give_one_and_splits_average() -> None:
    assert inception_score(torch.full((20, 10), 0.1))[0] == pytest.approx(1.0)
    probs = torch.cat([torch.eye(4).repeat(2, 1), torch.eye(4)[[0]].repeat(8, 1)])  # 8 balanced, 8 one-class
    mean, std = inception_score(probs, splits=2)
    assert (mean, std) == pytest.approx((2.5, 1.5))


def test_is_rejects_non_probabilities() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        inception_score(torch.randn(8, 10))
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.eye(4), splits=5)


# ------------------------------------------------------------------------------------------------ classes
def test_class_entropy_and_coverage() -> None:
    assert class_entropy([3] * 12, 10) == 0.0
    assert class_coverage([3] * 12, 10) == pytest.approx(0.1)
    balanced = list(range(10)) * 3
    assert class_entropy(balanced, 10) == pytest.approx(math.log2(10))
    assert class_coverage(balanced, 10) == 1.0
    assert class_entropy([0, 0, 1, 1], 10) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        class_coverage([10], 10)


# -------------------------------------------------------------------------------------- evaluate_samples
@pytest.mark.parametrize("with_head", [True, False])
def test_evaluate_samples_keys_values_and_one_classifier_pass(with_head: bool) -> None:
    classes = list(range(10)) * 2
    images, rewards = digit_images(classes), torch.arange(20, dtype=torch.float32)
    clf = FakeDigitClassifier(with_head)
    m = evaluate_samples(images, rewards, classifier=clf)
    assert set(m) == {"vendi_pixel@20", "vendi_classifier@20", "is_classifier@20", "class_entropy@20",
                      "class_coverage@20", "reward_mean", "reward_std"}
    assert clf.feature_calls == (1 if with_head else 2)  # with a head: features and probs from one forward
    assert m["vendi_classifier@20"] == pytest.approx(10.0, rel=1e-6)  # 10 orthogonal pairs
    assert m["is_classifier@20"] == pytest.approx(10.0, rel=1e-4)
    assert m["class_entropy@20"] == pytest.approx(math.log2(10))
    assert m["class_coverage@20"] == 1.0
    assert 1.0 < m["vendi_pixel@20"] <= 20.0
    assert m["reward_mean"] == pytest.approx(9.5)
    assert m["reward_std"] == pytest.approx(float(rewards.std(unbiased=False)))


def test_evaluate_samples_collapse_is_visible() -> None:
    m = evaluate_samples(digit_images([7] * 16), None, classifier=FakeDigitClassifier())
    assert m["vendi_classifier@16"] == pytest.approx(1.0, abs=1e-6)
    assert m["is_classifier@16"] == pytest.approx(1.0)
    assert m["class_entropy@16"] == 0.0
    assert m["class_coverage@16"] == pytest.approx(0.1)
    assert "reward_mean" not in m


def test_evaluate_samples_orders_and_prebuilt_extractors() -> None:
    images = torch.rand(8, 3, 8, 8) * 2 - 1
    m = evaluate_samples(images, embeddings=[PixelFeatures()], vendi_orders=(1, 2, "inf"))
    assert set(m) == {"vendi_pixel@8", "vendi_q2_pixel@8", "vendi_qinf_pixel@8"}
    assert m["vendi_pixel@8"] >= m["vendi_q2_pixel@8"] >= m["vendi_qinf_pixel@8"]
    assert metric_key("vendi", "clip", 64, 0.5) == "vendi_q0.5_clip@64"


# ----------------------------------------------------------------------------------- feature extractors
def test_pixel_features_are_unit_range_and_flat() -> None:
    x = torch.rand(5, 3, 4, 4) * 2 - 1
    f = make_feature_extractor("pixels")(x)
    assert f.shape == (5, 48) and f.min() >= 0 and f.max() <= 1
    assert torch.allclose(f, ((x + 1) / 2).flatten(1))


def test_extractor_outputs_are_usable_in_autograd_code() -> None:
    ext = ClassifierFeatures(FakeDigitClassifier())
    feats, probs = ext.features_and_probs(digit_images([1, 2]))
    w = torch.ones(10, requires_grad=True)
    ((feats * w).sum() + (probs * w).sum()).backward()  # inference tensors would raise here
    assert w.grad is not None


class StubInception(nn.Module):
    """Stands in for torchvision's Inception-v3: pooled 2048-d vector -> ``fc``; records its input."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 2048)
        self.fc = nn.Linear(2048, 1000)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x)
        return self.fc(self.proj(x.mean(dim=(2, 3))))


def test_inception_preprocessing_features_and_probs() -> None:
    stub = StubInception()
    ext = make_feature_extractor("inception", model=stub)
    black = -torch.ones(3, 1, 16, 16)
    feats, probs = ext.features_and_probs(black)
    assert feats.shape == (3, 2048) and probs.shape == (3, 1000)
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)
    (x,) = stub.inputs  # one forward for both
    assert x.shape == (3, 3, 299, 299)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x[0, :, 100, 100], (0 - mean) / std, atol=1e-5)  # black -> ImageNet-normalised 0


def _empty_caches(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HRF_CACHE_DIR", str(tmp_path / "hrf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("os.path.expanduser", lambda p: p.replace("~", str(tmp_path / "home")))


@pytest.mark.parametrize("name,needle", [("clip", "ViT-L-14/openai"), ("inception", "Inception-v3")])
def test_offline_extractors_fail_clearly(monkeypatch, tmp_path, name: str, needle: str) -> None:
    """No download attempted (how fast it fails: bench/fail_fast.py)."""
    _empty_caches(monkeypatch, tmp_path)
    from hrf_core.downloads import Unavailable

    with pytest.raises(Unavailable) as err:  # a ValueError: the command line's one line, exit 2
        make_feature_extractor(name)
    assert needle in str(err.value) and "HF_HUB_OFFLINE" in str(err.value) and "python -c" in str(err.value)


def test_missing_digits_classifier_says_how_to_make_it(tmp_path) -> None:
    with pytest.raises(ValueError, match="pretrain"):
        make_feature_extractor("classifier", path=tmp_path)


def test_unknown_extractor_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown feature extractor"):
        make_feature_extractor("dino")
