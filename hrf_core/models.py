"""Base-model registry: a diffusers ``UNet2DModel`` plus a DDIM scheduler built from its config.

Sources:
- ``digits16``: the embedded 16x16 digits DDPM in ``checkpoints/digits16`` (ships with the repo);
- ``google/ddpm-celebahq-256`` and ``google/ddpm-ema-celebahq-256``: Hugging Face Hub repositories;
- any local diffusers folder (``unet/`` + ``scheduler/`` subfolders, or a flat folder with
  ``config.json`` and ``scheduler_config.json``), e.g. a fine-tuning checkpoint of the run store.

Weights are loaded from safetensors only (``use_safetensors=True``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DModel

from hrf_core import CHECKPOINTS_DIR


@dataclass(frozen=True)
class ModelSpec:
    """A registered base model."""

    name: str
    source: str  # "embedded" | "hub"
    location: str  # a folder for "embedded", a repo id for "hub"
    description: str
    needs_gpu: bool = False


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("digits16", "embedded", str(CHECKPOINTS_DIR / "digits16"),
                  "embedded 16x16 UCI-digits DDPM (1.1M params, CPU)"),
        ModelSpec("google/ddpm-celebahq-256", "hub", "google/ddpm-celebahq-256",
                  "CelebA-HQ 256x256 DDPM (114M params, GPU)", needs_gpu=True),
        ModelSpec("google/ddpm-ema-celebahq-256", "hub", "google/ddpm-ema-celebahq-256",
                  "CelebA-HQ 256x256 DDPM, EMA weights (114M params, GPU)", needs_gpu=True),
    )
}


#: The architecture of google/ddpm-celebahq-256 (113.7M parameters), for benchmarks with random weights.
CELEBAHQ_UNET_CONFIG = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6,
)


@dataclass
class BaseModel:
    """A loaded diffusion model: the UNet (eval mode, on ``device``) and its DDIM scheduler."""

    name: str
    unet: UNet2DModel
    scheduler: DDIMScheduler
    folder: Path
    device: torch.device

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (self.unet.config.in_channels, h, w)


def load_checked(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a missing, truncated or corrupt file is a ValueError with one clear line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"missing weight file {path}")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt: {reason})") from None


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; otherwise the named device (validated)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available: use --device cpu")
    return resolved


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _hub_folder(repo_id: str) -> Path:
    """The local snapshot of a Hub repo (configs and safetensors only); fetched if online."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as error:
        if _hub_offline():
            raise ValueError(
                f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
                f"run `hf download {repo_id}` once with network access, or unset HF_HUB_OFFLINE"
            ) from error
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as error:  # network errors come in many types
        raise ValueError(
            f"could not download {repo_id!r} from the Hugging Face Hub ({type(error).__name__}): "
            "check the network, or download it once with `hf download`"
        ) from error


def _diffusers_parts(folder: Path) -> tuple[Path, Path]:
    """(unet folder, scheduler config folder) of a diffusers model folder, either layout."""
    if (folder / "unet" / "config.json").is_file():
        unet_dir = folder / "unet"
    elif (folder / "config.json").is_file():
        unet_dir = folder
    else:
        raise ValueError(f"{folder} is not a diffusers model folder (no unet/config.json or config.json)")
    if not any(unet_dir.glob("*.safetensors")):
        raise ValueError(f"{unet_dir} has no .safetensors weights (pickle weights are not loaded)")
    for candidate in (folder / "scheduler", folder):
        if (candidate / "scheduler_config.json").is_file():
            return unet_dir, candidate
    raise ValueError(f"{folder} has no scheduler_config.json")


def model_folder(name: str) -> Path:
    """Resolve a registry name, Hub id or local folder to a local diffusers folder (validated)."""
    spec = MODELS.get(name)
    if spec is not None and spec.source == "hub":
        return _hub_folder(spec.location)
    path = Path(spec.location if spec is not None else name).expanduser()
    if not path.is_dir():
        known = ", ".join(MODELS)
        raise ValueError(f"unknown model {name!r}: use one of {known}, or a local diffusers folder")
    _diffusers_parts(path)
    return path.resolve()


def sample_shape_of(folder: Path) -> tuple[int, int, int]:
    """(C, H, W) of a diffusers model folder's samples, read from its UNet config (no weights loaded)."""
    unet_dir, _ = _diffusers_parts(Path(folder))
    config = json.loads((unet_dir / "config.json").read_text())
    size = config.get("sample_size", 32)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return (int(config.get("in_channels", 3)), int(h), int(w))


def load_scheduler(folder: Path) -> DDIMScheduler:
    """A DDIM scheduler from the model's scheduler config (DDPM configs are converted by diffusers)."""
    _, scheduler_dir = _diffusers_parts(folder)
    config = json.loads((scheduler_dir / "scheduler_config.json").read_text())
    return DDIMScheduler.from_config(config)


def load_base_model(name: str, device: str | torch.device = "auto") -> BaseModel:
    """Load a registered model, Hub id or local diffusers folder onto ``device`` (eval mode, fp32)."""
    folder = model_folder(name)
    unet_dir, _ = _diffusers_parts(folder)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    unet = UNet2DModel.from_pretrained(unet_dir, use_safetensors=True, low_cpu_mem_usage=False).to(target).eval()
    return BaseModel(name=name, unet=unet, scheduler=load_scheduler(folder), folder=folder, device=target)


def availability(name: str) -> tuple[bool, str]:
    """Whether ``name`` can run here now, and the reason when it cannot (no download attempted)."""
    spec = MODELS.get(name)
    if spec is None:
        return False, f"unknown model {name!r}"
    if spec.needs_gpu and not torch.cuda.is_available():
        return False, "needs a CUDA GPU (114M-parameter UNet: about 5 s per image step on a CPU)"
    if spec.source == "embedded":
        ok = (Path(spec.location) / "unet" / "config.json").is_file()
        return ok, "" if ok else f"missing {spec.location}: run `python -m hrf_core pretrain digits16`"
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(spec.location, allow_patterns=["*.json", "*.safetensors"], local_files_only=True)
        return True, ""
    except Exception:
        if _hub_offline():
            return False, f"weights not cached and HF_HUB_OFFLINE is set: `hf download {spec.location}`"
        return True, "weights will be downloaded on first use (about 455 MB)"
