"""The one training loop for every method (DDPO, HRF, HRF sliding, HRF-D, and any registered one).

Each epoch: sample (from pure noise, or from re-noised trajectory-of-interest images) -> reward
-> advantages -> PPO-clip update of the trained steps -> evaluate on a fixed-seed set -> log
-> checkpoint. The method only changes where each batch starts and which steps it trains
(:mod:`hrf_core.methods`). A stop event is checked before every UNet call.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNet2DModel
from PIL import Image

from hrf_core import methods
from hrf_core.config import TrainConfig
from hrf_core.measure.evaluation import Evaluator
from hrf_core.models import families, lora
from hrf_core.models.base import BaseModel
from hrf_core.models.registry import load_base_model, resolve_device
from hrf_core.rewards.registry import RewardFn, make_reward
from hrf_core.rl.compute import ComputeCounter, zero_row
from hrf_core.rl.distributed import SINGLE, Dist
from hrf_core.rl.policy import (
    RowNoise,
    StopRequested,
    Trajectory,
    noise_like,
    renoise,
    rollout,
    stream_seed,
    trainable_steps,
)
from hrf_core.rl.ppo import PerPromptStats
from hrf_core.rl.probe import dynamic_start
from hrf_core.rl.prompting import RunPrompts
from hrf_core.rl.sampling import eval_prompts, round_robin, sample_from, sample_grid
from hrf_core.rl.update import Batch, PolicyUpdate, UpdateParts
from hrf_core.store import checkpoints
from hrf_core.store.runs import Run, StoreFullError, is_disk_full

log = logging.getLogger(__name__)


@dataclass
class EpochReport:
    """What the UI receives after each epoch (epoch 0 = the base model's evaluation)."""

    epoch: int
    epochs: int
    metrics: dict
    grid: Image.Image | None = None


def drive(steps: Generator[int, None, str]) -> str:
    """Advance an epoch generator (:meth:`Trainer.steps`, :meth:`~hrf_core.rl.launch.Launch.steps`) to its end;
    its result."""
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


class Trainer:
    """Fine-tunes ``config.model`` on ``config.reward`` and writes everything to ``run``.

    Noise: every sample draws its noise from its own stream keyed by (seed, epoch, stream, global
    index) (:class:`~hrf_core.rl.policy.RowNoise`), and the start steps and the update order come from
    generators keyed by (seed, epoch), so a run's samples do not depend on how the epoch is split
    into processes (``dist``) and resuming needs no saved generator state.

    It holds the epoch's sampling, evaluation and the checkpoint round trip of everything an epoch reads, kept
    together so a resume (:func:`~hrf_core.rl.launch.resume_training`) restores exactly that; the update
    (:mod:`hrf_core.rl.update`: the trainer hands it its parts and applies its result), the prompts
    (:mod:`hrf_core.rl.prompting`), HRF-D's probe (:mod:`hrf_core.rl.probe`) and each method's windows
    (:mod:`hrf_core.methods`) live apart.
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
        if self.device.type == "cuda":  # TF32 for float32 matmuls and convolutions (bf16 autocast casts most anyway)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.base = base or load_base_model(config.model, self.device)
        self.unet = self.base.unet
        self.scheduler = self.base.scheduler
        self.scheduler.set_timesteps(config.num_steps)
        self.trainable = trainable_steps(self.scheduler, config.eta)
        self.reward_fn = reward_fn or make_reward(config.reward, device=str(self.device))
        # LoRA: an adapter trains on the frozen UNet (a resumed checkpoint's is already attached); else every weight
        self.lora = families.get(self.base.family).trains_lora(config)
        if self.lora and not lora.has_adapter(self.unet):
            lora.add_lora(self.unet, config.lora_rank, config.lora_alpha, config.lora_targets,
                          seed=stream_seed(config.seed, "lora"))
        if not self.lora and lora.has_adapter(self.unet):
            raise ValueError(f"{config.model} carries a LoRA adapter: continue it with LoRA (--finetune lora)")
        self.trainable_params = lora.adapter_parameters(self.unet) if self.lora else list(self.unet.parameters())
        # mixed precision: UNet calls autocast to bf16/fp16; frozen weights are kept in it, trainable ones in fp32
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        if self.autocast is not None:
            self._keep_frozen_in(self.autocast)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.fp16)  # fp16's loss scaling
        self.frozen = None
        if config.needs_frozen_base:  # given (a resume loads it), else the base model before any update
            if self.lora:  # the same UNet with its adapter disabled: no second copy
                self.frozen = lora.AdapterDisabled(self.unet)
            else:
                self.frozen = (frozen if frozen is not None else copy.deepcopy(self.unet)).requires_grad_(False).eval()
        # the frozen base as a model to sample with (window-only sampling: steps before the window)
        self.frozen_model = (dataclasses.replace(self.base, unet=self.frozen, early=None, handover=0)
                             if self.frozen is not None else None)
        self.optimizer = torch.optim.AdamW(
            self.trainable_params, lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay,
            foreach=True,  # one fused pass over all parameters (CPU default is a per-tensor loop)
        )
        config.check_processes(dist.world)
        self.my_batches = list(range(dist.rank, config.batches_per_epoch, dist.world))  # this rank's share
        if config.grad_checkpointing:
            self.unet.enable_gradient_checkpointing()  # diffusers: recompute each block's activations in backward
        self.evaluator = evaluator or (Evaluator(self.base.image_shape, self.device, config.eval_embeddings)
                                       if dist.is_main else None)
        if self.evaluator is not None and tuple(config.eval_embeddings) != self.evaluator.embeddings:
            self._record_embeddings()
        if self.evaluator is not None and getattr(self.evaluator, "fallback", ""):
            log.warning(self.evaluator.fallback)  # the run's log: one line, before the first epoch
        self.prompts = RunPrompts(config, self.base.conditioner)  # each row's prompt (a prompted run)
        self.prompt_stats = (PerPromptStats(config.prompt_buffer, config.prompt_min_count)
                             if config.adv_scope == "prompt" else None)
        self.epoch = 0
        self.method = methods.get(config.method)
        self.start_state = methods.StartState()  # dynamically chosen start steps (HRF-D), kept in checkpoints
        self.phase = "idle"
        self._stepped_this_epoch = False
        self._saved_epoch = -1
        self._images: dict[int, tuple[torch.Tensor, list[str] | None]] = {}  # this epoch's images (and prompts)
        # UNet rows by kind (evaluation excluded); a LoRA run's frozen base calls the policy's UNet, counted there
        self.compute = ComputeCounter((self.unet, self.frozen if isinstance(self.frozen, torch.nn.Module) else None))
        self.update = PolicyUpdate(UpdateParts(  # what the update works with; _epoch applies its result
            config=self.config, unet=self.unet, frozen=self.frozen, scheduler=self.scheduler,
            trainable_params=self.trainable_params, optimizer=self.optimizer, scaler=self.scaler,
            autocast=self.autocast, dist=self.dist, device=self.device, compute=self.compute,
            prompt_stats=self.prompt_stats, stop_check=self.stop_check, sync_stop=self.sync_stop,
            epoch_generator=self.epoch_generator))

    # -- helpers -------------------------------------------------------------------------------
    def _keep_frozen_in(self, dtype: torch.dtype) -> None:
        """Store the weights that never train in ``dtype`` (the autocast dtype): a latent model's VAE and text
        encoder, and a LoRA run's base UNet (its adapter stays float32). Prompts are encoded again after."""
        frozen = [getattr(self.base, "vae", None), getattr(self.base.conditioner, "text_encoder", None)]
        for part in [*frozen, self.unet if self.lora else None]:
            if part is None:
                continue
            for tensor in [*part.parameters(), *part.buffers()]:
                if tensor.is_floating_point() and not tensor.requires_grad:  # the adapter stays float32
                    tensor.data = tensor.data.to(dtype)
        if self.base.conditioner is not None:
            self.base.conditioner.forget()

    def _record_embeddings(self) -> None:
        """Write the evaluation embeddings in use (and the pixel-proxy note, and why) into the run's config."""
        self.config = self.config.replace(eval_embeddings=self.evaluator.embeddings)
        fallback = getattr(self.evaluator, "fallback", "")  # why: weights this machine cannot have (one line)
        extra = {**({"evaluation_note": self.evaluator.note} if self.evaluator.note else {}),
                 **({"evaluation_fallback": fallback} if fallback else {})}
        self.run.update_config({"eval_embeddings": list(self.evaluator.embeddings)}, extra or None)

    def stop_check(self) -> bool:
        """Checked before every UNet call. Data-parallel ranks stop together instead (:meth:`sync_stop`)."""
        return not self.dist.active and self.stop_event.is_set()

    def sync_stop(self) -> None:
        """Raise StopRequested on every rank when a stop was asked on any (called at the same points by all)."""
        if self.dist.any(self.stop_event.is_set(), self.device):
            raise StopRequested

    def handover(self, epoch: int) -> int:
        """The step from which the fine-tuned network samples in ``epoch`` (0: every step; window-only: the
        window's start)."""
        return self.method.handover(self.config, epoch, self.start_state)

    def _rollout(self, unet, x: torch.Tensor, start: int, eta: float, noise, record: bool = True,
                 handover: int = 0, prompts: list[str] | None = None) -> Trajectory:
        """A rollout from step ``start``; steps < ``handover`` sample with the frozen base (window-only); each row
        conditioned on its prompt (a prompted run)."""
        early = self.frozen if handover > start else None
        return rollout(unet, self.scheduler, x, start, eta, noise, self.stop_check, record, self.autocast,
                       early_unet=early, handover=handover if early is not None else 0,
                       cond=self.prompts.condition(prompts))

    def score(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        """The reward of each image (N,), float32 on the CPU; a prompted run passes each image's prompt."""
        scored = self.reward_fn(images) if prompts is None else self.reward_fn(images, prompts)
        return scored.float().cpu()

    def _row_noise(self, epoch: int, stream: str, first: int, count: int) -> RowNoise:
        """Streams keyed (seed, epoch, stream, global index) for ``count`` rows from ``first``."""
        seed = self.config.seed
        return RowNoise([(seed, epoch, stream, first + r) for r in range(count)], self.device)

    def epoch_generator(self, epoch: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device).manual_seed(stream_seed(self.config.seed, epoch, stream))

    # -- sampling --------------------------------------------------------------------------------
    def images_of(self, epoch: int, batch_index: int) -> torch.Tensor:
        """The trajectory-of-interest images of a batch: full samples of the current policy (or the frozen base),
        each from its own prompt (kept beside them)."""
        if batch_index not in self._images:
            self._roll_images(epoch, [batch_index])
        return self._images[batch_index][0]

    def _roll_images(self, epoch: int, batch_indices: list[int]) -> None:
        """Sample the trajectory-of-interest images of ``batch_indices`` together: ``siblings`` batches' images (a
        sampling batch's worth of rows) per rollout, where one batch's alone filled only 1 / siblings of it. Each
        image draws its noise from its own stream, so the images are those of one batch at a time."""
        c = self.config
        n = c.batch_size // c.siblings
        source = self.frozen if c.start_source == "base" else self.unet
        handover = self.handover(epoch) if source is self.unet else 0
        per_call = max(1, c.siblings)
        for first in range(0, len(batch_indices), per_call):
            group = batch_indices[first:first + per_call]
            noise = RowNoise([(c.seed, epoch, "image", b * n + r) for b in group for r in range(n)], self.device)
            prompts = [self.prompts.images(epoch, b) for b in group]
            flat = None if prompts[0] is None else [p for batch in prompts for p in batch]
            x = noise_like((len(noise), *self.base.sample_shape), noise, self.device)
            self.phase = f"epoch {epoch}: trajectory-of-interest images"
            final = self._rollout(source, x, 0, c.eta, noise, record=False, handover=handover, prompts=flat).final
            for i, b in enumerate(group):
                self._images[b] = (final[i * n:(i + 1) * n], prompts[i])

    def _starts(self, epoch: int, n_batches: int) -> list[int]:
        """The start step index of every batch of the epoch (the same on every rank)."""
        return self.method.starts(self.config, epoch, n_batches, self.epoch_generator(epoch, "starts"),
                                  self.start_state)

    def _probe_start(self, epoch: int) -> tuple[int, dict]:
        """HRF-D's probe (:func:`~hrf_core.rl.probe.dynamic_start`) of the first batch's trajectory-of-interest images
        on rank 0; every rank receives its (start, diagnostics)."""
        c, found = self.config, None
        if self.dist.is_main:
            self.phase = f"epoch {epoch}: HRF-D probing start steps"
            probe = self.images_of(epoch, 0)[: c.hrfd_probe_images]
            prompts = self._images[0][1]  # their prompts
            cond = self.prompts.condition(prompts[: c.hrfd_probe_images]) if prompts else None
            reward = lambda x, *prompts: self.reward_fn(self.base.decode(x), *prompts)  # noqa: E731
            found = dynamic_start(self.unet, self.scheduler, probe, reward, c.hrfd_stride, c.hrfd_beta, c.siblings,
                                  self.epoch_generator(epoch, "probe", self.device), self.stop_check, cond)
        return self.dist.broadcast_object(found)

    def _sample_batch(self, epoch: int, batch_index: int, start: int) -> Batch:
        """Roll out one batch with log-probs from its start state; reward the finals."""
        c = self.config
        noise = self._row_noise(epoch, "sample", batch_index * c.batch_size, c.batch_size)
        if start > 0:
            x_start = renoise(self.scheduler, self.images_of(epoch, batch_index), start, c.siblings, noise)
        else:
            x_start = noise_like((c.batch_size, *self.base.sample_shape), noise, self.device)
        self.phase = f"epoch {epoch}: sampling batch {batch_index + 1}"
        prompts = self.prompts.batch(epoch, batch_index, start)
        trajectory = self._rollout(self.unet, x_start, start, c.eta, noise, handover=self.handover(epoch),
                                   prompts=prompts)
        # inference tensors cannot enter autograd: keep plain copies for the update
        trajectory.states, trajectory.log_probs = trajectory.states.clone(), trajectory.log_probs.clone()
        images = self.base.decode(trajectory.final)
        rewards = self.score(images, prompts)
        diversity = self.update.diversity_bonus(images, start, prompts) if c.diversity_weight > 0 else None
        end = self.method.window_end(self.config, epoch)
        trained = [j for j in range(end - start) if self.trainable[start + j]]
        return Batch(trajectory=trajectory, rewards=rewards, end=end, trained=trained, diversity=diversity)

    def _gather_rewards(self, batches: dict[int, Batch], n_batches: int, field: str = "rewards") -> torch.Tensor:
        """Rewards (or another per-row field of :class:`Batch`) of every batch of the epoch, (n_batches, ...), on
        every rank."""
        local = torch.stack([getattr(batches[b], field) for b in self.my_batches]).to(self.device)
        gathered = self.dist.all_gather(local).cpu()  # (world, my batches, batch): batch b = k * world + rank
        return torch.stack([gathered[b % self.dist.world, b // self.dist.world] for b in range(n_batches)])

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, epoch: int | None = None) -> tuple[dict, Image.Image, dict]:
        """Metrics of ``eval_samples`` samples from pure noise with the fixed evaluation seed.

        Sampled as the run samples (window-only: the base model before :meth:`handover`). Returns
        (metrics, grid, per-sample arrays to recompute metrics from). Its UNet calls are not counted as compute.
        """
        c = self.config
        self.phase = "evaluating"
        handover = self.handover(self.epoch if epoch is None else epoch)
        prompts = round_robin(eval_prompts(c.prompts, c.eval_samples), c.eval_samples) if c.prompted else None
        with self.compute.paused():
            images = sample_from(self.base, c.eval_samples, c.eval_seed, c.num_steps, c.eval_eta,
                                 stop=self.stop_check, autocast_bf16=self.autocast,
                                 early=self.frozen_model if handover else None, handover=handover,
                                 prompts=prompts, guidance=c.guidance)
        rewards = self.score(images, prompts)
        arrays: dict = {}
        metrics = self.evaluator(images, rewards, arrays=arrays, prompts=prompts)
        return metrics, sample_grid(images, prompts), arrays

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Weights, optimiser and trainer state of this epoch (:mod:`hrf_core.store.checkpoints`).

        Only rank 0 writes (every rank holds the same weights and optimiser state); others return None.
        """
        if not self.dist.is_main:
            return None
        with self.run.writing(f"the checkpoint of epoch {self.epoch}"):
            folder = checkpoints.save_checkpoint(self.run.checkpoint_dir(self.epoch), self.unet, self.scheduler,
                                                 self.optimizer, self._state(),
                                                 save_weights=lora.save_adapter if self.lora else None)
        self._saved_epoch = self.epoch
        return folder

    def _state(self) -> dict:
        """What a checkpoint keeps of the trainer (its keys are read back by :meth:`load_checkpoint` and
        :func:`hrf_core.models.registry.window_only_of`)."""
        state = {"epoch": self.epoch, "hrfd_start": self.start_state.start, "hrfd_earliest": self.start_state.earliest,
                 "compute": self.compute.total, "handover": self.handover(self.epoch),
                 "num_steps": self.config.num_steps, "base_model": self.config.model}
        if self.prompt_stats is not None:  # per-prompt reward buffers: a resumed run continues them exactly
            state["prompt_stats"] = self.prompt_stats.state()
        if self.scaler.is_enabled():  # fp16's loss scale continues where it was
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_checkpoint(self, folder: Path) -> None:
        """Restore optimiser, epoch counter, compute totals and window-schedule position (weights: see resume).

        Noise needs no saved state: every stream is keyed by (seed, epoch, ...).
        """
        checkpoints.load_optimizer_state(folder, self.optimizer, self.device)
        state = checkpoints.read_trainer_state(folder)
        self.epoch = state["epoch"]
        self.start_state.start = state["hrfd_start"]
        self.start_state.earliest = state.get("hrfd_earliest")
        self.compute.restore(state.get("compute", {}))
        if self.prompt_stats is not None:
            self.prompt_stats.restore(state.get("prompt_stats", {}))
        if self.scaler.is_enabled() and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
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
        self.sync_stop()
        self.method.prepare_epoch(methods.EpochContext(c, epoch, self.start_state, lambda: self._probe_start(epoch)))
        starts = self._starts(epoch, n_batches)
        batches: dict[int, Batch] = {}
        sourced = [b for b in self.my_batches if starts[b] > 0 and b not in self._images]
        if sourced:  # re-noised batches: their images first, several batches' per UNet call
            self.sync_stop()
            self._roll_images(epoch, sourced)
        for b in self.my_batches:
            self.sync_stop()
            batches[b] = self._sample_batch(epoch, b, starts[b])
        self._images = {}
        rewards = self._gather_rewards(batches, n_batches)
        sampled = time.perf_counter()
        prompts = [self.prompts.batch(epoch, b, starts[b]) for b in range(n_batches)] if c.prompted else None
        diversity = self._gather_rewards(batches, n_batches, "diversity") if c.diversity_weight > 0 else None
        diversity_notes = self.update.assign_advantages(batches, rewards, starts, prompts, diversity)
        self.phase = f"epoch {epoch}: updating"
        update = self.update.run(batches, epoch)
        self._stepped_this_epoch = update.steps > 0  # a stop after a step: the weights are no epoch's any more
        if update.stopped:
            raise StopRequested
        trained = time.perf_counter()
        window_end = self.method.window_end(self.config, epoch)
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
            **diversity_notes,
            **self.compute.close_epoch(self.dist, self.device),
        }
        row.update(self.method.epoch_notes(self.start_state))
        if prompts is not None:  # each prompt's mean training reward
            flat, values = [p for batch in prompts for p in batch], rewards.reshape(-1).tolist()
            row["prompt_rewards"] = {p: sum(v for q, v in zip(flat, values, strict=True) if q == p) / flat.count(p)
                                     for p in sorted(set(flat))}
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

