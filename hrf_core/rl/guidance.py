"""Classifier-free guidance (Ho & Salimans 2022) for class-conditional UNets such as `digits16-cond`.

One conditional UNet learns both eps(x, t, c) and, through a reserved null class, eps(x, t, null)
(labels are replaced by the null class with probability p_uncond during training). Guided sampling
uses

    eps = eps_uncond + scale * (eps_cond - eps_uncond)

scale = 1 is the conditional model itself; scale > 1 sharpens each class (at some cost in diversity);
scale = 0 is the unconditional model. Like ddpo-pytorch and TRL, both branches come from ONE batched
forward (the batch is concatenated with itself, the first half labelled with the null class).
"""

from __future__ import annotations

import torch


def guided_eps(unet, x: torch.Tensor, t: int | torch.Tensor, labels: int | torch.Tensor, scale: float,
               null_label: int, autocast_bf16: bool = False) -> torch.Tensor:
    """The classifier-free guided eps (B, C, H, W) of a class-conditional diffusers UNet.

    Args:
        unet: a UNet taking ``class_labels`` (e.g. ``UNet2DModel(..., num_class_embeds=N)``).
        x: the noisy images x_t, (B, C, H, W).
        t: the train timestep: an int, a 0-d tensor or a (B,) tensor (per-row values allowed), like
            :func:`hrf_core.policy.unet_eps`; a CPU tensor reaches the device without a stream sync.
        labels: the prompted classes: an int or a (B,) / 0-d integer tensor.
        scale: the guidance scale w in eps_u + w (eps_c - eps_u); scale == 1 skips the unconditional
            branch (one forward of batch B: the conditional eps exactly).
        null_label: the class index trained as "no class" (digits16-cond: 10).
        autocast_bf16: run the forward under bf16 autocast (the combination stays in float32).

    Returns:
        eps (B, C, H, W), at least float32 (float64 for a float64 UNet). Exactly one UNet call, of
        batch 2B when scale != 1 (rows [:B] unconditional, [B:] conditional).
    """
    batch = x.shape[0]
    if isinstance(t, int):
        steps = torch.full((batch,), t, device=x.device)
    else:
        steps = torch.as_tensor(t).to(x.device, non_blocking=True)
        if steps.dim() == 0:
            steps = steps.expand(batch)
    cond = torch.as_tensor(labels, dtype=torch.long).to(x.device, non_blocking=True)
    if cond.dim() == 0:
        cond = cond.expand(batch)
    if cond.shape != (batch,):
        raise ValueError(f"labels has shape {tuple(cond.shape)} for a batch of {batch}")
    if scale == 1:
        x_in, t_in, c_in = x, steps, cond
    else:
        x_in, t_in = torch.cat([x, x]), torch.cat([steps, steps])
        c_in = torch.cat([torch.full_like(cond, null_label), cond])
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
        eps = unet(x_in, t_in, class_labels=c_in).sample
    eps = eps.to(torch.promote_types(eps.dtype, torch.float32))
    if scale == 1:
        return eps
    eps_uncond, eps_cond = eps.chunk(2)
    return eps_uncond + scale * (eps_cond - eps_uncond)
