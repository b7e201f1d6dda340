"""Typed training configuration and the named presets (the paper's settings among them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

METHODS = ("ddpo", "hrf", "hrf-sliding", "hrf-d")
START_MODES = ("uniform", "fixed")
#: Which rewards an advantage is standardised against: the whole epoch, the sampling batch, or the B
#: siblings re-noised from the same trajectory-of-interest image (HRF's analogue of DDPO's per-prompt
#: statistics; the paper's code gets it from batch = B = 5). Rows started from pure noise share no image:
#: under "image" they are standardised per batch.
ADVANTAGE_SCOPES = ("epoch", "batch", "image")
START_SOURCES = ("policy", "base")
#: What samples the steps before a windowed run's window: the fine-tuned network ("tuned", the paper's
#: HRF: one shared network at every step) or the frozen base model ("base": window-only sampling, so the
#: steps the run never trained stay the base model's; see docs/METHOD.md, "Window-only sampling").
OUTSIDE_WINDOW = ("tuned", "base")


@dataclass
class TrainConfig:
    """One fine-tuning run. Step indices: 0 (pure noise) .. num_steps-1; windows are [start, end)."""

    model: str = "digits16"
    reward: str = "jpeg-compressibility"
    method: str = "hrf"
    # HRF: the window [start, end) of trained step indices; steps >= end are sampled, not trained.
    window: tuple[int, int] = (20, 40)
    start_mode: str = "uniform"  # HRF: start ~ U{window} per batch, or fixed at window[0]
    # HRF sliding: (start, end, epochs) clusters, active one after the other (the paper's two clusters).
    clusters: tuple[tuple[int, int, int], ...] = ((0, 20, 5), (20, 40, 5))
    siblings: int = 4  # B: re-noised copies per trajectory-of-interest image
    start_source: str = "policy"  # trajectory-of-interest images from the current policy or the frozen base
    outside_window: str = "tuned"  # steps before the window: the fine-tuned network, or the base model (window-only)
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
    inner_epochs: int = 1
    updates_per_epoch: int = 4  # optimiser steps per inner epoch
    train_batch_size: int = 64  # (sample, step) rows per forward+backward UNet call
    # Evaluation, logging and checkpoints
    eval_every: int = 10  # one evaluation costs ~53% of a DDPO epoch on a 2-core CPU (bench/epoch.py)
    eval_samples: int = 64
    eval_seed: int = 1234
    eval_eta: float = 1.0
    checkpoint_every: int = 5  # the final epoch is always checkpointed
    seed: int = 0
    device: str = "auto"
    bf16: bool = False  # bf16 autocast for UNet calls (measure the drift first: bench/gpu_check.py, docs/METHOD.md)
    grad_checkpointing: bool = False  # recompute UNet activations in backward: less memory, ~30% slower updates
    # evaluation embeddings; empty = the best available (digits: classifier; RGB: Inception + CLIP, else pixels).
    # The trainer records the ones it used here, so a resumed run keeps measuring the same way.
    eval_embeddings: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)  # free-form notes (e.g. experiment arm)

    def validate(self) -> TrainConfig:
        """Raise ValueError with one clear line for any inconsistent value; return self."""
        k = self.num_steps

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        check(self.method in METHODS, f"unknown method {self.method!r}: choose one of {', '.join(METHODS)}")
        check(2 <= k <= 1000, f"num_steps must be in 2..1000, got {k}")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        start, end = self.window
        if self.method == "hrf":  # the other methods ignore ``window``
            check(0 <= start < end <= k, f"window {start}:{end} must satisfy 0 <= start < end <= {k}")
        check(self.start_mode in START_MODES, f"start_mode must be one of {START_MODES}")
        check(self.start_source in START_SOURCES, f"start_source must be one of {START_SOURCES}")
        check(self.adv_scope in ADVANTAGE_SCOPES, f"adv_scope must be one of {ADVANTAGE_SCOPES}")
        check(self.outside_window in OUTSIDE_WINDOW, f"outside_window must be one of {OUTSIDE_WINDOW}")
        check(self.outside_window == "tuned" or self.method != "ddpo",
              "outside_window 'base' needs a windowed method: DDPO trains every step, so nothing is outside its window")
        check(self.adv_scope != "image" or (self.method != "ddpo" and self.siblings >= 2),
              "adv_scope 'image' needs re-noised siblings (an HRF method with siblings >= 2)")
        for s, e, n in self.clusters if self.method == "hrf-sliding" else ():
            check(0 <= s < e <= k and n >= 1, f"cluster {s}:{e} x{n} must satisfy 0 <= start < end <= {k}, epochs >= 1")
        check(self.samples_per_epoch >= 2, "samples_per_epoch must be >= 2")
        check(1 <= self.batch_size <= self.samples_per_epoch, "batch_size must be in 1..samples_per_epoch")
        check(self.samples_per_epoch % self.batch_size == 0, "samples_per_epoch must be a multiple of batch_size")
        check(self.siblings >= 1 and self.batch_size % self.siblings == 0, "batch_size must be a multiple of siblings")
        check(self.train_batch_size >= 1, "train_batch_size must be >= 1")
        check(self.updates_per_epoch >= 1 and self.inner_epochs >= 1, "updates_per_epoch and inner_epochs must be >= 1")
        check(self.eta > 0, "eta must be > 0: with eta = 0 the policy is deterministic and has no log-prob")
        check(0 < self.lr < 1, f"lr must be in (0, 1), got {self.lr}")
        check(self.clip_range > 0 and self.adv_clip > 0, "clip_range and adv_clip must be > 0")
        check(self.kl_coef >= 0 and self.kl_coef == self.kl_coef, f"kl_coef must be >= 0, got {self.kl_coef}")
        check(self.hrfd_stride >= 1 and self.hrfd_probe_images >= 1 and self.hrfd_every >= 1, "bad HRF-D settings")
        check(self.eval_every >= 1 and self.eval_samples >= 2, "eval_every >= 1 and eval_samples >= 2")
        check(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
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
        for key in ("window", "adam_betas", "eval_embeddings"):
            if key in data:
                data[key] = tuple(data[key])
        if "clusters" in data:
            data["clusters"] = tuple(tuple(c) for c in data["clusters"])
        return cls(**data)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


#: Named presets. The ``paper-*`` ones are the HRF authors' settings on CelebA-HQ (lr 5e-6,
#: weight decay 1e-3, 10 samples per epoch, batch 5, 70 epochs, advantage clip 2.5 per batch).
PRESETS: dict[str, TrainConfig] = {
    # the embedded model, evaluated every epoch so the live trajectory gains a point per epoch
    "digits-ddpo": TrainConfig(method="ddpo", window=(0, 40), epochs=15, eval_every=1),
    "digits-hrf-late": TrainConfig(method="hrf", window=(20, 40), epochs=15, eval_every=1),
    "digits-hrf-early": TrainConfig(method="hrf", window=(0, 20), epochs=15, eval_every=1),
    "digits-hrf-sliding": TrainConfig(method="hrf-sliding", clusters=((0, 20, 8), (20, 40, 7)), epochs=15,
                                      eval_every=1),
    "digits-hrf-d": TrainConfig(method="hrf-d", epochs=15, eval_every=1),
    # window-only HRF (issue #22): the base model samples steps before the window, per-image advantages
    "digits-hrf-window-only": TrainConfig(method="hrf", window=(20, 40), adv_scope="image", outside_window="base",
                                          epochs=15, eval_every=1),
    # the reviewers' ablations: a random start step (s ~ U{0..K-1}, every later step trained), and
    # re-noised starts at a fixed step without sliding; and DDPO with the KL penalty to the base (DPOK)
    "digits-random-start": TrainConfig(method="hrf", window=(0, 40), epochs=15, eval_every=1),
    "digits-renoise-fixed": TrainConfig(method="hrf", window=(20, 40), start_mode="fixed", epochs=15,
                                        eval_every=1),
    "digits-ddpo-kl": TrainConfig(method="ddpo", window=(0, 40), kl_coef=1.0, epochs=15, eval_every=1),
    "paper-ddpo": TrainConfig(
        model="google/ddpm-celebahq-256", method="ddpo", window=(0, 40), epochs=70, samples_per_epoch=10,
        batch_size=5, siblings=5, lr=5e-6, weight_decay=1e-3, adv_clip=2.5, adv_scope="batch",
        updates_per_epoch=2, train_batch_size=5, eval_samples=16,
    ),
    "paper-hrf-sliding": TrainConfig(
        model="google/ddpm-celebahq-256", method="hrf-sliding", clusters=((0, 20, 35), (20, 40, 35)), epochs=70,
        samples_per_epoch=10, batch_size=5, siblings=5, lr=5e-6, weight_decay=1e-3, adv_clip=2.5,
        adv_scope="batch", window_scaled_clip=True, updates_per_epoch=2, train_batch_size=5, eval_samples=16,
    ),
    "paper-hrf-d": TrainConfig(
        model="google/ddpm-celebahq-256", method="hrf-d", epochs=70, samples_per_epoch=10, batch_size=5,
        siblings=5, lr=5e-6, weight_decay=1e-3, adv_clip=2.5, adv_scope="batch", window_scaled_clip=True,
        updates_per_epoch=2, train_batch_size=5, eval_samples=16, hrfd_probe_images=1,
    ),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A copy of preset ``name`` with ``overrides`` applied, validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides).validate()
