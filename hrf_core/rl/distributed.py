"""Data-parallel context for the trainer: which process this is, and the few collectives it needs.

A run launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) joins a ``torch.distributed``
process group: gloo on the CPU, nccl with one GPU per rank (``cuda:LOCAL_RANK``). The trainer then
gives each rank a share of the epoch's sampling batches, gathers the rewards so advantages are
standardised over the whole epoch, and sums the gradients once per optimiser step, so N processes
take the same step as one process on the same samples. Without torchrun, :data:`SINGLE` makes every
collective a no-op.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    """This process's place in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes the run store."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place; returns it."""
        if self.active:
            torch.distributed.all_reduce(tensor)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """(world, *shape): every rank's ``tensor`` (same shape on every rank), in rank order."""
        if not self.active:
            return tensor.unsqueeze(0)
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any rank (a collective: all ranks must call it)."""
        if not self.active:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients over ranks (the all-reduce DDP does), in buckets of about 2^24 values.

        Ranks can hold different numbers of (sample, step) rows per optimiser step (HRF windows), which
        DDP's per-backward hooks do not allow; one explicit all-reduce per step does the same sum. A
        parameter this rank did not reach gets a zero gradient first.
        """
        if not self.active:
            return
        params = [p for p in parameters if p.requires_grad]
        for p in params:
            if p.grad is None:  # this rank had no rows of this step
                p.grad = torch.zeros_like(p)
        bucket: list[torch.Tensor] = []

        def flush():
            flat = torch.cat([g.reshape(-1) for g in bucket])
            self.all_reduce_sum(flat)
            for g, part in zip(bucket, flat.split([g.numel() for g in bucket]), strict=True):
                g.copy_(part.view_as(g))
            bucket.clear()

        for p in params:
            bucket.append(p.grad)
            if sum(g.numel() for g in bucket) >= 1 << 24:
                flush()
        if bucket:
            flush()

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


SINGLE = Dist()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (env://) and pick this rank's device.

    ``device``: ``cpu`` -> gloo; ``cuda``/``auto`` with GPUs -> nccl on ``cuda:LOCAL_RANK``.
    Returns (:data:`SINGLE`, the resolved device) when not launched by torchrun.
    """
    from hrf_core.models.registry import resolve_device

    if not launched_by_torchrun():
        return SINGLE, resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available: use --device cpu")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): "
                             "use --nproc_per_node <= the number of GPUs")
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    else:
        target = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return Dist(rank=torch.distributed.get_rank(), world=torch.distributed.get_world_size(), backend=backend), target


def layout(dist: Dist, device: torch.device) -> dict:
    """The world size and every rank's host and device, gathered to all ranks (recorded in the run's config)."""
    me = {"rank": dist.rank, "host": socket.gethostname(), "device": str(device),
          "local_rank": int(os.environ.get("LOCAL_RANK", "0"))}
    if not dist.active:
        return {"world_size": 1, "backend": "", "ranks": [me]}
    ranks: list = [None] * dist.world
    torch.distributed.all_gather_object(ranks, me)
    return {"world_size": dist.world, "backend": dist.backend, "ranks": ranks}


def shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
