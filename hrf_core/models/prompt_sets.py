"""Named prompt sets of text-to-image runs, written ``@name`` in the ``prompts`` setting.

- ``@animals``: the 27 simple animal names of TRL's DDPO example (ddpo-pytorch's ``simple_animals`` task is the
  same idea);
- ``@imagenet-animals``: ImageNet's 398 animal classes (indices 0-397), the category names that ship in
  torchvision's weights metadata (``ResNet50_Weights.IMAGENET1K_V1.meta["categories"]``: nothing is downloaded),
  as ddpo-pytorch's ``imagenet_animals`` task.

A set is expanded where the setting is parsed (:func:`hrf_core.settings.parse_prompts`), so a run's config holds
its prompts themselves; a custom list is typed (commas, or one per line), or read from a file by the command line
only (``train --prompts-file``: the browser never names paths).
"""

from __future__ import annotations

from collections.abc import Callable

#: TRL's DDPO example prompts (``examples/scripts/ddpo.py``).
SIMPLE_ANIMALS = (
    "cat", "dog", "horse", "monkey", "rabbit", "zebra", "spider", "bird", "sheep", "deer", "cow", "goat", "lion",
    "frog", "chicken", "duck", "goose", "bee", "pig", "turkey", "fly", "llama", "camel", "bat", "gorilla",
    "hedgehog", "kangaroo",
)
#: ImageNet class indices 0..397 are animals (ddpo-pytorch's ``imagenet_animals``).
IMAGENET_ANIMAL_CLASSES = 398


def imagenet_animals() -> tuple[str, ...]:
    """ImageNet's animal class names (398), from torchvision's weights metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"][:IMAGENET_ANIMAL_CLASSES])


#: ``@name`` -> (the set's prompts, one line about it).
PROMPT_SETS: dict[str, tuple[Callable[[], tuple[str, ...]], str]] = {
    "animals": (lambda: SIMPLE_ANIMALS, "27 simple animal names (TRL's DDPO example)"),
    "imagenet-animals": (imagenet_animals, "ImageNet's 398 animal classes (ddpo-pytorch)"),
}
PREFIX = "@"


def is_set_name(text: str) -> bool:
    return text.strip().startswith(PREFIX)


def expand(name: str) -> tuple[str, ...]:
    """The prompts of the set ``@name``; ValueError (one line) for an unknown set."""
    key = name.strip().removeprefix(PREFIX)
    if key not in PROMPT_SETS:
        known = ", ".join(PREFIX + n for n in PROMPT_SETS)
        raise ValueError(f"unknown prompt set {name.strip()!r}: use {known}, or type the prompts")
    return PROMPT_SETS[key][0]()


def set_name_of(prompts: tuple[str, ...]) -> str | None:
    """``@name`` when ``prompts`` are exactly a named set, else None."""
    for key, (make, _) in PROMPT_SETS.items():
        if key != "imagenet-animals" or len(prompts) == IMAGENET_ANIMAL_CLASSES:  # no torchvision import otherwise
            if tuple(prompts) == make():
                return PREFIX + key
    return None


def read_prompt_file(path: str) -> tuple[str, ...]:
    """A prompt file's prompts for the ``prompts`` setting: one prompt per line (commas are part of a prompt); blank
    lines and lines starting with ``#`` are skipped (command line only). ValueError (one line) when unreadable or
    empty."""
    from pathlib import Path

    file = Path(path).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the prompt file {path}: {type(error).__name__}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not prompts:
        raise ValueError(f"the prompt file {path} holds no prompts (one per line)")
    return tuple(prompts)
