"""The one training loop for DDPO, HRF, HRF sliding and HRF-D.

Each epoch: sample (from pure noise, or from re-noised trajectory-of-interest images) -> reward
-> advantages -> PPO-clip update of the trained steps -> evaluate on a fixed-seed set -> log
-> checkpoint. The method only changes where each batch starts and which steps it trains
(:mod:`hrf_core.windows`). A stop event is checked before every UNet call.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import UNet2DModel
from PIL import Image

from hrf_core import checkpoints, ddpo
from hrf_core.compute import ComputeCounter, zero_row
from hrf_core.config import TrainConfig
from hrf_core.distributed import SINGLE, Dist
from hrf_core.evaluation import Evaluator
from hrf_core.imaging import image_grid
from hrf_core.models import BaseModel, load_base_model, resolve_device
from hrf_core.policy import (
    RowNoise,
    StopRequested,
    Trajectory,
    ddim_step_mean,
    gaussian_kl,
    gaussian_log_prob,
    noise_like,
    renoise,
    rollout,
    stream_seed,
    trainable_steps,
    unet_eps,
)
from hrf_core.rewards import RewardFn, make_reward
from hrf_core.runs import Run, StoreFullError, check_store_limit, is_disk_full, write_json
from hrf_core.sampling import sample_from
from hrf_core.windows import active_window, draw_start, dynamic_start, sampling_handover

log = logging.getLogger(__name__)


@dataclass
class EpochReport:
    """What the UI receives after each epoch (epoch 0 = the base model's evaluation)."""

    epoch: int
    epochs: int
    metrics: dict
    grid: Image.Image | None = None


@dataclass
class Batch:
    """One sampling batch: its trajectory, rewards and the trained step range (local indices)."""

    trajectory: Trajectory
    rewards: torch.Tensor
    end: int  # window end (global step index); trained steps are trajectory.start .. end-1
    advantages: torch.Tensor | None = None
    trained: list[int] = field(default_factory=list)  # local step indices j (global = start + j)


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


class Trainer:
    """Fine-tunes ``config.model`` on ``config.reward`` and writes everything to ``run``.

    Noise: every sample draws its noise from its own stream keyed by (seed, epoch, stream, global
    index) (:class:`~hrf_core.policy.RowNoise`), and the start steps and the update order come from
    generators keyed by (seed, epoch), so a run's samples do not depend on how the epoch is split
    into processes (``dist``) and resuming needs no saved generator state.
    """

    def __init__(
        self,
        config: TrainConfig,
        run: Run,
        callbacks: Sequence[Callable[[EpochReport], None]] = (),
        stop_event: threading.Event | None = None,
        base: BaseModel | None = None,
        reward_fn: RewardFn | None = None,
        frozen: UNet2DModel | None = None,
        dist: Dist = SINGLE,
        evaluator: Evaluator | None = None,
    ):
        self.config = config.validate()
        self.run = run
        self.callbacks = list(callbacks)
        self.stop_event = stop_event or threading.Event()
        self.dist = dist
        self.device = base.device if base is not None else resolve_device(config.device)
        self.base = base or load_base_model(config.model, self.device)
        self.unet = self.base.unet
        self.scheduler = self.base.scheduler
        self.scheduler.set_timesteps(config.num_steps)
        self.trainable = trainable_steps(self.scheduler, config.eta)
        self.reward_fn = reward_fn or make_reward(config.reward, device=str(self.device))
        self.frozen = None
        if config.needs_frozen_base:  # given (a resume loads it), else the base model before any update
            self.frozen = (frozen if frozen is not None else copy.deepcopy(self.unet)).requires_grad_(False).eval()
        # the frozen base as a model to sample with (window-only sampling: steps before the window)
        self.frozen_model = (dataclasses.replace(self.base, unet=self.frozen, early=None, handover=0)
                             if self.frozen is not None else None)
        self.optimizer = torch.optim.AdamW(
            self.unet.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay,
            foreach=True,  # one fused pass over all parameters (CPU default is a per-tensor loop)
        )
        config.check_processes(dist.world)
        self.my_batches = list(range(dist.rank, config.batches_per_epoch, dist.world))  # this rank's share
        if config.grad_checkpointing:
            self.unet.enable_gradient_checkpointing()  # diffusers: recompute each block's activations in backward
        self.evaluator = evaluator or (Evaluator(self.base.sample_shape, self.device, config.eval_embeddings)
                                       if dist.is_main else None)
        if self.evaluator is not None and tuple(config.eval_embeddings) != self.evaluator.embeddings:
            self._record_embeddings()
        self.epoch = 0
        self.hrfd_start: int | None = None
        self.hrfd_info: dict | None = None
        self.hrfd_earliest: int | None = None  # the smallest dynamic start so far (window-only sampling)
        self.phase = "idle"
        self._stepped_this_epoch = False
        self._saved_epoch = -1
        self._images: dict[int, torch.Tensor] = {}  # trajectory-of-interest images of this epoch, per batch
        self.compute = ComputeCounter((self.unet, self.frozen))  # UNet rows by kind (evaluation excluded)

    # -- helpers -------------------------------------------------------------------------------
    def _record_embeddings(self) -> None:
        """Write the evaluation embeddings in use (and the pixel-proxy note) into the run's config."""
        self.config = self.config.replace(eval_embeddings=self.evaluator.embeddings)
        self.run.update_config({"eval_embeddings": list(self.evaluator.embeddings)},
                               {"evaluation_note": self.evaluator.note} if self.evaluator.note else None)

    def _stop(self) -> bool:
        """Checked before every UNet call. Data-parallel ranks stop together instead (:meth:`_sync_stop`)."""
        return not self.dist.active and self.stop_event.is_set()

    def _sync_stop(self) -> None:
        """Raise StopRequested on every rank when a stop was asked on any (called at the same points by all)."""
        if self.dist.any(self.stop_event.is_set(), self.device):
            raise StopRequested

    def handover(self, epoch: int) -> int:
        """The step from which the fine-tuned network samples in ``epoch`` (0: every step; window-only: the window's start)."""
        return sampling_handover(self.config, epoch, self.hrfd_earliest)

    def _rollout(self, unet, x: torch.Tensor, start: int, eta: float, noise, record: bool = True,
                 handover: int = 0) -> Trajectory:
        """A rollout from step ``start``; steps < ``handover`` sample with the frozen base (window-only)."""
        early = self.frozen if handover > start else None
        return rollout(unet, self.scheduler, x, start, eta, noise, self._stop, record, self.config.bf16,
                       early_unet=early, handover=handover if early is not None else 0)

    def _row_noise(self, epoch: int, stream: str, first: int, count: int) -> RowNoise:
        """Streams keyed (seed, epoch, stream, global index) for ``count`` rows from ``first``."""
        seed = self.config.seed
        return RowNoise([(seed, epoch, stream, first + r) for r in range(count)], self.device)

    def _epoch_generator(self, epoch: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device).manual_seed(stream_seed(self.config.seed, epoch, stream))

    # -- sampling --------------------------------------------------------------------------------
    def _images_of(self, epoch: int, batch_index: int) -> torch.Tensor:
        """The trajectory-of-interest images of a batch: full samples of the current policy (or the frozen base)."""
        if batch_index not in self._images:
            c = self.config
            n = c.batch_size // c.siblings
            noise = self._row_noise(epoch, "image", batch_index * n, n)
            source = self.frozen if c.start_source == "base" else self.unet
            x = noise_like((n, *self.base.sample_shape), noise, self.device)
            handover = self.handover(epoch) if source is self.unet else 0
            self._images[batch_index] = self._rollout(source, x, 0, c.eta, noise, record=False, handover=handover).final
        return self._images[batch_index]

    def _probe(self, epoch: int) -> None:
        """HRF-D: rank 0 estimates the start step on the first batch's images; every rank receives it."""
        c = self.config
        found = None
        if self.dist.is_main:
            self.phase = f"epoch {epoch}: HRF-D probing start steps"
            probe = self._images_of(epoch, 0)[: c.hrfd_probe_images]
            found = dynamic_start(self.unet, self.scheduler, probe, self.reward_fn, c.hrfd_stride, c.hrfd_beta,
                                  c.siblings, self._epoch_generator(epoch, "probe", self.device), self._stop)
        self.hrfd_start, self.hrfd_info = self.dist.broadcast_object(found)
        self.hrfd_earliest = self.hrfd_start if self.hrfd_earliest is None else min(self.hrfd_earliest, self.hrfd_start)

    def _starts(self, epoch: int, n_batches: int) -> list[int]:
        """The start step index of every batch of the epoch (the same on every rank)."""
        c = self.config
        if c.method == "hrf-d":
            return [self.hrfd_start] * n_batches
        window = active_window(c, epoch)
        generator = self._epoch_generator(epoch, "starts")
        return [draw_start(c, window, generator) for _ in range(n_batches)]

    def _window_end(self, epoch: int) -> int:
        return self.config.num_steps if self.config.method == "hrf-d" else active_window(self.config, epoch)[1]

    def _sample_batch(self, epoch: int, batch_index: int, start: int) -> Batch:
        """Roll out one batch with log-probs from its start state; reward the finals."""
        c = self.config
        noise = self._row_noise(epoch, "sample", batch_index * c.batch_size, c.batch_size)
        if start > 0:
            x_start = renoise(self.scheduler, self._images_of(epoch, batch_index), start, c.siblings, noise)
        else:
            x_start = noise_like((c.batch_size, *self.base.sample_shape), noise, self.device)
        self.phase = f"epoch {epoch}: sampling batch {batch_index + 1}"
        trajectory = self._rollout(self.unet, x_start, start, c.eta, noise, handover=self.handover(epoch))
        # inference tensors cannot enter autograd: keep plain copies for the update
        trajectory.states, trajectory.log_probs = trajectory.states.clone(), trajectory.log_probs.clone()
        rewards = self.reward_fn(trajectory.final).float().cpu()
        end = self._window_end(epoch)
        trained = [j for j in range(end - start) if self.trainable[start + j]]
        return Batch(trajectory=trajectory, rewards=rewards, end=end, trained=trained)

    def _gather_rewards(self, batches: dict[int, Batch], n_batches: int) -> torch.Tensor:
        """Rewards of every batch of the epoch, (n_batches, batch_size), on every rank."""
        local = torch.stack([batches[b].rewards for b in self.my_batches]).to(self.device)
        gathered = self.dist.all_gather(local).cpu()  # (world, my batches, batch): batch b = k * world + rank
        return torch.stack([gathered[b % self.dist.world, b // self.dist.world] for b in range(n_batches)])

    # -- update ----------------------------------------------------------------------------------
    def _clip_scale(self, start: int) -> float:
        return ddpo.window_scale(start, self.config.num_steps) if self.config.window_scaled_clip else 1.0

    def _assign_advantages(self, batches: dict[int, Batch], rewards: torch.Tensor, starts: list[int]) -> None:
        """Standardise the epoch's rewards (n_batches, batch) per ``adv_scope`` group, exactly as one process would."""
        c = self.config
        n_batches = rewards.shape[0]
        groups = None
        if c.adv_scope == "batch":
            groups = torch.arange(n_batches).repeat_interleave(c.batch_size)
        elif c.adv_scope == "image":  # rows are [image 0 x B, image 1 x B, ...] per batch (renoise's layout)
            per_image = torch.arange(n_batches * c.batch_size) // c.siblings
            per_batch = n_batches * c.batch_size + torch.arange(n_batches).repeat_interleave(c.batch_size)
            from_noise = torch.tensor(starts).repeat_interleave(c.batch_size) == 0
            groups = torch.where(from_noise, per_batch, per_image)
        clip = torch.cat([torch.full((c.batch_size,), c.adv_clip * self._clip_scale(s)) for s in starts])
        advantages = ddpo.standardized_advantages(rewards.reshape(-1), clip=clip, groups=groups)
        for b, batch in batches.items():
            batch.advantages = advantages[b * c.batch_size:(b + 1) * c.batch_size].to(self.device)

    def _update(self, batches: dict[int, Batch], epoch: int) -> dict:
        """PPO-clip updates over the epoch's samples (plus the KL penalty when kl_coef > 0); diagnostics.

        Each inner epoch walks the epoch's samples in an order drawn per (seed, epoch), in
        ``updates_per_epoch`` chunks: one optimiser step per chunk, its gradients summed over ranks.
        """
        c = self.config
        self.unet.train()
        diagnostics = UpdateDiagnostics(self.device)
        samples = [(b, i) for b in range(c.batches_per_epoch) for i in range(c.batch_size)]  # every rank: all
        for inner in range(c.inner_epochs):
            order = torch.randperm(len(samples), generator=self._epoch_generator(epoch, f"order-{inner}")).tolist()
            for chunk_index, chunk in enumerate(torch.tensor(order).chunk(c.updates_per_epoch)):
                self._sync_stop()
                self.phase = f"epoch {epoch}: updating"
                self.optimizer.zero_grad(set_to_none=True)
                chunk_samples = [samples[i] for i in chunk.tolist()]
                loss = self._chunk_backward(batches, chunk_samples, diagnostics, first=inner == 0 and chunk_index == 0)
                self.dist.sum_gradients(self.unet.parameters())
                grad_norm = torch.nn.utils.clip_grad_norm_(self.unet.parameters(), c.max_grad_norm)
                self.optimizer.step()
                self._stepped_this_epoch = True
                diagnostics.add_step(loss, grad_norm)
        self.unet.eval()
        return diagnostics.summary(self.dist, kl=c.kl_coef > 0)

    def _chunk_backward(self, batches: dict[int, Batch], chunk_samples: list[tuple[int, int]],
                        diagnostics: UpdateDiagnostics, first: bool) -> torch.Tensor:
        """Backward of one optimiser step's loss over this rank's rows of ``chunk_samples`` ((batch, row) pairs).

        The loss is the mean over the chunk's samples (on all ranks) and over each sample's trained steps;
        its (sample, step) pairs go step-major through UNet calls of at most ``train_batch_size`` rows.
        Returns this rank's loss (0-d, detached).
        """
        c = self.config
        total_loss = torch.zeros((), device=self.device)
        for b, batch in batches.items():
            rows = torch.tensor([i for bb, i in chunk_samples if bb == b], dtype=torch.long)
            if len(rows) == 0 or not batch.trained:
                continue
            clip_range = c.clip_range * self._clip_scale(batch.trajectory.start)
            steps = torch.tensor(batch.trained, dtype=torch.long)
            pairs_i, pairs_j = rows.repeat(len(steps)), steps.repeat_interleave(len(rows))
            calls = -(-len(pairs_i) // c.train_batch_size)  # equal-sized calls of <= train_batch_size rows
            for i, j in zip(pairs_i.tensor_split(calls), pairs_j.tensor_split(calls), strict=True):
                if self._stop():
                    raise StopRequested
                losses, log_ratio = self._rows_loss(batch, i, j, clip_range, diagnostics)
                loss = losses.sum() / (len(batch.trained) * len(chunk_samples))
                loss.backward()
                total_loss += loss.detach()
                diagnostics.add_rows(log_ratio, clip_range, first)
        return total_loss

    def _rows_loss(self, batch: Batch, i: torch.Tensor, j: torch.Tensor, clip_range: float,
                   diagnostics: UpdateDiagnostics) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row loss (R,) of the pairs (sample i, local step j): PPO-clip, plus kl_coef x KL to the base;
        and the rows' log ratio (R,), detached, float64."""
        c = self.config
        traj = batch.trajectory
        t = traj.timesteps[j]  # on the host: the step reads it without a sync
        i, j = i.to(self.device, non_blocking=True), j.to(self.device, non_blocking=True)
        x = traj.states[i, j]
        eps = unet_eps(self.unet, x, t, c.bf16)
        mean, sigma = ddim_step_mean(self.scheduler, eps, t, x, eta=c.eta)
        log_prob = gaussian_log_prob(traj.states[i, j + 1], mean, sigma)
        old = traj.log_probs[i, j]
        losses = ddpo.ppo_clip_loss(log_prob, old, batch.advantages[i], clip_range)
        if c.kl_coef > 0:
            kl = self._kl_to_base(mean, sigma, x, t)
            losses = losses + c.kl_coef * kl
            diagnostics.add_kl(kl)
        return losses, (log_prob.detach() - old).double()

    def _kl_to_base(self, mean: torch.Tensor, sigma: torch.Tensor, x: torch.Tensor, t) -> torch.Tensor:
        """KL(policy step || frozen base step) per row (B,), in nats per pixel; the base is called on these rows only."""
        c = self.config
        with torch.no_grad():
            with self.compute.reference():
                eps_base = unet_eps(self.frozen, x, t, c.bf16)
            mean_base, _ = ddim_step_mean(self.scheduler, eps_base, t, x, eta=c.eta)
        return gaussian_kl(mean, mean_base, sigma)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, epoch: int | None = None) -> tuple[dict, Image.Image, dict]:
        """Metrics of ``eval_samples`` samples from pure noise with the fixed evaluation seed.

        Sampled as the run samples (window-only: the base model before :meth:`handover`). Returns
        (metrics, grid, per-sample arrays for resampling). Its UNet calls are not counted as compute.
        """
        c = self.config
        self.phase = "evaluating"
        handover = self.handover(self.epoch if epoch is None else epoch)
        with self.compute.paused():
            images = sample_from(self.base, c.eval_samples, c.eval_seed, c.num_steps, c.eval_eta,
                                 stop=self._stop, autocast_bf16=c.bf16, early=self.frozen_model if handover else None,
                                 handover=handover)
        rewards = self.reward_fn(images).float().cpu()
        arrays: dict = {}
        metrics = self.evaluator(images, rewards, arrays=arrays)
        return metrics, image_grid(images[:64], scale=max(1, 128 // images.shape[-1])), arrays

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Weights, optimiser and trainer state of this epoch (:mod:`hrf_core.checkpoints`).

        Only rank 0 writes (every rank holds the same weights and optimiser state); others return None.
        """
        if not self.dist.is_main:
            return None
        with self.run.writing(f"the checkpoint of epoch {self.epoch}"):
            folder = checkpoints.save_checkpoint(self.run.checkpoint_dir(self.epoch), self.unet, self.scheduler,
                                                 self.optimizer, self._state())
        self._saved_epoch = self.epoch
        return folder

    def _state(self) -> dict:
        """What a checkpoint keeps of the trainer (its keys are read back by :meth:`load_checkpoint` and
        :func:`hrf_core.models.window_only_of`)."""
        return {"epoch": self.epoch, "hrfd_start": self.hrfd_start, "hrfd_earliest": self.hrfd_earliest,
                "compute": self.compute.total, "handover": self.handover(self.epoch),
                "num_steps": self.config.num_steps, "base_model": self.config.model}

    def load_checkpoint(self, folder: Path) -> None:
        """Restore optimiser, epoch counter, compute totals and window-schedule position (weights: see resume).

        Noise needs no saved state: every stream is keyed by (seed, epoch, ...).
        """
        checkpoints.load_optimizer_state(folder, self.optimizer, self.device)
        state = checkpoints.read_trainer_state(folder)
        self.epoch = state["epoch"]
        self.hrfd_start = state["hrfd_start"]
        self.hrfd_earliest = state.get("hrfd_earliest")
        self.compute.restore(state.get("compute", {}))
        self._saved_epoch = self.epoch

    # -- the loop --------------------------------------------------------------------------------
    def _set_status(self, state: str, message: str) -> None:
        if self.dist.is_main:
            self.run.set_status(state, self.epoch, self.config.epochs, message)

    def _log(self, epoch: int, metrics: dict, grid: Image.Image | None, arrays: dict | None) -> None:
        """Rank 0 writes the grid, the evaluation's arrays and then the row (a logged row has its files), then
        tells the callbacks."""
        if not self.dist.is_main:
            return
        metrics["logged_at"] = time.time()  # wall clock: when viewers could first see this epoch
        self.run.log_epoch(metrics, grid, arrays)
        report = EpochReport(epoch=epoch, epochs=self.config.epochs, metrics=metrics, grid=grid)
        for callback in self.callbacks:
            callback(report)

    def _epoch(self, epoch: int) -> tuple[dict, Image.Image | None, dict | None]:
        c = self.config
        started = time.perf_counter()
        self._stepped_this_epoch = False
        self._images = {}
        n_batches = c.batches_per_epoch
        self._sync_stop()
        if c.method == "hrf-d" and ((epoch - 1) % c.hrfd_every == 0 or self.hrfd_start is None):
            self._probe(epoch)
        starts = self._starts(epoch, n_batches)
        batches: dict[int, Batch] = {}
        for b in self.my_batches:
            self._sync_stop()
            batches[b] = self._sample_batch(epoch, b, starts[b])
        self._images = {}
        rewards = self._gather_rewards(batches, n_batches)
        sampled = time.perf_counter()
        self._assign_advantages(batches, rewards, starts)
        update = self._update(batches, epoch)
        trained = time.perf_counter()
        window_end = self._window_end(epoch)
        trained_steps = sum(sum(self.trainable[s:window_end]) for s in starts) * c.batch_size * c.inner_epochs
        row = {
            "epoch": epoch,
            "method": c.method,
            "window_start": min(starts),
            "window_end": window_end,
            "starts": starts,
            "sample_handover": self.handover(epoch),
            "train_reward_mean": float(rewards.mean()),
            "trained_steps": trained_steps,
            "sample_seconds": sampled - started,
            "update_seconds": trained - sampled,
            **update,
            **self.compute.close_epoch(self.dist, self.device),
        }
        if c.method == "hrf-d" and self.hrfd_info:
            row["hrfd"] = self.hrfd_info
        grid = arrays = None
        if self.dist.is_main and (epoch % c.eval_every == 0 or epoch == c.epochs):
            eval_started = time.perf_counter()
            metrics, grid, arrays = self.evaluate(epoch)
            row.update(metrics)
            row["eval_seconds"] = time.perf_counter() - eval_started
        row["seconds"] = time.perf_counter() - started
        return row, grid, arrays

    def steps(self) -> Generator[int, None, str]:
        """Train epoch by epoch, yielding each finished epoch (0 = the base model's evaluation).

        Returns (as the generator's value) "done" or "stopped"; exceptions propagate (status failed).
        Two runs can interleave their epochs by advancing two of these in turn (a duel).
        """
        c = self.config
        self.unet.eval()
        try:
            if self.epoch == 0 and self.dist.is_main and not self.run.metrics():
                self._set_status("running", "evaluating the base model")
                metrics, grid, arrays = self.evaluate()
                self._log(0, {"epoch": 0, "method": c.method, "window_start": None, "window_end": None,
                              "seconds": 0.0, **zero_row(), **metrics}, grid, arrays)
                yield 0
            while self.epoch < c.epochs:
                epoch = self.epoch + 1
                self._set_status("running", f"epoch {epoch}/{c.epochs}")
                row, grid, arrays = self._epoch(epoch)
                self.epoch = epoch
                self._log(epoch, row, grid, arrays)
                if epoch % c.checkpoint_every == 0 or epoch == c.epochs:
                    self.save_checkpoint()
                yield epoch
            self.phase = "done"
            self._set_status("done", "finished")
            return "done"
        except StopRequested:
            self.phase = "stopped"
            try:
                if not self._stepped_this_epoch and self._saved_epoch != self.epoch and self.epoch > 0:
                    self.save_checkpoint()  # weights still equal the last completed epoch's
                self._set_status("stopped", f"stopped after epoch {self.epoch}")
            except Exception as error:
                raise self._failed(error)  # noqa: B904 - _failed chains the cause itself
            return "stopped"
        except Exception as error:
            raise self._failed(error)  # noqa: B904 - _failed chains the cause itself

    def _failed(self, error: Exception) -> Exception:
        """Record ``error`` (status failed) and return what to raise: a full disk as one :class:`StoreFullError`
        line (what was kept, how to resume), anything else as it is."""
        self.phase = "failed"
        failure = error
        if self.dist.is_main and is_disk_full(error) and not isinstance(error, StoreFullError):  # e.g. status.json
            failure = self.run.full_disk("a file of the run")
            failure.__cause__ = error
        try:
            self._set_status("failed", f"{type(failure).__name__}: {failure}")
        except OSError:  # the disk may be too full for the status too: the error still says it all
            log.warning("could not record the failure of run %s", self.run.run_id, exc_info=True)
        return failure

    def train(self) -> str:
        """Run until ``config.epochs``; returns "done" or "stopped". Exceptions propagate (status failed)."""
        return drive(self.steps())


def drive(steps: Generator[int, None, str]) -> str:
    """Advance a :meth:`Trainer.steps` generator to its end; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


def resume_training(run: Run, checkpoint: Path | None = None, epochs: int | None = None,
                    device: torch.device | None = None, dist: Dist = SINGLE, **kwargs) -> Trainer:
    """A trainer that continues ``run`` from ``checkpoint`` (default: its latest) with restored state.

    ``device`` overrides the config's (a data-parallel rank passes its own GPU). Rank 0 alone truncates
    the metrics to the checkpoint and rewrites the config. Refused when the store is over ``HRF_MAX_STORE_GB``.
    """
    check_store_limit(run.path.parent)
    saved = run.checkpoints()
    if checkpoint is None:
        if not saved:
            raise ValueError(f"run {run.run_id} has no checkpoint to resume from")
        checkpoint = saved[-1]
    checkpoint = Path(checkpoint)
    if checkpoint.resolve() not in [p.resolve() for p in saved]:
        raise ValueError(f"{checkpoint} is not a checkpoint of run {run.run_id}")
    config = TrainConfig.from_dict(run.config)
    if epochs is not None:
        config = config.replace(epochs=epochs)
    config.validate()
    device = device or resolve_device(config.device)
    policy = load_base_model(str(checkpoint), device, window_only=False)
    frozen = load_base_model(config.model, device).unet if config.needs_frozen_base else None
    trainer = Trainer(config, run, base=policy, frozen=frozen, dist=dist, **kwargs)
    trainer.load_checkpoint(checkpoint)
    if trainer.epoch >= config.epochs:
        raise ValueError(f"checkpoint is at epoch {trainer.epoch}; pass --epochs > {trainer.epoch} to continue")
    if dist.is_main:
        try:  # both atomic: a full disk leaves the metrics and the config as they were
            run.truncate_metrics(trainer.epoch)
            write_json(run.path / "config.json", config.to_dict())
        except OSError as error:
            if is_disk_full(error):
                raise StoreFullError(f"the disk holding the run store is full: {run.run_id} was not resumed "
                                     "(nothing changed); free some space and resume again") from error
            raise
    return trainer
