"""Weight files: safetensors checks, and the one-time conversion of pickle UNet weights to safetensors.

Older diffusers folders and Hub repos ship the UNet only as a torch pickle,
``diffusion_pytorch_model.bin``. Unpickling can run arbitrary code, so such a file is read once with
``torch.load(path, map_location="cpu", weights_only=True)`` (PyTorch's restricted unpickler: tensors,
plain containers and numbers; any other global, e.g. ``os.system`` or a class's ``__reduce__``, is
refused before anything runs), the result must be a flat dict of str -> tensor, and a safetensors copy
is cached; every later load reads the copy. Layout of the cache (``$HRF_CACHE_DIR``, default
``~/.cache/hrf-explorer``, shared with :mod:`hrf_core.rewards.aesthetic`)::

    converted/<sha256 of the .bin>/
        diffusion_pytorch_model.safetensors   the converted weights (written once)
        source.json                           {"source": first .bin path seen, "sha256": ...}
        <16 hex digits: sha256 of the source's config files>/
            a diffusers folder with the source's layout: its model_index.json, config.json and
            scheduler_config.json files (root, unet/, scheduler/) and the weights (hard link or copy)

The config digest keeps two folders that share a .bin but differ in their configs (e.g. an edited
scheduler) apart. Every file and folder appears atomically (temp + rename); deleting the cache, or any
``converted/<sha256>`` folder in it, is safe: it is rebuilt on the next load.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from hrf_core.store.files import one_line
from hrf_core.store.runs import atomic_path, write_json

UNET_SAFETENSORS = "diffusion_pytorch_model.safetensors"
UNET_PICKLE = "diffusion_pytorch_model.bin"
#: The files copied from a source folder (root, unet/ and scheduler/) into its converted folder.
CONFIG_FILES = ("model_index.json", "config.json", "scheduler_config.json")

_SHA_MEMO: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def cache_dir() -> Path:
    """``$HRF_CACHE_DIR``, or ``~/.cache/hrf-explorer``."""
    return Path(os.environ.get("HRF_CACHE_DIR") or Path.home() / ".cache" / "hrf-explorer").expanduser()


def file_sha256(path: str | Path, memo: bool = False) -> str:
    """Hex sha256 of a file's bytes. ``memo``: remembered per process by path, size and mtime (a large pickle
    hashed once however often it loads); off where a file may be rewritten in place (a download to verify, a
    model just trained)."""
    path = Path(path).resolve() if memo else Path(path)
    key = None
    if memo:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key in _SHA_MEMO:
            return _SHA_MEMO[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if memo:
        _SHA_MEMO[key] = h.hexdigest()
    return h.hexdigest()


def unet_weights(unet_dir: Path | None) -> str | None:
    """"safetensors", "pickle" or None: the UNet weights a folder holds (single file or sharded index)."""
    if unet_dir is None:
        return None
    for kind, name in (("safetensors", UNET_SAFETENSORS), ("pickle", UNET_PICKLE)):
        if (unet_dir / name).is_file() or (unet_dir / f"{name}.index.json").is_file():
            return kind
    return None


def check_safetensors(path: str | Path) -> None:
    """Read a safetensors file's header (not its data): a missing, truncated or corrupt file is a ValueError.

    safetensors checks that the header's offsets cover the file exactly, so a truncated file fails here.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"missing weight file {path}")
    try:
        with safe_open(str(path), "pt") as handle:
            handle.keys()
    except Exception as error:  # SafetensorError, OSError: the file is not usable either way
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt: "
                         f"{one_line(error)})") from None


def load_pickle_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A pickle weights file's state dict, read with ``weights_only=True``; anything but str -> tensor is refused.

    Raises ValueError with one line for a pickle that asks for any other object (nothing in it is run),
    for a truncated or corrupt file, and for a result that is not a flat dict of strided tensors.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about legacy (non-zip) pickles: the error says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the restricted unpickler, zip reader or EOF: refuse whatever it is
        text = str(error)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        stopped = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.S)
        if found or stopped or isinstance(error, pickle.UnpicklingError):
            why = (f"it asks for the global {found.group(1)}" if found else
                   f"the restricted unpickler stopped at: {' '.join(stopped.group(1).split())}" if stopped else
                   f"the restricted unpickler stopped at: {one_line(error, first_sentence=True)}")
            raise ValueError(f"refused {path}: {why}; a weights file holds only tensors "
                             "(read with torch.load(weights_only=True): nothing in it was run)") from None
        detail = f"{type(error).__name__}: {one_line(error, first_sentence=True)}" if text.strip() else \
            type(error).__name__
        raise ValueError(f"{path} is not a readable PyTorch weights file (truncated or corrupt: {detail})") from None
    if not isinstance(state, dict) or not state:
        what = "an empty dict" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise ValueError(f"refused {path}: it holds {what}, not a dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            what = f"a {value.layout} tensor" if isinstance(value, torch.Tensor) else f"of type {type(value).__name__}"
            raise ValueError(f"refused {path}: entry {key!r} is {what}, not a dense tensor "
                             "(only flat state dicts of str -> tensor are converted)")
    return state


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write a state dict as safetensors, atomically; every tensor is cloned contiguous (tied tensors split).

    Empties ``state`` as it goes, so each original tensor can be freed once copied.
    """
    from safetensors.torch import save_file

    tensors = {}
    for key in list(state):
        tensors[key] = state.pop(key).detach().clone(memory_format=torch.contiguous_format)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
    except Exception as error:  # e.g. a dtype safetensors cannot store
        raise ValueError(f"could not write {path} as safetensors ({one_line(error)})") from None


def _config_files(folder: Path) -> list[Path]:
    """The config files of a diffusers folder, relative to it, in a fixed order."""
    found = []
    for sub in ("", "unet", "scheduler"):
        for name in CONFIG_FILES:
            if (folder / sub / name).is_file():
                found.append(Path(sub) / name)
    return found


def converted_folder(folder: str | Path, unet_dir: str | Path) -> Path:
    """The cached safetensors copy of a diffusers folder whose UNet has only ``diffusion_pytorch_model.bin``.

    Converts the pickle on the first call for its sha256 (see the module docstring); later calls, in any
    process, only hash the .bin and return the cached folder. ValueError (one line) when the pickle is refused.
    """
    folder, unet_dir = Path(folder), Path(unet_dir)
    source = unet_dir / UNET_PICKLE
    digest = file_sha256(source, memo=True)
    root = cache_dir() / "converted" / digest
    weights = root / UNET_SAFETENSORS
    if not weights.is_file():
        save_state(load_pickle_state(source), weights)
        write_json(root / "source.json", {"source": str(source.resolve()), "sha256": digest})
    configs = _config_files(folder)
    h = hashlib.sha256()
    for rel in configs:
        h.update(rel.as_posix().encode() + b"\0" + (folder / rel).read_bytes() + b"\0")
    target = root / h.hexdigest()[:16]
    if target.is_dir():
        return target
    try:
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
        try:
            for rel in configs:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / rel, tmp / rel)  # follows a Hub snapshot's symlinks into its blobs
            linked = tmp / unet_dir.relative_to(folder) / UNET_SAFETENSORS
            linked.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(weights, linked)
            except OSError:  # no hard links on this file system
                shutil.copyfile(weights, linked)
            try:
                tmp.rename(target)
            except OSError:  # another process made it first
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as error:
        raise ValueError(f"could not write the converted copy of {source} to {root} ({one_line(error)}): "
                         "set HRF_CACHE_DIR to a writable folder") from None
    return target
