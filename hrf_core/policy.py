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
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, UNet2DModel


class StopRequested(Exception):
    """Raised inside a rollout or an update when the caller's stop event is set."""


StopCheck = Callable[[], bool]


def noise_like(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, moved to ``device`` (without a stream sync)."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device, non_blocking=True)


def step_sigma(scheduler: DDIMScheduler, timestep: int, eta: float) -> float:
    """sigma_i = eta * sqrt(variance(t, t_prev)) of the DDIM step at ``timestep`` (eq. 16)."""
    prev_timestep = timestep - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    variance = float(scheduler._get_variance(timestep, prev_timestep))
    return eta * math.sqrt(max(variance, 0.0))


def ddim_step_with_logprob(
    scheduler: DDIMScheduler,
    model_output: torch.Tensor,
    timestep: int | torch.Tensor,
    sample: torch.Tensor,
    eta: float = 1.0,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step as a stochastic policy, with the log-density of the action.

    Args:
        scheduler: a ``DDIMScheduler`` after ``set_timesteps(K)``.
        model_output: eps_theta(x_t, t), shape (B, C, H, W).
        timestep: the train timestep t (int, 0-d tensor, or (B,) tensor; per-sample values allowed).
        sample: x_t, shape (B, C, H, W).
        eta: DDIM eta (1 = DDPM-like stochastic policy).
        prev_sample: the action x_{t_prev} to score; drawn from the policy when None.
        generator: RNG for drawing ``prev_sample``.

    Returns:
        ``(prev_sample, log_prob)``: prev_sample (B, C, H, W) and log_prob (B,) = the MEAN over
        the non-batch dimensions of log N(prev_sample; mu, sigma^2). NaN where sigma = 0.
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
    sigma = sigma.to(sample.device, non_blocking=True)

    shape = (batch,) + (1,) * (sample.dim() - 1)
    std = sigma.reshape(shape)
    if prev_sample is None:
        prev_sample = mean + std * noise_like(sample.shape, generator, sample.device).to(sample.dtype)

    # log N(x; mu, sigma^2) = -(x - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi), per element
    safe_std = torch.where(std > 0, std, torch.ones_like(std))
    log_density = (
        -((prev_sample.detach() - mean) ** 2) / (2 * safe_std**2)
        - torch.log(safe_std)
        - 0.5 * math.log(2 * math.pi)
    )
    log_prob = log_density.mean(dim=tuple(range(1, sample.dim())))
    log_prob = torch.where(sigma > 0, log_prob, torch.full_like(log_prob, float("nan")))
    return prev_sample, log_prob


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

    @property
    def final(self) -> torch.Tensor:
        """x_0, shape (B, C, H, W)."""
        return self.states[:, -1]


def unet_eps(unet: UNet2DModel, x: torch.Tensor, timestep: int | torch.Tensor, autocast_bf16: bool = False):
    """eps_theta(x, t) as float32, optionally under CUDA bf16 autocast.

    ``timestep``: an int or a CPU tensor (0-d or (B,)); it reaches the device without a stream sync.
    """
    if isinstance(timestep, int):
        t = torch.full((x.shape[0],), timestep, device=x.device)
    else:
        t = torch.as_tensor(timestep).to(x.device, non_blocking=True)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
    if autocast_bf16 and x.device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return unet(x, t).sample.float()
    return unet(x, t).sample


def rollout(
    unet: UNet2DModel,
    scheduler: DDIMScheduler,
    x_start: torch.Tensor,
    start: int = 0,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    stop: StopCheck | None = None,
    record: bool = True,
    autocast_bf16: bool = False,
) -> Trajectory:
    """Sample with the policy from state ``x_start`` at step index ``start`` to x_0, under inference_mode.

    ``x_start`` is pure noise for start = 0, or a re-noised image (see :func:`renoise`).
    ``stop`` is checked before every UNet call; it raises :class:`StopRequested`.
    With ``record=False`` only the final state is kept (states has 2 entries; no log-probs).
    """
    timesteps = scheduler.timesteps[start:]
    x = x_start
    states, log_probs = [x], []
    with torch.inference_mode():
        for t in timesteps:
            if stop is not None and stop():
                raise StopRequested
            eps = unet_eps(unet, x, int(t), autocast_bf16)
            x, log_prob = ddim_step_with_logprob(scheduler, eps, int(t), x, eta=eta, generator=generator)
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
    )


def renoise(
    scheduler: DDIMScheduler, x0: torch.Tensor, start: int, copies: int, generator: torch.Generator | None = None
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
