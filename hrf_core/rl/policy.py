"""The denoising policy: one DDIM step as a Gaussian action, and rollouts that record it.

Notation (DDIM paper, Song et al. 2021, eqs. 12 and 16; diffusers' ``DDIMScheduler.step``):
K DDIM steps are indexed i = 0 (pure noise, timestep ``timesteps[0]``) .. K-1 (the step that
yields x_0). Step i maps x_{t_i} to x_{t_{i+1}} ~ N(mu_theta(x_{t_i}, t_i), sigma_i^2 I) with

    mu_theta = sqrt(abar_prev) * x0_hat + sqrt(1 - abar_prev - sigma_i^2) * eps_theta     (eq. 12)
    sigma_i  = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))        (eq. 16)

The mean comes from diffusers' own ``DDIMScheduler.step`` (with zero variance noise), so clipping
of x0_hat and every other detail is exactly the scheduler's. Sampling and training call the same
function, so the importance ratio is 1 before any update.

A step with sigma = 0 (eta = 0, or the last step when ``set_alpha_to_one=True``) is
deterministic: its log-prob is undefined. :func:`ddim_step_with_logprob` returns NaN there and
such steps are never trained (see :func:`trainable_steps`).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, UNet2DModel

from hrf_core.models.ddim import denoise
from hrf_core.models.guidance import Condition, autocast_dtype


class StopRequested(Exception):
    """Raised inside a rollout or an update when the caller's stop event is set."""


StopCheck = Callable[[], bool]


def stream_seed(*key: object) -> int:
    """A 63-bit seed derived from a key such as ``(seed, epoch, "sample", 17)`` (stable across processes)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class RowNoise:
    """Independent standard-normal streams, one per batch row, each seeded from its own key.

    A row's noise (its start noise, then one draw per denoising step) depends only on its key, e.g.
    ``(seed, epoch, "sample", global_index)``, never on which other rows share its batch or process:
    the same samples come out of one process or of N data-parallel ranks.
    """

    def __init__(self, keys: Sequence[tuple], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(stream_seed(*key)) for key in keys]

    def __len__(self) -> int:
        return len(self.generators)

    def draw(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Noise of ``shape`` (rows, ...): row r from stream r."""
        if shape[0] != len(self.generators):
            raise ValueError(f"RowNoise has {len(self.generators)} streams, asked for {shape[0]} rows")
        rows = [torch.randn(shape[1:], generator=g, device=self.device) for g in self.generators]
        return torch.stack(rows).to(device, non_blocking=True)


#: Where noise comes from: one shared generator (evaluation sets), per-row streams (training), or torch's global RNG.
NoiseSource = torch.Generator | RowNoise | None


def noise_like(shape: tuple[int, ...], source: NoiseSource, device: torch.device) -> torch.Tensor:
    """Standard normal noise from ``source``, moved to ``device`` (without a stream sync)."""
    if isinstance(source, RowNoise):
        return source.draw(shape, device)
    gen_device = source.device if source is not None else device
    return torch.randn(shape, generator=source, device=gen_device).to(device, non_blocking=True)


def step_sigma(scheduler: DDIMScheduler, timestep: int, eta: float) -> float:
    """sigma_i = eta * sqrt(variance(t, t_prev)) of the DDIM step at ``timestep`` (eq. 16)."""
    prev_timestep = timestep - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    variance = float(scheduler._get_variance(timestep, prev_timestep))
    return eta * math.sqrt(max(variance, 0.0))


