"""Latent text-to-image models (Stable Diffusion 1.x and 2.x): a ``UNet2DConditionModel`` beside a VAE and a CLIP
text encoder (:mod:`hrf_core.models.latent`). The rollouts denoise latents and ``decode`` runs the VAE; prompts are
any text, encoded once each (:class:`~hrf_core.models.conditioning.TextPrompts`); a run trains a LoRA adapter
unless it asks for full fine-tuning."""

from __future__ import annotations

from pathlib import Path

import torch

from hrf_core.models import latent
from hrf_core.models.base import BaseModel, diffusers_parts, read_json_config, unet_folder
from hrf_core.models.conditioning import conditioner_for
from hrf_core.models.families.base import Family, MetaParts


class TextToImage(Family):
    name = "text-to-image"
    label = "latent text-to-image model"
    lora_default = True

    def detect(self, folder: Path) -> bool:
        return latent.is_text_to_image(folder)

    def load(self, name: str, folder: Path, device: torch.device) -> BaseModel:
        model = latent.load_text_to_image(name, folder, device)
        model.family = self.name
        return model

    def conditioner(self, folder: Path):
        unet_dir, _ = diffusers_parts(folder)
        return conditioner_for(read_json_config(unet_dir / "config.json"), tokenizer=latent.load_tokenizer(folder))

    def image_shape(self, folder: Path) -> tuple[int, int, int]:
        return latent.image_shape_of(folder)

    def download_command(self, repo_id: str) -> str:
        return f"hf download {repo_id} --include " + " ".join(f"'{p}'" for p in latent.HUB_PATTERNS)

    def complete(self, folder: Path) -> bool:
        return not latent.missing_weights(folder)

    def fetch(self, repo_id: str) -> Path:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=latent.HUB_PATTERNS))

    @property
    def eval_batch(self) -> int:
        return latent.LatentModel.eval_batch

    def knows(self, model: str) -> bool:
        return model in latent.ARCHITECTURES

    def meta_parts(self, model: str, folder: Path | None) -> MetaParts:
        from diffusers import AutoencoderKL, UNet2DConditionModel

        if folder is None:  # not cached: the architecture it is known to have
            unet_config, vae_config, text_config = latent.ARCHITECTURES[model]
            with torch.device("meta"):
                unet, vae = UNet2DConditionModel(**unet_config), AutoencoderKL(**vae_config)
            text = (text_config["max_position_embeddings"], text_config["hidden_size"])
        else:
            unet_config = read_json_config(unet_folder(folder) / "config.json")
            vae_config = read_json_config(folder / "vae" / "config.json")
            text_config = read_json_config(folder / "text_encoder" / "config.json")
            with torch.device("meta"):
                unet = UNet2DConditionModel.from_config(unet_config)
                vae = AutoencoderKL.from_config(vae_config)
            text = (text_config.get("max_position_embeddings", 77), text_config["hidden_size"])

        def inputs(rows: int) -> dict:
            return {"encoder_hidden_states": torch.zeros(rows, *text, device="meta")}

        others = sum(p.numel() for p in vae.parameters()) + _text_params(text_config)
        return MetaParts(unet, inputs, decoder=vae, decode_batch=latent.DECODE_BATCH, other_params=others)


def _text_params(text_config: dict) -> int:
    """The parameters of a CLIP text encoder of ``text_config`` (counted on the meta device)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    keep = {k: v for k, v in text_config.items() if not k.startswith("_") and k not in ("architectures",)}
    with torch.device("meta"):
        return sum(p.numel() for p in CLIPTextModel(CLIPTextConfig(**keep)).parameters())
