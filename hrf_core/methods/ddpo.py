"""DDPO (Black et al. 2023): every step trained, every batch from pure noise.

Its evaluated epochs are the early-stopping frontier that every other method is compared with at matched
reward (:mod:`hrf_core.study.frontier`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hrf_core.methods.base import Method, StartState
from hrf_core.methods.hrf import HRF

if TYPE_CHECKING:
    import torch

    from hrf_core.config import TrainConfig


class DDPO(Method):
    name = "ddpo"
    label = "DDPO"
    help = "DDPO trains every step 0..K-1 from pure noise: the window is ignored."
    color = "#d62728"
    windowed = False
    reference = True

    def from_form(self, config: TrainConfig, span: tuple[int, int]) -> TrainConfig:
        """The window is ignored, and nothing lies before it: the form's window-only choice does not apply."""
        return config.replace(window=(0, config.num_steps), outside_window="tuned")

    def partner(self, config: TrainConfig) -> TrainConfig:
        """HRF on the late half of the steps, starts uniform in it, no KL penalty, no diversity bonus."""
        k = config.num_steps
        return config.replace(method=HRF.name, window=(k // 2, k), start_mode="uniform", kl_coef=0.0,
                              diversity_weight=0.0).validate()

    def window(self, config: TrainConfig, epoch: int) -> tuple[int, int]:
        return (0, config.num_steps)

    def starts(self, config: TrainConfig, epoch: int, batches: int, generator: torch.Generator,
               state: StartState) -> list[int]:
        return [0] * batches

    def note(self, window: tuple[int, int], k: int, epochs: int, start_mode: str) -> str:
        return f"DDPO trains all {k} steps from pure noise; the window is ignored."

    def schedule(self, config: dict) -> str:
        return f"every step of K = {config.get('num_steps')} (DDPO)"
