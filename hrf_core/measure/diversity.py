"""What each sample adds to its group's diversity: the training's diversity bonus (docs/METHOD.md, "The diversity
bonus").

- :func:`diversity_kernel`: the similarity matrix (N, N) of a group's final images. The one place that decides
  the space the bonus measures in: the calibrated RBF kernel (:func:`hrf_core.measure.calibrated.similarity`) for
  1x16x16 digits, the pixels' cosine kernel otherwise. A run trained with the bonus is judged on another calibrated
  measure (:data:`READS` names this one; :mod:`hrf_core.measure.hog` judges).
- :func:`leave_one_out_vendi`: b_i = VS(K) - VS(K without row and column i), by vendi-score's ``score_K``.
- :func:`group_bonus`: b within each group of a batch's rows (a row alone in its group: 0).
"""

from __future__ import annotations

import numpy as np
import torch

#: The measure whose kernel the bonus reads on 1x16x16 digits (:func:`diversity_kernel`): a run trained with the bonus
#: is never judged on it (:func:`hrf_core.rewards.headline.metric_keys`; the calibrated HOG measure judges it).
READS = "rbf"


def cosine_kernel(features: torch.Tensor | np.ndarray) -> np.ndarray:
    """K[i, j] = cos(f_i, f_j), float64 (N, N) numpy, from features (N, ...) flattened (computed in float64 on their
    device); a zero vector is identical to other zero vectors and orthogonal to the rest (as
    :func:`hrf_core.measure.metrics.vendi_score`)."""
    x = torch.as_tensor(features).detach().flatten(1).double()
    zero = ~(x.abs().sum(dim=1) > 0)
    if zero.any():
        x = torch.cat([x, zero[:, None].double()], dim=1)
    x = x / x.norm(dim=1, keepdim=True)
    return (x @ x.T).cpu().numpy()


def diversity_kernel(images: torch.Tensor) -> np.ndarray:
    """The similarity (N, N), float64, of images in [-1, 1] (N, C, H, W) that the diversity bonus reads.

    1x16x16 digits on the calibrated measure's RBF kernel (blurred, contrast-normalised pixels; it passes the
    calibration suite and reads no reward's network; the Live plot's within-prompt measure of runs without the
    bonus), any other model on its pixels (cosine; a weak proxy, as in the evaluation).
    """
    from hrf_core.imaging import to_unit
    from hrf_core.measure import calibrated

    if calibrated.is_calibrated(tuple(images.shape[1:])):
        return calibrated.similarity(images).numpy()
    # the pixel measure's features (measure.features.PixelFeatures), kept on the images' device
    return cosine_kernel(to_unit(images.detach()))


def leave_one_out_vendi(kernel: np.ndarray, q: float = 1.0) -> np.ndarray:
    """Each sample's leave-one-out contribution to the group's Vendi score (order ``q``), (N,) float64:
    b_i = VS(K) - VS(K without row and column i). Zeros for N < 2 (a group of one has nothing to compare)."""
    from hrf_core.measure.calibrated import vendi_of_kernel

    kernel = np.asarray(kernel, dtype=np.float64)
    n = len(kernel)
    if n < 2:
        return np.zeros(n)
    whole = vendi_of_kernel(kernel, q)
    return np.array([whole - vendi_of_kernel(np.delete(np.delete(kernel, i, axis=0), i, axis=1), q)
                     for i in range(n)])


def group_bonus(images: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each row's leave-one-out Vendi contribution within its group: images (N, C, H, W), groups (N,) integer
    ids -> (N,) float64 on the CPU; the kernel is :func:`diversity_kernel` of the group's images."""
    bonus = torch.zeros(len(images), dtype=torch.float64)
    for group in groups.unique():
        rows = (groups == group).nonzero().flatten()
        if len(rows) > 1:
            bonus[rows] = torch.from_numpy(leave_one_out_vendi(diversity_kernel(images[rows.to(images.device)])))
    return bonus
