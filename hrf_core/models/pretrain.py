"""Reproducible pretraining of the embedded default models in `checkpoints/`.

- `digits16`: a 1.1M-parameter diffusers `UNet2DModel` DDPM on the 16x16 UCI digits (train split),
  saved in diffusers layout (`unet/`, `scheduler/` holding a `DDIMScheduler` config), plus
  `training.json` (recipe, seed, time, quality) and a `README.md` model card.
- `digits16-cond`: the same UNet with class embeddings (digits 0-9 plus a null class 10 for
  classifier-free guidance, see `hrf_core.models.guidance`), trained by the same `train_ddpm(conditional=True)`;
  its card holds a guidance sweep of the samples' quality.
- `digits16-classifier`: the `DigitClassifier` CNN (`model.safetensors` + `config.json`) and its card.

The classifier's training, the samples' quality (its Inception Score) and the cards are
`hrf_core.study.digits_quality`'s: they measure the models made here.

Usage: `python -m hrf_core pretrain {digits16,digits16-cond,digits16-classifier} [--out DIR] [--seed N]`
(also `python -m hrf_core pretrain NAME`). CPU only by default; everything is seeded.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hrf_core import CHECKPOINTS_DIR
from hrf_core.models.ddim import denoise
from hrf_core.models.digits import (
    HELDOUT_FRACTION,
    IMAGE_SIZE,
    NUM_CLASSES,
    SPLIT_SEED,
    augment,
    load_split,
)
from hrf_core.models.guidance import guided_eps

CHECKPOINTS = CHECKPOINTS_DIR
NAMES = ("digits16", "digits16-cond", "digits16-classifier")

UNET_CONFIG: dict[str, Any] = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 1,
    "out_channels": 1,
    "layers_per_block": 1,
    "block_out_channels": (32, 64, 64),
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
}
DDPM_RECIPE: dict[str, Any] = {
    "steps": 3200,
    "batch_size": 64,
    "lr": 1e-3,
    "warmup_steps": 200,
    "min_lr_fraction": 0.05,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "ema_decay": 0.999,
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "augment": {"max_shift": 0.5, "max_rot_deg": 5.0, "max_scale": 0.05},
}
#: digits16-cond: the digits16 recipe plus class labels (0-9, null class 10 = `num_class_embeds - 1`), each
#: replaced by the null class with probability p_uncond (Ho & Salimans 2022 found 0.1-0.2 best).
COND_DDPM_RECIPE: dict[str, Any] = {**DDPM_RECIPE, "steps": 6000, "num_class_embeds": NUM_CLASSES + 1,
                                    "p_uncond": 0.15}


# ----------------------------------------------------------------------------- helpers


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warmup for `warmup` steps, then cosine decay to `floor` (fractions of the base lr)."""
    if step < warmup:
        return (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def save_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def environment() -> dict[str, str]:
    import diffusers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
            "machine": f"{platform.machine()} CPU, torch threads={torch.get_num_threads()}"}


# ----------------------------------------------------------------------------- DDPM


def make_unet(num_class_embeds: int | None = None) -> Any:
    """The digits16 `UNet2DModel` (random init; ~1.11M parameters), class-conditional with `num_class_embeds`."""
    from diffusers import UNet2DModel

    return UNet2DModel(**UNET_CONFIG, num_class_embeds=num_class_embeds)


