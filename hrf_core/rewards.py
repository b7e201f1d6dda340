"""Reward registry: each reward is a factory returning ``fn(images) -> (N,) float tensor``.

Images are [-1, 1] tensors of shape (N, C, H, W). Rewards run without gradient.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hrf_core.imaging import to_pil, to_uint8

RewardFn = Callable[[torch.Tensor], torch.Tensor]


def jpeg_size_kb(images: torch.Tensor, quality: int = 95) -> torch.Tensor:
    """JPEG file size in kB (bytes / 1000) of each image, as DDPO defines it.

    Images are mapped from [-1, 1] to 0..255 with (x + 1) / 2 (rounded), then saved by Pillow at
    ``quality`` 95: one-channel images as mode L (greyscale JPEG), three-channel images as RGB.
    Returns a float32 tensor (N,) on the images' device.
    """
    sizes = []
    for array in to_uint8(images):
        buffer = io.BytesIO()
        to_pil(array).save(buffer, format="JPEG", quality=quality)
        sizes.append(buffer.tell() / 1000)
    return torch.tensor(sizes, dtype=torch.float32, device=images.device)


def make_jpeg_compressibility(device: str = "cpu") -> RewardFn:
    """Reward = minus the JPEG size in kB: higher for more compressible images."""
    return lambda images: -jpeg_size_kb(images)


def make_jpeg_incompressibility(device: str = "cpu") -> RewardFn:
    """Reward = the JPEG size in kB: higher for less compressible images."""
    return jpeg_size_kb


def make_aesthetic(device: str = "cpu") -> RewardFn:
    """LAION improved-aesthetic-predictor score on CLIP ViT-L/14 embeddings (see :mod:`hrf_core.aesthetic`)."""
    from hrf_core.aesthetic import make_aesthetic_reward

    return make_aesthetic_reward(device=device)


def _always_available() -> tuple[bool, str]:
    return True, ""


def _aesthetic_available() -> tuple[bool, str]:
    from hrf_core.aesthetic import aesthetic_available

    return aesthetic_available()


@dataclass(frozen=True)
class RewardSpec:
    """A registered reward: its factory, a one-line description and an availability check."""

    name: str
    factory: Callable[..., RewardFn]
    description: str
    available: Callable[[], tuple[bool, str]] = _always_available


REWARDS: dict[str, RewardSpec] = {
    spec.name: spec
    for spec in (
        RewardSpec("jpeg-compressibility", make_jpeg_compressibility, "minus JPEG size (kB, quality 95)"),
        RewardSpec("jpeg-incompressibility", make_jpeg_incompressibility, "JPEG size (kB, quality 95)"),
        RewardSpec(
            "aesthetic", make_aesthetic, "LAION aesthetic predictor on CLIP ViT-L/14", _aesthetic_available
        ),
    )
}


def make_reward(name: str, device: str = "cpu") -> RewardFn:
    """Build the reward ``name``; raises ValueError for an unknown name."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; choose one of: {', '.join(REWARDS)}")
    return REWARDS[name].factory(device=device)
