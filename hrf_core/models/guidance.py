"""Conditioning and classifier-free guidance (Ho & Salimans 2022) of a denoiser call.

A prompted model learns both eps(x, t, c) and, through a reserved "null" condition (the null class of a
class-conditional UNet, the empty prompt's text embedding of a text-to-image one), eps(x, t, null). Guided
sampling uses

    eps = eps_uncond + scale * (eps_cond - eps_uncond)

scale = 1 is the conditional model itself (one forward, no unconditional branch); scale > 1 sharpens each prompt
(at some cost in diversity); scale = 0 is the unconditional model. Like ddpo-pytorch and TRL, both branches come
from ONE batched forward (the batch concatenated with itself, the first half given the null condition). In
training, the gradient flows through both branches (ddpo-pytorch, TRL) or through the conditional one only
(``detach_uncond``, as Flow-GRPO).

A :class:`Condition` is the conditioning of a batch's rows (one prompt per row): a row tensor a model family
reads (class labels (B,), text embeddings (B, L, D)), the null condition, the scale, and how the family calls its
UNet. Rows can be selected (``cond[index]``) and repeated (siblings), so a rollout, an update's rows and a probe
each call the UNet with their own rows' prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

#: ``call(unet, x, t, condition_rows) -> eps``: how a model family feeds its condition to its UNet.
UNetCall = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def class_label_call(unet, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A class-conditional ``UNet2DModel``: the condition is its ``class_labels`` (B,)."""
    return unet(x, t, class_labels=labels).sample


def autocast_dtype(autocast: bool | torch.dtype | None) -> torch.dtype | None:
    """An ``autocast_bf16`` argument as the dtype UNet calls autocast to: True -> bfloat16 (the historical flag), a
    dtype (bfloat16 or float16) -> itself, False or None -> None (no autocast)."""
    if autocast is True:
        return torch.bfloat16
    return autocast or None


def timesteps_for(x: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """``t`` (an int, a 0-d or a (B,) tensor) as a (B,) tensor on ``x``'s device (a CPU tensor: no stream sync)."""
    if isinstance(t, int):
        return torch.full((x.shape[0],), t, device=x.device)
    steps = torch.as_tensor(t).to(x.device, non_blocking=True)
    return steps.expand(x.shape[0]) if steps.dim() == 0 else steps


def guided(call: UNetCall, unet, x: torch.Tensor, t: int | torch.Tensor, rows: torch.Tensor, null: torch.Tensor,
           scale: float, autocast_bf16: bool = False, detach_uncond: bool = False) -> torch.Tensor:
    """The guided eps (B, C, H, W) for condition ``rows`` (B, ...) against ``null`` (one row, (1, ...) or 0-d).

    Exactly one UNet call: of batch B when ``scale`` == 1 (the conditional eps exactly), else of batch 2B (rows
    [:B] the null condition, [B:] the rows'). At least float32 (float64 for a float64 UNet).
    """
    batch = x.shape[0]
    steps = timesteps_for(x, t)
    rows = rows.to(x.device, non_blocking=True)
    if rows.shape[0] != batch:
        raise ValueError(f"the condition has {rows.shape[0]} rows for a batch of {batch}")
    if scale == 1:
        x_in, t_in, c_in = x, steps, rows
    else:
        nulls = null.to(device=x.device, dtype=rows.dtype).reshape(1, *rows.shape[1:]).expand_as(rows)
        x_in, t_in, c_in = torch.cat([x, x]), torch.cat([steps, steps]), torch.cat([nulls, rows])
    dtype = autocast_dtype(autocast_bf16)
    with torch.autocast(x.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        eps = call(unet, x_in, t_in, c_in)
    eps = eps.to(torch.promote_types(eps.dtype, torch.float32))
    if scale == 1:
        return eps
    eps_uncond, eps_cond = eps.chunk(2)
    if detach_uncond:
        eps_uncond = eps_uncond.detach()
    return eps_uncond + scale * (eps_cond - eps_uncond)


@dataclass(frozen=True)
class Condition:
    """The conditioning of a batch's rows: their prompts, the rows the UNet reads, the null condition, the
    guidance scale and whether the unconditional branch is detached in training."""

    prompts: tuple[str, ...]  # (B,) each row's prompt, as the run names it
    rows: torch.Tensor  # (B, ...) what the UNet reads per row (CPU; moved per call)
    null: torch.Tensor  # the null condition, one row
    call: UNetCall
    scale: float = 1.0
    detach_uncond: bool = False

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: torch.Tensor | Sequence[int] | slice) -> Condition:
        """The condition of the rows ``index`` selects (a slice, or integer indices in any order)."""
        if isinstance(index, slice):
            picked = list(range(len(self)))[index]
        else:
            picked = [int(i) for i in torch.as_tensor(index).reshape(-1).tolist()]
        return replace(self, prompts=tuple(self.prompts[i] for i in picked), rows=self.rows[picked])

    def repeat_interleave(self, copies: int) -> Condition:
        """Each row ``copies`` times in a row (re-noised siblings share their image's prompt)."""
        return replace(self, prompts=tuple(p for p in self.prompts for _ in range(copies)),
                       rows=self.rows.repeat_interleave(copies, dim=0))

    @staticmethod
    def cat(conditions: Sequence[Condition]) -> Condition:
        first = conditions[0]
        return replace(first, prompts=tuple(p for c in conditions for p in c.prompts),
                       rows=torch.cat([c.rows for c in conditions]))

    def eps(self, unet, x: torch.Tensor, t: int | torch.Tensor, autocast_bf16: bool = False) -> torch.Tensor:
        """The guided eps of these rows at ``x`` (B, C, H, W), one UNet call."""
        return guided(self.call, unet, x, t, self.rows, self.null, self.scale, autocast_bf16, self.detach_uncond)


def guided_eps(unet, x: torch.Tensor, t: int | torch.Tensor, labels: int | torch.Tensor, scale: float,
               null_label: int, autocast_bf16: bool = False, detach_uncond: bool = False) -> torch.Tensor:
    """The classifier-free guided eps (B, C, H, W) of a class-conditional diffusers UNet.

    Args:
        unet: a UNet taking ``class_labels`` (e.g. ``UNet2DModel(..., num_class_embeds=N)``).
        x: the noisy images x_t, (B, C, H, W).
        t: the train timestep: an int, a 0-d tensor or a (B,) tensor (per-row values allowed), like
            :func:`hrf_core.rl.policy.unet_eps`; a CPU tensor reaches the device without a stream sync.
        labels: the prompted classes: an int or a (B,) / 0-d integer tensor.
        scale: the guidance scale w in eps_u + w (eps_c - eps_u); scale == 1 skips the unconditional
            branch (one forward of batch B: the conditional eps exactly).
        null_label: the class index trained as "no class" (digits16-cond: 10).
        autocast_bf16: run the forward under bf16 autocast (the combination stays in float32).

    Returns:
        eps (B, C, H, W), at least float32 (float64 for a float64 UNet). Exactly one UNet call, of
        batch 2B when scale != 1 (rows [:B] unconditional, [B:] conditional).
    """
    cond = torch.as_tensor(labels, dtype=torch.long)
    if cond.dim() == 0:
        cond = cond.expand(x.shape[0])
    if cond.shape != (x.shape[0],):
        raise ValueError(f"labels has shape {tuple(cond.shape)} for a batch of {x.shape[0]}")
    return guided(class_label_call, unet, x, t, cond, torch.tensor(null_label), scale, autocast_bf16, detach_uncond)
