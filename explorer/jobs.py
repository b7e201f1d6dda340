"""One background fine-tuning job at a time, and snapshots of it for the UI (no gradio here).

The :class:`JobManager` owns at most one training thread. ``start(config)`` validates everything
first and raises ``ValueError`` with one clear line (nothing is started, no run folder is made);
``start_duel(a, b)`` trains two configurations in one job, alternating epochs, each an ordinary
run of the store; ``stop()`` asks the trainer(s) to stop cooperatively; ``snapshot()`` is cheap and
safe to call from many places at once: it reads the run store (metrics are cached by file size and
mtime), so a reloaded tab, a second visitor, or an app restarted after a crash sees the job and its
history. ``live_key()`` is cheaper still: it changes whenever anything a viewer sees may have.
``continue_run(run_id, more)`` continues a stopped, interrupted or finished run for more epochs, exactly
like ``python -m hrf_core resume``.

Whether a run read from disk is still trained by someone is known from its training lock
(:mod:`hrf_core.store.liveness`): "running elsewhere" only while another live process holds it, "interrupted
at epoch k" the moment that process is gone.

A worker thread never lets an exception escape: a crashing trainer leaves the status
``"failed: <reason>"`` and the manager ready for the next start.

Heavy modules (torch, diffusers) are imported lazily, so importing this module is instant.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

from explorer.snapshots import ACTIVE_STATES, JobSnapshot, RunReader
from hrf_core.config import TrainConfig
from hrf_core.rl import memory
from hrf_core.rl.launch import create_runs, default_torch_threads  # noqa: F401 - the app's default
from hrf_core.share import trackers
from hrf_core.store import liveness
from hrf_core.store.runs import Run, RunStore, checkpoint_epoch

log = logging.getLogger(__name__)

#: The most epochs one Continue may add.
MAX_MORE_EPOCHS = 1000


class TrainerLike(Protocol):
    """What the manager needs from a trainer (the real one is :class:`hrf_core.rl.trainer.Trainer`).

    ``phase``: what it is doing now (shown live); ``train()``: run to the end, "done" or "stopped";
    ``steps()``: the same epoch by epoch, a generator yielding each finished epoch and returning what
    ``train()`` returns (a duel alternates two of them).
    """

    phase: str

    def train(self) -> str: ...

    def steps(self) -> Generator[int, None, str]: ...


#: ``factory(config, run, callbacks, stop_event) -> trainer`` (None: the real trainer, :mod:`hrf_core.rl.launch`)
TrainerFactory = Callable[[TrainConfig, Run, list, threading.Event], TrainerLike]
#: ``resume_factory(run, epochs, callbacks, stop_event) -> trainer`` (continues ``run`` up to ``epochs`` in all)
ResumeFactory = Callable[[Run, int, list, threading.Event], TrainerLike]


def default_preflight(config: TrainConfig) -> str:
    """Raise ValueError (one clear line) if the config, its model or its reward cannot run here now; the line that
    says its evaluation falls back to a proxy here ("" when it does not)."""
    from hrf_core.rl.launch import preflight

    return preflight(config)


@dataclass(frozen=True)
class _Ended:
    """What is kept of a trainer once its job has ended: its last phase."""

    phase: str


@dataclass
class _Job:
    run: Run
    config: TrainConfig
    stop_event: threading.Event
    started: float
    partner: Run | None = None  # a duel's second run
    partner_config: TrainConfig | None = None
    state: str = "starting"
    epoch: int = 0
    error: str | None = None
    trainer: Any = None
    partner_trainer: Any = None
    thread: threading.Thread | None = None
    finished: float | None = None
    resume: bool = False  # Continue: the main run resumes from its latest checkpoint
    report_to: tuple[str, ...] = ()  # trackers (HRF_REPORT_TO), one tracker run per run of the job


@dataclass
class Task:
    """A short job that is not a run (e.g. a locality profile), run in the job slot: its progress and outcome."""

    label: str
    stop_event: threading.Event
    state: str = "running"  # running | done | failed | stopped
    fraction: float = 0.0
    message: str = ""
    error: str | None = None
    result: Any = None
    thread: threading.Thread | None = None


def _partner_phase(job: _Job) -> str:
    """What a duel's second trainer is doing while it works; "" when there is none or it is idle or finished."""
    phase = str(getattr(job.partner_trainer, "phase", "") or "") if job.partner is not None else ""
    return "" if phase in ("idle", "done", "stopped", "failed") else phase


