"""The run store: one folder per run, written atomically, read by the CLI, the job manager and the app.

Layout of ``<root>/<run_id>/``::

    config.json            TrainConfig as JSON
    status.json            {"state": running|done|stopped|failed, "epoch", "epochs", "message", "updated"}
    train.lock             held (flock) by the process training the run (:mod:`hrf_core.store.liveness`)
    metrics.jsonl          one JSON object per evaluated epoch (epoch 0 = the base model), flushed
    grids/epoch-NNNN.png   sample grid of the evaluation set
    evals/epoch-NNNN.safetensors   per-sample arrays of that evaluation (features, probabilities,
                           rewards), to recompute a metric later (:mod:`hrf_core.study.frontier`)
    checkpoints/epoch-NNNN/
        unet/              diffusers folder (config.json + safetensors): loadable as a base model
        scheduler/         the DDIM scheduler config
        optimizer.safetensors, trainer_state.safetensors

A full disk loses nothing already written: a failed write removes its temporary file (or folder), a failed
metrics append is cut back to the rows before it, and the trainer raises :class:`StoreFullError` (one line:
what was kept and how to resume). ``HRF_MAX_STORE_GB`` (if set, in units of 10^9 bytes) refuses new runs and
resumes once the store holds more.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hrf_core.store import liveness

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHECKPOINT_PATTERN = re.compile(r"^epoch-(\d{4,})$")


def checkpoint_epoch(folder: Path | str) -> int:
    """The epoch of a checkpoint folder (``.../epoch-0012`` or its name) -> 12."""
    return int(CHECKPOINT_PATTERN.match(Path(folder).name).group(1))
MAX_STORE_VARIABLE = "HRF_MAX_STORE_GB"
#: how a full disk reads in errors that carry no errno (safetensors' SafetensorError wraps the OS message)
_FULL_DISK_TEXT = re.compile(r"No space left on device|Disk quota exceeded|os error (28|122)\b|StorageFull")


class StoreFullError(ValueError):
    """The run store's disk is full, or the store is over ``HRF_MAX_STORE_GB``: one line to show as it is."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) says the disk or the quota is full (ENOSPC, EDQUOT)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StoreFullError) or (isinstance(error, OSError) and
                                                 error.errno in (errno.ENOSPC, errno.EDQUOT)):
            return True
        if _FULL_DISK_TEXT.search(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def store_size(root: Path) -> int:
    """Bytes of the files under ``root`` (links not followed); 0 when it does not exist."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:  # removed while we walk
                continue
    return total


def check_store_limit(root: Path) -> None:
    """Refuse (:class:`StoreFullError`) to start a run when ``HRF_MAX_STORE_GB`` is set and ``root`` holds more."""
    value = os.environ.get(MAX_STORE_VARIABLE, "").strip()
    if not value:
        return
    try:
        limit = float(value)
    except ValueError:
        limit = float("nan")
    if not limit > 0:
        raise ValueError(f"{MAX_STORE_VARIABLE} must be a positive number of gigabytes, got {value!r}")
    size = store_size(Path(root))
    if size > limit * 1e9:
        raise StoreFullError(f"the run store {root} holds {size / 1e9:.2f} GB, over {MAX_STORE_VARIABLE}={value}: "
                             "delete runs or raise the limit; nothing was started")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def validate_run_id(run_id: str) -> str:
    """A run id is a plain folder name: letters, digits, '.', '_' and '-' (no path separators)."""
    if not RUN_ID_PATTERN.match(run_id or "") or run_id in (".", ".."):
        raise ValueError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    return run_id


CONFIG_FILE, STATUS_FILE, METRICS_FILE, GRIDS = "config.json", "status.json", "metrics.jsonl", "grids"


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a run folder (it has a config)."""
    return (Path(path) / CONFIG_FILE).is_file()


class Run:
    """A run folder of the store; the only place that knows the names of a run's files."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.run_id = self.path.name
        # where its files are
        self.config_path, self.status_path, self.metrics_path, self.grids_dir = (
            self.path / name for name in (CONFIG_FILE, STATUS_FILE, METRICS_FILE, GRIDS))

    def grid_path(self, epoch: int) -> Path:
        """The sample grid of an evaluated epoch (``grids/epoch-NNNN.png``)."""
        return self.grids_dir / f"epoch-{int(epoch):04d}.png"

    # -- reading ---------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return read_json(self.config_path, {})

    @property
    def status(self) -> dict:
        return read_json(self.status_path, {"state": "unknown"})

    @property
    def is_example(self) -> bool:
        """A finished run that ships with the repository (metrics and grids, no weights)."""
        return bool((self.config.get("extra") or {}).get("example"))

    def metrics(self) -> list[dict]:
        """All metric rows (skips a torn last line of a run being written)."""
        rows = []
        try:
            lines = self.metrics_path.read_text().splitlines()
        except FileNotFoundError:
            return rows
        for line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def checkpoints(self) -> list[Path]:
        """Checkpoint folders, oldest first."""
        folder = self.path / "checkpoints"
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if CHECKPOINT_PATTERN.match(p.name)
                 and ((p / "unet").is_dir() or (p / "pytorch_lora_weights.safetensors").is_file())]  # LoRA: adapter
        return sorted(found, key=checkpoint_epoch)

    def grids(self) -> list[Path]:
        return sorted(self.grids_dir.glob("epoch-*.png"))

    def latest_grid(self) -> Path | None:
        grids = self.grids()
        return grids[-1] if grids else None

    # -- writing ---------------------------------------------------------------------------
    def set_status(self, state: str, epoch: int, epochs: int, message: str = "") -> None:
        """Write ``status.json``. "running" takes the run's training lock for this process (RunBusy, a
        ValueError, when another process trains it); any other state gives the lock back
        (:mod:`hrf_core.store.liveness`). A final state never overwrites the status of a run trained elsewhere."""
        if state == "running":
            liveness.hold(self.path)
        elif liveness.holder(self.path) == liveness.ELSEWHERE:
            raise liveness.RunBusy(f"run {self.run_id} is being trained by another process: its status is left as is")
        try:
            write_json(self.status_path,
                       {"state": state, "epoch": epoch, "epochs": epochs, "message": message, "updated": time.time()})
        finally:
            if state != "running":
                liveness.release(self.path)

    def append_metrics(self, row: dict) -> None:
        """Append one JSON line and flush it to disk; a failed write (a full disk) is cut back off the file,
        so the rows before it stay whole, and the error is raised."""
        data = (json.dumps(row, sort_keys=True) + "\n").encode()
        fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, size)  # frees space: works on a full disk
                raise
        finally:
            os.close(fd)

    @contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Around a write of ``what`` into the run: a full disk becomes one :class:`StoreFullError` (what is
        kept, how to resume); any other error passes unchanged."""
        try:
            yield
        except Exception as error:
            if is_disk_full(error):
                raise self.full_disk(what) from error
            raise

    def log_epoch(self, row: dict, grid=None, arrays: dict | None = None) -> None:
        """Write an epoch's grid and evaluation arrays, then its metrics row, so a logged row always has its
        files (a full disk: :meth:`writing`)."""
        epoch = int(row.get("epoch", 0))
        with self.writing(f"the metrics of epoch {epoch}"):
            if grid is not None:
                self.save_grid(grid, epoch)
            if arrays:
                self.save_eval(arrays, epoch)
            self.append_metrics(row)

    def write_config(self, data: dict) -> None:
        """Replace ``config.json`` with ``data``, atomically."""
        write_json(self.config_path, data)

    def update_config(self, changes: dict, extra: dict | None = None) -> None:
        """Merge ``changes`` (and ``extra`` into its ``extra``) into ``config.json``, atomically."""
        data = self.config
        data.update(changes)
        if extra:
            data.setdefault("extra", {}).update(extra)
        with self.writing("the run's config"):
            write_json(self.config_path, data)

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep only rows with epoch <= last_epoch (used by resume), atomically."""
        rows = [r for r in self.metrics() if r.get("epoch", 0) <= last_epoch]
        with atomic_path(self.metrics_path) as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    def save_grid(self, image, epoch: int) -> Path:
        path = self.grid_path(epoch)
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        return path

    def save_eval(self, arrays: dict, epoch: int) -> Path:
        """The per-sample arrays of an evaluation (``{name: tensor}``) as safetensors, atomically."""
        from safetensors.torch import save_file

        path = self.eval_path(epoch)
        with atomic_path(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in arrays.items()}, str(tmp))
        return path

    def eval_path(self, epoch: int) -> Path:
        return self.path / "evals" / f"epoch-{epoch:04d}.safetensors"

    def load_eval(self, epoch: int) -> dict | None:
        """The arrays saved by :meth:`save_eval`, or None when that evaluation kept none."""
        from safetensors.torch import load_file

        path = self.eval_path(epoch)
        return load_file(str(path)) if path.is_file() else None

    def checkpoint_dir(self, epoch: int) -> Path:
        return self.path / "checkpoints" / f"epoch-{epoch:04d}"

    def full_disk(self, unwritten: str) -> StoreFullError:
        """The one-line error of a full disk while writing ``unwritten``: what is kept and how to resume."""
        logged = max((r.get("epoch", 0) for r in self.metrics()), default=None)
        kept = "no metrics" if logged is None else f"metrics up to epoch {logged}"
        checkpoints = self.checkpoints()
        if checkpoints:
            epoch = checkpoint_epoch(checkpoints[-1])
            kept += f" and the checkpoint of epoch {epoch}"
            then = f"free some space, then `python -m hrf_core resume {self.path}` continues from epoch {epoch}"
        else:
            then = "no checkpoint yet: free some space and start the run again"
        return StoreFullError(f"the disk holding the run store is full: {unwritten} was not written (its temporary "
                              f"files are removed); kept {kept}; {then}")

    def __repr__(self) -> str:
        return f"Run({self.path})"


class RunStore:
    """The folder of runs (default ``runs/``).

    ``examples``: a folder of shipped example runs, listed (and found by :meth:`get`) while the store
    itself has no run, so a fresh app shows a finished comparison before anything trains.
    """

    def __init__(self, root: str | Path = "runs", examples: str | Path | None = None):
        self.root = Path(root)
        self.examples = Path(examples) if examples else None

    def create(self, config: dict, name: str | None = None) -> Run:
        """A new run folder with ``config.json``; the id is time-stamped and unique.

        A folder ``name`` that exists is taken only when it is claimed: empty but for its training lock, held by
        this process (an experiment's unit claims its folder before deciding to start, continue or skip it).

        Refused (:class:`StoreFullError`, no folder left behind) when the store is over ``HRF_MAX_STORE_GB``
        or its disk is full.
        """
        stamp = time.strftime("%Y%m%d-%H%M%S")
        default = re.sub(r"[^A-Za-z0-9._-]+", "", f"{stamp}-{config.get('method', 'run')}-{config.get('reward', '')}")
        base = validate_run_id(name or default.rstrip("-"))
        check_store_limit(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for suffix in range(1000):
                run_id = base if suffix == 0 else f"{base}-{suffix}"
                try:
                    (self.root / run_id).mkdir()
                except FileExistsError:
                    if not self._claimed(run_id):
                        continue
                run = Run(self.root / run_id)
                try:
                    run.write_config(config)
                except BaseException:
                    shutil.rmtree(run.path, ignore_errors=True)
                    raise
                return run
        except OSError as error:
            if is_disk_full(error):
                raise StoreFullError(f"the disk holding the run store {self.root} is full: no run was started; "
                                     "free some space") from error
            raise
        raise RuntimeError(f"could not create a unique run folder for {base!r}")

    def _claimed(self, run_id: str) -> bool:
        path = self.root / run_id
        return (liveness.holder(path) == liveness.HERE
                and all(item.name == liveness.LOCK_NAME for item in path.iterdir()))

    def get(self, run_id: str) -> Run:
        validate_run_id(run_id)
        for root in (self.root, self.examples):
            if root is not None and is_run_folder(root / run_id):
                return Run(root / run_id)
        raise ValueError(f"no run {run_id!r} in {self.root}")

    def own_runs(self) -> list[Run]:
        """The store's own runs with a config, newest first (never the examples)."""
        return self._list(self.root)

    def list(self) -> list[Run]:
        """Runs with a config, newest first; the shipped examples when the store has none."""
        own = self.own_runs()
        if own or self.examples is None:
            return own
        return sorted(self._list(self.examples), key=lambda r: r.run_id)  # checkout mtimes mean nothing

    @staticmethod
    def _list(root: Path) -> list[Run]:
        if not root.is_dir():
            return []
        runs = [Run(p) for p in root.iterdir() if is_run_folder(p)]
        return sorted(runs, key=lambda r: r.config_path.stat().st_mtime, reverse=True)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte of ``data`` is written (a write may take fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def run_of_checkpoint(checkpoint: str | Path) -> Run | None:
    """The run a checkpoint folder (``<run>/checkpoints/epoch-NNNN``) belongs to, or None for other folders."""
    checkpoint = Path(checkpoint).expanduser().resolve()
    run_dir = checkpoint.parent.parent
    if CHECKPOINT_PATTERN.match(checkpoint.name) and checkpoint.parent.name == "checkpoints" and \
            is_run_folder(run_dir):
        return Run(run_dir)
    return None


def open_run(path: str | Path) -> Run:
    """A run from a user-supplied folder path (validated)."""
    path = Path(path).expanduser()
    if not is_run_folder(path):
        raise ValueError(f"{path} is not a run folder (no {CONFIG_FILE})")
    return Run(path.resolve())
