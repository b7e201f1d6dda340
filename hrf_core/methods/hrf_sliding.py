"""HRF sliding: clusters of steps (start, end, epochs) trained one after the other (the paper's schedule).

Within the active cluster the start is drawn as in HRF; the last cluster stays active past its epochs. The
Train tab's window becomes two clusters: its first half for half the epochs, then its second half.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hrf_core.methods.base import Check, Method, StartState, steps_words
from hrf_core.methods.hrf import ddpo_partner

if TYPE_CHECKING:
    from hrf_core.config import TrainConfig


def clusters_reached(config: TrainConfig, epoch: int) -> list[tuple[int, int, int]]:
    """The clusters active up to epoch ``epoch`` (1-based), the active one last; the last cluster stays active
    past its epochs."""
    passed = 0
    for i, (_, _, epochs) in enumerate(config.clusters):
        passed += epochs
        if epoch <= passed:
            return list(config.clusters[: i + 1])
    return list(config.clusters)


def sliding_clusters(window: tuple[int, int], epochs: int) -> tuple[tuple[int, int, int], ...]:
    """HRF sliding over a window: its first half for half the epochs, then its second half."""
    start, end = window
    if end - start < 2 or epochs < 2:
        return ((start, end, epochs),)
    middle = (start + end) // 2
    first = epochs // 2
    return ((start, middle, first), (middle, end, epochs - first))


class HRFSliding(Method):
    name = "hrf-sliding"
    label = "HRF sliding"
    help = "HRF sliding trains the first half of the window, then the second half (half the epochs each)."
    color = "#9467bd"
    settings = ("clusters", "start_mode")

    def validate(self, config: TrainConfig, check: Check) -> None:
        k = config.num_steps
        for s, e, n in config.clusters:
            check(0 <= s < e <= k and n >= 1, f"cluster {s}:{e} x{n} must satisfy 0 <= start < end <= {k}, epochs >= 1")

    def from_form(self, config: TrainConfig, span: tuple[int, int]) -> TrainConfig:
        return config.replace(window=span, clusters=sliding_clusters(span, config.epochs))

    def form_window(self, config: TrainConfig) -> tuple[int, int]:
        if not config.clusters:
            return tuple(config.window)
        return (min(c[0] for c in config.clusters), max(c[1] for c in config.clusters))

    def partner(self, config: TrainConfig) -> TrainConfig:
        return ddpo_partner(config)

    def window(self, config: TrainConfig, epoch: int) -> tuple[int, int]:
        start, end, _ = clusters_reached(config, epoch)[-1]
        return (start, end)

    def window_only_start(self, config: TrainConfig, epoch: int, state: StartState) -> int:
        """The smallest start among the clusters reached: a step trained in an earlier cluster stays tuned."""
        return min(start for start, _, _ in clusters_reached(config, epoch))

    def run_label(self, config: dict) -> str:
        clusters = config.get("clusters") or ()
        return f"{self.label} " + " → ".join(f"{c[0]}–{c[1] - 1}" for c in clusters)

    def note(self, window: tuple[int, int], k: int, epochs: int, start_mode: str) -> str:
        start, end = window
        parts = " then ".join(steps_words(s, e) for s, e, _ in sliding_clusters((start, end), epochs or 2))
        if start:
            return f"{self.label} trains {parts}; steps 0–{start - 1} are never trained."
        return f"{self.label} trains {parts}."

    def schedule(self, config: dict) -> str:
        clusters = ", then ".join(f"[{s}, {e}) for {n} epochs" for s, e, n in config["clusters"])
        return f"{clusters}, of K = {config.get('num_steps')} (HRF sliding)"
