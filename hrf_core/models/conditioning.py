"""How a model family reads prompts: the prompts it knows, and the :class:`~hrf_core.rl.guidance.Condition` of a
batch's prompts.

- an unconditional model (``UNet2DModel`` without class embeddings) has no conditioner: it refuses prompts;
- a class-conditional ``UNet2DModel`` (``num_class_embeds = N``): the prompts are its classes' names, "0" ..
  str(N - 2); its last class embedding is the null class of classifier-free guidance (``digits16-cond``: the
  digits "0" .. "9", null class 10).

A text-to-image family adds a conditioner here whose condition rows are text embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hrf_core.rl.guidance import Condition, class_label_call


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

    def condition(self, prompts: Sequence[str], scale: float = 1.0, detach_uncond: bool = False) -> Condition:
        """The rows' condition: their class labels (B,) against the null class."""
        self.check(prompts)
        labels = torch.tensor([self.names.index(p) for p in prompts], dtype=torch.long)
        return Condition(tuple(prompts), labels, torch.tensor(self.null_label), class_label_call, scale,
                         detach_uncond)


def conditioner_for(unet_config: dict):
    """The conditioner a UNet's config implies (None: unconditional)."""
    n = unet_config.get("num_class_embeds")
    return ClassLabels(int(n)) if n else None
