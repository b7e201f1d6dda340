"""Sampling from base models and checkpoints: grids, arrays and the x0-prediction strip."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hrf_core.imaging import image_grid, to_unit
from hrf_core.models.base import BaseModel
from hrf_core.models.ddim import denoise
from hrf_core.models.registry import load_base_model
from hrf_core.rl.policy import StopCheck, noise_like, rollout, unet_eps
from hrf_core.rl.prompting import check_prompted
from hrf_core.store.runs import atomic_path


def round_robin(prompts: Sequence[str], n: int) -> list[str]:
    """``n`` rows' prompts, the set in turn (row r: ``prompts[r % P]``): an evaluation set shares its samples
    equally among the prompts, and the same seed gives each prompt the same noises at any n."""
    return [prompts[r % len(prompts)] for r in range(n)]


def eval_prompts(prompts: Sequence[str], n: int) -> list[str]:
    """The prompts an evaluation of ``n`` samples covers: every prompt when each gets at least 2 samples, else
    ``n // 2`` of them spread evenly over the set (a large set such as ``@imagenet-animals``), so within-prompt
    metrics always have 2 samples a prompt."""
    p, k = len(prompts), n // 2
    if p <= k:
        return list(prompts)
    return [prompts[(i * p) // k] for i in range(k)]


def sample_grid(images: torch.Tensor, prompts: Sequence[str] | None = None, columns: int = 8, limit: int = 64):
    """The grid of a sample set: its first ``limit`` samples, or one row per prompt (its first ``columns``)."""
    scale = max(1, 128 // images.shape[-1])
    if not prompts:
        return image_grid(images[:limit], scale=scale)
    rows_of = {prompt: [j for j, p in enumerate(prompts) if p == prompt] for prompt in dict.fromkeys(prompts)}
    order = [j for rows in rows_of.values() for j in rows[:columns]]
    per_row = min(columns, max(prompts.count(p) for p in set(prompts)))
    return image_grid(images[order], nrow=per_row, scale=scale)


def sample_from(base: BaseModel, n: int, seed: int, num_steps: int = 40, eta: float = 1.0,
                batch_size: int | None = None, stop: StopCheck | None = None, autocast_bf16: bool = False,
                early: BaseModel | None = None, handover: int = 0, prompts: Sequence[str] | None = None,
                guidance: float = 1.0) -> torch.Tensor:
    """``n`` samples (n, C, H, W) in [-1, 1] from pure noise (a latent model's decoded); the same seed gives the
    same samples.

    This is the evaluation sampler of the trainer, the app and the experiments. Hand-over sampling:
    steps with index < ``handover`` use ``early`` (e.g. the base model), the rest ``base`` (e.g. a
    fine-tuned checkpoint); with the same seed, handover = 0 gives ``base``'s samples exactly and
    handover = K ``early``'s. A window-only checkpoint (``base.early`` set) samples that way by default,
    its hand-over step rescaled to ``num_steps``. A prompted model samples row i from ``prompts[i]`` with
    classifier-free ``guidance``; the same seed gives the same start noise whatever the prompts. ``batch_size``:
    samples per UNet call (default the model's ``eval_batch``).
    """
    batch_size = batch_size or base.eval_batch
    if early is None and not handover and base.early is not None:
        early, handover = base.early, base.handover_at(num_steps)
    if not 0 <= handover <= num_steps:
        raise ValueError(f"handover must be in 0..{num_steps} (K), got {handover}")
    if handover and early is None:
        raise ValueError("hand-over sampling needs the model for the early steps")
    if early is not None and early.sample_shape != base.sample_shape:
        raise ValueError(f"hand-over between models of different sample shapes: {early.sample_shape} vs "
                         f"{base.sample_shape}")
    base.scheduler.set_timesteps(num_steps)
    generator = torch.Generator().manual_seed(seed)
    x = noise_like((n, *base.sample_shape), generator, base.device)
    early_unet = early.unet if early is not None and handover else None
    cond = prompt_condition(base, prompts, n, guidance)
    finals = [rollout(base.unet, base.scheduler, chunk, 0, eta, generator, stop=stop, record=False,
                      autocast_bf16=autocast_bf16, early_unet=early_unet, handover=handover,
                      cond=None if cond is None else cond[i * batch_size:(i + 1) * batch_size]).final
              for i, chunk in enumerate(x.split(batch_size))]
    return base.decode(torch.cat(finals))


def prompt_condition(base: BaseModel, prompts: Sequence[str] | None, n: int, guidance: float = 1.0):
    """The condition of ``n`` rows with ``prompts`` for ``base`` (None: unconditional); one line when the model
    and the prompts do not go together."""
    check_prompted(base.name, base.conditioner, prompts)
    if base.conditioner is None:
        return None
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} samples")
    return base.conditioner.condition(list(prompts), guidance)


def sample_images(name: str, n: int = 64, seed: int = 0, num_steps: int = 40, eta: float = 1.0,
                  device: str = "auto", early: str | None = None, handover: int = 0,
                  prompts: Sequence[str] | None = None, guidance: float = 1.0) -> torch.Tensor:
    """Load ``name`` (registry name, Hub id, local folder or run checkpoint) and sample from it.

    With ``early`` and ``handover`` = S: steps < S sample with the model ``early`` names (hand-over sampling). A
    prompted model samples row i from ``prompts[i]`` with ``guidance``.
    """
    model = load_base_model(name, device)
    early_model = load_base_model(early, model.device) if early and handover else None
    return sample_from(model, n, seed, num_steps, eta, early=early_model, handover=handover, prompts=prompts,
                       guidance=guidance)


def save_samples(images: torch.Tensor, grid_path: Path, array_path: Path | None = None) -> None:
    """A PNG grid and optionally a .npy array: float32 in [0, 1], shape (n, C, H, W). Atomic writes."""
    scale = max(1, 64 // images.shape[-1])
    with atomic_path(grid_path) as tmp:
        image_grid(images, scale=scale).save(tmp, format="PNG")
    if array_path is not None:
        with atomic_path(array_path) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, to_unit(images).cpu().numpy().astype(np.float32))


def x0_preview(base: BaseModel, num_steps: int = 40, seed: int = 0, n: int = 1,
               prompts: Sequence[str] | None = None) -> torch.Tensor:
    """The model's prediction of x_0 at every DDIM step of ``n`` trajectories: (K, n, C, H, W) in [-1, 1].

    Shows which step indices set coarse shape (early) and which set detail (late). One UNet call per step. A
    prompted model draws trajectory i from its i-th prompt (``prompts``, default the ones it knows, in turn).
    """
    base.scheduler.set_timesteps(num_steps)
    generator = torch.Generator().manual_seed(seed)
    x = noise_like((n, *base.sample_shape), generator, base.device)
    if base.conditioner is not None:
        prompts = round_robin(prompts or base.conditioner.vocabulary, n)
    cond = prompt_condition(base, prompts, n)

    def step(t: int, eps: torch.Tensor, x: torch.Tensor):  # -> (x_prev, x0_hat)
        noise = noise_like(x.shape, generator, base.device)
        return base.scheduler.step(eps, t, x, eta=1.0, variance_noise=noise, return_dict=False)

    with torch.inference_mode():
        steps = denoise(base.scheduler.timesteps, x, lambda i, t, x, rows: unet_eps(base.unet, x, t, cond=cond), step)
        predictions = [base.decode(x0).clamp(-1, 1) for _, _, x0 in steps]
    return torch.stack(predictions)
