"""The typed configuration of one fine-tuning run.

Each field is explained once, in :data:`hrf_core.settings.TABLE` (label, help, range or choices, and where it
appears: the page, the scripting API, the command line, the Runs table), which also checks it; the named
presets are in :mod:`hrf_core.presets`. The config imports nothing of the library: the check
(:func:`hrf_core.settings.check`) registers itself here (:func:`add_check`) when the settings load, and
``hrf_core/__init__.py`` loads them, so every config can validate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

#: What :meth:`TrainConfig.validate` runs, in order (:func:`add_check`).
_checks: list[Callable[[TrainConfig], None]] = []


def add_check(check: Callable[[TrainConfig], None]) -> None:
    """Make :meth:`TrainConfig.validate` run ``check(config)`` (it raises for a bad config); once per function."""
    if check not in _checks:
        _checks.append(check)


@dataclass
class TrainConfig:
    """One fine-tuning run. Step indices: 0 (pure noise) .. num_steps-1; windows are [start, end)."""

    model: str = "digits16"
    reward: str = "jpeg-compressibility"
    method: str = "hrf"  # a name in hrf_core.methods.METHODS (tests/test_registry.py checks it is registered)
    # HRF: the window [start, end) of trained step indices; steps >= end are sampled, not trained.
    window: tuple[int, int] = (20, 40)
    start_mode: str = "uniform"  # HRF: start ~ U{window} per batch, or fixed at window[0]
    # HRF sliding: (start, end, epochs) clusters, active one after the other (the paper's two clusters).
    clusters: tuple[tuple[int, int, int], ...] = ((0, 20, 5), (20, 40, 5))
    siblings: int = 4  # B: re-noised copies per trajectory-of-interest image
    start_source: str = "policy"  # trajectory-of-interest images from the current policy or the frozen base
    outside_window: str = "tuned"  # steps before the window: the fine-tuned network, or the base model (window-only)
    # Prompts (a prompted model): each sample draws one from the set; guidance; per-prompt advantage statistics.
    prompts: tuple[str, ...] = ()
    guidance: float = 1.0
    guidance_grad: str = "both"  # both branches in the gradient, or "cond": the unconditional branch detached
    prompt_buffer: int = 16  # adv_scope "prompt": the recent rewards kept per prompt (ddpo-pytorch's buffer)
    prompt_min_count: int = 16  # ... and how many a prompt needs before its own statistics are used
    # HRF-D: candidate starts every `hrfd_stride` steps, deterministic probes, score weight beta.
    hrfd_stride: int = 2
    hrfd_beta: float = 0.5
    hrfd_probe_images: int = 2
    hrfd_every: int = 1  # re-estimate the start every N epochs
    # Sampling
    epochs: int = 10
    samples_per_epoch: int = 32
    batch_size: int = 16  # sampling batch: one start state index per batch
    num_steps: int = 40  # K DDIM steps
    eta: float = 1.0
    # DDPO / PPO update
    lr: float = 3e-4  # digits16: DDPO collapses visibly within ~12 epochs (1e-4 needs about twice as many)
    weight_decay: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    clip_range: float = 1e-4
    adv_clip: float = 5.0
    adv_scope: str = "epoch"
    window_scaled_clip: bool = False  # multiply clip_range and adv_clip by (K - s) / K
    max_grad_norm: float = 1.0
    # KL regularisation to the frozen base model (DPOK): kl_coef times the mean over a sample's trained
    # steps of KL(policy step || base step), in nats per pixel (the log-prob's scale); 0 turns it off.
    kl_coef: float = 0.0
    # The diversity bonus (docs/METHOD.md, "The diversity bonus"): A = A_reward + diversity_weight * z(b), b each
    # sample's leave-one-out Vendi contribution to its group, z standardised within the group; 0 turns it off.
    diversity_weight: float = 0.0
    inner_epochs: int = 1
    updates_per_epoch: int = 4  # optimiser steps per inner epoch
    train_batch_size: int = 64  # (sample, step) rows per forward+backward UNet call
    # Evaluation, logging and checkpoints
    eval_every: int = 10  # an evaluation costs about half a DDPO epoch here (bench/README.md, "Figures")
    eval_samples: int = 64
    eval_seed: int = 1234
    eval_eta: float = 1.0
    checkpoint_every: int = 5  # the final epoch is always checkpointed
    seed: int = 0
    device: str = "auto"
    bf16: bool = False  # bf16 autocast for UNet calls (measure the drift first: bench/gpu_check.py, docs/METHOD.md)
    grad_checkpointing: bool = False  # recompute UNet activations in backward: less memory, slower updates
    fp16: bool = False  # fp16 autocast with loss scaling (GPUs without bf16); trainable weights stay fp32
    # What trains: LoRA adapters (peft; TRL's defaults) or every weight. auto: LoRA for a text-to-image model.
    finetune: str = "auto"
    lora_rank: int = 4
    lora_alpha: float = 4.0
    lora_targets: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
    # evaluation embeddings; empty = the best available (digits: classifier; RGB: Inception + CLIP, else pixels).
    # The trainer records the ones it used here, so a resumed run keeps measuring the same way.
    eval_embeddings: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)  # free-form notes (e.g. experiment arm)

    def validate(self) -> TrainConfig:
        """Raise :class:`~hrf_core.settings.SettingError` (a ValueError, one line naming the setting) for any bad or
        inconsistent value; return self. The checks are the settings' (:func:`add_check`)."""
        for check in _checks:
            check(self)
        return self

    @property
    def batches_per_epoch(self) -> int:
        """Sampling batches per epoch: samples_per_epoch / batch_size."""
        return self.samples_per_epoch // self.batch_size

    def check_processes(self, world: int) -> None:
        """Raise ValueError (one line) unless ``world`` data-parallel processes can share the epoch's batches."""
        if self.batches_per_epoch % world:
            raise ValueError(f"{self.batches_per_epoch} sampling batches per epoch cannot be shared by {world} "
                             "processes: make samples_per_epoch / batch_size (--samples / --batch-size) a multiple "
                             "of the process count")

    @property
    def needs_frozen_base(self) -> bool:
        """Whether the run keeps a frozen copy of the base model (base start images, the KL term, window-only)."""
        return self.start_source == "base" or self.kl_coef > 0 or self.outside_window == "base"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict` (JSON lists become tuples); unknown keys are rejected."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        for key in ("window", "adam_betas", "eval_embeddings", "prompts", "lora_targets"):
            if key in data:
                data[key] = tuple(data[key])
        if "clusters" in data:
            data["clusters"] = tuple(tuple(c) for c in data["clusters"])
        return cls(**data)

    @property
    def precision(self) -> str:
        """The autocast precision of UNet calls: "bf16", "fp16" or "fp32" (none)."""
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"

    @property
    def prompted(self) -> bool:
        """Whether the run is prompted (a conditional model with a prompt set)."""
        return bool(self.prompts)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)
