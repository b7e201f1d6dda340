"""JPEG rewards exactly as DDPO defines them, and the reward registry."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hrf_core.rewards import REWARDS, jpeg_size_kb, make_reward


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


def test_registry_and_unknown_reward():
    assert {"jpeg-compressibility", "jpeg-incompressibility", "aesthetic"} <= set(REWARDS)
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        make_reward("nope")
    ok, reason = REWARDS["aesthetic"].available()
    assert ok or reason  # offline here: unavailable, with a reason
