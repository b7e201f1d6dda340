"""Whether a run is being trained right now, known from an OS lock instead of guessed from a timer.

The process that trains a run holds an exclusive ``flock`` on ``<run>/train.lock`` from the moment it
marks the run "running" until it writes a final state (:meth:`hrf_core.store.runs.Run.set_status` takes and
releases it, so the app, the CLI and the experiment all hold it without knowing). The operating system
drops the lock the instant that process ends, however it ends (``kill -9`` included), so:

- lock held by this process: the run trains here;
- lock held by another process: the run trains elsewhere (e.g. the CLI, or a second app on the store);
- lock free while the status still says "running": its process is gone: the run was interrupted.

One lock per run folder and process, whatever the number of :class:`~hrf_core.store.runs.Run` objects.
A probe takes a shared lock for a moment; the holder retries its exclusive lock for up to a second,
so a probe never makes a start fail. Locks on network file systems are as reliable as the file system's.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

LOCK_NAME = "train.lock"
HERE, ELSEWHERE = "here", "elsewhere"

_HELD: dict[str, int] = {}  # resolved run folder -> the open file descriptor holding its lock
_GUARD = threading.Lock()


class RunBusy(ValueError):
    """Another process trains this run (one clear line)."""


def _key(folder: Path) -> str:
    return str(Path(folder).resolve())


def hold(folder: str | Path, wait: float = 1.0) -> None:
    """Take the run's training lock for this process (idempotent); RunBusy when another process has it."""
    key = _key(folder)
    with _GUARD:
        if key in _HELD:
            return
        path = Path(key) / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RunBusy(f"run {Path(key).name} is being trained by another process: "
                                  "stop it there first") from None
                time.sleep(0.02)  # a probe holds its shared lock for microseconds
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people (and tests); the library never reads it
        _HELD[key] = fd


def release(folder: str | Path) -> None:
    """Give the lock back (no-op when this process does not hold it)."""
    with _GUARD:
        fd = _HELD.pop(_key(folder), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def holder(folder: str | Path) -> str | None:
    """``"here"`` (this process trains it), ``"elsewhere"`` (another live process does) or None (nobody)."""
    key = _key(folder)
    if key in _HELD:
        return HERE
    try:
        fd = os.open(Path(key) / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file: never trained by a process that locks
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return ELSEWHERE
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
