"""The policy update of one epoch: advantages, then PPO-clip steps over the trained (sample, step) rows.

The trainer (:mod:`hrf_core.rl.trainer`) samples; this module turns its batches' rewards into advantages
(standardised per epoch, per sampling batch or per re-noised image; plus the diversity bonus when
``diversity_weight`` > 0) and updates the policy: each inner epoch walks
the epoch's samples in an order drawn per (seed, epoch), one optimiser step per chunk, the loss the PPO-clip
surrogate (:mod:`hrf_core.rl.ppo`) plus the KL penalty to the frozen base model when ``kl_coef`` > 0.

The update is a unit: it works with the :class:`UpdateParts` the trainer hands it (the policy, its optimiser and
loss scaler, the frozen base, the ranks, the stop checks) and returns what it did (:class:`UpdateResult`); it
knows nothing else of the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import torch

from hrf_core.models.guidance import Condition
from hrf_core.rl import ppo
from hrf_core.rl.distributed import Dist
from hrf_core.rl.policy import (
    StopCheck,
    StopRequested,
    Trajectory,
    ddim_step_mean,
    gaussian_kl,
    gaussian_log_prob,
    unet_eps,
)

if TYPE_CHECKING:
    from diffusers import DDIMScheduler

    from hrf_core.config import TrainConfig
    from hrf_core.rl.compute import ComputeCounter
    from hrf_core.rl.ppo import PerPromptStats


@dataclass
class UpdateParts:
    """What the update works with, built by the trainer (the field names are the trainer's own)."""

    config: TrainConfig
    unet: torch.nn.Module  # the policy (its trainable parameters: ``trainable_params``)
    frozen: torch.nn.Module | None  # the frozen base of the KL penalty (None without one)
    scheduler: DDIMScheduler  # its timesteps set to the run's K
    trainable_params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # fp16's loss scaling (disabled: a pass-through)
    autocast: torch.dtype | None  # UNet calls' autocast dtype (None: float32)
    dist: Dist  # the data-parallel ranks
    device: torch.device
    compute: ComputeCounter  # counted UNet rows (the frozen base's calls count as "reference")
    prompt_stats: PerPromptStats | None  # adv_scope "prompt": each prompt's recent rewards (kept in checkpoints)
    stop_check: StopCheck  # before every UNet call: True when a stop was asked (one process)
    sync_stop: Callable[[], None]  # before every optimiser step: raises StopRequested on every rank together
    epoch_generator: Callable[[int, str], torch.Generator]  # the generator keyed by (seed, epoch, stream)


@dataclass(frozen=True)
class UpdateResult(Mapping):
    """What one epoch's update did: its optimiser steps and, as a mapping, its diagnostics (the metrics row's
    ``approx_kl``, ``clip_fraction``, ``loss``, ``grad_norm``, ``first_ratio_deviation``, ``kl_to_base``)."""

    steps: int  # optimiser steps taken (0: the weights are still the epoch's first)
    stopped: bool = False  # a stop was asked before the update finished (then no diagnostics)
    diagnostics: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.diagnostics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.diagnostics)

    def __len__(self) -> int:
        return len(self.diagnostics)


@dataclass
class Batch:
    """One sampling batch: its trajectory, rewards and the trained step range (local indices)."""

    trajectory: Trajectory
    rewards: torch.Tensor
    end: int  # window end (global step index); trained steps are trajectory.start .. end-1
    advantages: torch.Tensor | None = None
    trained: list[int] = field(default_factory=list)  # local step indices j (global = start + j)
    diversity: torch.Tensor | None = None  # (2, batch): each row's diversity bonus b and its standardised z


class Rows(NamedTuple):
    """One batch's rows of a training call: the pairs (sample i, local step j) as the step reads them."""

    batch: Batch
    x: torch.Tensor  # (R, C, H, W) the states the step starts from
    action: torch.Tensor  # (R, C, H, W) the recorded next states
    t: torch.Tensor  # (R,) train timesteps, on the host
    cond: Condition | None  # the rows' prompts (a prompted model)
    old_log_prob: torch.Tensor  # (R,) the recorded log-probs
    advantages: torch.Tensor  # (R,)


