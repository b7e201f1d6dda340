"""A second calibrated diversity measure: Vendi with an RBF kernel on HOG descriptors (where the strokes' edges
run), for judging runs that were trained on the first.

Why a second: the diversity bonus (:mod:`hrf_core.measure.diversity`) reads the calibrated RBF kernel on blurred
pixels (:mod:`hrf_core.measure.calibrated`), so a bonus run's ``vendi_rbf`` is the quantity it was trained to raise,
not evidence. This measure reads a different summary of the image, the layout of edge orientations, which the
bonus never sees. It passes the same calibration suite (:mod:`hrf_core.measure.calibration`, table in
docs/METHOD.md), within a class and across classes: it falls clearly as a set collapses, and the edits a reward
makes while the digit stays the same digit move it by at most 2% (a monotone change of intensity keeps every
gradient's direction; a thicker stroke keeps its edges' directions; a one-pixel shift stays inside a 4-pixel cell).

Features (:func:`features`): each image mapped to [0, 1] by (x + 1) / 2 and rescaled per image to its own
min..max (as the calibrated measure), blurred with a Gaussian of sigma :data:`BLUR_SIGMA` px
(``skimage.filters.gaussian``, nearest-edge padding), then scikit-image's HOG (Dalal & Triggs 2005):
:data:`ORIENTATIONS` unsigned orientation bins, cells of :data:`CELL` x :data:`CELL` pixels, blocks of
:data:`BLOCK` x :data:`BLOCK` cells normalised by L2-Hys, the whole vector scaled to unit length. On 1x16x16 digits
that is one block over the image: D = 4 * 4 * 9 = 144.

Kernel: k(x, y) = exp(-||f(x) - f(y)||^2 / (2 h^2)) with h = :data:`BANDWIDTH`, the median pairwise distance of the
features of 256 samples of the base model ``digits16`` (seed 0, K = 40 DDIM steps, eta = 1; :func:`fit_bandwidth`).
The features have unit length, so h needs no rescaling for other shapes, but only 1x16x16 is calibrated.

Vendi (:func:`vendi`, :func:`vendi_of_features`): vendi-score's ``score_K`` of that kernel, order q.
"""

from __future__ import annotations

import numpy as np
import torch

from hrf_core.measure.calibrated import (  # noqa: F401  (is_calibrated: both measures belong to 1x16x16 digits)
    contrast_normalised,
    is_calibrated,
    kernel_of_features,
    median_distance,
    vendi_of_kernel,
)

#: The name of this measure's embedding in metric keys: ``vendi_hog@N``, ``vendi_hog_within@N``.
NAME = "hog"
#: The Gaussian blur's sigma in pixels before the gradients.
BLUR_SIGMA = 0.7
#: HOG's unsigned orientation bins over 0..180 degrees (Dalal & Triggs' choice).
ORIENTATIONS = 9
#: Pixels per cell side.
CELL = 4
#: Cells per block side: on 16x16 images one block covers the image.
BLOCK = 4
#: The RBF bandwidth h: median pairwise feature distance of 256 ``digits16`` samples (seed 0, K = 40, eta = 1).
BANDWIDTH = 1.021


def features(images: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1], H and W at least CELL * BLOCK -> HOG features (N, D) float64 on CPU, unit
    length (an image with no edges: zeros)."""
    from skimage.feature import hog
    from skimage.filters import gaussian

    u = contrast_normalised(images).permute(0, 2, 3, 1).numpy()  # (N, H, W, C); checks the shape
    if min(u.shape[1:3]) < CELL * BLOCK:
        side = CELL * BLOCK
        raise ValueError(f"HOG needs images of at least {side}x{side} pixels, got {tuple(images.shape)}")
    channels = u.shape[-1]
    rows = []
    for image in u:
        image = image[..., 0] if channels == 1 else image
        axis = None if channels == 1 else -1
        blurred = gaussian(image, sigma=BLUR_SIGMA, mode="nearest", channel_axis=axis, preserve_range=True)
        rows.append(hog(blurred, orientations=ORIENTATIONS, pixels_per_cell=(CELL, CELL),
                        cells_per_block=(BLOCK, BLOCK), block_norm="L2-Hys", feature_vector=True,
                        channel_axis=axis))
    f = torch.from_numpy(np.stack(rows).astype(np.float64))
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def vendi_of_features(feats: torch.Tensor | np.ndarray, q: float | str = 1.0) -> float:
    """The HOG Vendi of saved :func:`features` (N, D): 1 (all alike) .. N."""
    return vendi_of_kernel(kernel_of_features(feats, BANDWIDTH), q)


def vendi(images: torch.Tensor, q: float | str = 1.0) -> float:
    """The HOG Vendi of images (N, C, H, W) in [-1, 1]: 1 (all alike) .. N."""
    return vendi_of_features(features(images), q)


def fit_bandwidth(images: torch.Tensor) -> float:
    """The median pairwise distance of the images' features: how :data:`BANDWIDTH` was fixed, on the base model's
    samples."""
    return median_distance(features(images).numpy())
