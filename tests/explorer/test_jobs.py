"""The JobManager with fake trainers: done, stopped, crashed; refusals; snapshots read from the run store."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

from explorer.jobs import JobManager
from hrf_core import REPO_ROOT
from hrf_core.config import TrainConfig
from hrf_core.store.runs import RunStore


def small_config(**changes) -> TrainConfig:
    base = TrainConfig(model="fake-model", epochs=3, samples_per_epoch=8, batch_size=8, num_steps=10,
                       window=(4, 10), eval_samples=8)
    return base.replace(**changes).validate()


HOLD = 120  # seconds a gate holds a fake trainer at most (the test opens it; a failed test leaves no thread for long)


class FakeTrainer:
    """Writes rows and grids like the real trainer; ``mode``: done | stop | crash | crash-at-init; a ``gate`` holds
    it before each epoch until the test opens it."""

    def __init__(self, config, run, callbacks, stop_event, mode="done", gate=None):
        if mode == "crash-at-init":
            raise OSError("weights not found")
        self.config, self.run, self.callbacks, self.stop_event = config, run, callbacks, stop_event
        self.mode, self.gate = mode, gate
        self.phase = "idle"

    def _log(self, epoch: int) -> None:
        row = {"epoch": epoch, "method": self.config.method, "reward_mean": -0.5 + 0.01 * epoch,
               "vendi_pixel": 5.0 - 0.1 * epoch, "seconds": 0.0 if epoch == 0 else 2.0}
        self.run.append_metrics(row)
        self.run.save_grid(Image.new("L", (8, 8), color=epoch * 10), epoch)
        for callback in self.callbacks:
            callback(type("Report", (), {"epoch": epoch, "epochs": self.config.epochs, "metrics": row})())

    def train(self) -> str:
        self.run.set_status("running", 0, self.config.epochs, "evaluating the base model")
        self._log(0)
        for epoch in range(1, self.config.epochs + 1):
            self.phase = f"epoch {epoch}: sampling"
            if self.gate is not None:
                self.gate.wait(HOLD)
            if self.stop_event.is_set():
                self.run.set_status("stopped", epoch - 1, self.config.epochs, "stopped")
                self.phase = "stopped"
                return "stopped"
            if self.mode == "crash" and epoch == 2:
                raise RuntimeError("boom at epoch 2")
            self._log(epoch)
        self.run.set_status("done", self.config.epochs, self.config.epochs, "finished")
        self.phase = "done"
        return "done"


def fake_factory(mode="done", gate=None):
    def factory(config, run, callbacks, stop_event):
        return FakeTrainer(config, run, callbacks, stop_event, mode=mode, gate=gate)

    return factory


def make_manager(tmp_path, mode="done", gate=None) -> JobManager:
    return JobManager(RunStore(tmp_path / "runs"), trainer_factory=fake_factory(mode, gate), preflight=None)


def test_done(tmp_path):
    manager = make_manager(tmp_path)
    run_id = manager.start(small_config())
    assert manager.wait(10)
    snap = manager.snapshot()
    assert (snap.state, snap.status, snap.run_id) == ("done", "done", run_id)
    assert (snap.epoch, snap.epochs) == (3, 3)
    assert [r["epoch"] for r in snap.rows] == [0, 1, 2, 3]
    assert snap.seconds_per_epoch == pytest.approx(2.0) and snap.eta_seconds is None
    assert snap.grid.endswith("epoch-0003.png") and snap.base_grid.endswith("epoch-0000.png")
    assert not manager.busy and snap.error is None


def test_a_finished_job_hands_the_gpu_cache_back(tmp_path, monkeypatch):
    """Between jobs the CUDA cache is emptied (after the trainer is collected), so the next job's memory check sees
    the freed memory; guarded by torch.cuda.is_available()."""
    import torch

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    manager = make_manager(tmp_path)
    manager.start(small_config())
    assert manager.wait(10)
    assert emptied == [True]


def test_stopped_and_second_start_refused(tmp_path):
    gate = threading.Event()
    manager = make_manager(tmp_path, gate=gate)
    run_id = manager.start(small_config(epochs=50))
    deadline = time.time() + 60
    while manager.snapshot().phase != "epoch 1: sampling" and time.time() < deadline:
        time.sleep(0.01)
    snap = manager.snapshot()
    assert snap.active and snap.state == "running" and snap.phase == "epoch 1: sampling"
    with pytest.raises(ValueError, match="already in progress"):
        manager.start(small_config())
    assert [r.run_id for r in manager.store.list()] == [run_id]  # nothing created by the refusal
    assert manager.stop()
    assert manager.snapshot().state == "stopping"
    gate.set()
    assert manager.wait(10)
    snap = manager.snapshot()
    assert (snap.state, snap.status) == ("stopped", "stopped")
    assert manager.store.get(run_id).status["state"] == "stopped"
    assert not manager.stop()  # nothing left to stop


def test_crash_leaves_the_manager_usable(tmp_path):
    manager = make_manager(tmp_path, mode="crash")
    manager.start(small_config())
    assert manager.wait(10)
    snap = manager.snapshot()
    assert snap.state == "failed"
    assert snap.status == "failed: RuntimeError: boom at epoch 2"
    assert [r["epoch"] for r in snap.rows] == [0, 1]  # history is kept
    assert not manager.busy
    manager.trainer_factory = fake_factory("done")
    second = manager.start(small_config(epochs=1))
    assert manager.wait(10) and manager.snapshot().state == "done" and manager.snapshot().run_id == second


def test_crash_while_loading_is_recorded_in_the_store(tmp_path):
    manager = make_manager(tmp_path, mode="crash-at-init")
    run_id = manager.start(small_config())
    assert manager.wait(10)
    assert manager.snapshot().status == "failed: OSError: weights not found"
    status = manager.store.get(run_id).status
    assert status["state"] == "failed" and "weights not found" in status["message"]
    # a freshly started app (new manager) reads the same failure from disk
    reloaded = JobManager(manager.store, preflight=None).snapshot()
    assert (reloaded.run_id, reloaded.state, reloaded.error) == (run_id, "failed", "OSError: weights not found")


def test_invalid_config_starts_nothing(tmp_path):
    manager = make_manager(tmp_path)
    with pytest.raises(ValueError, match="window"):
        manager.start(small_config().replace(window=(8, 4)))
    with pytest.raises(ValueError, match="TrainConfig"):
        manager.start({"epochs": 2})
    assert manager.store.list() == [] and not manager.busy
    assert manager.snapshot().state == "idle" and manager.snapshot().run_id is None


def test_preflight_refusal_starts_nothing(tmp_path):
    def preflight(config):
        raise ValueError("model fake-model is unavailable: needs a CUDA GPU")

    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=fake_factory(), preflight=preflight)
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        manager.start(small_config())
    assert manager.store.list() == []


def test_second_visitor_and_restart_see_the_history(tmp_path):
    manager = make_manager(tmp_path)
    run_id = manager.start(small_config())
    manager.wait(10)
    other = JobManager(manager.store, preflight=None)  # e.g. the app restarted
    snap = other.snapshot()
    assert (snap.run_id, snap.state, len(snap.rows), snap.epoch) == (run_id, "done", 4, 3)
    assert other.snapshot(run_id).rows == snap.rows
    assert other.snapshot("no-such-run").error


HOLD_AND_SLEEP = """
import sys, time
from hrf_core.store.runs import Run
Run(sys.argv[1]).set_status("running", 2, 3, "epoch 3/3")
print("holding", flush=True)
time.sleep(120)
"""


def test_a_run_is_interrupted_the_moment_its_process_dies(tmp_path):
    """Liveness comes from the training process's lock, not from a timer: "running elsewhere" while another
    live process trains the run, "interrupted at epoch k" as soon as it is killed (kill -9: no clean-up)."""
    manager = make_manager(tmp_path)
    run_id = manager.start(small_config())
    assert manager.wait(10)
    run = manager.store.get(run_id)
    run.checkpoint_dir(2).joinpath("unet").mkdir(parents=True)
    other = JobManager(manager.store, preflight=None)  # e.g. a second app on the same store
    trainer = subprocess.Popen([sys.executable, "-c", HOLD_AND_SLEEP, str(run.path)], stdout=subprocess.PIPE,
                               text=True, cwd=REPO_ROOT)
    try:
        assert trainer.stdout.readline().strip() == "holding"
        assert other.snapshot(run_id).state == "running elsewhere"
        with pytest.raises(ValueError, match="another process"):
            other.continue_run(run_id, 2)  # refused: nothing started, its status untouched
        with pytest.raises(ValueError, match="another process"):
            run.set_status("failed", 0, 3, "x")  # a final state never overwrites a live run's status
        assert run.status["state"] == "running" and not other.busy
        key = other.live_key()
    finally:
        trainer.kill()  # SIGKILL
        trainer.wait(10)
    snap = other.snapshot(run_id)
    assert (snap.state, snap.status) == ("interrupted", "interrupted at epoch 3")  # rows 0..3 were logged
    assert "Continue resumes from the checkpoint of epoch 2" in snap.phase
    assert other.live_key() != key  # viewers hear about it without any file changing


class FakeResume(FakeTrainer):
    """What resume_training does, with FakeTrainer's rows: drop rows after the checkpoint, train on from it."""

    def __init__(self, run, epochs, callbacks, stop_event, gate=None):
        at = int(run.checkpoints()[-1].name.split("-")[1])
        config = small_config().replace(epochs=epochs)
        super().__init__(config, run, callbacks, stop_event, gate=gate)
        run.truncate_metrics(at)
        self.at = at

    def train(self) -> str:
        for epoch in range(self.at + 1, self.config.epochs + 1):
            if self.gate is not None:
                self.gate.wait(HOLD)
            self._log(epoch)
            self.run.checkpoint_dir(epoch).joinpath("unet").mkdir(parents=True)
        self.run.set_status("done", self.config.epochs, self.config.epochs, "finished")
        return "done"


