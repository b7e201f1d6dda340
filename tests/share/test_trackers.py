"""``--report-to`` / ``HRF_REPORT_TO``: trackio, TensorBoard and wandb (offline) logs read back after a run
and its resume; a tracker that fails never stops training; a tracker that is not installed is one line."""

from __future__ import annotations

import importlib.util
import json
import logging
import struct
from pathlib import Path

import pytest
from PIL import Image

from hrf_core.cli import main
from hrf_core.share import trackers
from hrf_core.store.runs import Run

SMALL = ["--steps", "10", "--samples", "8", "--batch-size", "4", "--siblings", "2", "--eval-samples", "8",
         "--eval-every", "1", "--device", "cpu"]
ALL = ["--report-to", "trackio", "--report-to", "tensorboard", "--report-to", "wandb"]


def train_args(model, out: Path, name: str, epochs: int = 1) -> list[str]:
    return ["train", "--model", str(model), "--reward", "jpeg-compressibility", "--method", "hrf", "--window", "5:10",
            "--epochs", str(epochs), "--seed", "0", "--out", str(out), "--name", name, *SMALL]


@pytest.fixture(scope="module")
def tracked(tiny_model_dir, tmp_path_factory):
    """A run trained for 1 epoch, then resumed to 2, reporting to all three trackers (offline, in tmp)."""
    root = tmp_path_factory.mktemp("trackers")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_DIR", str(root / "wandb"))
        env.setenv("WANDB_SILENT", "true")
        env.setenv("TRACKIO_DIR", str(root / "trackio"))  # read when trackio is first imported
        env.delenv("HRF_TRACKER_PROJECT", raising=False)
        (root / "wandb").mkdir()
        import trackio.utils

        assert trackio.utils.TRACKIO_DIR == root / "trackio", "trackio was imported before TRACKIO_DIR was set"
        assert main([*train_args(tiny_model_dir, root / "runs", "tracked"), *ALL]) == 0
        assert main(["resume", str(root / "runs" / "tracked"), "--epochs", "2", *ALL]) == 0
    run = Run(root / "runs" / "tracked")
    return root, run, run.metrics()


def test_scalars_keep_numbers_under_their_names():
    row = {"epoch": 3, "reward_mean": -0.4, "is_classifier@64": 8.5, "starts": [39, 23], "method": "hrf",
           "window_start": None, "hrfd": {"start": 12, "scores": [0.1, 0.2]}, "flag": True}
    assert trackers.scalars(row) == {"epoch": 3, "reward_mean": -0.4, "is_classifier@64": 8.5, "hrfd/start": 12,
                                     "flag": 1.0}


def test_tensorboard_event_files_read_back(tracked):
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    _, run, rows = tracked
    events = ea.EventAccumulator(str(run.path / "tensorboard"),
                                 size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0})
    events.Reload()
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for row in rows:
        for key, value in trackers.scalars(row).items():
            logged = [e.value for e in events.Scalars(key) if e.step == row["epoch"]]
            assert logged == [pytest.approx(value, rel=1e-6, abs=1e-30)], (key, row["epoch"])
    assert "vendi_pixel@8" in events.Tags()["scalars"]  # the metrics.jsonl name, '@' included
    with Image.open(run.path / "grids" / "epoch-0002.png") as grid:
        assert [(e.step, e.width, e.height) for e in events.Images("grid")] == [(s, *grid.size) for s in (0, 1, 2)]
    hparams = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    logged = hparams.session_start_info.hparams
    assert logged["method"].string_value == "hrf" and logged["window"].string_value == "[5, 10]"
    assert logged["lr"].number_value == pytest.approx(run.config["lr"])


def test_trackio_local_store_reads_back(tracked):
    from trackio.sqlite_storage import SQLiteStorage

    root, run, rows = tracked
    assert [r["name"] for r in SQLiteStorage.get_run_records("hrf-explorer")] == ["tracked"]  # resume: same run
    logs = SQLiteStorage.get_logs("hrf-explorer", "tracked")
    assert [entry["step"] for entry in logs] == [0, 1, 2]
    for entry, row in zip(logs, rows, strict=True):
        assert {k: entry[k] for k in trackers.scalars(row)} == pytest.approx(trackers.scalars(row))
        assert (root / "trackio" / "media" / entry["grid"]["file_path"]).is_file()
    config = SQLiteStorage.get_run_config("hrf-explorer", "tracked")
    assert config["window"] == [5, 10] and config["epochs"] == 2 and config["method"] == "hrf"