class UpdateDiagnostics:
    """The diagnostics of one epoch's updates, summed on the device and read once at the end of the epoch
    (each read of a GPU tensor waits for the device). Sums are float64; ``summary`` totals them over ranks."""

    def __init__(self, device: torch.device):
        self.sums = {name: torch.zeros((), device=device, dtype=torch.float64) for name in
                     ("sq_logratio", "clipped", "rows", "kl", "loss", "grad_norm", "steps")}
        self.first_ratio_dev = torch.zeros((), device=device)

    def add_rows(self, log_ratio: torch.Tensor, clip_range: float, first: bool) -> None:
        """Trained rows' log ratios (R,); ``first``: rows of the epoch's first optimiser step."""
        self.sums["sq_logratio"] += (log_ratio ** 2).sum()
        self.sums["clipped"] += ((torch.exp(log_ratio) - 1).abs() > clip_range).sum()
        self.sums["rows"] += len(log_ratio)
        if first:
            self.first_ratio_dev = torch.maximum(self.first_ratio_dev, (torch.exp(log_ratio) - 1).abs().max().float())

    def add_kl(self, kl: torch.Tensor) -> None:
        """KL to the base per row (R,), nats per pixel."""
        self.sums["kl"] += kl.detach().sum()

    def add_step(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """One optimiser step: this rank's loss and the (summed, pre-clip) gradient norm."""
        self.sums["loss"] += loss
        self.sums["grad_norm"] += grad_norm.detach().double()
        self.sums["steps"] += 1

    def summary(self, dist: Dist, kl: bool) -> dict:
        """approx_kl, clip_fraction, loss, grad_norm, first_ratio_deviation (and kl_to_base when ``kl``).

        A collective: every rank calls it once per epoch.
        """
        sums = self.sums
        for name in ("sq_logratio", "clipped", "rows", "kl", "loss"):
            dist.all_reduce_sum(sums[name])
        first_ratio_dev = dist.all_gather(self.first_ratio_dev).max()
        rows, steps = max(float(sums["rows"]), 1.0), max(float(sums["steps"]), 1.0)
        summary = {
            "approx_kl": 0.5 * float(sums["sq_logratio"]) / rows,  # 0.5 E[(log ratio)^2] over trained rows
            "clip_fraction": float(sums["clipped"]) / rows,
            "loss": float(sums["loss"]) / steps,
            "grad_norm": float(sums["grad_norm"]) / steps,
            "first_ratio_deviation": float(first_ratio_dev),
        }
        if kl:
            summary["kl_to_base"] = float(sums["kl"]) / rows  # nats per pixel, mean over trained rows
        return summary


class PolicyUpdate:
    """The update step of one run, over its :class:`UpdateParts` ``t``."""

    def __init__(self, parts: UpdateParts):
        self.t = parts

    def clip_scale(self, start: int) -> float:
        return ppo.window_scale(start, self.t.config.num_steps) if self.t.config.window_scaled_clip else 1.0

    def diversity_groups(self, start: int, prompts: list[str] | None) -> torch.Tensor:
        """The diversity bonus's groups within one sampling batch (batch,): rows of one prompt (every row of an
        unconditional run), and under ``adv_scope`` "image" the siblings of one re-noised image (start > 0)."""
        c = self.t.config
        image = [i // c.siblings if c.adv_scope == "image" and start > 0 else 0 for i in range(c.batch_size)]
        keys = list(zip(image, prompts or [None] * c.batch_size, strict=True))
        ids = {key: n for n, key in enumerate(dict.fromkeys(keys))}
        return torch.tensor([ids[key] for key in keys])

    def diversity_bonus(self, images: torch.Tensor, start: int, prompts: list[str] | None) -> torch.Tensor:
        """(2, batch) float32 of one sampling batch's finals (batch, C, H, W) in [-1, 1]: each row's leave-one-out
        Vendi contribution b to its group (:meth:`diversity_groups`) and b standardised within the group, z."""
        from hrf_core.measure.diversity import group_bonus

        groups = self.diversity_groups(start, prompts)
        bonus = group_bonus(images, groups)
        return torch.stack([bonus.float(), ppo.group_standardized(bonus, groups)])

    def assign_advantages(self, batches: dict[int, Batch], rewards: torch.Tensor, starts: list[int],
                          prompts: list[list[str]] | None = None,
                          diversity: torch.Tensor | None = None) -> dict[str, float]:
        """Standardise the epoch's rewards (n_batches, batch) per ``adv_scope`` group, exactly as one process would.

        ``prompts``: every batch's rows' prompts (a prompted run); scope "prompt" standardises each reward against
        its prompt's recent rewards (:class:`~hrf_core.rl.ppo.PerPromptStats`, the same on every rank).
        ``diversity`` (n_batches, 2, batch): every batch's :meth:`diversity_bonus`, when ``diversity_weight`` > 0:
        ``diversity_weight`` x z joins the reward's advantage before the clip. Returns the bonus's notes for the
        epoch's metrics row ({} without it).
        """
        c = self.t.config
        n_batches = rewards.shape[0]
        groups = None
        if c.adv_scope == "batch":
            groups = torch.arange(n_batches).repeat_interleave(c.batch_size)
        elif c.adv_scope == "image":  # rows are [image 0 x B, image 1 x B, ...] per batch (renoise's layout)
            per_image = torch.arange(n_batches * c.batch_size) // c.siblings
            per_batch = n_batches * c.batch_size + torch.arange(n_batches).repeat_interleave(c.batch_size)
            from_noise = torch.tensor(starts).repeat_interleave(c.batch_size) == 0
            groups = torch.where(from_noise, per_batch, per_image)
        clip = torch.cat([torch.full((c.batch_size,), c.adv_clip * self.clip_scale(s)) for s in starts])
        if c.adv_scope == "prompt":
            flat = [p for batch_prompts in prompts for p in batch_prompts]
            advantages = self.t.prompt_stats.update(flat, rewards.reshape(-1))
        else:
            advantages = ppo.standardized_advantages(rewards.reshape(-1), clip=math.inf, groups=groups)
        notes: dict[str, float] = {}
        if diversity is not None:
            bonus, z = diversity[:, 0].reshape(-1), diversity[:, 1].reshape(-1)
            advantages, notes = ppo.with_diversity(advantages, bonus, z, c.diversity_weight)
        advantages = advantages.clamp(-clip, clip)
        for b, batch in batches.items():
            batch.advantages = advantages[b * c.batch_size:(b + 1) * c.batch_size].to(self.t.device)
        return notes

    def run(self, batches: dict[int, Batch], epoch: int) -> UpdateResult:
        """PPO-clip updates over the epoch's samples (plus the KL penalty when kl_coef > 0): its steps and
        diagnostics, or, when a stop was asked, the steps taken until then (``stopped``; the policy left in train
        mode, as it was).

        Each inner epoch walks the epoch's samples in an order drawn per (seed, epoch), in
        ``updates_per_epoch`` chunks: one optimiser step per chunk, its gradients summed over ranks.
        """
        c = self.t.config
        self.t.unet.train()
        diagnostics = UpdateDiagnostics(self.t.device)
        samples = [(b, i) for b in range(c.batches_per_epoch) for i in range(c.batch_size)]  # every rank: all
        steps = 0
        try:
            for inner in range(c.inner_epochs):
                generator = self.t.epoch_generator(epoch, f"order-{inner}")
                order = torch.randperm(len(samples), generator=generator).tolist()
                for chunk_index, chunk in enumerate(torch.tensor(order).chunk(c.updates_per_epoch)):
                    self.t.sync_stop()
                    self.t.optimizer.zero_grad(set_to_none=True)
                    chunk_samples = [samples[i] for i in chunk.tolist()]
                    first = inner == 0 and chunk_index == 0
                    loss = self._chunk_backward(batches, chunk_samples, diagnostics, first=first)
                    self.t.dist.sum_gradients(self.t.trainable_params)
                    self.t.scaler.unscale_(self.t.optimizer)  # fp16's loss scale off before the clip (else a no-op)
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.t.trainable_params, c.max_grad_norm)
                    self.t.scaler.step(self.t.optimizer)  # fp16: skipped when a gradient overflowed
                    self.t.scaler.update()
                    steps += 1
                    diagnostics.add_step(loss, grad_norm)
        except StopRequested:
            return UpdateResult(steps, stopped=True)
        self.t.unet.eval()
        return UpdateResult(steps, diagnostics=diagnostics.summary(self.t.dist, kl=c.kl_coef > 0))

    def _chunk_backward(self, batches: dict[int, Batch], chunk_samples: list[tuple[int, int]],
                        diagnostics: UpdateDiagnostics, first: bool) -> torch.Tensor:
        """Backward of one optimiser step's loss over this rank's rows of ``chunk_samples`` ((batch, row) pairs).

        The loss is the mean over the chunk's samples (on all ranks) and over each sample's trained steps:
        each (sample, step) pair's loss divided by (its batch's trained steps x the chunk's samples). The pairs,
        batch by batch and step-major within a batch, go through equal-sized UNet calls of at most
        ``train_batch_size`` rows across sampling batches: a call may hold rows of several batches, each with
        its own trajectory, timesteps, prompts and clip range. Returns this rank's loss (0-d, detached).
        """
        c = self.t.config
        total_loss = torch.zeros((), device=self.t.device)
        pairs = []  # (batch, sample, local step) columns per batch
        for b, batch in batches.items():
            rows = torch.tensor([i for bb, i in chunk_samples if bb == b], dtype=torch.long)
            if len(rows) == 0 or not batch.trained:
                continue
            steps = torch.tensor(batch.trained, dtype=torch.long)
            pairs.append(torch.stack([torch.full((len(rows) * len(steps),), b), rows.repeat(len(steps)),
                                      steps.repeat_interleave(len(rows))]))
        if not pairs:
            return total_loss
        pairs = torch.cat(pairs, dim=1)
        calls = -(-pairs.shape[1] // c.train_batch_size)  # equal-sized calls of <= train_batch_size rows
        for call in pairs.tensor_split(calls, dim=1):
            if self.t.stop_check():
                raise StopRequested
            segments = [(batches[b], call[1, call[0] == b], call[2, call[0] == b])
                        for b in torch.unique_consecutive(call[0]).tolist()]
            loss = self._call_loss(segments, len(chunk_samples), diagnostics, first)
            self.t.scaler.scale(loss).backward()
            total_loss += loss.detach()
        return total_loss

    def _call_loss(self, segments: list[tuple[Batch, torch.Tensor, torch.Tensor]], chunk_size: int,
                   diagnostics: UpdateDiagnostics, first: bool) -> torch.Tensor:
        """One UNet call's share of the step's loss (0-d): its rows are the pairs (sample i, local step j) of each
        segment (batch, i, j), in order. Each row's loss is PPO-clip at its batch's clip range (plus kl_coef x KL
        to the base), divided by (its batch's trained steps x ``chunk_size``). Adds the rows' diagnostics."""
        c = self.t.config
        parts = [self._rows(batch, i, j) for batch, i, j in segments]
        x, action, t = (joined([getattr(p, name) for p in parts]) for name in ("x", "action", "t"))
        cond = Condition.cat([p.cond for p in parts]) if parts[0].cond is not None else None
        eps = unet_eps(self.t.unet, x, t, self.t.autocast, cond)
        mean, sigma = ddim_step_mean(self.t.scheduler, eps, t, x, eta=c.eta)
        log_prob = gaussian_log_prob(action, mean, sigma)
        kl = None
        if c.kl_coef > 0:
            kl = self._kl_to_base(mean, sigma, x, t, cond)
            diagnostics.add_kl(kl)
        loss, offset = None, 0
        for part in parts:
            rows = slice(offset, offset + len(part.old_log_prob))
            offset = rows.stop
            clip_range = c.clip_range * self.clip_scale(part.batch.trajectory.start)
            losses = ppo.ppo_clip_loss(log_prob[rows], part.old_log_prob, part.advantages, clip_range)
            if kl is not None:
                losses = losses + c.kl_coef * kl[rows]
            share = losses.sum() / (len(part.batch.trained) * chunk_size)
            loss = share if loss is None else loss + share
            diagnostics.add_rows((log_prob[rows].detach() - part.old_log_prob).double(), clip_range, first)
        return loss

    def _rows(self, batch: Batch, i: torch.Tensor, j: torch.Tensor) -> Rows:
        """The training inputs of one batch's pairs (sample i, local step j), i and j (R,) on the host."""
        traj = batch.trajectory
        t = traj.timesteps[j]  # on the host: the step reads it without a sync
        cond = traj.cond[i] if traj.cond is not None else None  # the rows' prompts, guided as in sampling
        i, j = i.to(self.t.device, non_blocking=True), j.to(self.t.device, non_blocking=True)
        return Rows(batch, traj.states[i, j], traj.states[i, j + 1], t, cond, traj.log_probs[i, j],
                    batch.advantages[i])

    def _kl_to_base(self, mean: torch.Tensor, sigma: torch.Tensor, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        """KL(policy step || frozen base step) per row (B,), in nats per pixel; the base is called on these rows
        only."""
        c = self.t.config
        with torch.no_grad():
            with self.t.compute.reference():
                eps_base = unet_eps(self.t.frozen, x, t, self.t.autocast, cond)
            mean_base, _ = ddim_step_mean(self.t.scheduler, eps_base, t, x, eta=c.eta)
        return gaussian_kl(mean, mean_base, sigma)


def joined(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``tensors`` concatenated along their first dimension (one tensor: itself, not a copy)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)