def make_ddim_scheduler(num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2") -> Any:
    """The sampling `DDIMScheduler`: x0 clipped to [-1, 1], non-zero variance at every DDIM step."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         prediction_type="epsilon", clip_sample=True, clip_sample_range=1.0,
                         set_alpha_to_one=False, steps_offset=1)


def train_ddpm(out: Path, seed: int = 0, recipe: dict[str, Any] | None = None, log_every: int = 100,
               device: str | torch.device = "cpu", conditional: bool = False) -> dict[str, Any]:
    """Train the digits16 DDPM (epsilon-prediction MSE, EMA weights saved) into `out`; returns training info.

    `conditional`: digits16-cond (recipe `COND_DDPM_RECIPE`): the digit labels go to the UNet as `class_labels`,
    each replaced by the null class `num_class_embeds - 1` with probability `p_uncond` (classifier-free guidance).
    Random draws come from a CPU generator seeded with `seed`, so the data stream is device-independent.
    """
    from diffusers import DDPMScheduler

    r = {**(COND_DDPM_RECIPE if conditional else DDPM_RECIPE), **(recipe or {})}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = load_split("train")
    null_label = r["num_class_embeds"] - 1 if conditional else None
    unet = make_unet(r["num_class_embeds"] if conditional else None).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise_sched = DDPMScheduler(num_train_timesteps=r["num_train_timesteps"], beta_schedule=r["beta_schedule"])
    opt = torch.optim.AdamW(unet.parameters(), lr=r["lr"], weight_decay=r["weight_decay"], foreach=True)
    params, ema_params = list(unet.parameters()), list(ema.parameters())
    unet.train()
    t0, running = time.time(), 0.0
    for step in range(r["steps"]):
        for group in opt.param_groups:
            group["lr"] = r["lr"] * lr_factor(step, r["steps"], r["warmup_steps"], r["min_lr_fraction"])
        idx = torch.randint(0, len(x_train), (r["batch_size"],), generator=gen)
        x0 = augment(x_train[idx], gen, **r["augment"])
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, r["num_train_timesteps"], (len(x0),), generator=gen)
        labels = None
        if conditional:  # drawn after the unconditional stream's draws, which stay digits16's
            drop = torch.rand(len(x0), generator=gen) < r["p_uncond"]
            labels = torch.where(drop, null_label, y_train[idx]).to(device)
        x0, noise, t = x0.to(device), noise.to(device), t.to(device)
        loss = F.mse_loss(unet(noise_sched.add_noise(x0, noise, t), t, class_labels=labels).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, r["grad_clip"], foreach=True)
        opt.step()
        decay = min(r["ema_decay"], (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)  # EMA: e <- e + (1 - decay) (p - e)
        running += loss.item()
        if (step + 1) % log_every == 0:
            el = time.time() - t0
            print(f"step {step + 1}/{r['steps']} loss {running / log_every:.4f} "
                  f"{el:.0f}s elapsed, eta {el / (step + 1) * (r['steps'] - step - 1):.0f}s", flush=True)
            running = 0.0
    train_seconds = time.time() - t0
    out.mkdir(parents=True, exist_ok=True)
    ema.eval().cpu().save_pretrained(str(out / "unet"), safe_serialization=True)
    make_ddim_scheduler(r["num_train_timesteps"], r["beta_schedule"]).save_pretrained(str(out / "scheduler"))
    info = {
        "model": "digits16-cond" if conditional else "digits16",
        "data": {"source": "sklearn.datasets.load_digits (UCI), 8x8 -> 16x16 bilinear, [-1,1]",
                 "split": "train", "split_seed": SPLIT_SEED, "heldout_fraction": HELDOUT_FRACTION,
                 "n_train": len(x_train)},
        "seed": seed,
        "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()},
        **({"conditioning": {"num_class_embeds": r["num_class_embeds"], "null_label": null_label,
                             "p_uncond": r["p_uncond"], "classes": "digits 0-9; the null class is 'no class' (CFG)"}}
           if conditional else {}),
        "params": sum(p.numel() for p in ema.parameters()),
        "train_seconds": round(train_seconds, 1),
        "final_loss": round(loss.item(), 4),
        "env": environment(),
        "quality": None,
    }
    save_json(out / "training.json", info)
    return info


def load_digits_ddpm(path: str | Path = CHECKPOINTS / "digits16",
                     device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """(UNet2DModel in eval mode, DDIMScheduler) from a digits16-style diffusers folder (safetensors only)."""
    from diffusers import DDIMScheduler, UNet2DModel

    path = Path(path)
    unet = UNet2DModel.from_pretrained(str(path / "unet"), use_safetensors=True).to(device).eval()
    return unet, DDIMScheduler.from_pretrained(str(path / "scheduler"))


def sample_ddim(unet: Any, scheduler: Any, n: int, steps: int = 40, eta: float = 1.0, seed: int = 0,
                batch: int = 250, labels: torch.Tensor | None = None, guidance: float = 1.0,
                null_label: int | None = None) -> torch.Tensor:
    """Sample `n` images (n, C, H, W) in [-1, 1] on CPU with `steps` DDIM steps and noise level `eta`, seeded.

    Batches of `batch` share one generator (on the UNet's device), so a seed fixes the whole set.
    Class-conditional UNet: `labels` (n,) prompts row i with class labels[i], sampled with classifier-free
    `guidance` (`hrf_core.models.guidance.guided_eps`; 1 = the conditional model) against `null_label` (default:
    the last class embedding). The same seed gives the same start noise whatever the labels and guidance.
    """
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != (n,):
            raise ValueError(f"labels has shape {tuple(labels.shape)} for {n} samples")
        null_label = unet.config.num_class_embeds - 1 if null_label is None else null_label
    dev = next(unet.parameters()).device
    gen = torch.Generator(dev).manual_seed(seed)
    cfg = unet.config
    scheduler.set_timesteps(steps)
    out = []

    def step(t: int, eps: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return scheduler.step(eps, t, x, eta=eta, generator=gen).prev_sample, None

    with torch.inference_mode():
        for i in range(0, n, batch):
            shape = (min(batch, n - i), cfg.in_channels, cfg.sample_size, cfg.sample_size)
            x = torch.randn(shape, generator=gen, device=dev)
            prompted = None if labels is None else labels[i:i + len(x)]

            def eps_of(_i: int, t: int, x: torch.Tensor, _rows, prompted=prompted) -> torch.Tensor:
                return (unet(x, t).sample if prompted is None
                        else guided_eps(unet, x, t, prompted, guidance, null_label))

            for _, x_prev, _ in denoise(scheduler.timesteps, x, eps_of, step):
                x = x_prev
            out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out).clone()  # a normal tensor, usable outside inference mode
