"""A run's prompts: which prompt each row samples with, and the rows' condition (the run's guidance).

Each row draws its prompt uniformly from the run's prompt set by a key of its own (seed, epoch, stream, global
index), as ddpo-pytorch's prompt functions draw one per sample, so the prompts do not depend on how an epoch is
split among processes. Re-noised siblings share their image's prompt. An unconditional run has no prompts
(every method returns None).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hrf_core.config import TrainConfig
from hrf_core.rl.policy import stream_seed


def check_prompted(model: str, conditioner, prompts: Sequence[str] | None) -> None:
    """ValueError (one line) unless the model ``conditioner`` reads (None: unconditional) and ``prompts`` go
    together: an unconditional model takes none, a prompted one needs some (which ones it knows: its ``check``)."""
    if conditioner is None and prompts:
        raise ValueError(f"model {model} is unconditional: it takes no prompts (clear the prompts)")
    if conditioner is not None and not prompts:
        raise ValueError(f"model {model} is prompted: give it prompts (its prompts: "
                         f"{', '.join(conditioner.vocabulary[:12])})")


class RunPrompts:
    """The prompts of one run (``config``) on a model read by ``conditioner`` (None: unconditional)."""

    def __init__(self, config: TrainConfig, conditioner):
        check_prompted(config.model, conditioner, config.prompts)
        if conditioner is not None:
            conditioner.check(config.prompts)
        self.config, self.conditioner = config, conditioner

    def rows(self, epoch: int, stream: str, first: int, count: int) -> list[str] | None:
        """Each of ``count`` rows' prompt from global index ``first`` of ``stream`` ("image", "sample")."""
        prompts = self.config.prompts
        if not prompts:
            return None
        keys = [stream_seed(self.config.seed, epoch, f"{stream}-prompt", first + r) for r in range(count)]
        return [prompts[int(torch.randint(len(prompts), (1,), generator=torch.Generator().manual_seed(key)))]
                for key in keys]

    def images(self, epoch: int, batch_index: int) -> list[str] | None:
        """The prompts of a batch's trajectory-of-interest images."""
        n = self.config.batch_size // self.config.siblings
        return self.rows(epoch, "image", batch_index * n, n)

    def batch(self, epoch: int, batch_index: int, start: int) -> list[str] | None:
        """The prompts of a sampling batch's rows: re-noised siblings share their image's prompt; rows from pure
        noise draw their own."""
        c = self.config
        if start > 0:
            images = self.images(epoch, batch_index)
            return None if images is None else [p for p in images for _ in range(c.siblings)]
        return self.rows(epoch, "sample", batch_index * c.batch_size, c.batch_size)

    def condition(self, prompts: list[str] | None):
        """The rows' condition with the run's guidance; None for an unconditional run."""
        if prompts is None:
            return None
        c = self.config
        return self.conditioner.condition(prompts, c.guidance, detach_uncond=c.guidance_grad == "cond")
