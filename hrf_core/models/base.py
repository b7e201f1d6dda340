"""A loaded diffusion model (:class:`BaseModel`) and the readers of a diffusers folder's parts: configs, the
UNet (safetensors only) and its DDIM scheduler. :mod:`hrf_core.models.registry` resolves names to folders and
asks :mod:`hrf_core.models.families` which family a folder is; the families (a pixel UNet: this class;
:mod:`hrf_core.models.latent`) build on these."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import DDIMScheduler, UNet2DModel

from hrf_core.models.conditioning import is_text_conditioned
from hrf_core.models.weights import UNET_SAFETENSORS, check_safetensors
from hrf_core.store.files import one_line


@dataclass
class BaseModel:
    """A loaded diffusion model: the UNet (eval mode, on ``device``) and its DDIM scheduler."""

    name: str
    unet: UNet2DModel
    scheduler: DDIMScheduler
    folder: Path
    device: torch.device
    # window-only checkpoints: steps with index < handover (of handover_steps DDIM steps) sample with ``early``
    early: BaseModel | None = None
    handover: int = 0
    handover_steps: int = 0
    # how the model reads prompts (:mod:`hrf_core.models.conditioning`); None: an unconditional model
    conditioner: Any = None
    # the name of the family that loaded it (:mod:`hrf_core.models.families`); "": the fallback family (by hand)
    family: str = ""
    #: samples per UNet call of an evaluation (:func:`hrf_core.rl.sampling.sample_from`'s default)
    eval_batch: ClassVar[int] = 256

    def handover_at(self, num_steps: int) -> int:
        """The window-only hand-over step for sampling with ``num_steps`` DDIM steps (0: no hand-over)."""
        if self.early is None or not self.handover:
            return 0
        return round(self.handover * num_steps / self.handover_steps) if self.handover_steps else self.handover

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The images (N, C, H, W) in [-1, 1] of rollout finals ``x`` (a pixel model: ``x`` itself; a latent model
        decodes them). Rewards, metrics and grids read these."""
        return x

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one decoded image (a pixel model: its sample shape)."""
        return self.sample_shape

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample: the state the rollouts denoise (a latent model: its latents)."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (self.unet.config.in_channels, h, w)


def read_json_config(path: Path) -> dict:
    """A config file as a dict; ValueError with one line when it is not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable JSON config ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object (got {type(data).__name__})")
    return data


def unet_folder(folder: Path) -> Path | None:
    """The folder holding a diffusers model folder's UNet config (``unet/``, or the folder itself); None."""
    for candidate in (folder / "unet", folder):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def diffusers_parts(folder: Path) -> tuple[Path, Path]:
    """(unet folder, scheduler config folder) of a diffusers model folder, either layout; configs validated."""
    unet_dir = unet_folder(folder)
    if unet_dir is None:
        raise ValueError(f"{folder} is not a diffusers model folder (no unet/config.json or config.json)")
    read_json_config(unet_dir / "config.json")
    for candidate in (folder / "scheduler", folder):
        if (candidate / "scheduler_config.json").is_file():
            read_json_config(candidate / "scheduler_config.json")
            return unet_dir, candidate
    raise ValueError(f"{folder} has no scheduler_config.json")


def load_scheduler(folder: Path) -> DDIMScheduler:
    """A DDIM scheduler from the model's scheduler config (DDPM configs are converted by diffusers)."""
    _, scheduler_dir = diffusers_parts(folder)
    config = read_json_config(scheduler_dir / "scheduler_config.json")
    try:
        return DDIMScheduler.from_config(config)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{scheduler_dir / 'scheduler_config.json'} is not a usable scheduler config "
                         f"({one_line(error)})") from None


def load_unet(unet_dir: Path) -> UNet2DModel:
    """A diffusers UNet2DModel (a UNet2DConditionModel when its config says so) from a folder with safetensors
    weights (CPU, fp32).

    Truncated or corrupt weights, a broken config or weights that do not fit it: ValueError with one line.
    """
    unet_dir = Path(unet_dir)
    cls = UNet2DModel
    if is_text_conditioned(read_json_config(unet_dir / "config.json")):
        from diffusers import UNet2DConditionModel as cls
    if not list(unet_dir.glob("diffusion_pytorch_model*.safetensors")):
        raise ValueError(f"{unet_dir} has no {UNET_SAFETENSORS}")
    return load_component(cls, unet_dir, low_cpu_mem_usage=False)


def load_component(cls, folder: Path, **kwargs):
    """``cls.from_pretrained(folder)`` (a diffusers or transformers model; safetensors only, CPU, fp32), with every
    weight file checked first. Truncated or corrupt weights, a broken config or weights that do not fit it (a
    missing tensor would start from random values): ValueError with one line."""
    folder = Path(folder)
    read_json_config(folder / "config.json")
    for path in sorted(folder.glob("*.safetensors")):
        check_safetensors(path)
    log = logging.getLogger("diffusers.models.modeling_utils")
    held = _HeldRecords()
    log.addFilter(held)  # diffusers logs missing weights as a warning: hold it, the error below says it once
    try:
        model, info = cls.from_pretrained(str(folder), use_safetensors=True, output_loading_info=True, **kwargs)
    except Exception as error:  # noqa: BLE001 - diffusers/transformers raise many types for bad files
        raise ValueError(f"{folder} could not be loaded as a {cls.__name__} ({one_line(error)})") from None
    finally:
        log.removeFilter(held)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ValueError(f"{folder}: the weights lack {len(missing)} of the {cls.__name__}'s tensors "
                         f"(e.g. {missing[0]}), which would start from random values")
    for record in held.records:
        log.handle(record)
    return model


class _HeldRecords(logging.Filter):
    """A logging filter that keeps records instead of passing them on."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False