def ddim_step_mean(
    scheduler: DDIMScheduler,
    model_output: torch.Tensor,
    timestep: int | torch.Tensor,
    sample: torch.Tensor,
    eta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian of one DDIM step: its mean mu_theta (B, C, H, W) (eq. 12) and sigma (B,) (eq. 16).

    ``timestep``: the train timestep t (int, 0-d tensor, or (B,) tensor; per-sample values allowed).
    The mean is diffusers' ``DDIMScheduler.step(..., variance_noise=0)``, so x0 clipping and every
    other detail is the scheduler's.
    """
    batch = sample.shape[0]
    steps = torch.as_tensor(timestep).reshape(-1).tolist()  # a device tensor here would cost a host sync
    if len(steps) == 1:
        steps = steps * batch
    if len(steps) != batch:
        raise ValueError(f"timestep has {len(steps)} values for a batch of {batch}")

    mean = torch.empty_like(sample)
    for t in sorted(set(steps)):
        rows = [i for i, s in enumerate(steps) if s == t]
        index = slice(None) if len(rows) == batch else torch.tensor(rows).to(sample.device, non_blocking=True)
        out = scheduler.step(model_output[index], t, sample[index], eta=eta,
                             variance_noise=torch.zeros_like(sample[index]), return_dict=False)
        mean[index] = out[0]
    # sigma per row, computed on the host and sent in one copy (a scalar write into a device tensor syncs)
    sigma_of = {t: step_sigma(scheduler, t, eta) for t in set(steps)}
    sigma = torch.tensor([sigma_of[t] for t in steps], dtype=sample.dtype)
    return mean, sigma.to(sample.device, non_blocking=True)


def _per_row(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigma.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """MEAN over the non-batch dimensions of log N(x; mean, sigma^2 I): (B,); NaN where sigma = 0.

    log N(x; mu, sigma^2) = -(x - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi), per element.
    """
    std = _per_row(sigma, x)
    safe_std = torch.where(std > 0, std, torch.ones_like(std))
    log_density = -((x.detach() - mean) ** 2) / (2 * safe_std**2) - torch.log(safe_std) - 0.5 * math.log(2 * math.pi)
    log_prob = log_density.mean(dim=tuple(range(1, x.dim())))
    return torch.where(sigma > 0, log_prob, torch.full_like(log_prob, float("nan")))


def gaussian_kl(mean_p: torch.Tensor, mean_q: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_p, sigma^2 I) || N(mean_q, sigma^2 I)) per element, MEAN over the non-batch dimensions: (B,).

    Two Gaussians with the same sigma: KL = ||mean_p - mean_q||^2 / (2 sigma^2), here taken per pixel
    (the same scale as :func:`gaussian_log_prob`). NaN where sigma = 0 (both steps are deterministic).
    """
    std = _per_row(sigma, mean_p)
    safe_std = torch.where(std > 0, std, torch.ones_like(std))
    kl = ((mean_p - mean_q) ** 2 / (2 * safe_std**2)).mean(dim=tuple(range(1, mean_p.dim())))
    return torch.where(sigma > 0, kl, torch.full_like(kl, float("nan")))


def ddim_step_with_logprob(
    scheduler: DDIMScheduler,
    model_output: torch.Tensor,
    timestep: int | torch.Tensor,
    sample: torch.Tensor,
    eta: float = 1.0,
    prev_sample: torch.Tensor | None = None,
    generator: NoiseSource = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step as a stochastic policy, with the log-density of the action.

    Args:
        scheduler: a ``DDIMScheduler`` after ``set_timesteps(K)``.
        model_output: eps_theta(x_t, t), shape (B, C, H, W).
        timestep: the train timestep t (int, 0-d tensor, or (B,) tensor; per-sample values allowed).
        sample: x_t, shape (B, C, H, W).
        eta: DDIM eta (1 = DDPM-like stochastic policy).
        prev_sample: the action x_{t_prev} to score; drawn from the policy when None.
        generator: noise source for drawing ``prev_sample`` (a generator or per-row streams).

    Returns:
        ``(prev_sample, log_prob)``: prev_sample (B, C, H, W) and log_prob (B,) = the MEAN over
        the non-batch dimensions of log N(prev_sample; mu, sigma^2). NaN where sigma = 0.
    """
    mean, sigma = ddim_step_mean(scheduler, model_output, timestep, sample, eta)
    if prev_sample is None:
        noise = noise_like(sample.shape, generator, sample.device).to(sample.dtype)
        prev_sample = mean + _per_row(sigma, sample) * noise
    return prev_sample, gaussian_log_prob(prev_sample, mean, sigma)


def trainable_steps(scheduler: DDIMScheduler, eta: float) -> list[bool]:
    """Per step index i: True where sigma_i > 0, i.e. the step has a defined log-prob."""
    return [step_sigma(scheduler, int(t), eta) > 0 for t in scheduler.timesteps]


@dataclass
class Trajectory:
    """A batch of rollouts from step index ``start`` to the end (K - start steps).

    states: (B, K - start + 1, C, H, W), states[:, j] is x at step index start + j (the last is x_0);
    log_probs: (B, K - start) of each recorded action (NaN for zero-variance steps);
    timesteps: (K - start,) train timesteps of the steps taken.
    """

    start: int
    states: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor
    cond: Condition | None = None  # each row's prompt (a prompted model), None for an unconditional one

    @property
    def final(self) -> torch.Tensor:
        """x_0, shape (B, C, H, W)."""
        return self.states[:, -1]


def unet_eps(unet: UNet2DModel, x: torch.Tensor, timestep: int | torch.Tensor, autocast_bf16: bool = False,
             cond: Condition | None = None):
    """eps_theta(x, t) as float32, optionally under bf16 autocast (CUDA; the CPU too, to measure its drift).

    ``timestep``: an int or a CPU tensor (0-d or (B,)); it reaches the device without a stream sync.
    ``autocast_bf16``: True (bf16), or the autocast dtype (``torch.bfloat16`` / ``torch.float16``).
    ``cond``: the rows' prompts of a prompted model: the guided eps, one UNet call (:mod:`hrf_core.models.guidance`).
    """
    if cond is not None:
        return cond.eps(unet, x, timestep, autocast_bf16)
    if isinstance(timestep, int):
        t = torch.full((x.shape[0],), timestep, device=x.device)
    else:
        t = torch.as_tensor(timestep).to(x.device, non_blocking=True)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
    if autocast_dtype(autocast_bf16) is not None:
        with torch.autocast(x.device.type, dtype=autocast_dtype(autocast_bf16)):
            return unet(x, t).sample.float()
    return unet(x, t).sample


def rollout(
    unet: UNet2DModel,
    scheduler: DDIMScheduler,
    x_start: torch.Tensor,
    start: int = 0,
    eta: float = 1.0,
    generator: NoiseSource = None,
    stop: StopCheck | None = None,
    record: bool = True,
    autocast_bf16: bool = False,
    early_unet: UNet2DModel | None = None,
    handover: int = 0,
    cond: Condition | None = None,
) -> Trajectory:
    """Sample with the policy from state ``x_start`` at step index ``start`` to x_0, under inference_mode.

    ``x_start`` is pure noise for start = 0, or a re-noised image (see :func:`renoise`).
    ``stop`` is checked before every UNet call; it raises :class:`StopRequested`.
    With ``record=False`` only the final state is kept (states has 2 entries; no log-probs).
    Hand-over sampling: steps with index < ``handover`` call ``early_unet`` (e.g. the base model),
    the rest call ``unet``; with the same noise, handover = 0 gives ``unet``'s samples exactly and
    handover = K ``early_unet``'s. ``cond``: the rows' prompts (a prompted model), kept in the trajectory.
    """
    if handover and early_unet is None:
        raise ValueError("handover > 0 needs early_unet")
    timesteps = scheduler.timesteps[start:]

    def eps_of(i: int, t: int, x: torch.Tensor, rows: None) -> torch.Tensor:
        if stop is not None and stop():
            raise StopRequested
        return unet_eps(early_unet if i < handover else unet, x, t, autocast_bf16, cond)

    def step(t: int, eps: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ddim_step_with_logprob(scheduler, eps, t, x, eta=eta, generator=generator)

    x = x_start
    states, log_probs = [x], []
    with torch.inference_mode():
        for _, x, log_prob in denoise(scheduler.timesteps, x_start, eps_of, step, start):
            if record:
                states.append(x)
                log_probs.append(log_prob)
    if not record:
        states = [x_start, x]
    empty = torch.empty(x.shape[0], 0, device=x.device)
    return Trajectory(
        start=start,
        states=torch.stack(states, dim=1),
        log_probs=torch.stack(log_probs, dim=1) if log_probs else empty,
        timesteps=timesteps.clone(),
        cond=cond,
    )


def renoise(
    scheduler: DDIMScheduler, x0: torch.Tensor, start: int, copies: int, generator: NoiseSource = None
) -> torch.Tensor:
    """Re-noise each image to step index ``start`` with ``copies`` independent noises (HRF's new prior).

    x_{t_s} = sqrt(abar_{t_s}) x0 + sqrt(1 - abar_{t_s}) eps  (diffusers' ``add_noise``).
    x0: (N, C, H, W) -> (N * copies, C, H, W), the copies of image n at rows n*copies .. n*copies+copies-1.
    """
    repeated = x0.repeat_interleave(copies, dim=0)
    noise = noise_like(repeated.shape, generator, x0.device).to(x0.dtype)
    t = scheduler.timesteps[start].reshape(1).expand(repeated.shape[0]).to(x0.device, non_blocking=True)
    # add_noise moves the scheduler's alphas_cumprod to the samples' device as a side effect; on a shallow
    # copy, the policy's own scheduler keeps its table on the host, where step_sigma reads it without a sync
    return copy.copy(scheduler).add_noise(repeated, noise, t)
