"""Counted compute: the UNet rows a run spends, by kind, in UNet forward-equivalents.

Forward pre-hooks count the rows (batch size) of every call of the policy and the frozen base:
``trained`` (grad enabled: a forward and its backward), ``reference`` (the KL's frozen forwards, inside
:meth:`ComputeCounter.reference`), else ``sampled`` (rollouts, trajectory-of-interest images, HRF-D
probes). Evaluation is measurement, not method compute: it runs inside :meth:`ComputeCounter.paused`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

from hrf_core.rl.distributed import Dist

#: The kinds of UNet rows a run counts.
COMPUTE_KINDS = ("sampled", "trained", "reference")


def forward_equivalents(rows: dict) -> int:
    """Compute in UNet forward-equivalents: sampled + reference rows + 3 x trained rows (backward ~ 2 forwards)."""
    return int(rows.get("sampled", 0) + rows.get("reference", 0) + 3 * rows.get("trained", 0))


def zero_row() -> dict:
    """The compute columns of a row before any training (epoch 0): every count 0."""
    return {**{f"{prefix}{kind}": 0 for kind in COMPUTE_KINDS for prefix in ("rows_", "cum_rows_")}, "compute": 0}


class ComputeCounter:
    """Counts the rows of every forward call of ``unets`` (each module hooked once) by kind.

    ``epoch``: this epoch's rows on this process; ``total``: the run's totals over every process
    (restored from a checkpoint on resume).
    """

    def __init__(self, unets: Iterable[torch.nn.Module | None]):
        self.epoch = dict.fromkeys(COMPUTE_KINDS, 0)
        self.total = dict.fromkeys(COMPUTE_KINDS, 0)
        self._counting = True
        self._reference = False
        for unet in {id(m): m for m in unets if m is not None}.values():
            unet.register_forward_pre_hook(self._count)

    def _count(self, module, args) -> None:
        if self._counting:
            kind = "trained" if torch.is_grad_enabled() else ("reference" if self._reference else "sampled")
            self.epoch[kind] += int(args[0].shape[0])

    def paused(self) -> AbstractContextManager[None]:
        """Nothing is counted inside (evaluation)."""
        return self._while("_counting", False)

    def reference(self) -> AbstractContextManager[None]:
        """No-grad calls inside count as ``reference`` (the frozen base's KL forwards)."""
        return self._while("_reference", True)

    @contextmanager
    def _while(self, flag: str, value: bool) -> Iterator[None]:
        saved = getattr(self, flag)
        setattr(self, flag, value)
        try:
            yield
        finally:
            setattr(self, flag, saved)

    def restore(self, totals: dict) -> None:
        """Continue from a checkpoint's running totals."""
        self.total = {**dict.fromkeys(COMPUTE_KINDS, 0), **totals}

    def close_epoch(self, dist: Dist, device: torch.device) -> dict:
        """The epoch's rows summed over ranks, the running totals and ``compute``; the epoch counts restart at 0.

        A collective: every rank calls it at the end of every epoch.
        """
        counts = torch.tensor([self.epoch[k] for k in COMPUTE_KINDS], dtype=torch.float64, device=device)
        counts = dist.all_reduce_sum(counts).tolist()
        row = {}
        for kind, value in zip(COMPUTE_KINDS, counts, strict=True):
            self.total[kind] += int(value)
            row[f"rows_{kind}"] = int(value)
            row[f"cum_rows_{kind}"] = self.total[kind]
            self.epoch[kind] = 0
        row["compute"] = forward_equivalents(self.total)
        return row
