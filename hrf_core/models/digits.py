"""The UCI handwritten digits at 16x16 in [-1, 1], the `DigitClassifier` CNN and its loader.

Data: `sklearn.datasets.load_digits` (1,797 images of 8x8, values 0..16, 10 classes), upsampled
bilinearly to 16x16, one channel, scaled to [-1, 1]. The train/held-out split is fixed and
stratified (20% held out, `random_state=SPLIT_SEED`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hrf_core import CHECKPOINTS_DIR

IMAGE_SIZE = 16
NUM_CLASSES = 10
SPLIT_SEED = 0
HELDOUT_FRACTION = 0.2
CLASSIFIER_DIR = CHECKPOINTS_DIR / "digits16-classifier"


@functools.lru_cache(maxsize=1)
def _digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits (read-only arrays): images (N, 8, 8) float32 in 0..16 and labels (N,) int64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = data.images.astype(np.float32), data.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_digits_16() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits: images (N, 1, 16, 16) float32 in [-1, 1] and labels (N,) int64 in 0..9 (fresh tensors)."""
    images, labels = _digits_8x8()
    x = torch.tensor(images / 16.0).unsqueeze(1)  # (N,1,8,8) in [0,1]
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    x = (x * 2.0 - 1.0).clamp(-1.0, 1.0)
    return x.contiguous(), torch.tensor(labels)


def split_indices(seed: int = SPLIT_SEED, heldout: float = HELDOUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified split: (train indices, held-out indices) into `load_digits_16()`."""
    from sklearn.model_selection import train_test_split

    _, y = load_digits_16()
    idx = np.arange(len(y))
    tr, ho = train_test_split(idx, test_size=heldout, stratify=y.numpy(), random_state=seed)
    return np.sort(tr), np.sort(ho)


def load_split(split: str, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 16, 16) in [-1, 1] and labels (N,) of `split` in {"train", "heldout", "all"}."""
    x, y = load_digits_16()
    if split == "all":
        return x, y
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown digits split {split!r}: expected 'train', 'heldout' or 'all'")
    tr, ho = split_indices(seed)
    idx = torch.from_numpy(tr if split == "train" else ho)
    return x[idx], y[idx]


def augment(x: torch.Tensor, generator: torch.Generator | None = None, max_shift: float = 1.0,
            max_rot_deg: float = 8.0, max_scale: float = 0.08) -> torch.Tensor:
    """Light random affine jitter (no flips) of images (N, C, H, W) in [-1, 1]; shift in pixels.

    Background (-1) fills the borders; the output stays in [-1, 1].
    """
    n, _, h, _ = x.shape
    r = torch.rand(n, 4, generator=generator) * 2 - 1
    ang = r[:, 0] * max_rot_deg * torch.pi / 180
    scale = 1 + r[:, 1] * max_scale
    shift = r[:, 2:] * max_shift * 2 / h  # normalised coordinates
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    out = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    return out.clamp(-1.0, 1.0)


class DigitClassifier(nn.Module):
    """Small CNN on digits (N, 1, 16, 16) in [-1, 1].

    `features(x)` -> (N, embed_dim) penultimate embedding (after ReLU); `forward(x)` -> (N, 10) logits.
    """

    def __init__(self, channels: tuple[int, int] = (32, 64), embed_dim: int = 128, dropout: float = 0.3,
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        c1, c2 = channels
        self.config = {"channels": [c1, c2], "embed_dim": embed_dim, "dropout": dropout, "num_classes": num_classes}

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(), nn.MaxPool2d(2),
            )

        self.conv = nn.Sequential(block(1, c1), block(c1, c2))  # 16 -> 8 -> 4
        self.embed = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c2 * 16, embed_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding (N, embed_dim) of images (N, 1, 16, 16) in [-1, 1]."""
        return self.embed(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10) of images (N, 1, 16, 16) in [-1, 1]."""
        return self.head(self.features(x))


def load_digit_classifier(path: str | Path = CLASSIFIER_DIR, device: str | torch.device = "cpu") -> DigitClassifier:
    """Load `config.json` + `model.safetensors` from `path` (safetensors only); the model is in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise ValueError(f"no digit classifier at {path}: expected config.json and model.safetensors")
    cfg = json.loads(cfg_file.read_text())
    model = DigitClassifier(channels=tuple(cfg["channels"]), embed_dim=int(cfg["embed_dim"]),
                            dropout=float(cfg["dropout"]), num_classes=int(cfg["num_classes"]))
    model.load_state_dict(load_file(str(weights), device="cpu"))
    return model.to(device).eval()


@torch.no_grad()
def classifier_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy (fraction) of `model` on images (N, 1, 16, 16) in [-1, 1] with labels (N,)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    correct = sum(int((model(x[i:i + batch].to(dev)).argmax(1).cpu() == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    model.train(was_training)
    return correct / len(x)
