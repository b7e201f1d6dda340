"""Image conversions shared by rewards, grids and the app.

Model images are float tensors in [-1, 1] of shape (N, C, H, W).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Map [-1, 1] images to [0, 1] with (x + 1) / 2, clamped."""
    return ((images.detach().float() + 1) / 2).clamp(0, 1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] images (N, C, H, W) -> uint8 array (N, H, W, C) in 0..255 (rounded)."""
    return (to_unit(images) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_pil(image_hwc: np.ndarray) -> Image.Image:
    """One uint8 (H, W, C) array -> PIL image: mode L for one channel, RGB for three."""
    if image_hwc.shape[-1] == 1:
        return Image.fromarray(image_hwc[..., 0], mode="L")
    return Image.fromarray(image_hwc, mode="RGB")


def image_grid(images: torch.Tensor, nrow: int | None = None, scale: int = 1, padding: int = 1) -> Image.Image:
    """A grid PNG-ready PIL image of [-1, 1] images (N, C, H, W), optionally upscaled (nearest) by ``scale``."""
    n = images.shape[0]
    nrow = nrow or max(1, int(np.ceil(np.sqrt(n))))
    grid = make_grid(to_unit(images).cpu(), nrow=nrow, padding=padding, pad_value=1.0)
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if images.shape[1] == 1:
        array = array[..., :1]
    pil = to_pil(array)
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    return pil
