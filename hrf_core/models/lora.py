"""LoRA adapters (peft) on a diffusers UNet: attach, save, load, and the base model with the adapter disabled.

Defaults are TRL's DDPOTrainer's: ``LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
target_modules=["to_k", "to_q", "to_v", "to_out.0"])``. Gaussian init draws A ~ N(0, 1/r) and sets B = 0, so the
adapted UNet starts as the base exactly; A is drawn from a generator seeded by the run's seed (every rank the same).
Only the adapter's parameters train, in float32, whatever dtype the frozen base weights are kept in.

The adapter file is diffusers' LoRA layout, ``pytorch_lora_weights.safetensors``: keys ``unet.<module>.lora_A.weight``
/ ``lora_B.weight`` and the adapter's config (rank, alpha, targets) as the ``lora_adapter_metadata`` entry, which
``StableDiffusionPipeline.load_lora_weights(folder)`` reads. A run checkpoint keeps that file (not the UNet), and an
export copies it.

:class:`AdapterDisabled` is the frozen base model of a LoRA run (the KL penalty's reference, the window-only
hand-over's early steps, base-sourced start images): the same UNet, called with its adapter disabled; no copy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

ADAPTER_FILE = "pytorch_lora_weights.safetensors"
DEFAULT_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
METADATA_KEY = "lora_adapter_metadata"
PREFIX = "unet."


def has_adapter(unet) -> bool:
    """Whether ``unet`` carries a peft adapter."""
    return bool(getattr(unet, "_hf_peft_config_loaded", False))


def adapter_parameters(unet) -> list[torch.nn.Parameter]:
    """The adapter's parameters (``lora_A`` / ``lora_B``), in module order."""
    return [p for name, p in unet.named_parameters() if ".lora_" in name]


def lora_config(rank: int, alpha: float, targets: Sequence[str]):
    from peft import LoraConfig

    return LoraConfig(r=int(rank), lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(targets))


def _check_targets(unet, targets: Sequence[str]) -> None:
    names = [name for name, module in unet.named_modules() if isinstance(module, torch.nn.Linear)]
    absent = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if len(absent) == len(targets):
        raise ValueError(f"this UNet has no linear layer named {', '.join(targets)}: LoRA has nothing to adapt "
                         "(use full fine-tuning, --finetune full)")


def _trainable_fp32(unet) -> None:
    """Freeze the base; the adapter's parameters train, in float32."""
    unet.requires_grad_(False)
    for parameter in adapter_parameters(unet):
        parameter.data = parameter.data.float()
        parameter.requires_grad_(True)


def add_lora(unet, rank: int = 4, alpha: float = 4.0, targets: Sequence[str] = DEFAULT_TARGETS, seed: int = 0):
    """Attach a fresh LoRA adapter to ``unet`` (gaussian init from ``seed``); the base is frozen. Returns ``unet``."""
    _check_targets(unet, targets)
    device = next(unet.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
        unet.add_adapter(lora_config(rank, alpha, targets))
    _trainable_fp32(unet)
    return unet


def adapter_settings(unet) -> dict:
    """The adapter's rank, alpha and targets (what its file's metadata records)."""
    config = unet.peft_config["default"]
    return {"r": int(config.r), "lora_alpha": config.lora_alpha, "target_modules": sorted(config.target_modules),
            "init_lora_weights": config.init_lora_weights}


def save_adapter(folder: Path, unet) -> Path:
    """Write the adapter of ``unet`` to ``folder/pytorch_lora_weights.safetensors`` (diffusers' LoRA layout)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    state = {PREFIX + key: value.detach().cpu().contiguous() for key, value in get_peft_model_state_dict(unet).items()}
    metadata = {PREFIX + key: value for key, value in adapter_settings(unet).items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ADAPTER_FILE
    save_file(state, str(path), metadata={"format": "pt", METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    return path


def read_adapter(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(the adapter's tensors without the ``unet.`` prefix, its settings) from a folder's adapter file."""
    from safetensors import SafetensorError, safe_open

    from hrf_core.store.files import load_checked

    path = Path(folder) / ADAPTER_FILE
    tensors = load_checked(path)
    try:
        with safe_open(str(path), "pt") as handle:
            packed = json.loads((handle.metadata() or {}).get(METADATA_KEY) or "{}")
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} has unreadable adapter metadata ({error})") from None
    settings = {key[len(PREFIX):]: value for key, value in packed.items() if key.startswith(PREFIX)}
    if not {"r", "lora_alpha", "target_modules"} <= set(settings):
        raise ValueError(f"{path} does not record its adapter's rank, alpha and targets: not an adapter HRF Explorer "
                         "wrote")
    return {key[len(PREFIX):]: value for key, value in tensors.items() if key.startswith(PREFIX)}, settings


def load_adapter(folder: Path, unet):
    """Attach the adapter saved in ``folder`` to ``unet`` (its base), bit for bit; the base is frozen. Returns
    ``unet``. ValueError (one line) when the file does not fit this UNet."""
    tensors, settings = read_adapter(folder)
    _check_targets(unet, settings["target_modules"])
    unet.add_adapter(lora_config(settings["r"], settings["lora_alpha"], settings["target_modules"]))
    own = {name.replace(".default", ""): p for name, p in unet.named_parameters() if ".lora_" in name}
    odd = sorted(set(own) ^ set(tensors))
    if odd or any(own[k].shape != v.shape for k, v in tensors.items()):
        key = odd[0] if odd else next(k for k, v in tensors.items() if own[k].shape != v.shape)
        raise ValueError(f"{Path(folder) / ADAPTER_FILE} does not fit this UNet (adapter weight {key})")
    _trainable_fp32(unet)
    with torch.no_grad():
        for key, parameter in own.items():
            parameter.copy_(tensors[key])  # exactly the saved values, in float32
    return unet


class _AdapterSwitch:
    """The on/off switch of one UNet's adapter, shared by all its LoRA layers as their ``_disable_adapters`` (peft's
    layers test it for truth before adding their update): turning the adapter off or on is one assignment, where
    diffusers' ``disable_adapters`` / ``enable_adapters`` walk every module (and reset the adapter's
    ``requires_grad``) each time."""

    __slots__ = ("off",)

    def __init__(self) -> None:
        self.off = False

    def __bool__(self) -> bool:
        return self.off


def _switch(unet) -> _AdapterSwitch:
    """``unet``'s adapter switch, installed on its LoRA layers by the first call (one walk over the modules)."""
    switch = getattr(unet, "_hrf_adapter_switch", None)
    if switch is None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        switch = _AdapterSwitch()
        for module in unet.modules():
            if isinstance(module, BaseTunerLayer):
                module._disable_adapters = switch
        unet._hrf_adapter_switch = switch
    return switch


@contextmanager
def adapter_disabled(unet):
    """Inside: ``unet`` computes its base model (the adapter off); the adapter is back on afterwards. O(1)."""
    switch = _switch(unet)
    switch.off = True
    try:
        yield unet
    finally:
        switch.off = False


class AdapterDisabled:
    """The base model of a LoRA policy: calls ``unet`` with its adapter disabled. Holds no weights of its own (the
    UNet is not a submodule: freezing or evaluating this view leaves the policy as it is)."""

    def __init__(self, unet):
        self.unet = unet
        _switch(unet)  # installed now: every call below is one assignment each way

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def __call__(self, *args, **kwargs):
        with adapter_disabled(self.unet):
            return self.unet(*args, **kwargs)

    def requires_grad_(self, requires_grad: bool = True) -> AdapterDisabled:
        return self

    def eval(self) -> AdapterDisabled:
        return self
