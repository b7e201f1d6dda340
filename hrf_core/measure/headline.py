"""The headline metrics of a run's rows: which diversity embedding and Inception Score the plots, the replay and
the reports show (the best the rows have: classifier, CLIP, Inception, else pixels, labelled as a weak proxy)."""

from __future__ import annotations

import math
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
    "vendi_classifier_within": "Vendi within prompt (digit-classifier features)",
    "vendi_clip_within": "Vendi within prompt (CLIP features)",
    "vendi_inception_within": "Vendi within prompt (Inception features)",
    "vendi_pixel_within": "Vendi within prompt (pixels) · weak proxy",
    "vendi_classifier": "Vendi (digit-classifier features)",
    "vendi_clip": "Vendi (CLIP features)",
    "vendi_inception": "Vendi (Inception features)",
    "vendi_pixel": "Vendi (pixels) · weak proxy",
}
INCEPTION_LABELS = {"is_classifier": "Inception Score (digits classifier)", "is_inception": "Inception Score"}
PIXEL_PROXY_NOTE = "pixel Vendi: weak proxy (no learned embedding here: diversity is measured on raw pixels)"


def metric_keys(rows: list[dict]) -> MetricKeys:
    """The best diversity embedding the rows have (classifier, CLIP, Inception, else pixels) and the IS key."""
    keys = {k for row in rows for k in row}

    def first(prefixes) -> str | None:
        for prefix in prefixes:
            found = sorted(k for k in keys if k.startswith(prefix + "@"))
            if found:
                return found[0]
        return None

    inception = first(INCEPTION_LABELS)
    for name, label in DIVERSITY_LABELS.items():
        key = first([name])
        if key:
            return MetricKeys(key, label, inception)
    return MetricKeys("vendi_pixel", DIVERSITY_LABELS["vendi_pixel"], inception)


def evaluated(rows: list[dict], keys: MetricKeys) -> list[dict]:
    return [r for r in rows if finite(r.get("reward_mean")) and finite(r.get(keys.diversity))]


def finite(value: Any) -> bool:
    """A number that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and math.isfinite(value)
