"""Base-model registry: a model by name (a registered one, a Hub id or a folder), loaded as its family says
(:mod:`hrf_core.models.families`) with a DDIM scheduler built from its config.

Sources:
- ``digits16``: the embedded 16x16 digits DDPM in ``checkpoints/digits16`` (ships with the repo);
- ``google/ddpm-celebahq-256`` and ``google/ddpm-ema-celebahq-256``: Hugging Face Hub repositories;
- ``CompVis/stable-diffusion-v1-4`` and ``stabilityai/stable-diffusion-2-base``: latent text-to-image models
  (:mod:`hrf_core.models.latent`), GPU only;
- any local diffusers folder (``unet/`` + ``scheduler/`` subfolders, or a flat folder with
  ``config.json`` and ``scheduler_config.json``), e.g. a fine-tuning checkpoint of the run store; a Stable
  Diffusion pipeline folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``); a LoRA run
  checkpoint (its adapter on the base model its trainer state names, :mod:`hrf_core.models.lora`).

Weights are loaded from safetensors only (``use_safetensors=True``). A folder or Hub snapshot whose UNet
has only a torch pickle (``diffusion_pytorch_model.bin``, as older diffusers repos ship) is converted once
to a safetensors copy in ``$HRF_CACHE_DIR/converted/<sha256 of the .bin>/`` (default
``~/.cache/hrf-explorer``); :func:`model_folder` resolves to that copy and every later load reads it, while
runs keep the name the user gave. The pickle is read with ``torch.load(weights_only=True)``, PyTorch's
restricted unpickler, because a plain pickle load runs whatever code the file asks for: a file holding
anything but a flat dict of tensors is refused with one line and nothing in it runs
(:mod:`hrf_core.models.weights`). Unreadable weights or configs (truncated, corrupt, not JSON) are a ValueError
with one line, never a traceback from diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from hrf_core import CHECKPOINTS_DIR
from hrf_core.models import families
from hrf_core.models.base import BaseModel, diffusers_parts, read_json_config
from hrf_core.models.conditioning import is_text_conditioned
from hrf_core.models.families import Family
from hrf_core.models.families.pixel import HUB_PATTERNS, HUB_PICKLE_PATTERNS  # noqa: F401 - a pixel repo's, named here
from hrf_core.models.weights import UNET_PICKLE, UNET_SAFETENSORS, converted_folder, unet_weights
from hrf_core.store.checkpoints import TRAINER_STATE_FILE, read_trainer_state


@dataclass(frozen=True)
class ModelSpec:
    """A registered base model."""

    name: str
    source: str  # "embedded" | "hub"
    location: str  # a folder for "embedded", a repo id for "hub"
    description: str
    needs_gpu: bool = False
    family: Family = field(default_factory=families.default)  # its model family (hrf_core.models.families)
    download: str = "about 455 MB"  # what a first use downloads
    cpu_note: str = "114M-parameter UNet: about 5 s per image step on a CPU"  # why it needs a GPU


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("digits16", "embedded", str(CHECKPOINTS_DIR / "digits16"),
                  "embedded 16x16 UCI-digits DDPM (1.1M params, CPU)"),
        ModelSpec("digits16-cond", "embedded", str(CHECKPOINTS_DIR / "digits16-cond"),
                  "embedded class-conditional 16x16 digits DDPM: prompts are the digits 0-9 (1.1M params, CPU)"),
        ModelSpec("google/ddpm-celebahq-256", "hub", "google/ddpm-celebahq-256",
                  "CelebA-HQ 256x256 DDPM (114M params, GPU)", needs_gpu=True),
        ModelSpec("google/ddpm-ema-celebahq-256", "hub", "google/ddpm-ema-celebahq-256",
                  "CelebA-HQ 256x256 DDPM, EMA weights (114M params, GPU)", needs_gpu=True),
        ModelSpec("CompVis/stable-diffusion-v1-4", "hub", "CompVis/stable-diffusion-v1-4",
                  "Stable Diffusion 1.4, text-to-image 512x512 (860M-param UNet; ddpo-pytorch's base; LoRA, GPU)",
                  needs_gpu=True, family=families.TEXT_TO_IMAGE, download="about 4.3 GB",
                  cpu_note="860M-parameter UNet at 64x64 latents: minutes per image on a CPU"),
        ModelSpec("stabilityai/stable-diffusion-2-base", "hub", "stabilityai/stable-diffusion-2-base",
                  "Stable Diffusion 2 base, text-to-image 512x512 (866M-param UNet, OpenCLIP-H text encoder; LoRA, "
                  "GPU)", needs_gpu=True, family=families.TEXT_TO_IMAGE, download="about 5.2 GB",
                  cpu_note="866M-parameter UNet at 64x64 latents: minutes per image on a CPU"),
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


def download_command(repo_id: str, family: Family | None = None) -> str:
    """The shell command that caches what a run of ``repo_id`` needs (its family's files: a text-to-image repo's
    fp32 safetensors components only, not its single-file checkpoints); default: the fallback family's."""
    return (family or families.default()).download_command(repo_id)