def test_continue_a_run_for_more_epochs(tmp_path):
    gate = threading.Event()
    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=fake_factory(), preflight=None,
                         resume_factory=lambda run, epochs, callbacks, stop: FakeResume(run, epochs, callbacks, stop,
                                                                                        gate=gate))
    run_id = manager.start(small_config())
    assert manager.wait(10)
    with pytest.raises(ValueError, match="no checkpoint"):
        manager.continue_run(run_id, 2)
    run = manager.store.get(run_id)
    run.checkpoint_dir(2).joinpath("unet").mkdir(parents=True)  # the latest checkpoint: epoch 2 of 3
    for bad, message in ((0, "between 1 and"), ("x", "whole number"), (1001, "between 1 and")):
        with pytest.raises(ValueError, match=message):
            manager.continue_run(run_id, bad)
    with pytest.raises(ValueError, match="invalid run id"):
        manager.continue_run("../runs", 2)
    assert manager.continue_run(run_id, 3) == 2  # from epoch 2's checkpoint (epoch 3's row still on disk) to 5
    snap = manager.snapshot()
    assert snap.active and (snap.run_id, snap.epochs) == (run_id, 5)
    with pytest.raises(ValueError, match="already in progress"):
        manager.continue_run(run_id, 3)
    gate.set()
    assert manager.wait(10)
    assert manager.snapshot().state == "done"
    assert [r["epoch"] for r in run.metrics()] == [0, 1, 2, 3, 4, 5]  # each epoch logged once
    from hrf_core.store import liveness

    assert liveness.holder(run.path) is None  # the lock is given back


