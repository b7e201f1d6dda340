"""Reading stored files with one-line errors: a safetensors file's tensors (:func:`load_checked`) and an exception's
text on one line (:func:`one_line`). The store's floor: the models, the checkpoints and the weights' cache build on
these."""

from __future__ import annotations

from pathlib import Path

import torch


def one_line(error: BaseException, first_sentence: bool = False, limit: int = 300) -> str:
    """An exception's text on one line (whitespace collapsed, at most ``limit`` characters)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if first_sentence:
        text = text.split(". ")[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_checked(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a missing, truncated or corrupt file is a ValueError with one clear line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"missing weight file {path}")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt: {reason})") from None
