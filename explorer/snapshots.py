"""What the app reads of a run: its metric rows (cached by file size and mtime) and its state as a
:class:`JobSnapshot` (for the job's runs and for any run on disk, trained here, elsewhere, or interrupted)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from hrf_core.store import liveness
from hrf_core.store.runs import Run, checkpoint_epoch

#: Runs whose metric rows are kept in memory (the least recently re-read are dropped first).
ROWS_CACHED = 256
ACTIVE_STATES = ("starting", "running", "stopping")


@dataclass
class JobSnapshot:
    """What the UI shows about the current job (or, when idle, about the latest run)."""

    # idle | starting | running | stopping | done | stopped | failed | interrupted | running elsewhere
    state: str = "idle"
    status: str = "idle"  # human text: "running", "failed: <reason>", ...
    run_id: str | None = None
    epoch: int = 0
    epochs: int = 0
    seconds_per_epoch: float | None = None
    eta_seconds: float | None = None
    phase: str = ""
    rows: list[dict] = field(default_factory=list)
    grid: str | None = None  # latest sample grid (path)
    base_grid: str | None = None  # the epoch-0 (base model) grid (path)
    error: str | None = None
    config: dict = field(default_factory=dict)
    elapsed_seconds: float | None = None
    partner_id: str | None = None  # a duel's second run (its rows: ``JobManager.snapshot(partner_id)``)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


class RunReader:
    """Reads runs for the UI, safe from many threads: rows re-read only when ``metrics.jsonl`` changed."""

    def __init__(self):
        self._cache: dict[Path, tuple[tuple[int, int], list[dict]]] = {}
        self._lock = threading.Lock()

    def rows(self, run: Run) -> list[dict]:
        """Metric rows of ``run``, re-read only when metrics.jsonl changed (size or mtime)."""
        path = run.metrics_path
        try:
            stat = path.stat()
        except FileNotFoundError:
            return []
        key = (stat.st_size, stat.st_mtime_ns)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        rows = run.metrics()
        with self._lock:
            self._cache.pop(path, None)
            self._cache[path] = (key, rows)  # most recent last
            while len(self._cache) > ROWS_CACHED:  # runs come and go (deleted, or a long-lived server)
                self._cache.pop(next(iter(self._cache)))
        return rows

    def fill(self, snap: JobSnapshot, run: Run) -> JobSnapshot:
        rows = self.rows(run)
        snap.rows = rows
        grids = run.grids()
        snap.grid = str(grids[-1]) if grids else None
        base = run.grid_path(0)
        snap.base_grid = str(base) if base.is_file() else None
        trained = [r for r in rows if r.get("epoch", 0) >= 1 and isinstance(r.get("seconds"), (int, float))]
        if trained:
            recent = trained[-5:]
            snap.seconds_per_epoch = sum(r["seconds"] for r in recent) / len(recent)
        done = max((r.get("epoch", 0) for r in rows), default=0)
        snap.epoch = max(snap.epoch, done)
        if snap.active and snap.seconds_per_epoch is not None and snap.epochs:
            snap.eta_seconds = max(0.0, (snap.epochs - snap.epoch) * snap.seconds_per_epoch)
        return snap

    def disk_snapshot(self, run: Run) -> JobSnapshot:
        status = run.status
        state = status.get("state", "unknown")
        message = str(status.get("message", ""))
        error = None
        text = state
        if state == "running":
            who = liveness.holder(run.path)
            if who == liveness.HERE:  # e.g. the second half of this process's duel
                message = message or "running"
            elif who == liveness.ELSEWHERE:
                state = text = "running elsewhere"
                message = message or "running in another process"
            else:
                logged = max((int(r.get("epoch", 0)) for r in self.rows(run)), default=0)
                at = max(logged, int(status.get("epoch") or 0))
                checkpoints = run.checkpoints()
                resume = checkpoint_epoch(checkpoints[-1]) if checkpoints else None
                state, text = "interrupted", f"interrupted at epoch {at}"
                message = (f"interrupted at epoch {at}: the process that trained it is gone; "
                           + (f"Continue resumes from the checkpoint of epoch {resume}" if resume is not None
                              else "it has no checkpoint to continue from"))
        if state == "failed":
            error = message or "unknown error"
            text = f"failed: {error}"
        config = run.config
        snap = JobSnapshot(state=state, status=text, run_id=run.run_id, epoch=int(status.get("epoch") or 0),
                           epochs=int(status.get("epochs") or config.get("epochs") or 0), phase=message,
                           error=error, config=config,
                           partner_id=(config.get("extra") or {}).get("duel_with"))
        return self.fill(snap, run)