def test_example_runs_cannot_continue(tmp_path):
    examples = tmp_path / "examples"
    RunStore(examples).create({"epochs": 2, "extra": {"example": True}}, name="example-1")
    manager = JobManager(RunStore(tmp_path / "runs", examples=examples), preflight=None)
    with pytest.raises(ValueError, match="example run"):
        manager.continue_run("example-1", 2)


def test_rows_are_cached_until_the_file_changes(tmp_path):
    manager = make_manager(tmp_path)
    manager.start(small_config(epochs=1))
    manager.wait(10)
    run = manager.store.list()[0]
    first = manager.rows(run)
    assert manager.rows(run) is first  # unchanged file: the cached list
    run.append_metrics({"epoch": 2, "reward_mean": 0.0})
    assert len(manager.rows(run)) == len(first) + 1


def test_the_change_counter_keeps_every_bump_from_many_threads(tmp_path):
    """Epoch reports (worker thread) and Stop/Start (UI threads) bump the live key's counter concurrently."""

    class SlowInt(int):  # an addition that lets other threads run between the read and the write of ``+=``
        def __add__(self, other):
            time.sleep(0.0005)
            return SlowInt(int(self) + other)

    manager = make_manager(tmp_path)
    manager._changes = SlowInt(0)
    threads = [threading.Thread(target=lambda: [manager._changed() for _ in range(50)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert manager._changes == 200


def test_the_duel_partner_phase_shows_only_while_it_works(tmp_path):
    """The snapshot and the live key read the partner's phase by one rule: shown while it works, never once idle,
    done, stopped or failed."""
    from types import SimpleNamespace

    from explorer.jobs import _Job

    manager = make_manager(tmp_path)
    config = small_config()
    first, second = (manager.store.create(config.to_dict()) for _ in range(2))
    job = _Job(run=first, config=config, stop_event=threading.Event(), started=time.time(), partner=second,
               partner_config=config, state="running")
    job.trainer, job.partner_trainer = SimpleNamespace(phase="epoch 2: updating"), SimpleNamespace(phase="evaluating")
    manager._job = job
    assert manager.snapshot().phase == "epoch 2: updating · duel partner: evaluating"
    key = manager.live_key()
    job.partner_trainer.phase = "epoch 2: sampling batch 1"
    assert manager.live_key() != key
    for finished in ("idle", "done", "stopped", "failed"):
        job.partner_trainer.phase = finished
        assert manager.snapshot().phase == "epoch 2: updating"
        assert manager.live_key()[4] == ("epoch 2: updating", "")
    job.partner_trainer.phase, job.state = "evaluating", "stopping"
    assert manager.snapshot().phase == "stopping after the current step"


def test_default_preflight(tmp_path, tiny_model_dir):
    from explorer.jobs import default_preflight

    default_preflight(TrainConfig(model=str(tiny_model_dir)))
    with pytest.raises(ValueError, match="not a diffusers model folder|unknown model"):
        default_preflight(TrainConfig(model=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown reward"):
        default_preflight(TrainConfig(model=str(tiny_model_dir), reward="nope"))


@pytest.mark.slow
def test_a_duel_of_two_plus_two_epochs(tmp_path, tiny_model_dir):
    """Two configurations in one job, epochs alternating; each half is an ordinary, resumable run."""
    from hrf_core.rl.launch import resume_training

    manager = JobManager(RunStore(tmp_path / "runs"), torch_threads=1)
    common = dict(model=str(tiny_model_dir), reward="jpeg-compressibility", num_steps=10,
                  epochs=2, samples_per_epoch=8, batch_size=4, siblings=2, eval_samples=8, eval_every=1,
                  checkpoint_every=1, device="cpu")
    hrf, ddpo = TrainConfig(method="hrf", window=(5, 10), **common), TrainConfig(method="ddpo", **common)
    first, second = manager.start_duel(hrf, ddpo)
    with pytest.raises(ValueError, match="already in progress"):
        manager.start(hrf)
    assert manager.wait(120)
    snap = manager.snapshot()
    assert snap.state == "done" and snap.run_id == first and snap.partner_id == second
    a, b = manager.store.get(first), manager.store.get(second)
    assert [r["epoch"] for r in a.metrics()] == [0, 1, 2] == [r["epoch"] for r in b.metrics()]
    assert a.config["extra"]["duel_with"] == second and b.config["extra"]["duel_with"] == first
    assert a.config["method"] == "hrf" and b.config["method"] == "ddpo"
    # the epochs alternated: a's epoch 1 was logged before b's epoch 1, and b's epoch 1 before a's epoch 2
    times = {(run, r["epoch"]): r["logged_at"] for run in (a, b) for r in run.metrics()}
    assert times[(a, 1)] < times[(b, 1)] < times[(a, 2)] < times[(b, 2)]
    assert resume_training(b, epochs=3).train() == "done"  # an ordinary run
    # a later visitor (a new manager, e.g. the app restarted) sees the pair
    later = JobManager(manager.store, preflight=None).snapshot()
    assert {later.run_id, later.partner_id} == {first, second}


def test_a_duel_stopped_between_epochs_stops_both_real_trainers(tmp_path, tiny_model_dir):
    """Stop pressed after the partner's epoch 1 (both halves at epoch 1): neither half trains another epoch,
    both record "stopped", each saves its epoch-1 weights on stopping (no scheduled checkpoint before epoch 5),
    and the job ends stopped."""
    from hrf_core.rl.trainer import Trainer

    common = dict(model=str(tiny_model_dir), reward="jpeg-compressibility", num_steps=10, epochs=5,
                  samples_per_epoch=8, batch_size=4, siblings=2, eval_samples=8, eval_every=1, checkpoint_every=5,
                  device="cpu")
    hrf, ddpo = TrainConfig(method="hrf", window=(5, 10), **common), TrainConfig(method="ddpo", **common)
    manager = JobManager(RunStore(tmp_path / "runs"), preflight=None, torch_threads=1)
    order = []

    def factory(config, run, callbacks, stop_event):
        def on_epoch(report):
            order.append((config.method, report.epoch))
            if config.method == "ddpo" and report.epoch == 1:
                assert manager.stop()  # the Stop button, between the duel's epochs

        return Trainer(config, run, callbacks=[*callbacks, on_epoch], stop_event=stop_event)

    manager.trainer_factory = factory
    first, second = manager.start_duel(hrf, ddpo)
    assert manager.wait(120)
    assert order == [("hrf", 0), ("ddpo", 0), ("hrf", 1), ("ddpo", 1)]  # alternated, then nothing more
    assert manager.snapshot().state == "stopped"
    for run_id in (first, second):
        run = manager.store.get(run_id)
        assert run.status["state"] == "stopped" and run.status["epoch"] == 1, run.status
        assert [r["epoch"] for r in run.metrics()] == [0, 1]
        assert [p.name for p in run.checkpoints()] == ["epoch-0001"]


def _fake_steps(trainer):
    result = trainer.train()
    yield 0
    return result


def test_an_ended_job_lets_go_of_its_trainers(tmp_path):
    """A trainer holds its models in a reference cycle: the manager frees it when the job ends, not whenever
    Python's next full collection happens (back-to-back runs would pile up their models)."""
    import weakref

    made = []

    def factory(config, run, callbacks, stop_event):
        trainer = FakeTrainer(config, run, callbacks, stop_event)
        trainer.itself = trainer  # a cycle, like the real trainer's UNet hooks
        made.append(weakref.ref(trainer))
        return trainer

    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=factory, preflight=None)
    manager.start(small_config())
    assert manager.wait(10)
    assert len(made) == 1 and made[0]() is None
    assert manager.snapshot().state == "done" and manager.snapshot().phase == "done"
