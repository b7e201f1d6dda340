"""How a model family reads prompts: the prompts it knows, and the :class:`~hrf_core.models.guidance.Condition` of a
batch's prompts.

- an unconditional model (``UNet2DModel`` without class embeddings) has no conditioner: it refuses prompts;
- a class-conditional ``UNet2DModel`` (``num_class_embeds = N``): the prompts are its classes' names, "0" ..
  str(N - 2); its last class embedding is the null class of classifier-free guidance (``digits16-cond``: the
  digits "0" .. "9", null class 10).

- a text-to-image model (a ``UNet2DConditionModel`` reading a text encoder's hidden states, e.g. Stable
  Diffusion): a prompt is any text; its condition row is the text encoder's embedding (L, D) of the prompt, computed
  once per prompt; the null condition is the empty prompt's (:class:`TextPrompts`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hrf_core.models.guidance import Condition, class_label_call


class ClassLabels:
    """The conditioner of a class-conditional UNet: prompt i is the class i; the last class is the null one."""

    kind = "class"

    def __init__(self, num_class_embeds: int):
        if num_class_embeds < 2:
            raise ValueError(f"a class-conditional model needs at least one class and the null class, got "
                             f"num_class_embeds={num_class_embeds}")
        self.null_label = num_class_embeds - 1
        self.names = tuple(str(i) for i in range(self.null_label))

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every prompt this model knows, in class order."""
        return self.names

    def check(self, prompts: Sequence[str]) -> None:
        """ValueError (one line) unless every prompt is a class of this model."""
        unknown = [p for p in prompts if p not in self.names]
        if unknown:
            raise ValueError(f"unknown prompt {unknown[0]!r} for this class-conditional model: its prompts are "
                             f"{', '.join(self.names)}")

    def forget(self) -> None:
        """Nothing is cached: class labels need no encoding."""

    def condition(self, prompts: Sequence[str], scale: float = 1.0, detach_uncond: bool = False) -> Condition:
        """The rows' condition: their class labels (B,) against the null class."""
        self.check(prompts)
        labels = torch.tensor([self.names.index(p) for p in prompts], dtype=torch.long)
        return Condition(tuple(prompts), labels, torch.tensor(self.null_label), class_label_call, scale,
                         detach_uncond)


def text_call(unet, x: torch.Tensor, t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """A text-conditioned ``UNet2DConditionModel``: the condition is its ``encoder_hidden_states`` (B, L, D)."""
    return unet(x, t, encoder_hidden_states=rows).sample


class TextPrompts:
    """The conditioner of a text-to-image model: a prompt is any text (at most the tokenizer's length in tokens).

    A prompt's condition row is the text encoder's last hidden state (L, D) of its tokens, padded to the tokenizer's
    ``model_max_length``, exactly as diffusers' ``StableDiffusionPipeline.encode_prompt`` computes it; the null
    condition is the empty prompt's. Each prompt is encoded once and kept (CPU, float32): the rollouts, the update's
    rows and the evaluation read the same tensors. Without a text encoder (``text_encoder=None``, read from a
    folder's configs only) it checks prompts but cannot encode them.
    """

    def __init__(self, tokenizer, text_encoder=None):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.max_length = int(tokenizer.model_max_length)
        self._cache: dict[str, torch.Tensor] = {}
        self._checked: set[str] = set()

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Example prompts (the ``@animals`` set): a text model knows any prompt."""
        from hrf_core.models.prompt_sets import SIMPLE_ANIMALS

        return SIMPLE_ANIMALS

    def forget(self) -> None:
        """Drop the encoded prompts (after the text encoder's weights change dtype: they are encoded again)."""
        self._cache.clear()

    def check(self, prompts: Sequence[str]) -> None:
        """ValueError (one line) for an empty prompt or one longer than the text encoder reads."""
        for prompt in prompts:
            if not str(prompt).strip():
                raise ValueError("a prompt is empty: give every prompt some text")
            tokens = len(self.tokenizer(str(prompt)).input_ids)
            if tokens > self.max_length:
                raise ValueError(f"prompt {prompt[:40]!r} is {tokens} tokens long; this model's text encoder reads at "
                                 f"most {self.max_length}: shorten it")

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """The prompts' embeddings (B, L, D), float32 on the CPU; each prompt encoded once."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            if self.text_encoder is None:
                raise ValueError("this conditioner was read from a folder's configs: load the model to encode prompts")
            device = next(self.text_encoder.parameters()).device
            ids = self.tokenizer(missing, padding="max_length", max_length=self.max_length, truncation=True,
                                 return_tensors="pt").input_ids
            with torch.no_grad():
                hidden = self.text_encoder(ids.to(device))[0]
            for prompt, row in zip(missing, hidden.float().cpu(), strict=True):
                self._cache[prompt] = row
        return torch.stack([self._cache[p] for p in prompts])

    def condition(self, prompts: Sequence[str], scale: float = 1.0, detach_uncond: bool = False) -> Condition:
        """The rows' condition: their prompts' embeddings (B, L, D) against the empty prompt's (1, L, D)."""
        unchecked = [p for p in dict.fromkeys(prompts) if p not in self._checked]  # tokenised once per prompt
        self.check(unchecked)
        self._checked.update(unchecked)
        return Condition(tuple(prompts), self.embed(prompts), self.embed([""]), text_call, scale, detach_uncond)


def is_text_conditioned(unet_config: dict) -> bool:
    """Whether a UNet config is a text-conditioned ``UNet2DConditionModel`` (cross-attention on text)."""
    return unet_config.get("_class_name") == "UNet2DConditionModel" or "cross_attention_dim" in unet_config


def conditioner_for(unet_config: dict, tokenizer=None, text_encoder=None):
    """The conditioner a UNet's config implies (None: unconditional); a text-conditioned UNet's needs its tokenizer
    (and its text encoder to encode prompts)."""
    if is_text_conditioned(unet_config):
        if tokenizer is None:
            raise ValueError("a text-to-image UNet needs its tokenizer (a pipeline folder with tokenizer/)")
        return TextPrompts(tokenizer, text_encoder)
    n = unet_config.get("num_class_embeds")
    return ClassLabels(int(n)) if n else None
