"""Experiment trackers for a run: trackio, TensorBoard and Weights & Biases (``--report-to``, ``HRF_REPORT_TO``).

A :class:`RunTrackers` is a trainer callback. At the first epoch it reports it opens one tracker run per
name, named after the run id, with the run's config as its hyperparameters; every epoch it logs the
numbers of the metrics.jsonl row under the same names (nested dicts as ``key/sub``; lists and text are
skipped) at step = epoch, and the evaluation grid as the image ``grid``. A resumed run continues the same
tracker run: wandb by the id kept in ``<run>/trackers.json`` (``resume="allow"``), trackio by the run's
name (``resume="allow"``), TensorBoard in the same log dir ``<run>/tensorboard`` (steps from the resumed
epoch on are purged from the earlier files). The project is ``HRF_TRACKER_PROJECT`` (default
``hrf-explorer``).

No tracker is a dependency: :func:`require` says ``pip install <name>`` for one that is not installed.
A tracker that fails (full disk, unreachable server) logs one warning and is dropped for the rest of the
run; training never stops for it.
"""

from __future__ import annotations

import contextvars
import importlib.util
import json
import logging
import numbers
import os
import re
import uuid
from collections.abc import Iterable

from hrf_core.store.runs import Run, read_json, write_json

log = logging.getLogger(__name__)

TRACKERS = ("trackio", "tensorboard", "wandb")
DEFAULT_PROJECT = "hrf-explorer"
GRID = "grid"  # the image's name in every tracker
_PROJECT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def parse(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """Tracker names from flags or ``HRF_REPORT_TO`` (comma-separated), validated, in order, without repeats."""
    if isinstance(values, str):
        values = [values]
    names = [n.strip().lower() for value in values or () for n in value.split(",") if n.strip()]
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r}: choose from {', '.join(TRACKERS)}")
    return tuple(dict.fromkeys(names))


def from_env() -> tuple[str, ...]:
    """The trackers ``HRF_REPORT_TO`` names (the app's runs), validated."""
    try:
        return parse(os.environ.get("HRF_REPORT_TO", ""))
    except ValueError as error:
        raise ValueError(f"HRF_REPORT_TO: {error}") from None


