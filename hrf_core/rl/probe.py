"""HRF-D's probe: which start step a re-noised image gains the most reward from, for the distance it travels.

For candidates s in {0, stride, 2 stride, ...} < K: re-noise each probe image to s (``copies`` noises),
denoise deterministically (eta = 0) to x_0; R(s) = mean reward, D(s) = mean cosine distance between the
prediction and the image. With k over consecutive candidates,

    score_k = minmax(R(s_{k+1}) - R(s_k)) - beta * minmax(D(s_{k+1})),

averaged over images; the start is s_{k*+1} for k* = argmax score (our reading of the paper's "s_argmax":
the candidate that the reward gain leads to). The method (:mod:`hrf_core.methods.hrf_d`) decides when to probe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from hrf_core.models.ddim import denoise
from hrf_core.rl.policy import StopCheck, StopRequested, ddim_step_with_logprob, renoise, unet_eps

if TYPE_CHECKING:
    from diffusers import DDIMScheduler, UNet2DModel


def minmax(values: torch.Tensor) -> torch.Tensor:
    """Rescale to [0, 1] (all zeros when constant)."""
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else torch.zeros_like(values)


def dynamic_start(
    unet: UNet2DModel,
    scheduler: DDIMScheduler,
    images: torch.Tensor,
    reward_fn: Callable[[torch.Tensor], torch.Tensor],
    stride: int,
    beta: float,
    copies: int,
    generator: torch.Generator,
    stop: StopCheck | None = None,
    cond=None,
) -> tuple[int, dict]:
    """HRF-D's start index for trajectory-of-interest ``images`` (N, C, H, W) in [-1, 1] (see the module).

    All candidates share the DDIM time grid, so they are denoised together: at step i only the rows with
    s <= i call the UNet. ``cond``: the images' prompts (a prompted run), each probe row keeps its image's.
    Returns (start, diagnostics with the candidates, R, D and scores).
    """
    k = len(scheduler.timesteps)
    candidates = list(range(0, k, stride))
    n, rows_per_candidate = images.shape[0], images.shape[0] * copies
    with torch.inference_mode():
        x = torch.cat([renoise(scheduler, images, s, copies, generator) for s in candidates])
        starts = torch.tensor(candidates, device=images.device).repeat_interleave(rows_per_candidate)
        rows = None if cond is None else cond.cat([cond.repeat_interleave(copies)] * len(candidates))

        def eps_of(i: int, t: int, states: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
            if stop is not None and stop():
                raise StopRequested
            return unet_eps(unet, states, t, cond=None if rows is None else rows[active.cpu()])

        for _ in denoise(scheduler.timesteps, x, eps_of,
                         lambda t, eps, states: ddim_step_with_logprob(scheduler, eps, t, states, eta=0.0),
                         starts=starts):
            pass  # x is stepped in place
        scored = reward_fn(x) if rows is None else reward_fn(x, list(rows.prompts))
        rewards = scored.float().cpu().reshape(len(candidates), n, copies).mean(dim=2)  # (S, N)
        target = images.repeat_interleave(copies, dim=0).flatten(1).repeat(len(candidates), 1)
        cosine = torch.nn.functional.cosine_similarity(x.flatten(1), target, dim=1)
        distance = (1 - cosine).float().cpu().reshape(len(candidates), n, copies).mean(dim=2)  # (S, N)
    if len(candidates) < 2:
        return candidates[0], {"candidates": candidates}
    scores = torch.stack([
        minmax(rewards[1:, j] - rewards[:-1, j]) - beta * minmax(distance[1:, j]) for j in range(n)
    ]).mean(dim=0)  # (S - 1,)
    best = int(scores.argmax())
    return candidates[best + 1], {
        "candidates": candidates,
        "reward": rewards.mean(dim=1).tolist(),
        "distance": distance.mean(dim=1).tolist(),
        "score": scores.tolist(),
    }
