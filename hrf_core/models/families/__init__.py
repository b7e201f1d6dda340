"""The model-family registry: every kind of network a model folder can hold, one module each behind :class:`Family`.

Adding a family (SDXL, SD3, a flow model) is one module with a :class:`~hrf_core.models.families.base.Family`
subclass and one line in :data:`FAMILIES` (or :func:`register` at run time, e.g. from a test or a plugin). Everything
that depends on a model's family asks it here: the model registry (which family a folder is, how it loads, its
conditioner, its image shape, the Hub files it needs), the memory estimate (its networks on the meta device, its
evaluation batch) and the config (whether ``finetune auto`` trains LoRA). docs/ARCHITECTURE.md, "Model families".
"""

from __future__ import annotations

from pathlib import Path

from hrf_core.models.families.base import Family, MetaParts
from hrf_core.models.families.pixel import Pixel
from hrf_core.models.families.text_to_image import TextToImage
from hrf_core.registry import Registry

__all__ = ["FAMILIES", "PIXEL", "TEXT_TO_IMAGE", "Family", "MetaParts", "Pixel", "TextToImage", "default", "detect",
           "get", "register", "unregister"]

#: The built-in families, for the model registry's entries.
PIXEL, TEXT_TO_IMAGE = Pixel(), TextToImage()
#: Every family by name; a folder is the first family's that detects it, the fallback family's otherwise.
FAMILIES: Registry[Family] = Registry("model family", (TEXT_TO_IMAGE, PIXEL))
#: Add a family under its name (a name already taken is refused; returns it); remove one (tests).
register, unregister = FAMILIES.register, FAMILIES.unregister


def default() -> Family:
    """The fallback family: a folder no other family claims (a pixel UNet)."""
    return next(family for family in FAMILIES.values() if family.fallback)


def get(name: str) -> Family:
    """The family ``name`` ("": the fallback family, that of a model built by hand); ValueError with one line naming
    the choices when there is none."""
    if not name:
        return default()
    family = FAMILIES.get(name)
    if family is None:
        raise ValueError(f"unknown model family {name!r}: choose one of {', '.join(FAMILIES)}")
    return family


def detect(folder: Path) -> Family:
    """The family of a model folder (configs only): the first that claims it, else the fallback family."""
    folder = Path(folder)
    return next((family for family in FAMILIES.values() if not family.fallback and family.detect(folder)), default())
