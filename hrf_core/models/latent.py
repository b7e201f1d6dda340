"""Latent text-to-image models: Stable Diffusion 1.x and 2.x from diffusers' components.

A pipeline folder (what ``StableDiffusionPipeline.save_pretrained`` writes, or a Hub snapshot of it) holds
``unet/`` (a ``UNet2DConditionModel``), ``vae/`` (an ``AutoencoderKL``), ``text_encoder/`` (a ``CLIPTextModel``),
``tokenizer/`` (a ``CLIPTokenizer``) and ``scheduler/`` (any scheduler config: the policy's DDIM scheduler is built
from it, ``set_alpha_to_one`` as the folder says). Weights are safetensors only.

The rollouts run in latent space: the state the policy denoises is the UNet's latent (4 x H/8 x W/8 for SD), so
:attr:`LatentModel.sample_shape` is the latent's shape and :attr:`LatentModel.image_shape` the decoded image's.
:meth:`LatentModel.decode` maps rollout finals to images in [-1, 1] through the VAE (latents divided by
``vae.config.scaling_factor``, plus ``shift_factor`` where a VAE has one), and rewards, metrics and grids read those.
Prompts are encoded once each by the model's :class:`~hrf_core.models.conditioning.TextPrompts`.

Its family (:class:`~hrf_core.models.families.text_to_image.TextToImage`) detects a folder with
:func:`is_text_to_image`, loads it with :func:`load_text_to_image` and fetches the Hub files :data:`HUB_PATTERNS`
names; docs/ARCHITECTURE.md, "Model families", says what SDXL or SD3 would add.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from hrf_core.models.base import BaseModel, load_component, load_scheduler, load_unet, read_json_config
from hrf_core.models.weights import UNET_SAFETENSORS
from hrf_core.store.files import one_line

#: The components of a pipeline folder and the safetensors file each one's weights are in.
COMPONENTS = {"unet": UNET_SAFETENSORS, "vae": UNET_SAFETENSORS, "text_encoder": "model.safetensors"}
#: The Hub files of a Stable Diffusion repository a run needs: fp32 safetensors of the UNet, VAE and text encoder,
#: the tokenizer and the configs (no safety checker, no fp16/EMA variants, no single-file checkpoints).
HUB_PATTERNS = ["model_index.json", "scheduler/*.json", "tokenizer/*", "unet/config.json", f"unet/{UNET_SAFETENSORS}",
                "vae/config.json", f"vae/{UNET_SAFETENSORS}", "text_encoder/config.json",
                "text_encoder/model.safetensors"]
#: VAE decodes per call (a 512 px decode of 8 latents needs a few GB of activations).
DECODE_BATCH = 8


@dataclass
class LatentModel(BaseModel):
    """A latent text-to-image model: the UNet denoises latents; the VAE decodes them; the text encoder (inside the
    :attr:`conditioner`) encodes prompts."""

    vae: Any = None
    eval_batch: ClassVar[int] = 8  # samples per UNet call (16 rows with guidance) when evaluating

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [-1, 1], float32, of latents ``x`` (N, C, h, w), decoded in chunks, no gradient."""
        config = self.vae.config
        shift = getattr(config, "shift_factor", None) or 0.0
        parameter = next(self.vae.parameters())
        with torch.no_grad():
            images = [self.vae.decode(chunk.to(parameter.device, parameter.dtype) / config.scaling_factor + shift)
                      .sample.float().clamp(-1, 1) for chunk in x.split(DECODE_BATCH)]
        return torch.cat(images).to(x.device)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        _, h, w = self.sample_shape
        return (int(self.vae.config.out_channels), h * self.vae_scale_factor, w * self.vae_scale_factor)


def is_text_to_image(folder: Path) -> bool:
    """Whether ``folder`` is a text-to-image pipeline folder (a text-conditioned UNet beside a VAE and a text
    encoder); configs only."""
    folder = Path(folder)
    config = folder / "unet" / "config.json"
    if not config.is_file() or not (folder / "vae").is_dir() or not (folder / "text_encoder").is_dir():
        return False
    from hrf_core.models.conditioning import is_text_conditioned

    return is_text_conditioned(read_json_config(config))


def missing_weights(folder: Path) -> list[str]:
    """The components of a pipeline folder whose safetensors weights are absent (e.g. ``["vae"]``)."""
    folder = Path(folder)
    missing = []
    for name, filename in COMPONENTS.items():
        part = folder / name
        if not ((part / filename).is_file() or (part / f"{filename}.index.json").is_file()):
            missing.append(name)
    if not (folder / "tokenizer").is_dir():
        missing.append("tokenizer")
    return missing


def image_shape_of(folder: Path) -> tuple[int, int, int]:
    """(C, H, W) of a text-to-image folder's decoded images, from its UNet and VAE configs."""
    folder = Path(folder)
    unet, vae = read_json_config(folder / "unet" / "config.json"), read_json_config(folder / "vae" / "config.json")
    size = unet.get("sample_size", 64)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    factor = 2 ** (len(vae.get("block_out_channels", (1,))) - 1)
    return (int(vae.get("out_channels", 3)), int(h) * factor, int(w) * factor)