def wandb_records(path: Path):
    """The records of a .wandb file: LevelDB log blocks of 32 KiB, 7-byte chunk headers, wandb protobufs."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending = path.read_bytes(), 7, b""  # 7 bytes: ":W&B", magic and version
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_run_files_read_back(tracked):
    root, run, rows = tracked
    files = sorted((root / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2  # the run and its resume: one id, so `wandb sync` continues one run
    history, ids = [], set()
    for path in files:
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add(record.run.run_id)
                assert record.run.display_name == "tracked"
                config = {u.key: json.loads(u.value_json) for u in record.run.config.update}
                assert config["window"] == [5, 10] and config["method"] == "hrf"
            elif kind == "history":
                history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                for item in record.history.item})
    assert ids == {json.loads((run.path / "trackers.json").read_text())["wandb_id"]}
    assert [h["epoch"] for h in history] == [0, 1, 2]
    for logged, row in zip(history, rows, strict=True):
        assert {k: logged[k] for k in trackers.scalars(row)} == pytest.approx(trackers.scalars(row))
        assert logged["grid/_type"] == "image-file"
        assert list(files[0].parent.parent.glob(f"offline-run-*/files/{logged['grid/path']}"))


@pytest.mark.parametrize("when", ["start", "log"])
def test_a_failing_tracker_warns_once_and_training_continues(when, tiny_model_dir, tmp_path, monkeypatch, caplog):
    from torch.utils.tensorboard import SummaryWriter

    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SummaryWriter, "__init__" if when == "start" else "add_scalar", broken)
    with caplog.at_level(logging.WARNING, logger="hrf_core.share.trackers"):
        code = main([*train_args(tiny_model_dir, tmp_path, "full-disk", epochs=2), "--report-to", "tensorboard"])
    assert code == 0
    run = Run(tmp_path / "full-disk")
    assert [r["epoch"] for r in run.metrics()] == [0, 1, 2] and run.status["state"] == "done"
    warnings = [r.getMessage() for r in caplog.records if r.name == "hrf_core.share.trackers"]
    assert len(warnings) == 1 and "tensorboard" in warnings[0] and "No space left on device" in warnings[0]
    assert len(calls) == 1  # dropped after the failure: no retry every epoch


def without(name: str, monkeypatch) -> None:
    """Make ``name`` look uninstalled."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == name else find_spec(n, *a))


def test_a_tracker_not_installed_is_one_line_and_exit_2(tiny_model_dir, tmp_path, monkeypatch, capsys):
    without("wandb", monkeypatch)
    assert main([*train_args(tiny_model_dir, tmp_path / "runs", "x"), "--report-to", "wandb"]) == 2
    assert capsys.readouterr().err == "error: tracker wandb is not installed: pip install wandb\n"
    assert not (tmp_path / "runs").exists()  # nothing was created
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert main(["resume", str(run), "--report-to", "wandb"]) == 2
    assert "pip install wandb" in capsys.readouterr().err
    assert main(["experiment", "frontier-digits", "--report-to", "wandb", "--out", str(tmp_path / "exp")]) == 2
    assert capsys.readouterr().err == "error: tracker wandb is not installed: pip install wandb\n"
    with pytest.raises(SystemExit) as exit_:
        main([*train_args(tiny_model_dir, tmp_path / "runs", "x"), "--report-to", "mlflow"])
    assert exit_.value.code == 2 and "invalid choice: 'mlflow'" in capsys.readouterr().err


class ReportingTrainer:
    """A stand-in trainer that reports two epochs with grids, as the real one does."""

    def __init__(self, config, run, callbacks, stop_event):
        self.run, self.callbacks, self.phase = run, callbacks, "idle"

    def steps(self):
        from hrf_core.rl.trainer import EpochReport

        for epoch in (0, 1):
            row = {"epoch": epoch, "reward_mean": 0.5 + epoch, "starts": [3]}
            self.run.append_metrics(row)
            for callback in self.callbacks:
                callback(EpochReport(epoch, 1, row, Image.new("L", (8, 8), 40 * epoch)))
            yield epoch
        return "done"

    def train(self) -> str:
        from hrf_core.rl.trainer import drive

        return drive(self.steps())


def test_app_runs_report_to_hrf_report_to(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing import event_accumulator as ea

    from explorer.jobs import JobManager
    from hrf_core.config import TrainConfig
    from hrf_core.store.runs import RunStore

    config = TrainConfig(model="fake", epochs=1, samples_per_epoch=8, batch_size=8, num_steps=10, window=(4, 10))
    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=ReportingTrainer, preflight=None)
    monkeypatch.setenv("HRF_REPORT_TO", "tensorboard")
    first, second = manager.start_duel(config, config.replace(method="ddpo"))  # each half: its own tracker run
    assert manager.wait(30) and manager.snapshot().state == "done"
    for run_id in (first, second):
        events = ea.EventAccumulator(str(tmp_path / "runs" / run_id / "tensorboard"))
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("reward_mean")] == [(0, 0.5), (1, 1.5)]
        assert [e.step for e in events.Images("grid")] == [0, 1]
    monkeypatch.setenv("HRF_REPORT_TO", "tensorboard,mlflow")
    with pytest.raises(ValueError, match="HRF_REPORT_TO: unknown tracker 'mlflow'"):
        manager.start(config)
    monkeypatch.setenv("HRF_REPORT_TO", "wandb")
    without("wandb", monkeypatch)
    with pytest.raises(ValueError, match="pip install wandb"):
        manager.start(config)
    assert len(RunStore(tmp_path / "runs").own_runs()) == 2  # refused starts create nothing


def test_experiment_units_report_to_their_trackers(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator as ea

    from hrf_core.study.arms import Settings, arm_config
    from hrf_core.study.units import build_units, train_unit

    settings = Settings(seeds=[0], tasks=["jpeg-compressibility"], epochs=2, eval_every=1, eval_samples=8, samples=8,
                        batch_size=4, siblings=2, steps=10, model=str(tiny_model_dir), arms=["ddpo"])
    units = build_units(settings, tmp_path, report_to=("tensorboard",))
    assert [u.args[-1] for u in units] == [("tensorboard",)]
    config = arm_config("jpeg-compressibility", "ddpo", 0, settings).to_dict()
    train_unit(config, str(tmp_path), "unit", ("tensorboard",))
    events = ea.EventAccumulator(str(tmp_path / "unit" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("reward_mean")] == [0, 1, 2]
