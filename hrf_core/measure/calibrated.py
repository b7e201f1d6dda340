"""The calibrated diversity measure: Vendi with an RBF kernel on lightly blurred, contrast-normalised pixels.

It is the measure the app, the frontier and the reports lead with on 1x16x16 digits, because it passes the
calibration suite (:mod:`hrf_core.measure.calibration`, table in docs/METHOD.md): it falls clearly as a set
collapses to k = 8, 4, 2, 1 distinct digits, moves by a few percent under the edits a reward makes while the digit
stays the same digit (3x3 stroke dilation, mild noise, contrast, a one-pixel shift), and is unchanged by
duplicating the set. It reads no network, so no reward can share its features.

Features (:func:`features`): each image mapped to [0, 1] by (x + 1) / 2, rescaled per image to its own
min..max (a contrast change x -> a x + b leaves it unchanged), then blurred with a 5x5 Gaussian of
sigma :data:`BLUR_SIGMA` px (replicate padding), flattened: D = C*H*W.

Kernel (:func:`similarity`): k(x, y) = exp(-||f(x) - f(y)||^2 / (2 h^2)), ones on the diagonal, with the
bandwidth h fixed once: :data:`BANDWIDTH` is the median pairwise distance of the features of 256 samples of the
base model ``digits16`` (seed 0, K = 40 DDIM steps, eta = 1; :func:`fit_bandwidth`). For other image shapes
the bandwidth is scaled by sqrt(D / 256), which is not calibrated (:func:`is_calibrated` says so).

Vendi (:func:`vendi`, :func:`vendi_of_features`): vendi-score's ``score_K`` of that kernel, order q.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

#: The name of this measure's embedding in metric keys: ``vendi_rbf@N``, ``vendi_rbf_within@N``.
NAME = "rbf"
#: The Gaussian blur's sigma in pixels (a 5x5 kernel).
BLUR_SIGMA = 0.7
#: The RBF bandwidth h: median pairwise feature distance of 256 ``digits16`` samples (seed 0, K = 40, eta = 1).
BANDWIDTH = 4.156
#: The image shape the bandwidth (and the calibration suite) belongs to.
CALIBRATED_SHAPE = (1, 16, 16)


def _gaussian_kernel(sigma: float, radius: int = 2) -> torch.Tensor:
    g = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2 / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def contrast_normalised(images: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] -> float64 on CPU in [0, 1], each rescaled to its own min..max (a contrast
    change x -> a x + b leaves it unchanged): the first step of both calibrated measures' features."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected images as a (N>0, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    u = ((images.detach().to("cpu", torch.float64) + 1) / 2).clamp(0, 1)
    low, high = u.amin(dim=(1, 2, 3), keepdim=True), u.amax(dim=(1, 2, 3), keepdim=True)
    return (u - low) / (high - low).clamp_min(1e-3)


def features(images: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] -> features (N, C*H*W) float64 on CPU: per-image min-max, blurred."""
    u = contrast_normalised(images)
    c = u.shape[1]
    kernel = _gaussian_kernel(BLUR_SIGMA).expand(c, 1, -1, -1)
    u = F.conv2d(F.pad(u, (2, 2, 2, 2), mode="replicate"), kernel, groups=c)
    return u.flatten(1)


def is_calibrated(shape: tuple[int, ...]) -> bool:
    """Whether images of this (C, H, W) shape are what the bandwidth and the calibration suite belong to."""
    return tuple(shape) == CALIBRATED_SHAPE


def bandwidth_for(dim: int) -> float:
    """The bandwidth for features of ``dim`` values: :data:`BANDWIDTH`, scaled by sqrt(dim / 256) for other sizes."""
    return BANDWIDTH * math.sqrt(dim / 256)


def _squared_distances(f: np.ndarray) -> np.ndarray:
    norms = (f * f).sum(axis=1)
    return np.maximum(norms[:, None] + norms[None, :] - 2.0 * f @ f.T, 0.0)


def kernel_of_features(feats: torch.Tensor | np.ndarray, bandwidth: float | None = None) -> np.ndarray:
    """The RBF kernel (N, N) float64 of :func:`features` (a saved array works too); ones on the diagonal."""
    f = feats.detach().cpu().double().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats, np.float64)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"expected features (N>0, D), got shape {f.shape}")
    h = bandwidth if bandwidth is not None else bandwidth_for(f.shape[1])
    k = np.exp(-_squared_distances(f) / (2.0 * h * h))
    np.fill_diagonal(k, 1.0)
    return k


def similarity(images: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    """The calibrated similarity of a batch: images (N, C, H, W) in [-1, 1] -> (N, N) float64 on CPU, symmetric,
    in (0, 1], ones on the diagonal. Vendi of it is :func:`vendi`."""
    return torch.from_numpy(kernel_of_features(features(images), bandwidth))


def vendi_of_kernel(kernel: torch.Tensor | np.ndarray, q: float | str = 1.0) -> float:
    """Vendi Score (vendi-score's ``score_K``) of a similarity matrix with ones on the diagonal: 1 .. N."""
    from vendi_score import vendi

    k = kernel.detach().cpu().double().numpy() if isinstance(kernel, torch.Tensor) else np.asarray(kernel, np.float64)
    if not np.isfinite(k).all():
        return float("nan")
    with warnings.catch_warnings():  # score_K touches the deprecated scipy.sparse.csr namespace
        warnings.simplefilter("ignore", DeprecationWarning)
        return float(vendi.score_K(k, q=q))


def vendi_of_features(feats: torch.Tensor | np.ndarray, q: float | str = 1.0) -> float:
    """The calibrated Vendi of saved :func:`features` (N, D)."""
    return vendi_of_kernel(kernel_of_features(feats), q)


def vendi(images: torch.Tensor, q: float | str = 1.0) -> float:
    """The calibrated Vendi of images (N, C, H, W) in [-1, 1]: 1 (all alike) .. N."""
    return vendi_of_kernel(similarity(images), q)


def fit_bandwidth(images: torch.Tensor) -> float:
    """The median pairwise distance of the images' features: how :data:`BANDWIDTH` was fixed, on the base model's
    samples."""
    return median_distance(features(images).numpy())


def median_distance(feats: np.ndarray) -> float:
    """The median Euclidean distance between distinct rows of features (N, D): the bandwidth rule of both
    calibrated kernels (this one and :mod:`hrf_core.measure.hog`)."""
    d = np.sqrt(_squared_distances(np.asarray(feats, np.float64)))
    return float(np.median(d[np.triu_indices(len(d), 1)]))
