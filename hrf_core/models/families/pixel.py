"""Pixel UNets: a diffusers ``UNet2DModel`` denoising images directly (``digits16``, ``digits16-cond``,
CelebA-HQ). The rollouts' state is the image, so ``decode`` is the identity; a class-conditional UNet
(``num_class_embeds``) reads its classes as prompts (:class:`~hrf_core.models.conditioning.ClassLabels`). The
family of every folder no other family claims."""

from __future__ import annotations

from pathlib import Path

import torch

from hrf_core.models.base import BaseModel, diffusers_parts, load_scheduler, load_unet, read_json_config, unet_folder
from hrf_core.models.conditioning import conditioner_for
from hrf_core.models.families.base import Family, MetaParts
from hrf_core.models.weights import UNET_PICKLE, unet_weights

#: Hub snapshot patterns: configs and safetensors, or (older repos) configs and the UNet's pickle.
HUB_PATTERNS = ["*.json", "*.safetensors"]
HUB_PICKLE_PATTERNS = ["*.json", UNET_PICKLE, f"unet/{UNET_PICKLE}"]


class Pixel(Family):
    name = "pixel"
    label = "pixel UNet"
    fallback = True

    def detect(self, folder: Path) -> bool:
        return True

    def load(self, name: str, folder: Path, device: torch.device) -> BaseModel:
        unet_dir, _ = diffusers_parts(folder)
        unet = load_unet(unet_dir).to(device).eval()
        return BaseModel(name=name, unet=unet, scheduler=load_scheduler(folder), folder=folder, device=device,
                         conditioner=conditioner_for(dict(unet.config)), family=self.name)

    def conditioner(self, folder: Path):
        unet_dir, _ = diffusers_parts(folder)
        return conditioner_for(read_json_config(unet_dir / "config.json"))

    def complete(self, folder: Path) -> bool:
        return bool(unet_weights(unet_folder(folder)))

    def fetch(self, repo_id: str) -> Path:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
        if unet_weights(unet_folder(folder)) is None:  # an older repo: the UNet is a pickle only
            folder = Path(snapshot_download(repo_id, allow_patterns=HUB_PICKLE_PATTERNS))
        return folder

    @property
    def eval_batch(self) -> int:
        return BaseModel.eval_batch

    def meta_parts(self, model: str, folder: Path | None) -> MetaParts:
        from diffusers import UNet2DModel

        config = read_json_config(unet_folder(folder) / "config.json")
        with torch.device("meta"):
            unet = UNet2DModel.from_config(config)

        def inputs(rows: int) -> dict:
            if not unet.config.get("num_class_embeds"):
                return {}
            return {"class_labels": torch.zeros(rows, dtype=torch.long, device="meta")}

        return MetaParts(unet, inputs)
