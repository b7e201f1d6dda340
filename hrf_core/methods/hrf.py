"""HRF (Barceló, Alcázar, Tobar 2024): one window of trained steps, starts re-noised inside it.

Each batch re-noises trajectory-of-interest images to a start step s, uniform in the window per batch
(``start_mode="uniform"``, the paper's HRF) or the window's start (``"fixed"``, the reviewers' re-noised-start
ablation), and trains steps s .. end-1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hrf_core.methods.arms import window_label
from hrf_core.methods.base import Check, Method, reference, steps_words

if TYPE_CHECKING:
    from hrf_core.config import TrainConfig


class HRF(Method):
    name = "hrf"
    label = "HRF"
    help = "HRF re-noises a sample to a start step drawn in the window and trains only the window's steps."
    color = "#1f77b4"
    settings = ("window", "start_mode")

    def validate(self, config: TrainConfig, check: Check) -> None:
        start, end = config.window
        k = config.num_steps
        check(0 <= start < end <= k, f"window {start}:{end} must satisfy 0 <= start < end <= {k}")

    def partner(self, config: TrainConfig) -> TrainConfig:
        return ddpo_partner(config)

    def run_label(self, config: dict) -> str:
        s, e = config.get("window", (0, config.get("num_steps", "?")))
        return f"{self.label} {s}–{e - 1}"

    def arm_label(self, config: dict) -> str:
        s, e = config.get("window", (0, 0))
        return window_label(self.name, s, e) + ("-fixed" if config.get("start_mode") == "fixed" else "")

    def window_only_split(self, config: dict) -> int | None:
        if config.get("outside_window") == "base" and config.get("window"):
            return int(config["window"][0])
        return None

    def note(self, window: tuple[int, int], k: int, epochs: int, start_mode: str) -> str:
        start, end = window
        untouched = f"; steps 0–{start - 1} keep the base model's coarse content" if start > 0 else ""
        where = f"from a re-noised start at step {start}" if start_mode == "fixed" else \
            "from re-noised starts drawn in it"
        return f"{self.label} trains {steps_words(start, end)} ({end - start} of {k}), {where}{untouched}."

    def schedule(self, config: dict) -> str:
        start, end = config["window"]
        return (f"steps [{start}, {end}) of K = {config.get('num_steps')}, start "
                f"{config.get('start_mode', 'uniform')} per batch (HRF)")


def ddpo_partner(config: TrainConfig) -> TrainConfig:
    """A windowed method's Duel opponent: the reference, DDPO, with the same settings (no KL, no diversity bonus;
    epoch advantages for per-image)."""
    scope = "epoch" if config.adv_scope == "image" else config.adv_scope  # DDPO has no re-noised images
    return config.replace(method=reference().name, window=(0, config.num_steps), kl_coef=0.0, diversity_weight=0.0,
                          adv_scope=scope, outside_window="tuned").validate()