def _cached_snapshot(repo_id: str, family: Family | None = None) -> Path | None:
    """The cached snapshot of a Hub repo when it holds the weights its family needs; no network."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=["*.json"], local_files_only=True))
        return folder if (family or families.default()).complete(folder) else None
    except Exception:  # not cached, incomplete, or not a diffusers snapshot
        return None


def _hub_folder(repo_id: str, family: Family | None = None) -> Path:
    """The local snapshot of a Hub repo (the files its family fetches); fetched if online."""
    family = family or families.default()
    cached = _cached_snapshot(repo_id, family)
    if cached is not None:
        return cached
    from hrf_core import downloads

    with downloads.guarded(f"model {repo_id!r} (the Hugging Face Hub)", download_command(repo_id, family)):
        return family.fetch(repo_id)


def _safetensors_folder(folder: Path) -> Path:
    """``folder`` when its UNet weights are safetensors, else its cached converted copy (see the docstring)."""
    unet_dir, _ = diffusers_parts(folder)
    kind = unet_weights(unet_dir)
    if kind == "safetensors":
        return folder
    if kind is None:
        raise ValueError(f"{unet_dir} has no UNet weights ({UNET_SAFETENSORS} or {UNET_PICKLE})")
    if not (unet_dir / UNET_PICKLE).is_file():
        raise ValueError(f"{unet_dir} has sharded pickle weights: convert them to safetensors first")
    return converted_folder(folder, unet_dir)


def model_folder(name: str) -> Path:
    """Resolve a registry name, Hub id or local folder to a local diffusers folder with safetensors weights.

    Validated; pickle-only weights resolve to their converted copy in the cache (converted on first use).
    """
    spec = MODELS.get(name)
    if spec is not None and spec.source == "hub":
        return _safetensors_folder(_hub_folder(spec.location, spec.family))
    path = Path(spec.location if spec is not None else name).expanduser()
    if not path.is_dir():
        known = ", ".join(MODELS)
        raise ValueError(f"unknown model {name!r}: use one of {known}, or a local diffusers folder")
    if base := adapter_base_of(path):  # a LoRA checkpoint: its base model must resolve too
        model_folder(base)
        return path.resolve()
    return _safetensors_folder(path.resolve())


def adapter_base_of(folder: Path) -> str:
    """The base model a LoRA run checkpoint adapts (its trainer state's ``base_model``); "" for any other folder."""
    from hrf_core.models.lora import ADAPTER_FILE

    folder = Path(folder)
    if not (folder / ADAPTER_FILE).is_file() or (folder / "unet" / "config.json").is_file():
        return ""
    base = read_trainer_state(folder, missing_ok=True).get("base_model") or ""
    if not base:
        raise ValueError(f"{folder} holds a LoRA adapter but names no base model (no {TRAINER_STATE_FILE})")
    return base


def config_folder(name: str, download: bool = True) -> Path:
    """The folder whose configs describe ``name``'s network: its own, or a LoRA checkpoint's base model's.
    ``download=False`` (a browser's question): a Hub model must already be cached, else a ValueError; no network."""
    spec = MODELS.get(name)
    if download:
        folder = model_folder(name)
    elif spec is not None and spec.source == "hub":
        folder = _cached_snapshot(spec.location, spec.family)
        if folder is None:
            raise ValueError(f"{name} is not in the local cache")
    else:
        folder = Path(spec.location if spec is not None else name).expanduser()
        if not folder.is_dir():
            raise ValueError(f"unknown model {name!r}")
    base = adapter_base_of(folder)
    return config_folder(base, download) if base else folder


def _network_folder(folder: Path) -> Path:
    """``folder`` itself, or a LoRA checkpoint's base model's folder (the configs of the network it adapts)."""
    base = adapter_base_of(Path(folder))
    return model_folder(base) if base else Path(folder)


def sample_shape_of(folder: Path) -> tuple[int, int, int]:
    """(C, H, W) of a diffusers model folder's samples, read from its configs (no weights loaded); a latent
    model's latents."""
    folder = _network_folder(folder)
    return families.detect(folder).sample_shape(folder)


def image_shape_of(folder: Path) -> tuple[int, int, int]:
    """(C, H, W) of the images a model folder's samples decode to (a pixel model: its samples), configs only."""
    folder = _network_folder(folder)
    return families.detect(folder).image_shape(folder)


def family_of(name: str) -> Family:
    """The family of a model (registry name, Hub id, folder or checkpoint), configs only."""
    spec = MODELS.get(name)
    if spec is not None:
        return spec.family
    return families.detect(config_folder(name, download=False))


def conditioner_of(name: str):
    """The conditioner of a model (registry name, Hub id or folder) read from its configs, no weights loaded
    (a text-to-image model's reads its tokenizer too); None for an unconditional model."""
    folder = config_folder(name)
    return families.detect(folder).conditioner(folder)


def takes_class_labels(name: str) -> bool:
    """Whether a model reads class labels as prompts (a class-conditional UNet), from its configs alone: no
    download, no tokenizer (a form's question, asked on every edit); False when they cannot be read here."""
    try:
        unet_dir, _ = diffusers_parts(config_folder(name, download=False))
        config = read_json_config(unet_dir / "config.json")
    except (ValueError, OSError):
        return False
    return not is_text_conditioned(config) and bool(config.get("num_class_embeds"))


def load_base_model(name: str, device: str | torch.device = "auto", window_only: bool = True) -> BaseModel:
    """Load a registered model, Hub id or local diffusers folder onto ``device`` (eval mode, fp32).

    A window-only run checkpoint also loads its base model as ``early`` (``window_only=False``: the
    fine-tuned network alone, e.g. to resume training it). A folder loads as its family says
    (:mod:`hrf_core.models.families`: a text-to-image pipeline folder as a
    :class:`~hrf_core.models.latent.LatentModel`); a LoRA run checkpoint as its base model with the adapter attached
    (window-only: the same UNet with the adapter disabled samples the early steps).
    """
    folder = model_folder(name)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    base_name = adapter_base_of(folder)
    if base_name:
        return _load_adapted(name, folder, base_name, target, window_only)
    model = families.detect(folder).load(name, folder, target)
    handover, steps, base_name = window_only_of(folder) if window_only else (0, 0, "")
    if handover > 0:  # a window-only checkpoint samples its untrained steps with its base model
        model.early = load_base_model(base_name, target)
        model.handover, model.handover_steps = handover, steps
    return model


def _load_adapted(name: str, folder: Path, base_name: str, device: torch.device, window_only: bool) -> BaseModel:
    """A LoRA checkpoint: its base model with the adapter attached (and, window-only, the base as ``early``: the same
    UNet with the adapter disabled)."""
    import dataclasses

    from hrf_core.models.lora import AdapterDisabled, load_adapter

    model = load_base_model(base_name, device, window_only=False)
    load_adapter(folder, model.unet)
    model.unet.eval()
    model = dataclasses.replace(model, name=name, folder=folder)
    handover, steps, _ = window_only_of(folder) if window_only else (0, 0, "")
    if handover > 0:
        model.early = dataclasses.replace(model, unet=AdapterDisabled(model.unet), early=None, handover=0)
        model.handover, model.handover_steps = handover, steps
    return model


def window_only_of(folder: Path) -> tuple[int, int, str]:
    """(handover S, its K, base model name) of a window-only run checkpoint; (0, 0, "") for anything else.

    Read from the trainer state's metadata (no weights loaded); see docs/METHOD.md, "Window-only sampling".
    """
    meta = read_trainer_state(folder, missing_ok=True)
    if not meta:
        return 0, 0, ""
    handover = int(meta.get("handover") or 0)
    if handover <= 0:
        return 0, 0, ""
    base_name = meta.get("base_model") or ""
    if not base_name:
        raise ValueError(f"{Path(folder) / TRAINER_STATE_FILE} marks a window-only checkpoint but names no "
                         "base model")
    return handover, int(meta.get("num_steps") or 0), base_name


def availability(name: str) -> tuple[bool, str]:
    """Whether ``name`` can run here now, and the reason when it cannot (no download attempted)."""
    spec = MODELS.get(name)
    if spec is None:
        return False, f"unknown model {name!r}"
    if spec.needs_gpu and not torch.cuda.is_available():
        return False, f"needs a CUDA GPU ({spec.cpu_note})"
    if spec.source == "embedded":
        ok = (Path(spec.location) / "unet" / "config.json").is_file()
        return ok, "" if ok else f"missing {spec.location}: run `python -m hrf_core pretrain digits16`"
    if _cached_snapshot(spec.location, spec.family) is not None:
        return True, ""
    from hrf_core import downloads

    if downloads.offline():
        return False, downloads.missing("weights", download_command(spec.location, spec.family))
    return True, f"weights will be downloaded on first use ({spec.download})"
