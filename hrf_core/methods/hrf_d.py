"""HRF-D: the start step is found every ``hrfd_every`` epochs by probing re-noised starts; it trains to K.

The probe (:func:`hrf_core.rl.probe.dynamic_start`, run by the trainer on the epoch's first trajectory-of-interest
images) re-noises each probe image to every candidate start and scores the reward gain against the distance; this
module decides when to probe and keeps the start it finds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hrf_core.methods.base import EpochContext, Method, StartState
from hrf_core.methods.hrf import ddpo_partner

if TYPE_CHECKING:
    import torch

    from hrf_core.config import TrainConfig


class HRFD(Method):
    name = "hrf-d"
    label = "HRF-D"
    help = "HRF-D picks the start step itself each epoch (reward gain vs. distance): the window is ignored."
    color = "#2ca02c"
    settings = ("hrfd_stride", "hrfd_beta", "hrfd_probe_images", "hrfd_every")

    def partner(self, config: TrainConfig) -> TrainConfig:
        return ddpo_partner(config)

    def window(self, config: TrainConfig, epoch: int) -> tuple[int, int]:
        raise ValueError(f"method {self.name!r} has no fixed window")

    def window_end(self, config: TrainConfig, epoch: int) -> int:
        return config.num_steps

    def starts(self, config: TrainConfig, epoch: int, batches: int, generator: torch.Generator,
               state: StartState) -> list[int]:
        return [state.start] * batches

    def window_only_start(self, config: TrainConfig, epoch: int, state: StartState) -> int:
        """The smallest dynamic start chosen so far (K before any)."""
        return config.num_steps if state.earliest is None else state.earliest

    def prepare_epoch(self, context: EpochContext) -> None:
        """Every ``hrfd_every`` epochs (and before the first): rank 0 probes the first batch's images; every rank
        receives the start."""
        if (context.epoch - 1) % context.config.hrfd_every != 0 and context.state.start is not None:
            return
        context.state.record(*context.probe_start())

    def epoch_notes(self, state: StartState) -> dict:
        return {"hrfd": state.info} if state.info else {}

    def schedule(self, config: dict) -> str:
        every, k = config.get("hrfd_every", 1), config.get("num_steps")
        return f"from a start step found every {every} epoch(s) to K = {k} (HRF-D)"
