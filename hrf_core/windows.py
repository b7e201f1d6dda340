"""Windows of trained denoising steps: which steps each batch starts from and trains.

A window is [start, end) over DDIM step indices 0..K-1 (0 = pure noise). A batch whose start
index is s is rolled out from a state at step s and trains steps s..end-1; steps >= end are
sampled, not trained. Methods:

- ``ddpo``: s = 0 from pure noise, every step trained (end = K);
- ``hrf``: one window; s ~ U{start..end-1} per batch (``start_mode="uniform"``) or s = start;
- ``hrf-sliding``: clusters (start, end, epochs) active one after the other (the paper's clusters),
  s ~ U within the active cluster; the last cluster stays active past its epochs;
- ``hrf-d``: s from the dynamic finder (:func:`dynamic_start`), end = K.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, UNet2DModel

from hrf_core.config import TrainConfig
from hrf_core.policy import StopCheck, StopRequested, ddim_step_with_logprob, renoise, unet_eps


def active_window(config: TrainConfig, epoch: int) -> tuple[int, int]:
    """The window [start, end) that epoch ``epoch`` (1-based) draws its starts from (not for hrf-d)."""
    k = config.num_steps
    if config.method == "ddpo":
        return (0, k)
    if config.method == "hrf":
        return tuple(config.window)
    if config.method == "hrf-sliding":
        start, end, _ = clusters_reached(config, epoch)[-1]
        return (start, end)
    raise ValueError(f"method {config.method!r} has no fixed window")


def clusters_reached(config: TrainConfig, epoch: int) -> list[tuple[int, int, int]]:
    """HRF sliding: the clusters active up to epoch ``epoch`` (1-based), the active one last; the last cluster
    stays active past its epochs."""
    passed = 0
    for i, (_, _, epochs) in enumerate(config.clusters):
        passed += epochs
        if epoch <= passed:
            return list(config.clusters[: i + 1])
    return list(config.clusters)


def sampling_handover(config: TrainConfig, epoch: int, earliest_dynamic: int | None = None) -> int:
    """The step index S from which the fine-tuned network samples in epoch ``epoch`` (1-based); the base
    model samples steps < S. 0 (the tuned network everywhere) unless ``config.outside_window == "base"``.

    Window-only sampling keeps every step the run has not yet trained the base model's:

    - ``hrf``: S = the window's start;
    - ``hrf-sliding``: S = the smallest start among the clusters reached by ``epoch`` (a step trained in
      an earlier cluster stays tuned);
    - ``hrf-d``: S = ``earliest_dynamic``, the smallest dynamic start chosen up to this epoch (K before any).
    """
    if config.outside_window != "base" or config.method == "ddpo" or epoch < 1:
        return 0
    if config.method == "hrf":
        return config.window[0]
    if config.method == "hrf-sliding":
        return min(start for start, _, _ in clusters_reached(config, epoch))
    if config.method == "hrf-d":
        return config.num_steps if earliest_dynamic is None else earliest_dynamic
    raise ValueError(f"unknown method {config.method!r}")


def draw_start(config: TrainConfig, window: tuple[int, int], generator: torch.Generator) -> int:
    """A batch's start index in ``window``: uniform per batch, or the window start when fixed."""
    start, end = window
    if config.method == "ddpo" or config.start_mode == "fixed":
        return start
    return int(torch.randint(start, end, (1,), generator=generator).item())


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
) -> tuple[int, dict]:
    """HRF-D's start index for trajectory-of-interest ``images`` (N, C, H, W) in [-1, 1].

    For candidates s in {0, stride, 2 stride, ...} < K: re-noise each image to s (``copies`` noises),
    denoise deterministically (eta = 0) to x_0; R(s) = mean reward, D(s) = mean cosine distance
    between the prediction and the image. With k over consecutive candidates,

        score_k = minmax(R(s_{k+1}) - R(s_k)) - beta * minmax(D(s_{k+1})),

    averaged over images; the start is s_{k*+1} for k* = argmax score (our reading of "s_argmax":
    the candidate that the reward gain leads to). All candidates share the DDIM time grid, so they
    are denoised together: at step i only the rows with s <= i call the UNet.
    Returns (start, diagnostics with the candidates, R, D and scores).
    """
    k = len(scheduler.timesteps)
    candidates = list(range(0, k, stride))
    n, rows_per_candidate = images.shape[0], images.shape[0] * copies
    with torch.inference_mode():
        x = torch.cat([renoise(scheduler, images, s, copies, generator) for s in candidates])
        starts = torch.tensor(candidates, device=images.device).repeat_interleave(rows_per_candidate)
        for i, t in enumerate(scheduler.timesteps):
            active = (starts <= i).nonzero().squeeze(1)
            if stop is not None and stop():
                raise StopRequested
            eps = unet_eps(unet, x[active], int(t))
            x[active], _ = ddim_step_with_logprob(scheduler, eps, int(t), x[active], eta=0.0)
        rewards = reward_fn(x).float().cpu().reshape(len(candidates), n, copies).mean(dim=2)  # (S, N)
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
