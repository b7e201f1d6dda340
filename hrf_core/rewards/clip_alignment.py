"""CLIP prompt alignment: the cosine similarity of an image's and its prompt's open_clip embeddings.

reward(images, prompts) = <img, txt> / (|img| |txt|), in [-1, 1] (CLIPScore's w x max(cos, 0) without the clip and
the w = 2.5 scale), for text-to-image runs. The image embedding is :class:`hrf_core.measure.features.ClipFeatures`'s
(open_clip ``ViT-L-14``/``openai`` by default: the aesthetic reward's CLIP, cached once for both); the prompt is
tokenised by open_clip's own tokenizer (its BPE vocabulary ships with the package) and encoded once per prompt.
Offline without the cached weights the reward is unavailable, with the reason (:func:`clip_alignment_available`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hrf_core import downloads
from hrf_core.measure.features import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    ClipFeatures,
    clip_checkpoint,
    clip_missing_message,
)


def clip_alignment_available() -> tuple[bool, str]:
    """(usable, reason); never raises, no network request."""
    try:
        cached = clip_checkpoint(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED) is not None
    except Exception as error:  # noqa: BLE001 - e.g. a broken install
        return False, f"CLIP alignment unavailable: {error}"
    if cached:
        return True, ""
    if downloads.offline():
        return False, clip_missing_message(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)
    return True, "weights will be downloaded on first use (CLIP ViT-L/14 ~1.7 GB)"


class ClipAlignment:
    """``reward(images, prompts)`` -> (N,) cosine similarities, float32 on the images' device."""

    def __init__(self, features: ClipFeatures, tokenizer: Callable[[Sequence[str]], torch.Tensor]):
        self.features = features
        self.tokenizer = tokenizer
        self._texts: dict[str, torch.Tensor] = {}

    def text(self, prompts: Sequence[str]) -> torch.Tensor:
        """The prompts' L2-normalised text embeddings (N, D) on the CLIP model's device; each prompt encoded once."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._texts]
        if missing:
            model = self.features.model
            with torch.inference_mode():
                tokens = self.tokenizer(missing).to(self.features.device)
                embedded = torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)
            for prompt, row in zip(missing, embedded.clone(), strict=True):
                self._texts[prompt] = row
        return torch.stack([self._texts[p] for p in prompts])

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        similarity = (self.features.embed(images) * self.text(prompts)).sum(dim=-1)
        return similarity.to(images.device, torch.float32).clone()


def make_clip_alignment(device: str | torch.device = "cpu", clip_model=None, tokenizer=None,
                        model_name: str = DEFAULT_CLIP_MODEL, pretrained: str = DEFAULT_CLIP_PRETRAINED
                        ) -> ClipAlignment:
    """The reward; ``clip_model`` and ``tokenizer`` inject a built model (tests: a tiny random one)."""
    import open_clip

    features = ClipFeatures(device=device, model=clip_model, model_name=model_name, pretrained=pretrained)
    return ClipAlignment(features, tokenizer or open_clip.get_tokenizer(model_name))
