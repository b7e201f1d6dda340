"""HRF-D: the start step is found every ``hrfd_every`` epochs by probing re-noised starts; it trains to K.

For candidates s in {0, stride, 2 stride, ...} < K: re-noise each probe image to s (``copies`` noises),
denoise deterministically (eta = 0) to x_0; R(s) = mean reward, D(s) = mean cosine distance between the
prediction and the image. With k over consecutive candidates,

    score_k = minmax(R(s_{k+1}) - R(s_k)) - beta * minmax(D(s_{k+1})),

averaged over images; the start is s_{k*+1} for k* = argmax score (our reading of the paper's "s_argmax":
the candidate that the reward gain leads to).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hrf_core.methods.base import Method, StartState
from hrf_core.methods.hrf import ddpo_partner

if TYPE_CHECKING:
    import torch
    from diffusers import DDIMScheduler, UNet2DModel

    from hrf_core.config import TrainConfig
    from hrf_core.rl.policy import StopCheck


class HRFD(Method):
    name = "hrf-d"
    label = "HRF-D"
    help = "HRF-D picks the start step itself each epoch (reward gain vs. distance): the window is ignored."
    color = "#2ca02c"
    settings = ("hrfd_stride", "hrfd_beta", "hrfd_probe_images", "hrfd_every")

    def partner(self, config: TrainConfig) -> TrainConfig:
        return ddpo_partner(config)

    def window(self, config: TrainConfig, epoch: int) -> tuple[int, int]:
        raise ValueError(f"method {self.name!r} has no fixed window")

    def window_end(self, config: TrainConfig, epoch: int) -> int:
        return config.num_steps

    def starts(self, config: TrainConfig, epoch: int, batches: int, generator: torch.Generator,
               state: StartState) -> list[int]:
        return [state.start] * batches

    def window_only_start(self, config: TrainConfig, epoch: int, state: StartState) -> int:
        """The smallest dynamic start chosen so far (K before any)."""
        return config.num_steps if state.earliest is None else state.earliest

    def prepare_epoch(self, trainer: Any, epoch: int) -> None:
        """Every ``hrfd_every`` epochs (and before the first): rank 0 probes the first batch's images; every rank
        receives the start."""
        c = trainer.config
        if (epoch - 1) % c.hrfd_every != 0 and trainer.start_state.start is not None:
            return
        found = None
        if trainer.dist.is_main:
            trainer.phase = f"epoch {epoch}: HRF-D probing start steps"
            probe = trainer.images_of(epoch, 0)[: c.hrfd_probe_images]
            prompts = trainer.image_prompts(epoch, 0)
            cond = trainer.prompts.condition(prompts[: c.hrfd_probe_images]) if prompts else None
            reward = lambda x, *prompts: trainer.reward_fn(trainer.base.decode(x), *prompts)  # noqa: E731
            found = dynamic_start(trainer.unet, trainer.scheduler, probe, reward, c.hrfd_stride, c.hrfd_beta,
                                  c.siblings, trainer.epoch_generator(epoch, "probe", trainer.device),
                                  trainer.stop_check, cond)
        trainer.start_state.record(*trainer.dist.broadcast_object(found))

    def epoch_notes(self, state: StartState) -> dict:
        return {"hrfd": state.info} if state.info else {}

    def schedule(self, config: dict) -> str:
        every, k = config.get("hrfd_every", 1), config.get("num_steps")
        return f"from a start step found every {every} epoch(s) to K = {k} (HRF-D)"


def minmax(values: torch.Tensor) -> torch.Tensor:
    """Rescale to [0, 1] (all zeros when constant)."""
    import torch

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
    import torch

    from hrf_core.models.ddim import denoise
    from hrf_core.rl.policy import StopRequested, ddim_step_with_logprob, renoise, unet_eps

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