def load_tokenizer(folder: Path):
    """The pipeline's CLIP tokenizer (``tokenizer/``); ValueError (one line) when unreadable."""
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(str(Path(folder) / "tokenizer"))
    except Exception as error:  # noqa: BLE001 - transformers raises many types for a bad folder
        raise ValueError(f"{Path(folder) / 'tokenizer'} is not a readable CLIP tokenizer ({one_line(error)})") from None


def _load_part(cls, folder: Path, name: str):
    """A component (``cls.from_pretrained(folder/name)``, safetensors only, fp32); one line when it cannot load."""
    from transformers.utils import logging as transformers_logging

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # no "Loading weights" bar for a 16 MB text encoder
    try:
        return load_component(cls, Path(folder) / name).eval()
    finally:
        if bars:
            transformers_logging.enable_progress_bar()


def load_text_to_image(name: str, folder: Path, device: torch.device) -> LatentModel:
    """A Stable Diffusion 1.x/2.x pipeline folder as a :class:`LatentModel` on ``device`` (eval mode, fp32)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    from hrf_core.models.conditioning import TextPrompts

    folder = Path(folder)
    missing = missing_weights(folder)
    if missing:
        raise ValueError(f"{folder} has no weights for {', '.join(missing)} (safetensors): a text-to-image folder "
                         "needs unet/, vae/, text_encoder/ and tokenizer/")
    unet = load_unet(folder / "unet").to(device).eval()
    vae = _load_part(AutoencoderKL, folder, "vae").to(device).requires_grad_(False)
    text_encoder = _load_part(CLIPTextModel, folder, "text_encoder").to(device).requires_grad_(False)
    conditioner = TextPrompts(load_tokenizer(folder), text_encoder)
    return LatentModel(name=name, unet=unet, scheduler=load_scheduler(folder), folder=folder, device=device,
                       conditioner=conditioner, vae=vae)


# ---------------------------------------------------------------------------------- architectures for benchmarks
#: The UNet of Stable Diffusion 1.x (CompVis/stable-diffusion-v1-4: 859.5M parameters), for random-weight checks.
SD1_UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8,
)
#: Its VAE (83.7M parameters; 8x downsampling; scaling factor 0.18215).
SD1_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512,
    scaling_factor=0.18215,
)
#: Its text encoder, CLIP ViT-L/14's (123.1M parameters).
SD1_TEXT_CONFIG = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
#: A Stable-Diffusion-shaped model small enough for tests on a CPU: 8x8 latents (16x16 images), 16-token prompts.
TINY_UNET_CONFIG = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=16, norm_num_groups=4, attention_head_dim=4,
)
TINY_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
    sample_size=16,
)
TINY_TEXT_CONFIG = dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=16)


def write_tokenizer(folder: Path, max_length: int = 77):
    """A CLIP tokenizer written from a small vocabulary (single characters, with and without the end-of-word mark)
    and an empty merges file, as diffusers' tests build one offline; saved to ``folder``. Any lowercase text
    tokenizes, one token per character."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz0123456789,.-'!?":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
                              model_max_length=max_length)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def write_random_pipeline(folder: Path, unet_config: dict = TINY_UNET_CONFIG, vae_config: dict = TINY_VAE_CONFIG,
                          text_config: dict = TINY_TEXT_CONFIG, seed: int = 0) -> Path:
    """A Stable Diffusion pipeline folder with random weights (tests, benchmarks): the given architectures, a written
    tokenizer (:func:`write_tokenizer`) and SD's DDIM scheduler (scaled-linear betas, ``set_alpha_to_one=False``)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    text = dict(bos_token_id=0, eos_token_id=1, pad_token_id=1, **text_config)
    max_length = int(text.get("max_position_embeddings", 77))
    pipeline = StableDiffusionPipeline(
        vae=AutoencoderKL(**vae_config), text_encoder=CLIPTextModel(CLIPTextConfig(**text)),
        tokenizer=write_tokenizer(folder / "tokenizer", max_length), unet=UNet2DConditionModel(**unet_config),
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(str(folder), safe_serialization=True)
    return folder
#: Stable Diffusion 2 base's UNet (865.9M parameters: linear projections, head dims 5-20, 1024-wide text) and text
#: encoder (OpenCLIP ViT-H/14's, 340.4M); its VAE is SD 1.x's.
SD2_UNET_CONFIG = dict(SD1_UNET_CONFIG, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                       use_linear_projection=True)
SD2_TEXT_CONFIG = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                       num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu")
#: The architectures of the registered text-to-image models (UNet, VAE, text encoder configs): the memory estimate
#: reads them before the weights are cached.
ARCHITECTURES = {
    "CompVis/stable-diffusion-v1-4": (SD1_UNET_CONFIG, SD1_VAE_CONFIG, SD1_TEXT_CONFIG),
    "stabilityai/stable-diffusion-2-base": (SD2_UNET_CONFIG, SD1_VAE_CONFIG, SD2_TEXT_CONFIG),
}
