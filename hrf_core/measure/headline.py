"""The headline metrics of a run's rows: which diversity measure and Inception Score the plots, the replay and
the reports show.

The order is the calibration suite's verdict (docs/METHOD.md, :mod:`hrf_core.measure.calibration`): within a
prompt, the calibrated RBF Vendi (``vendi_rbf_within``) leads, then the calibrated HOG Vendi (``vendi_hog_within``),
which leads for a run trained with the diversity bonus (the bonus reads the RBF kernel); the digit classifier's
within-prompt Vendi fails the suite (thicker strokes raise it) and is shown only for runs logged before the
calibrated measure existed, labelled so. Across an unconditional run's samples the classifier's Vendi passes the
suite across classes and leads, then the calibrated ones. A measure whose network the reward reads (``digit:N`` and
``alignment`` read the classifier) is never the axis of that reward's runs, nor the bonus's kernel the axis of a
bonus run's (:func:`choose` leaves out the embeddings it is told; which ones is
:mod:`hrf_core.rewards.headline`'s to say)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricKeys:
    """Which row keys the plots use: the headline diversity, its label, and the IS key if any."""

    diversity: str
    diversity_label: str
    inception: str | None


#: Diversity embeddings in order of preference, with their labels. Pixel Vendi is a weak proxy: it does
#: not track class collapse on the digits model (docs/RESULTS.md), so it is labelled as such.
DIVERSITY_LABELS = {
    # a prompted run: diversity within each prompt (averaged over the prompts) comes first
    "vendi_rbf_within": "Vendi within prompt (RBF kernel on blurred pixels; calibrated)",
    "vendi_hog_within": "Vendi within prompt (RBF kernel on HOG edge descriptors; calibrated)",
    "vendi_classifier_within": "Vendi within prompt (digit-classifier features) · uncalibrated: thicker strokes "
                               "raise it (a run logged before the calibrated measure)",
    "vendi_clip_within": "Vendi within prompt (CLIP features)",
    "vendi_inception_within": "Vendi within prompt (Inception features)",
    "vendi_pixel_within": "Vendi within prompt (pixels) · weak proxy",
    "vendi_classifier": "Vendi (digit-classifier features; calibrated across classes)",
    "vendi_rbf": "Vendi (RBF kernel on blurred pixels; calibrated)",
    "vendi_hog": "Vendi (RBF kernel on HOG edge descriptors; calibrated)",
    "vendi_clip": "Vendi (CLIP features)",
    "vendi_inception": "Vendi (Inception features)",
    "vendi_pixel": "Vendi (pixels) · weak proxy",
}
INCEPTION_LABELS = {"is_classifier": "Inception Score (digits classifier)", "is_inception": "Inception Score"}
PIXEL_PROXY_NOTE = "pixel Vendi: weak proxy (no learned embedding here: diversity is measured on raw pixels)"


def choose(rows: list[dict], read: str | Iterable[str] | None = None) -> MetricKeys:
    """The best diversity measure the rows have (see the module's docstring) and the IS key; ``read``: the
    embeddings the run's training read (the reward's network, ``"classifier"``; the diversity bonus's kernel,
    ``"rbf"``), left out. A run's keys: :func:`hrf_core.rewards.headline.metric_keys`."""
    keys = {k for row in rows for k in row}
    left_out = {read} if isinstance(read, str) else set(read or ())

    def first(prefixes) -> str | None:
        for prefix in prefixes:
            found = sorted(k for k in keys if k.startswith(prefix + "@"))
            if found:
                return found[0]
        return None

    inception = first([name for name in INCEPTION_LABELS if name.split("_")[1] not in left_out])
    for name, label in DIVERSITY_LABELS.items():
        if name.split("_")[1] in left_out:
            continue
        key = first([name])
        if key:
            return MetricKeys(key, label, inception)
    return MetricKeys("vendi_pixel", DIVERSITY_LABELS["vendi_pixel"], inception)


def evaluated(rows: list[dict], keys: MetricKeys) -> list[dict]:
    return [r for r in rows if finite(r.get("reward_mean")) and finite(r.get(keys.diversity))]


def finite(value: Any) -> bool:
    """A number that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and math.isfinite(value)