def project() -> str:
    """The tracker project: ``HRF_TRACKER_PROJECT`` (validated), default ``hrf-explorer``."""
    name = os.environ.get("HRF_TRACKER_PROJECT", "").strip() or DEFAULT_PROJECT
    if not _PROJECT_PATTERN.match(name):
        raise ValueError(f"HRF_TRACKER_PROJECT {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def require(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """:func:`parse`, then a ValueError saying ``pip install <name>`` for a tracker that is not installed."""
    names = parse(values)
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ValueError(f"tracker {name} is not installed: pip install {name}")
    if names:
        project()
    return names


def scalars(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a metrics row under their names; nested dicts as ``key/sub``; lists, text and None skipped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalars(value, f"{name}/"))
        elif isinstance(value, numbers.Real):
            out[name] = float(value) if isinstance(value, bool) else value
    return out


def flat_config(config: dict) -> dict[str, int | float | str | bool]:
    """A config as flat hyperparameters: nested dicts as ``key/sub``, lists and tuples as JSON text."""
    out: dict = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}/{k}": v for k, v in flat_config(value).items()})
        elif value is None or isinstance(value, (int, float, str, bool)):
            out[key] = value
        else:
            out[key] = json.dumps(value)
    return out


class _Trackio:
    name = "trackio"

    def start(self, run: Run, config: dict, first_epoch: int) -> None:
        import trackio

        # a fresh context: trackio.init would otherwise finish another run of this thread (a duel's partner)
        self.run = contextvars.copy_context().run(
            trackio.init, project=project(), name=run.run_id, config=config, resume="allow", embed=False,
            auto_log_cpu=False, auto_log_gpu=False)

    def log(self, epoch: int, values: dict, grid, grid_file) -> None:
        import trackio

        image = {GRID: trackio.Image(grid_file or grid)} if grid is not None else {}
        self.run.log({**values, **image}, step=epoch)

    def finish(self, failed: bool) -> None:
        self.run.finish()


class _TensorBoard:
    name = "tensorboard"

    def start(self, run: Run, config: dict, first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(log_dir=str(run.path / "tensorboard"), purge_step=first_epoch)
        experiment, session_start, _ = hparams(flat_config(config), {})
        self.writer.file_writer.add_summary(experiment)  # the hparams dashboard, in this run's own log dir
        self.writer.file_writer.add_summary(session_start)
        self.writer.add_text("config", f"```\n{json.dumps(config, indent=2, sort_keys=True)}\n```", first_epoch)

    def log(self, epoch: int, values: dict, grid, grid_file) -> None:
        import numpy as np
        from tensorboard.compat.proto.summary_pb2 import Summary

        for key, value in values.items():
            self.writer.add_scalar(key, value, epoch)
        if grid_file is not None:  # the run store's PNG as it is (add_image would encode it again)
            image = Summary.Image(height=grid.height, width=grid.width, colorspace=len(grid.getbands()),
                                  encoded_image_string=grid_file.read_bytes())
            self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=GRID, image=image)]), epoch)
        elif grid is not None:
            self.writer.add_image(GRID, np.asarray(grid.convert("RGB")), epoch, dataformats="HWC")
        self.writer.flush()

    def finish(self, failed: bool) -> None:
        self.writer.close()


class _Wandb:
    name = "wandb"

    def start(self, run: Run, config: dict, first_epoch: int) -> None:
        import wandb

        state_file = run.path / "trackers.json"
        state = read_json(state_file, {}) or {}
        if not state.get("wandb_id"):
            state["wandb_id"] = uuid.uuid4().hex[:12]  # a store's run ids can repeat across machines
            write_json(state_file, state)
        self.run = wandb.init(project=project(), name=run.run_id, id=state["wandb_id"], resume="allow",
                              config=config, allow_val_change=True, reinit="create_new",
                              settings=wandb.Settings(console="off"))
        self.run.define_metric("*", step_metric="epoch")

    def log(self, epoch: int, values: dict, grid, grid_file) -> None:
        import wandb

        image = {GRID: wandb.Image(str(grid_file) if grid_file else grid)} if grid is not None else {}
        self.run.log({**values, **image})

    def finish(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


_CLASSES = {cls.name: cls for cls in (_Trackio, _TensorBoard, _Wandb)}


class RunTrackers:
    """The trackers of one run, as a trainer callback; opened at the first report, closed by :meth:`close`.

    Also a context manager (closes on exit, marking the tracker run failed on an exception).
    """

    def __init__(self, names: Iterable[str], run: Run):
        self.run = run
        self.trackers = [_CLASSES[name]() for name in parse(list(names))]
        self._started = False
        self._broken: set[str] = set()

    def attach(self, trainer) -> RunTrackers:
        """Add this to ``trainer``'s callbacks; returns self (``with RunTrackers(...).attach(trainer): ...``)."""
        trainer.callbacks.append(self)
        return self

    def _guard(self, tracker, action: str, fn, *args) -> None:
        broken = tracker.name in self._broken
        if broken and action != "finish":
            return
        try:
            fn(*args)
        except Exception as error:  # noqa: BLE001 - a tracker must never stop training
            self._broken.add(tracker.name)
            if broken:  # warned already; finishing a broken tracker only frees what it holds
                return
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            log.warning("run %s: %s could not %s (%s); training continues without it", self.run.run_id,
                        tracker.name, action, reason)

    def __call__(self, report) -> None:
        if not self.trackers:
            return
        if not self._started:
            self._started = True
            config = self.run.config
            for tracker in self.trackers:
                self._guard(tracker, "start", tracker.start, self.run, config, report.epoch)
        values, grid = scalars(report.metrics), getattr(report, "grid", None)
        grid_file = self.run.grid_path(report.epoch)  # written before the callbacks
        grid_file = grid_file if grid is not None and grid_file.is_file() else None
        for tracker in self.trackers:
            self._guard(tracker, f"log epoch {report.epoch}", tracker.log, report.epoch, values, grid, grid_file)

    def close(self, failed: bool = False) -> None:
        """Finish every started tracker run, broken ones too (never raises)."""
        if self._started:
            for tracker in self.trackers:
                self._guard(tracker, "finish", tracker.finish, failed)
        self._started = False
        self.trackers = []

    def __enter__(self) -> RunTrackers:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(failed=kind is not None)
