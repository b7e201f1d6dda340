"""JPEG rewards exactly as DDPO defines them, and the reward registry."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hrf_core.rewards.registry import REWARDS, jpeg_size_kb, make_reward


def pil_jpeg_kb(array: np.ndarray, mode: str) -> float:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="JPEG", quality=95)
    return buffer.tell() / 1000


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB")])
def test_jpeg_size_matches_pillow_on_mapped_images(channels, mode):
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, size=(3, 16, 16, channels), dtype=np.uint8)
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255 * 2 - 1  # exactly invertible by (x+1)/2
    expected = [pil_jpeg_kb(a[..., 0] if channels == 1 else a, mode) for a in arrays]
    assert torch.allclose(jpeg_size_kb(images), torch.tensor(expected))
    assert torch.allclose(make_reward("jpeg-compressibility")(images), -torch.tensor(expected))
    assert torch.allclose(make_reward("jpeg-incompressibility")(images), torch.tensor(expected))


def test_minus_one_is_black_not_clamped_garbage():
    black = -torch.ones(1, 1, 16, 16)
    assert float(jpeg_size_kb(black)) == pytest.approx(pil_jpeg_kb(np.zeros((16, 16), np.uint8), "L"))
    noisy = torch.rand(1, 1, 16, 16) * 2 - 1
    assert float(jpeg_size_kb(noisy)) > float(jpeg_size_kb(black))


def test_registry_and_unknown_reward(monkeypatch, tmp_path):
    names = {"jpeg-compressibility", "jpeg-incompressibility", "ink", "symmetry", "aesthetic", "alignment",
             "clip-alignment", *(f"digit:{d}" for d in range(10))}
    assert set(REWARDS) == names
    with pytest.raises(ValueError, match="unknown reward 'nope'; choose one of: jpeg-compressibility"):
        make_reward("nope")
    # what needs nothing, or only the shipped digits classifier, is available with no caveat, and scores images
    for name in sorted(names - {"aesthetic", "clip-alignment"}):  # those two need CLIP weights (test_text_to_image)
        assert REWARDS[name].available() == (True, ""), name
        prompts = ["3", "7"] if REWARDS[name].prompted else None
        scores = make_reward(name)(-torch.ones(2, 1, 16, 16), prompts)
        assert scores.shape == (2,) and bool(torch.isfinite(scores).all()), name
    # the aesthetic reward offline with empty caches: unavailable, saying which weights are missing
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HRF_CACHE_DIR", str(tmp_path / "hrf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("os.path.expanduser", lambda p: p.replace("~", str(tmp_path / "home")))
    ok, reason = REWARDS["aesthetic"].available()
    assert not ok and "HF_HUB_OFFLINE" in reason and "aesthetic" in reason


def blank(n: int = 1) -> torch.Tensor:
    return -torch.ones(n, 1, 16, 16)


def test_ink_prefers_thicker_strokes():
    thin, thick = blank(), blank()
    thin[0, 0, 3:13, 7:9] = 1.0
    thick[0, 0, 3:13, 6:10] = 1.0
    ink = make_reward("ink")
    assert float(ink(blank())) == 0.0 and float(ink(thick)) > float(ink(thin)) > 0
    assert float(ink(thick)) == pytest.approx(40 / 256)


def test_symmetry_prefers_mirror_images():
    symmetric, lopsided = blank(), blank()
    symmetric[0, 0, 3:13, 4:6] = symmetric[0, 0, 3:13, 10:12] = 1.0  # columns 4-5 mirror columns 10-11
    lopsided[0, 0, 3:13, 4:6] = 1.0
    score = make_reward("symmetry")
    assert float(score(symmetric)) == 0.0 and float(score(blank())) == 0.0
    assert float(score(lopsided)) == pytest.approx(-40 / 256) and float(score(lopsided)) < float(score(symmetric))


def test_digit_reward_is_the_classifier_log_probability():
    from hrf_core.models.digits import load_split

    images, labels = load_split("heldout")
    threes = make_reward("digit:3")(images)
    assert threes.shape == (len(labels),) and (threes <= 0).all()
    assert float(threes[labels == 3].mean()) > -0.1 > float(threes[labels != 3].mean())
    with pytest.raises(ValueError, match="1x16x16"):
        make_reward("digit:3")(torch.zeros(2, 3, 8, 8))
    assert "digit:9" in REWARDS and "digit:10" not in REWARDS


GOOD = '''
import torch

def brightness(images):
    """Mean brightness of each image."""
    return images.mean(dim=(1, 2, 3))

def wrong_shape(images):
    return images.mean(dim=(2, 3))

def not_a_number(images):
    return torch.full((images.shape[0],), float("nan"))

def strings(images):
    return ["a"] * images.shape[0]

value = 3
'''


@pytest.fixture
def reward_file(tmp_path, monkeypatch):
    from hrf_core.rewards import registry as rewards

    monkeypatch.setattr(rewards, "REWARDS", dict(rewards.REWARDS))  # registrations stay in this test
    path = tmp_path / "my_rewards.py"
    path.write_text(GOOD)
    return path


def test_bring_your_own_reward_from_a_file_and_a_module(reward_file, monkeypatch):
    from hrf_core.rewards import registry as rewards

    name = rewards.register_reference(f"{reward_file}:brightness")
    images = torch.linspace(-1, 1, 2 * 4).reshape(2, 1, 2, 2)
    assert torch.allclose(rewards.make_reward(name)(images), images.mean(dim=(1, 2, 3)))
    assert rewards.REWARDS[name].description == "custom: Mean brightness of each image."
    monkeypatch.syspath_prepend(str(reward_file.parent))
    assert rewards.register_reference("my_rewards:brightness", "bright") == "bright"
    names = rewards.register_from_env({"HRF_EXTRA_REWARDS": f"b2={reward_file}:brightness; my_rewards:brightness"})
    assert names == ["b2", "my_rewards:brightness"] and "b2" in rewards.REWARDS


@pytest.mark.parametrize("reference,message", [
    ("missing.py:brightness", "reward file missing.py does not exist"),
    ("{file}:nope", "has no function 'nope'"),
    ("{file}:value", "is not callable"),
    ("no_such_module_xyz:fn", "could not import reward module 'no_such_module_xyz'"),
    ("just-a-name", "must look like path/to/file.py:function"),
])
def test_bad_reward_references_give_one_line(reward_file, reference, message):
    from hrf_core.rewards import registry as rewards

    with pytest.raises(ValueError, match=message) as error:
        rewards.register_reference(reference.format(file=reward_file))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("function,message", [
    ("wrong_shape", r"returned shape \(2, 1\) for 2 images"),
    ("not_a_number", "returned NaN or inf for 2 of 2 images"),
    ("strings", "returned list, not numbers"),
])
def test_bad_reward_outputs_give_one_line(reward_file, function, message):
    from hrf_core.rewards import registry as rewards

    name = rewards.register_reference(f"{reward_file}:{function}")
    with pytest.raises(ValueError, match=message):
        rewards.make_reward(name)(torch.zeros(2, 1, 4, 4))


def test_custom_rewards_cannot_shadow_built_ins(reward_file):
    from hrf_core.rewards import registry as rewards

    with pytest.raises(ValueError, match="taken by a built-in"):
        rewards.register_reference(f"{reward_file}:brightness", "ink")


def test_alignment_scores_the_prompted_digit_and_needs_prompts():
    """alignment = p(prompted digit | x) under the classifier: the same images score each prompt's probability;
    without prompts (an unprompted run) it refuses in one line."""
    from hrf_core.models.digits import load_digit_classifier

    images = torch.rand(3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        probs = torch.softmax(load_digit_classifier()(images), dim=1)
    reward = make_reward("alignment")
    expected = [float(probs[0, 3]), float(probs[1, 0]), float(probs[2, 9])]
    assert reward(images, ["3", "0", "9"]).tolist() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="alignment reads each image's prompt: it needs a prompted run"):
        reward(images)
    with pytest.raises(ValueError, match="digit prompts"):
        reward(images, ["a cat", "3", "3"])
