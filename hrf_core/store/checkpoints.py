"""A run's checkpoint folder: the policy's weights, the optimiser and the trainer's state, as safetensors.

Layout of ``<run>/checkpoints/epoch-NNNN/``:

    unet/, scheduler/           a diffusers folder (loadable as a base model)
    pytorch_lora_weights.safetensors   instead of unet/ in a LoRA run: the adapter alone, in diffusers' LoRA
                                layout (:mod:`hrf_core.models.lora`); the checkpoint loads as its base model
                                (``base_model`` below) with the adapter attached
    optimizer.safetensors       the optimiser's per-parameter tensors; its param groups as JSON metadata
    trainer_state.safetensors   the trainer's state as JSON metadata ``trainer``: epoch, hrfd_start,
                                hrfd_earliest, compute, handover, num_steps, base_model
                                (:func:`hrf_core.models.registry.window_only_of` reads the last three)

A folder is written beside its final name (``epoch-NNNN.tmp``) and renamed into place; a failed write
removes it, so a full disk leaves the earlier checkpoints as they were and no debris.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from hrf_core.store.files import load_checked, one_line

OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_STATE_FILE = "trainer_state.safetensors"


def save_checkpoint(folder: Path, unet, scheduler, optimizer: torch.optim.Optimizer, state: dict,
                    save_weights: Callable[[Path, Any], Any] | None = None) -> Path:
    """Write the checkpoint ``folder``: weights, scheduler, optimiser and trainer ``state`` (JSON-able); returns it.
    ``save_weights(folder, unet)`` writes the weights its own way (a LoRA run: ``models.lora.save_adapter``, the
    adapter alone); None: the UNet as a diffusers folder ``unet/``.

    Built in ``folder.tmp`` and renamed into place. Any failure (a full disk) removes the temporary folder
    and leaves every existing checkpoint, ``folder`` included, as it was.
    """
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        if save_weights is not None:
            save_weights(tmp, unet)
        else:
            unet.save_pretrained(tmp / "unet", safe_serialization=True)
        scheduler.save_pretrained(tmp / "scheduler")
        optimizer_state = optimizer.state_dict()
        tensors = {f"state.{p}.{k}": v.detach().cpu().contiguous().reshape(-1) if v.dim() == 0 else
                   v.detach().cpu().contiguous() for p, s in optimizer_state["state"].items() for k, v in s.items()}
        save_file(tensors, tmp / OPTIMIZER_FILE,
                  metadata={"param_groups": json.dumps(optimizer_state["param_groups"])})
        save_file({"epoch": torch.tensor([state["epoch"]])}, tmp / TRAINER_STATE_FILE,
                  metadata={"trainer": json.dumps(state)})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():  # the same epoch again (a resume from an earlier checkpoint): swap, then drop the old one
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(folder)
    return folder


def load_optimizer_state(folder: Path, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Restore ``optimizer`` from a checkpoint folder; a ValueError (one line) when it does not fit the model."""
    path = folder / OPTIMIZER_FILE
    tensors = load_checked(path)
    param_groups = json.loads(_metadata(path, "param_groups"))
    state: dict = {}
    try:
        for key, value in tensors.items():
            _, p, name = key.split(".", 2)
            state.setdefault(int(p), {})[name] = value.reshape(()) if name == "step" else value.to(device)
        optimizer.load_state_dict({"state": state, "param_groups": param_groups})
    except (ValueError, KeyError, RuntimeError) as error:
        raise ValueError(f"{path} does not match this model's optimiser "
                         f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None


def read_trainer_state(folder: Path, missing_ok: bool = False) -> dict:
    """The trainer state a checkpoint folder holds (see the module's layout); ValueError when unreadable.

    ``missing_ok`` (a model folder that need not be a run checkpoint: the model registry's question): {} for a
    folder without the file or without the entry, and the file is not loaded whole.
    """
    path = Path(folder) / TRAINER_STATE_FILE
    if not missing_ok:
        load_checked(path)
        return json.loads(_metadata(path, "trainer"))
    if not path.is_file():
        return {}
    try:
        return json.loads(_metadata(path, "trainer", default="{}"))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable trainer state ({one_line(error)})") from None


def _metadata(path: Path, key: str, default: str | None = None) -> str:
    """A safetensors file's metadata entry ``key`` (else ``default``); a ValueError with one line when it is
    missing and there is no default."""
    with safe_open(path, "pt") as handle:
        value = (handle.metadata() or {}).get(key, default)
    if value is None:
        raise ValueError(f"{path} has no {key!r} entry: not a checkpoint this trainer wrote")
    return value
