"""The one training loop for DDPO, HRF, HRF sliding and HRF-D.

Each epoch: sample (from pure noise, or from re-noised trajectory-of-interest images) -> reward
-> advantages -> PPO-clip update of the trained steps -> evaluate on a fixed-seed set -> log
-> checkpoint. The method only changes where each batch starts and which steps it trains
(:mod:`hrf_core.windows`). A stop event is checked before every UNet call.
"""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import UNet2DModel
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hrf_core import ddpo
from hrf_core.config import TrainConfig
from hrf_core.evaluation import Evaluator
from hrf_core.imaging import image_grid
from hrf_core.models import BaseModel, load_base_model, resolve_device
from hrf_core.policy import (
    StopRequested,
    Trajectory,
    ddim_step_with_logprob,
    noise_like,
    renoise,
    rollout,
    trainable_steps,
    unet_eps,
)
from hrf_core.rewards import RewardFn, make_reward
from hrf_core.runs import Run, write_json
from hrf_core.sampling import sample_from
from hrf_core.windows import active_window, draw_start, dynamic_start


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


class Trainer:
    """Fine-tunes ``config.model`` on ``config.reward`` and writes everything to ``run``."""

    def __init__(
        self,
        config: TrainConfig,
        run: Run,
        callbacks: Sequence[Callable[[EpochReport], None]] = (),
        stop_event: threading.Event | None = None,
        base: BaseModel | None = None,
        reward_fn: RewardFn | None = None,
        frozen: UNet2DModel | None = None,
    ):
        self.config = config.validate()
        self.run = run
        self.callbacks = list(callbacks)
        self.stop_event = stop_event or threading.Event()
        self.device = base.device if base is not None else resolve_device(config.device)
        self.base = base or load_base_model(config.model, self.device)
        self.unet = self.base.unet
        self.scheduler = self.base.scheduler
        self.scheduler.set_timesteps(config.num_steps)
        self.trainable = trainable_steps(self.scheduler, config.eta)
        self.reward_fn = reward_fn or make_reward(config.reward, device=str(self.device))
        if config.start_source == "base" and frozen is None:
            frozen = copy.deepcopy(self.unet)  # the base model, before any update
        self.frozen = frozen.requires_grad_(False) if config.start_source == "base" else None
        self.optimizer = torch.optim.AdamW(
            self.unet.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay,
            foreach=True,  # one fused pass over all parameters (CPU default is a per-tensor loop)
        )
        self.generator = torch.Generator().manual_seed(config.seed)  # index draws: start steps, update order
        # Noise is drawn where the model runs: on CPU from the same stream; on a GPU from a CUDA generator
        # (no CPU randn and host-to-device copy per step; about 1% of a CelebA-HQ epoch, bench/README.md).
        self.noise_generator = (self.generator if self.device.type == "cpu"
                                else torch.Generator(self.device).manual_seed(config.seed))
        self.evaluator = Evaluator(self.base.sample_shape, self.device)
        self.epoch = 0
        self.hrfd_start: int | None = None
        self.hrfd_info: dict | None = None
        self.phase = "idle"
        self._stepped_this_epoch = False
        self._saved_epoch = -1

    # -- helpers -------------------------------------------------------------------------------
    def _stop(self) -> bool:
        return self.stop_event.is_set()

    def _rollout(self, unet, x: torch.Tensor, start: int, eta: float, generator, record: bool = True) -> Trajectory:
        return rollout(unet, self.scheduler, x, start, eta, generator, self._stop, record, self.config.bf16)

    def _pure_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return noise_like((n, *self.base.sample_shape), generator, self.device)

    # -- sampling --------------------------------------------------------------------------------
    def _sample_batch(self, epoch: int, batch_index: int) -> Batch:
        """Roll out one batch with log-probs from its start state; reward the finals."""
        c, k = self.config, self.config.num_steps
        n_images = c.batch_size // c.siblings
        if c.method == "hrf-d":
            window = None
        else:
            window = active_window(c, epoch)
            start = draw_start(c, window, self.generator)
        needs_images = c.method == "hrf-d" or start > 0
        if needs_images:
            # trajectory of interest: full samples from the current policy (or the frozen base)
            source = self.frozen if self.frozen is not None else self.unet
            images = self._rollout(source, self._pure_noise(n_images, self.noise_generator), 0, c.eta,
                                   self.noise_generator, record=False).final
        if c.method == "hrf-d":
            if (batch_index == 0 and (epoch - 1) % c.hrfd_every == 0) or self.hrfd_start is None:
                self.phase = f"epoch {epoch}: HRF-D probing start steps"
                probe = images[: c.hrfd_probe_images]
                self.hrfd_start, self.hrfd_info = dynamic_start(
                    self.unet, self.scheduler, probe, self.reward_fn, c.hrfd_stride, c.hrfd_beta,
                    c.siblings, self.noise_generator, self._stop)
            start, window = self.hrfd_start, (self.hrfd_start, k)
        x_start = (renoise(self.scheduler, images, start, c.siblings, self.noise_generator) if start > 0
                   else self._pure_noise(c.batch_size, self.noise_generator))
        self.phase = f"epoch {epoch}: sampling batch {batch_index + 1}"
        trajectory = self._rollout(self.unet, x_start, start, c.eta, self.noise_generator)
        # inference tensors cannot enter autograd: keep plain copies for the update
        trajectory.states, trajectory.log_probs = trajectory.states.clone(), trajectory.log_probs.clone()
        rewards = self.reward_fn(trajectory.final).float().cpu()
        end = window[1]
        trained = [j for j in range(end - start) if self.trainable[start + j]]
        return Batch(trajectory=trajectory, rewards=rewards, end=end, trained=trained)

    # -- update ----------------------------------------------------------------------------------
    def _clip_scale(self, start: int) -> float:
        return ddpo.window_scale(start, self.config.num_steps) if self.config.window_scaled_clip else 1.0

    def _assign_advantages(self, batches: list[Batch]) -> None:
        c = self.config
        rewards = torch.cat([b.rewards for b in batches])
        groups = torch.arange(len(batches)).repeat_interleave(c.batch_size) if c.adv_scope == "batch" else None
        clip = torch.cat([torch.full((c.batch_size,), c.adv_clip * self._clip_scale(b.trajectory.start))
                          for b in batches])
        advantages = ddpo.standardized_advantages(rewards, clip=clip, groups=groups)
        for i, batch in enumerate(batches):
            batch.advantages = advantages[i * c.batch_size:(i + 1) * c.batch_size].to(self.device)

    def _update(self, batches: list[Batch], epoch: int) -> dict:
        """PPO-clip updates over the epoch's samples; returns diagnostics."""
        c = self.config
        self.unet.train()
        stats = {"approx_kl": [], "clip_fraction": [], "loss": []}
        first_ratio_dev = None
        samples = [(b, i) for b in range(len(batches)) for i in range(c.batch_size)]
        for _ in range(c.inner_epochs):
            order = torch.randperm(len(samples), generator=self.generator).tolist()
            for chunk in torch.tensor(order).chunk(c.updates_per_epoch):
                self.phase = f"epoch {epoch}: updating"
                self.optimizer.zero_grad(set_to_none=True)
                chunk_samples = [samples[i] for i in chunk.tolist()]
                total_loss = torch.zeros((), device=self.device)
                for b, batch in enumerate(batches):
                    rows = torch.tensor([i for bb, i in chunk_samples if bb == b], dtype=torch.long)
                    if len(rows) == 0 or not batch.trained:
                        continue
                    clip_range = c.clip_range * self._clip_scale(batch.trajectory.start)
                    traj = batch.trajectory
                    # (sample, step) pairs, step-major; one UNet call takes up to train_batch_size of them
                    steps = torch.tensor(batch.trained, dtype=torch.long)
                    pairs_i, pairs_j = rows.repeat(len(steps)), steps.repeat_interleave(len(rows))
                    calls = -(-len(pairs_i) // c.train_batch_size)  # equal-sized calls of <= train_batch_size rows
                    for i, j in zip(pairs_i.tensor_split(calls), pairs_j.tensor_split(calls), strict=True):
                        if self._stop():
                            raise StopRequested
                        t = traj.timesteps[j]  # on the host: ddim_step_with_logprob reads it without a sync
                        i, j = i.to(self.device, non_blocking=True), j.to(self.device, non_blocking=True)
                        x = traj.states[i, j]
                        eps = unet_eps(self.unet, x, t, c.bf16)
                        _, log_prob = ddim_step_with_logprob(
                            self.scheduler, eps, t, x, eta=c.eta, prev_sample=traj.states[i, j + 1])
                        old = traj.log_probs[i, j]
                        losses = ddpo.ppo_clip_loss(log_prob, old, batch.advantages[i], clip_range)
                        # mean over the chunk's samples and each sample's trained steps
                        loss = losses.sum() / (len(batch.trained) * len(chunk_samples))
                        loss.backward()
                        total_loss += loss.detach()
                        diag = ddpo.ppo_diagnostics(log_prob, old, clip_range)
                        stats["approx_kl"].append(diag["approx_kl"])
                        stats["clip_fraction"].append(diag["clip_fraction"])
                        if first_ratio_dev is None:
                            first_ratio_dev = (torch.exp(log_prob.detach() - old) - 1).abs().max()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.unet.parameters(), c.max_grad_norm)
                self.optimizer.step()
                self._stepped_this_epoch = True
                stats["loss"].append(total_loss)
                stats.setdefault("grad_norm", []).append(grad_norm)
        self.unet.eval()
        # one host read per statistic per epoch (each float() of a GPU tensor waits for the device)
        summary = {key: (float(torch.stack(v).double().mean()) if v else 0.0) for key, v in stats.items()}
        summary["first_ratio_deviation"] = float(first_ratio_dev) if first_ratio_dev is not None else 0.0
        return summary

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self) -> tuple[dict, Image.Image]:
        """Metrics of ``eval_samples`` samples from pure noise with the fixed evaluation seed."""
        c = self.config
        self.phase = "evaluating"
        images = sample_from(self.base, c.eval_samples, c.eval_seed, c.num_steps, c.eval_eta,
                             stop=self._stop, autocast_bf16=c.bf16)
        rewards = self.reward_fn(images).float().cpu()
        metrics = self.evaluator(images, rewards)
        return metrics, image_grid(images[:64], scale=max(1, 128 // images.shape[-1]))

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Model (diffusers folder), optimiser and trainer state as safetensors; atomic (dir rename)."""
        final = self.run.checkpoint_dir(self.epoch)
        tmp = final.with_name(final.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        self.unet.save_pretrained(tmp / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(tmp / "scheduler")
        state = self.optimizer.state_dict()
        tensors = {f"state.{p}.{k}": v.detach().cpu().contiguous().reshape(-1) if v.dim() == 0 else
                   v.detach().cpu().contiguous() for p, s in state["state"].items() for k, v in s.items()}
        save_file(tensors, tmp / "optimizer.safetensors",
                  metadata={"param_groups": json.dumps(state["param_groups"])})
        trainer_meta = {"epoch": self.epoch, "hrfd_start": self.hrfd_start}
        generators = {"generator": self.generator.get_state()}
        if self.noise_generator is not self.generator:
            generators["noise_generator"] = self.noise_generator.get_state()
        save_file(generators, tmp / "trainer_state.safetensors",
                  metadata={"trainer": json.dumps(trainer_meta)})
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        self._saved_epoch = self.epoch
        return final

    def load_checkpoint(self, folder: Path) -> None:
        """Restore optimiser, epoch counter, RNG state and window-schedule position (weights: see resume)."""
        tensors = load_file(folder / "optimizer.safetensors")
        with safe_open(folder / "optimizer.safetensors", "pt") as handle:
            param_groups = json.loads(handle.metadata()["param_groups"])
        state: dict = {}
        for key, value in tensors.items():
            _, p, name = key.split(".", 2)
            state.setdefault(int(p), {})[name] = value.reshape(()) if name == "step" else value.to(self.device)
        self.optimizer.load_state_dict({"state": state, "param_groups": param_groups})
        trainer_tensors = load_file(folder / "trainer_state.safetensors")
        with safe_open(folder / "trainer_state.safetensors", "pt") as handle:
            meta = json.loads(handle.metadata()["trainer"])
        self.generator.set_state(trainer_tensors["generator"])
        if self.noise_generator is not self.generator and "noise_generator" in trainer_tensors:
            self.noise_generator.set_state(trainer_tensors["noise_generator"])
        self.epoch = meta["epoch"]
        self.hrfd_start = meta["hrfd_start"]
        self._saved_epoch = self.epoch

    # -- the loop --------------------------------------------------------------------------------
    def _log(self, epoch: int, metrics: dict, grid: Image.Image | None) -> None:
        self.run.append_metrics(metrics)
        if grid is not None:
            self.run.save_grid(grid, epoch)
        report = EpochReport(epoch=epoch, epochs=self.config.epochs, metrics=metrics, grid=grid)
        for callback in self.callbacks:
            callback(report)

    def _epoch(self, epoch: int) -> tuple[dict, Image.Image | None]:
        c = self.config
        started = time.perf_counter()
        self._stepped_this_epoch = False
        n_batches = c.samples_per_epoch // c.batch_size
        batches = [self._sample_batch(epoch, b) for b in range(n_batches)]
        sampled = time.perf_counter()
        self._assign_advantages(batches)
        update = self._update(batches, epoch)
        trained = time.perf_counter()
        starts = [b.trajectory.start for b in batches]
        train_rewards = torch.cat([b.rewards for b in batches])
        row = {
            "epoch": epoch,
            "method": c.method,
            "window_start": min(starts),
            "window_end": max(b.end for b in batches),
            "starts": starts,
            "train_reward_mean": float(train_rewards.mean()),
            "trained_steps": sum(len(b.trained) * c.batch_size for b in batches) * c.inner_epochs,
            "sample_seconds": sampled - started,
            "update_seconds": trained - sampled,
            **update,
        }
        if c.method == "hrf-d" and self.hrfd_info:
            row["hrfd"] = self.hrfd_info
        grid = None
        if epoch % c.eval_every == 0 or epoch == c.epochs:
            eval_started = time.perf_counter()
            metrics, grid = self.evaluate()
            row.update(metrics)
            row["eval_seconds"] = time.perf_counter() - eval_started
        row["seconds"] = time.perf_counter() - started
        return row, grid

    def train(self) -> str:
        """Run until ``config.epochs``; returns "done" or "stopped". Exceptions propagate (status failed)."""
        c = self.config
        self.unet.eval()
        try:
            if self.epoch == 0 and not self.run.metrics():
                self.run.set_status("running", 0, c.epochs, "evaluating the base model")
                metrics, grid = self.evaluate()
                self._log(0, {"epoch": 0, "method": c.method, "window_start": None, "window_end": None,
                              "seconds": 0.0, **metrics}, grid)
            while self.epoch < c.epochs:
                epoch = self.epoch + 1
                self.run.set_status("running", self.epoch, c.epochs, f"epoch {epoch}/{c.epochs}")
                row, grid = self._epoch(epoch)
                self.epoch = epoch
                self._log(epoch, row, grid)
                if epoch % c.checkpoint_every == 0 or epoch == c.epochs:
                    self.save_checkpoint()
        except StopRequested:
            if not self._stepped_this_epoch and self._saved_epoch != self.epoch and self.epoch > 0:
                self.save_checkpoint()  # weights still equal the last completed epoch's
            self.phase = "stopped"
            self.run.set_status("stopped", self.epoch, c.epochs, f"stopped after epoch {self.epoch}")
            return "stopped"
        except Exception as error:
            self.phase = "failed"
            self.run.set_status("failed", self.epoch, c.epochs, f"{type(error).__name__}: {error}")
            raise
        self.phase = "done"
        self.run.set_status("done", self.epoch, c.epochs, "finished")
        return "done"


def start_training(config: TrainConfig, run: Run, **kwargs) -> Trainer:
    """A trainer for a new run (the config is written to the run folder by the store)."""
    return Trainer(config, run, **kwargs)


def resume_training(run: Run, checkpoint: Path | None = None, epochs: int | None = None, **kwargs) -> Trainer:
    """A trainer that continues ``run`` from ``checkpoint`` (default: its latest) with restored state."""
    checkpoints = run.checkpoints()
    if checkpoint is None:
        if not checkpoints:
            raise ValueError(f"run {run.run_id} has no checkpoint to resume from")
        checkpoint = checkpoints[-1]
    checkpoint = Path(checkpoint)
    if checkpoint.resolve() not in [p.resolve() for p in checkpoints]:
        raise ValueError(f"{checkpoint} is not a checkpoint of run {run.run_id}")
    config = TrainConfig.from_dict(run.config)
    if epochs is not None:
        config = config.replace(epochs=epochs)
    config.validate()
    device = resolve_device(config.device)
    policy = load_base_model(str(checkpoint), device)
    frozen = load_base_model(config.model, device).unet if config.start_source == "base" else None
    trainer = Trainer(config, run, base=policy, frozen=frozen, **kwargs)
    trainer.load_checkpoint(checkpoint)
    if trainer.epoch >= config.epochs:
        raise ValueError(f"checkpoint is at epoch {trainer.epoch}; pass --epochs > {trainer.epoch} to continue")
    run.truncate_metrics(trainer.epoch)
    write_json(run.path / "config.json", config.to_dict())
    return trainer