class JobManager:
    """Runs one fine-tuning job (or one :class:`Task`) at a time in a background thread; thread-safe."""

    def __init__(
        self,
        store: RunStore,
        trainer_factory: TrainerFactory | None = None,
        preflight: Callable[[TrainConfig], str | None] | None = default_preflight,
        torch_threads: int | None = None,
        report_to: tuple[str, ...] | None = None,
        resume_factory: ResumeFactory | None = None,
    ):
        self.store = store
        self.trainer_factory = trainer_factory
        self.resume_factory = resume_factory
        self.preflight = preflight
        #: the latest start's one line about a proxy standing in for weights it could not have ("" for none)
        self.start_note = ""
        self.torch_threads = torch_threads
        self.report_to = report_to  # None: HRF_REPORT_TO, read at each start
        self._lock = threading.Lock()
        self._job: _Job | None = None
        self.reader = RunReader()
        self._changes = 0  # bumped (:meth:`_changed`) on every job event the UI may show (start, epoch, stop, end)
        self._task: Task | None = None
        self._changes_lock = threading.Lock()  # epochs bump it from the worker while the UI thread stops or starts

    def _changed(self) -> None:
        """Count one more change (from any thread: ``+=`` alone is a read and a write that threads can interleave)."""
        with self._changes_lock:
            self._changes += 1

    # -- control --------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        job, task = self._job, self._task
        return (job is not None and job.state in ACTIVE_STATES) or (task is not None and task.state == "running")

    def _refuse_if_busy(self) -> None:
        """ValueError naming what occupies the slot (call with the lock held)."""
        job, task = self._job, self._task
        if job is not None and job.state in ACTIVE_STATES:
            raise ValueError(f"a run is already in progress ({job.run.run_id}, epoch {job.epoch}/{job.config.epochs}): "
                             "stop it first")
        if task is not None and task.state == "running":
            raise ValueError(f"{task.label} is in progress ({task.fraction:.0%}): wait for it or stop it")

    def run_task(self, label: str, work: Callable[[threading.Event, Callable[[float, str], None]], Any]) -> Task:
        """Run ``work(stop_event, progress)`` in the job slot's background thread (never in the caller's).

        Refused with a ValueError while a run or another task is active; ``progress(fraction, message)``
        is recorded for :meth:`task`. Stop asks the task to end (``work`` checks the event).
        """
        from hrf_core.rl.policy import StopRequested

        with self._lock:
            self._refuse_if_busy()
            task = Task(label=label, stop_event=threading.Event())

            def progress(fraction: float, message: str) -> None:
                task.fraction, task.message = float(fraction), message

            def body() -> None:
                try:
                    if self.torch_threads:
                        import torch

                        torch.set_num_threads(self.torch_threads)
                    task.result = work(task.stop_event, progress)
                    task.state, task.fraction = "done", 1.0
                except StopRequested:
                    task.state = "stopped"
                except BaseException as error:  # noqa: BLE001 - the app must survive any task failure
                    task.error = (f"{type(error).__name__}: {error}".splitlines() or [""])[0][:500]
                    task.state = "failed"
                    log.error("task %s failed:\n%s", label, traceback.format_exc())
                finally:
                    self._changed()

            task.thread = threading.Thread(target=body, name="hrf-task", daemon=True)
            self._task = task
            self._changed()
            task.thread.start()
            return task

    def task(self) -> Task | None:
        """The latest task (running or ended), or None."""
        return self._task

    def start(self, config: TrainConfig, name: str | None = None) -> str:
        """Validate ``config``, create its run and start training in the background; returns the run id.

        Raises ValueError (nothing started, nothing written) when a job is running or the config,
        the model or the reward is not usable.
        """
        return self._start([config], [name])[0]

    def start_duel(self, config: TrainConfig, partner: TrainConfig) -> tuple[str, str]:
        """Train two configurations in one job, alternating epochs (a duel); returns both run ids.

        Each half is an ordinary run (resumable, comparable); Stop ends both. Same refusals as :meth:`start`.
        """
        first, second = self._start([config, partner], [None, None])
        return first, second

    def _start(self, configs: list[TrainConfig], names: list[str | None]) -> list[str]:
        if not all(isinstance(c, TrainConfig) for c in configs):
            raise ValueError("start() needs a TrainConfig")
        with self._lock:
            self._refuse_if_busy()
            report_to = trackers.require(trackers.from_env() if self.report_to is None else self.report_to)
            notes = []
            for config in configs:
                config.validate()
                if self.preflight is not None:
                    notes.append(self.preflight(config) or "")
            self.start_note = next((note for note in notes if note), "")
            runs = create_runs(self.store, configs, names)
            job = _Job(run=runs[0], config=configs[0], stop_event=threading.Event(), started=time.time(),
                       partner=runs[1] if len(runs) > 1 else None,
                       partner_config=configs[1] if len(configs) > 1 else None, report_to=report_to)
            self._launch(job)
            return [run.run_id for run in runs]

    def continue_run(self, run_id: str, more: int) -> int:
        """Continue a stopped, interrupted or finished run for ``more`` epochs from its latest checkpoint;
        returns that checkpoint's epoch (rows logged after it are still on disk until the job drops them).

        Exactly ``python -m hrf_core resume <run> --epochs <checkpoint epoch + more>``: metrics after the
        checkpoint are dropped and trained again, so every epoch is logged once. Raises ValueError (one line,
        nothing started) when a job runs here, another process trains the run, or it has no checkpoint.
        """
        try:
            more = int(more)
        except (TypeError, ValueError):
            raise ValueError(f"more epochs must be a whole number, got {more!r}") from None
        if not 1 <= more <= MAX_MORE_EPOCHS:
            raise ValueError(f"more epochs must be between 1 and {MAX_MORE_EPOCHS}, got {more}")
        with self._lock:
            self._refuse_if_busy()
            run = self.store.get(run_id)
            if run.is_example or run.path.parent.resolve() != self.store.root.resolve():
                raise ValueError(f"{run_id} is an example run: it ships without weights, so it cannot continue")
            if liveness.holder(run.path) == liveness.ELSEWHERE:
                raise liveness.RunBusy(f"run {run_id} is being trained by another process: stop it there first")
            checkpoints = run.checkpoints()
            if not checkpoints:
                raise ValueError(f"run {run_id} has no checkpoint to continue from")
            at = checkpoint_epoch(checkpoints[-1])
            config = TrainConfig.from_dict(run.config).replace(epochs=at + more)
            config.validate()
            if self.preflight is not None:
                self.preflight(config)
            report_to = trackers.require(trackers.from_env() if self.report_to is None else self.report_to)
            run.set_status("running", at, config.epochs, f"continuing from epoch {at}")  # takes the lock
            job = _Job(run=run, config=config, stop_event=threading.Event(), started=time.time(), epoch=at,
                       resume=True, report_to=report_to)
            self._launch(job)
            return at

    def _launch(self, job: _Job) -> None:
        job.thread = threading.Thread(target=self._work, args=(job,), name=f"hrf-job-{job.run.run_id}", daemon=True)
        self._job = job
        self._changed()
        job.thread.start()

    def stop(self) -> bool:
        """Ask the running job to stop after the current UNet call; False if nothing is running."""
        with self._lock:
            task = self._task
            if task is not None and task.state == "running":
                task.stop_event.set()
                return True
            job = self._job
            if job is None or job.state not in ("starting", "running"):
                return False
            job.stop_event.set()
            job.state = "stopping"
            self._changed()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job's thread ends; True if it ended (for tests and scripts)."""
        job = self._job
        if job is None or job.thread is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()

    def _launch_of(self, job: _Job, config: TrainConfig, run: Run, callback: Callable):
        """The :class:`~hrf_core.rl.launch.Launch` of one run of ``job`` (the manager's factories in tests)."""
        from hrf_core.rl import launch

        if job.resume and run is job.run:
            if self.resume_factory is not None:
                tracked = trackers.RunTrackers(job.report_to, run)
                return launch.Launch(self.resume_factory(run, config.epochs, [callback, tracked], job.stop_event),
                                     tracked)
            return launch.continue_run(run, config.epochs, report_to=job.report_to, callbacks=[callback],
                                       stop_event=job.stop_event)
        return launch.open_trainer(config, run, report_to=job.report_to, callbacks=[callback],
                                   stop_event=job.stop_event, factory=self.trainer_factory)

    def _work(self, job: _Job) -> None:
        from hrf_core.rl.launch import duel

        def on_main_epoch(report) -> None:
            job.epoch = report.epoch
            self._changed()

        def on_partner_epoch(report) -> None:
            self._changed()

        launches: list = []
        try:
            if self.torch_threads:
                import torch

                torch.set_num_threads(self.torch_threads)
            launches.append(self._launch_of(job, job.config, job.run, on_main_epoch))
            job.trainer = launches[0].trainer
            if job.partner is not None:
                launches.append(self._launch_of(job, job.partner_config, job.partner, on_partner_epoch))
                job.partner_trainer = launches[1].trainer
            if job.state == "starting":
                job.state = "running"
                self._changed()
            result = launches[0].train() if len(launches) == 1 else duel([launch.steps() for launch in launches])
            job.state = "stopped" if result == "stopped" or job.stop_event.is_set() else "done"
        except BaseException as error:  # noqa: BLE001 - the app must survive any trainer failure
            message = f"{type(error).__name__}: {error}".strip().rstrip(":")
            first = message.splitlines()[0] if message else type(error).__name__
            job.error = first[:500]
            job.state = "failed"
            log.error("run %s failed:\n%s", job.run.run_id, traceback.format_exc())
            for run, config in ((job.run, job.config), (job.partner, job.partner_config)):
                if run is None:
                    continue
                try:
                    if run.status.get("state") not in ("failed", "done", "stopped"):
                        run.set_status("failed", job.epoch, config.epochs, job.error)
                except Exception:  # noqa: BLE001 - a full disk must not kill the worker's cleanup either
                    log.exception("could not record the failure of run %s", run.run_id)
        finally:
            for tracked in [launch.trackers for launch in launches]:  # (no loop variable keeps a trainer alive)
                tracked.close(failed=job.state == "failed")  # a launch never stepped closes here
            job.finished = time.time()
            if job.state in ACTIVE_STATES:  # e.g. a trainer that returned something unexpected
                job.state = "done"
            for run in (job.run, job.partner):
                if run is not None:
                    liveness.release(run.path)  # the job is over here, whatever its status file says
            # Free the models now: a trainer is a reference cycle (its UNet's hooks call it back) that Python's
            # occasional full collection would free late, so back-to-back runs would pile up their models.
            job.trainer = _Ended(getattr(job.trainer, "phase", ""))
            if job.partner_trainer is not None:
                job.partner_trainer = _Ended(getattr(job.partner_trainer, "phase", ""))
            launches.clear()
            gc.collect()
            memory.release_cached()  # the freed models' GPU blocks: else the next job's memory check is refused
            self._changed()

    # -- reading --------------------------------------------------------------------------------
    def rows(self, run: Run) -> list[dict]:
        """Metric rows of ``run`` (cached: :class:`~explorer.snapshots.RunReader`)."""
        return self.reader.rows(run)

    def current_run_id(self) -> str | None:
        job = self._job
        return job.run.run_id if job is not None else None

    def live_key(self) -> tuple:
        """Changes whenever what a viewer sees may have changed; cheap (memory reads and a few stat calls).

        In-process: job events and the trainer's phase. On disk: the store folder and the newest run's
        status and metrics (a run written by another process, a deleted run).
        """
        job = self._job
        if job is not None:
            phase = getattr(job.trainer, "phase", ""), _partner_phase(job)
            return ("job", job.run.run_id, job.state, job.epoch, phase, self._changes)
        stamps = []
        newest = self.store.list()[:1]
        for path in (self.store.root, *[p for r in newest for p in (r.status_path, r.metrics_path)]):
            try:
                stat = path.stat()
                stamps.append((stat.st_mtime_ns, stat.st_size))
            except OSError:
                stamps.append(None)
        alive = tuple(liveness.holder(r.path) for r in newest)  # a process that trained it may have died
        return ("disk", tuple(stamps), alive, self._changes)

    def snapshot(self, run_id: str | None = None) -> JobSnapshot:
        """The state of ``run_id``, else of this manager's job, else of the newest run on disk."""
        job = self._job
        if run_id is None and job is not None:
            return self._job_snapshot(job)
        if run_id is not None and job is not None and job.run.run_id == run_id:
            return self._job_snapshot(job)
        try:
            run = self.store.get(run_id) if run_id is not None else next(iter(self.store.list()), None)
        except ValueError as error:
            return JobSnapshot(state="idle", status=str(error), error=str(error))
        if run is None:
            return JobSnapshot()
        return self.reader.disk_snapshot(run)

    def _job_snapshot(self, job: _Job) -> JobSnapshot:
        state = job.state
        trainer = job.trainer
        phase = getattr(trainer, "phase", "") if trainer is not None else "loading the model"
        if state == "stopping":
            phase = "stopping after the current step"
        status = f"failed: {job.error}" if state == "failed" else state
        end = job.finished if job.finished is not None else time.time()
        other = _partner_phase(job)
        if other and state != "stopping" and other != phase:
            phase = f"{phase} · duel partner: {other}" if phase else other
        snap = JobSnapshot(state=state, status=status, run_id=job.run.run_id, epoch=job.epoch,
                           epochs=job.config.epochs, phase=str(phase or ""), error=job.error,
                           config=job.config.to_dict(), elapsed_seconds=end - job.started,
                           partner_id=job.partner.run_id if job.partner is not None else None)
        return self.reader.fill(snap, job.run)
