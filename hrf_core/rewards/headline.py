"""The headline metrics of a reward's runs: the measure :func:`hrf_core.measure.headline.choose` leads with,
never one whose network the reward reads (``digit:N`` and ``alignment`` read the digit classifier), nor, for a run
trained with the diversity bonus, the kernel the bonus reads."""

from __future__ import annotations

from hrf_core.measure.headline import MetricKeys, choose
from hrf_core.rewards.registry import embedding_read_by


def metric_keys(rows: list[dict], reward: str | None = None, diversity_weight: float = 0.0) -> MetricKeys:
    """The best diversity measure the rows have and the IS key; ``reward``: the run's, whose network's features
    are left out; ``diversity_weight`` > 0 (a run trained with the diversity bonus): the bonus's kernel is left out
    too, since its Vendi is what the run was trained to raise (docs/METHOD.md, "What may judge a bonus run")."""
    from hrf_core.measure.diversity import READS

    read = {embedding_read_by(reward) if reward else None, READS if diversity_weight else None} - {None}
    return choose(rows, read)
