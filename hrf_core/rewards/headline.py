"""The headline metrics of a reward's runs: the measure :func:`hrf_core.measure.headline.choose` leads with,
never one whose network the reward reads (``digit:N`` and ``alignment`` read the digit classifier)."""

from __future__ import annotations

from hrf_core.measure.headline import MetricKeys, choose
from hrf_core.rewards.registry import embedding_read_by


def metric_keys(rows: list[dict], reward: str | None = None) -> MetricKeys:
    """The best diversity measure the rows have and the IS key; ``reward``: the run's, whose network's features
    are left out."""
    return choose(rows, embedding_read_by(reward) if reward else None)
