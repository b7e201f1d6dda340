"""The interface every model family implements: how a model folder is recognised, loaded, read and measured.

A family is one object (a :class:`Family` subclass instance, registered in :mod:`hrf_core.models.families`). It
owns everything that depends on the kind of network a folder holds: whether a folder is one of its own
(:meth:`Family.detect`, configs only), how it loads (:meth:`Family.load`: the :class:`~hrf_core.models.base.BaseModel`
subclass whose ``decode`` maps rollout finals to images and whose conditioner encodes prompts), its conditioner
read from configs alone, the shapes of its samples and images, the Hub files a run needs, the networks the memory
estimate measures on the meta device, how many samples an evaluation call holds, and whether ``finetune auto``
trains a LoRA adapter. The model registry, the memory estimate and the config ask it; nothing else names a family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from hrf_core.models.base import BaseModel


@dataclass(frozen=True)
class MetaParts:
    """A model's networks built on PyTorch's meta device (shapes only, no weights): what the memory estimate runs.

    ``inputs(rows)``: the denoiser's inputs beside ``(x, t)`` for ``rows`` rows (meta tensors: class labels (B,),
    text hidden states (B, L, D)); ``decoder``: the module whose ``decode(latents)`` makes images (a VAE), None for
    a pixel model; ``decode_batch``: latents per decode call; ``other_params``: the frozen parameters beside the
    UNet (VAE, text encoders).
    """

    unet: torch.nn.Module
    inputs: Callable[[int], dict]
    decoder: Any = None
    decode_batch: int = 0
    other_params: int = 0


class Family:
    """One model family. Subclasses set the class attributes and implement what differs."""

    name: ClassVar[str]
    label: ClassVar[str]  # in words, for docs and errors
    #: ``finetune auto`` trains a LoRA adapter on this family's models (else every UNet weight)
    lora_default: ClassVar[bool] = False
    #: the family of every folder no other family claims (one family only: the pixel UNet)
    fallback: ClassVar[bool] = False

    def trains_lora(self, config) -> bool:
        """Whether a run of ``config`` (a :class:`~hrf_core.config.TrainConfig`) on this family's model trains a
        LoRA adapter: ``finetune lora``, or ``auto`` on a family whose :attr:`lora_default` says so."""
        return config.finetune == "lora" or (config.finetune == "auto" and self.lora_default)

    # -- a folder ---------------------------------------------------------------------------------------
    def detect(self, folder: Path) -> bool:
        """Whether ``folder`` holds one of this family's models; configs only, no weights read."""
        raise NotImplementedError

    def load(self, name: str, folder: Path, device: torch.device) -> BaseModel:
        """The model in ``folder`` on ``device`` (eval mode, fp32), its ``family`` set to :attr:`name`."""
        raise NotImplementedError

    def conditioner(self, folder: Path):
        """How the model reads prompts, from its configs alone (a tokenizer at most, no weights); None: it takes
        none (:mod:`hrf_core.models.conditioning`)."""
        raise NotImplementedError

    def sample_shape(self, folder: Path) -> tuple[int, int, int]:
        """(C, H, W) of one sample, the state the rollouts denoise, from the UNet config (no weights loaded)."""
        from hrf_core.models.base import diffusers_parts, read_json_config

        unet_dir, _ = diffusers_parts(folder)
        config = read_json_config(unet_dir / "config.json")
        size = config.get("sample_size", 32)
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (int(config.get("in_channels", 3)), int(h), int(w))

    def image_shape(self, folder: Path) -> tuple[int, int, int]:
        """(C, H, W) of one decoded image, configs only (default: the sample's shape)."""
        return self.sample_shape(folder)

    # -- the Hub ----------------------------------------------------------------------------------------
    def download_command(self, repo_id: str) -> str:
        """The shell command that caches what a run of ``repo_id`` needs."""
        return f"hf download {repo_id}"

    def complete(self, folder: Path) -> bool:
        """Whether a Hub snapshot holds every weight file this family needs."""
        raise NotImplementedError

    def fetch(self, repo_id: str) -> Path:
        """Download the files a run of ``repo_id`` needs (``huggingface_hub.snapshot_download``); the snapshot."""
        raise NotImplementedError

    # -- the memory estimate ----------------------------------------------------------------------------
    @property
    def eval_batch(self) -> int:
        """Samples per UNet call of an evaluation (its models' ``eval_batch``)."""
        raise NotImplementedError

    def knows(self, model: str) -> bool:
        """Whether the architecture of ``model`` (a registered name) is known without its configs (not cached)."""
        return False

    def meta_parts(self, model: str, folder: Path | None) -> MetaParts:
        """The networks of ``model`` on the meta device, from the configs in ``folder`` (None: not cached, and
        :meth:`knows` said its architecture is known)."""
        raise NotImplementedError
