"""The DDIM sampling loop: the one place that walks a scheduler's time grid (Song et al. 2021).

Step index i = 0 (pure noise, ``timesteps[0]``) .. K-1 (the step that yields x_0). At each step the caller's
``eps_of`` gives eps_theta(x_t, t) and its ``step`` maps x_t to x_{t_prev} (diffusers' ``DDIMScheduler.step``,
or the policy's Gaussian step that also scores the action, :func:`hrf_core.rl.policy.ddim_step_with_logprob`).
Which network a step calls, the noise it draws, what is recorded and when to stop belong to the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

#: ``eps_of(i, t, x, rows) -> eps``: the denoiser's eps (B', C, H, W) at step index i, train timestep t, for the
#: states ``x`` (B', C, H, W) of ``rows`` (None: every row; else the (B',) indices of the rows that step).
EpsOf = Callable[[int, int, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
#: ``step(t, eps, x) -> (x_prev, extra)``: one DDIM step of those states; ``extra`` is yielded as it is.
Step = Callable[[int, torch.Tensor, torch.Tensor], "tuple[torch.Tensor, Any]"]


def denoise(timesteps: torch.Tensor, x: torch.Tensor, eps_of: EpsOf, step: Step, start: int = 0,
            starts: torch.Tensor | None = None) -> Iterator[tuple[int, torch.Tensor, Any]]:
    """Walk ``timesteps`` (the scheduler's K, after ``set_timesteps(K)``) from step index ``start`` to x_0,
    yielding ``(i, x, extra)`` after each step i.

    Every row steps (``x`` is rebound, the caller's tensor untouched), or, with ``starts`` (B,): staggered
    starts on one grid, where at step i only the rows with ``starts <= i`` step, written into ``x`` in place
    (a step no row takes yields nothing).
    """
    for i, t in enumerate(timesteps[start:], start=start):
        t = int(t)
        if starts is None:
            x, extra = step(t, eps_of(i, t, x, None), x)
        else:
            active = (starts <= i).nonzero().squeeze(1)
            if len(active) == 0:
                continue
            x[active], extra = step(t, eps_of(i, t, x[active], active), x[active])
        yield i, x, extra
