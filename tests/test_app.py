"""The app's handlers called directly (validation, presets, polling) and the launched app via gradio_client."""

from __future__ import annotations

import socket
import threading
import time

import gradio as gr
import pytest
from test_jobs import fake_factory

import app
from hrf_core import CHECKPOINTS_DIR, views
from hrf_core.config import PRESETS, TrainConfig
from hrf_core.jobs import JobManager
from hrf_core.runs import RunStore

NUMBERS = app.NUMBER_NAMES
DIGITS16 = (CHECKPOINTS_DIR / "digits16" / "unet" / "config.json").is_file() and (
    CHECKPOINTS_DIR / "digits16-classifier" / "model.safetensors").is_file()


def small_defaults(model: str) -> TrainConfig:
    return TrainConfig(model=model, method="hrf", window=(4, 10), num_steps=10, epochs=2, samples_per_epoch=8,
                       batch_size=8, siblings=4, eval_samples=16, train_batch_size=8, updates_per_epoch=1,
                       checkpoint_every=1)


def form(config: TrainConfig, **changes):
    """The Start handler's arguments for ``config`` (window as the widget's "start:end")."""
    values = {**views.form_from_config(config), **changes}
    return ("custom", values["model"], values["reward"], values["method"], values["window"],
            *[values[name] for name in NUMBERS])


@pytest.fixture
def lab(tmp_path, tiny_model_dir):
    gate = threading.Event()
    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=fake_factory(gate=gate), preflight=None)
    lab = app.Lab(manager, small_defaults(str(tiny_model_dir)), docs_dir=tmp_path / "docs")
    yield lab
    gate.set()
    manager.stop()
    manager.wait(10)


@pytest.mark.parametrize("changes,message", [
    ({"window": "5:5"}, "is empty"),
    ({"window": "8:4"}, "is inverted"),
    ({"window": "4:11"}, "within steps 0..10"),
    ({"window": "abc"}, "START:END"),
    ({"epochs": 0}, "Epochs must be between 1 and 1000"),
    ({"epochs": 2.5}, "Epochs must be a whole number"),
    ({"lr": 5}, "Learning rate must be between"),
    ({"samples_per_epoch": None}, "Samples per epoch is empty"),
    ({"batch_size": 16}, "cannot exceed samples per epoch"),
    ({"siblings": 3}, "multiple of the siblings"),
    ({"method": "sgd"}, "choose a method"),
])
def test_start_validation(lab, changes, message):
    notice, tabs = lab.start(*form(lab.defaults, **changes))
    assert "Not started" in notice and message in notice
    assert isinstance(tabs, gr.Tabs) and tabs.selected is None  # stays on the Train tab
    assert lab.store.list() == [] and not lab.manager.busy


def test_start_then_second_start_refused(lab):
    notice, tabs = lab.start(*form(lab.defaults))
    assert "Started" in notice and tabs.selected == "live"
    assert lab.manager.busy
    notice, tabs = lab.start(*form(lab.defaults))
    assert "already in progress" in notice and tabs.selected is None
    assert len(lab.store.list()) == 1
    assert "Stopping" in lab.stop()


def test_preset_fills_the_fields(lab):
    values = lab.fill_preset("paper-hrf-sliding")
    model, reward, method, window, note, *numbers = values
    assert (model, reward, method) == ("google/ddpm-celebahq-256", "jpeg-compressibility", "hrf-sliding")
    assert isinstance(window, gr.HTML) and window.value == "0:40"
    assert "steps 0–19 then steps 20–39" in note
    filled = dict(zip(NUMBERS, numbers, strict=True))
    preset = PRESETS["paper-hrf-sliding"]
    assert filled["epochs"] == 70 and filled["lr"] == preset.lr and filled["batch_size"] == 5
    # the filled form gives back the preset's config
    config = views.config_from_form("paper-hrf-sliding", model, reward, method, window.value, **filled)
    assert config.clusters == preset.clusters and config.replace(window=preset.window) == preset
    assert all(isinstance(v, type(gr.skip())) for v in lab.fill_preset("custom"))


def test_ddpo_trains_every_step(lab):
    config = views.config_from_form(None, "m", "jpeg-compressibility", "ddpo", "3:5", **{
        name: getattr(lab.defaults, name) for name in NUMBERS})
    assert config.window == (0, 10)
    assert "window is ignored" in lab.note("ddpo", "3:5", 10, 2)
    assert "HRF trains steps 3–4" in lab.note("hrf", "3:5", 10, 2)
    assert "⚠" in lab.note("hrf", "5:3", 10, 2)


def test_steps_change_keeps_the_window_inside(lab):
    update = lab.steps_changed(8, "4:10")
    assert update.value == "4:8" and update.props["steps"] == 8


def test_x0_strip(lab, tiny_model_dir):
    update = lab.strip(str(tiny_model_dir), 10)
    assert len(update.props["strip"]) == 10 and update.props["strip"][0].startswith("data:image/png;base64,")
    assert lab.strip(str(tiny_model_dir), 10).props["strip"] is update.props["strip"]  # cached
    # a CelebA model on this CPU (or without cached weights): a reason, never a download or a 10-minute preview
    update = lab.strip("google/ddpm-celebahq-256", 40)
    assert update.props["strip"] == [] and update.props["hint"].startswith("no x0 previews: ")


def test_tick_sends_only_changes(lab):
    first = lab.tick({})
    *outputs, seen = first
    assert "No runs yet" in outputs[0]
    again = lab.tick(seen)
    assert all(isinstance(v, type(gr.skip())) for v in again[:-1])
    lab.start(*form(lab.defaults))
    deadline = time.time() + 5
    while not lab.manager.snapshot().rows and time.time() < deadline:
        time.sleep(0.02)
    status, _, trajectory, curves, gallery, seen = lab.tick(seen)
    assert "Running" in status and lab.manager.current_run_id() in status
    assert trajectory is not None and len(trajectory.data) >= 1
    assert gallery[0][1] == "epoch 0 · base model"


def test_status_api_and_results_hook(lab, tmp_path):
    assert lab.status_api()["state"] == "idle"
    text, figures = lab.results()
    assert "No paper results yet" in text and figures == []
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "RESULTS.md").write_text("# Results\nDDPO collapses.")
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "docs" / "results" / "frontier.png")
    text, figures = lab.results()
    assert "DDPO collapses" in text and figures[0][1] == "frontier"


def test_bad_sources_warn_instead_of_crashing(lab):
    with pytest.warns(UserWarning):
        result = lab.compare("base:nowhere", "ckpt:nope:epoch-0001", 8, 0, "jpeg-compressibility")
    assert all(isinstance(v, type(gr.skip())) for v in result)
    with pytest.warns(UserWarning):
        assert isinstance(lab.sample(None, 4, 0), type(gr.skip()))


def test_figures():
    rows = [{"epoch": 0, "reward_mean": -0.5, "vendi_pixel": 9.0, "vendi_classifier@16": 4.0,
             "is_classifier@16": 7.5},
            {"epoch": 1, "reward_mean": -0.4, "vendi_pixel": 9.1, "vendi_classifier@16": 3.5,
             "is_classifier@16": 6.0, "train_reward_mean": -0.45, "seconds": 3.0}]
    keys = views.metric_keys(rows)
    assert keys.diversity == "vendi_classifier@16" and keys.inception == "is_classifier@16"
    fig = views.trajectory_figure(rows, {"method": "ddpo", "reward": "jpeg-compressibility"})
    assert list(fig.data[0].x) == [4.0, 3.5] and list(fig.data[0].y) == [-0.5, -0.4]
    curves = views.curves_figure(rows)
    assert len(curves.data) == 4 and curves.layout.annotations[2].text == "Inception Score"
    assert views.metric_keys(rows[:1] and [{"vendi_pixel": 1}]).diversity == "vendi_pixel"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_launched_app_runs_a_job(tmp_path, tiny_model_dir):
    """Start a 2-epoch run through the API of the launched app and poll it to the end."""
    from gradio_client import Client

    model = "digits16" if DIGITS16 else str(tiny_model_dir)
    manager = JobManager(RunStore(tmp_path / "runs"), torch_threads=1)
    defaults = small_defaults(model)
    demo = app.build_app(manager, defaults)
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, server_port=port, **app.launch_kwargs(tmp_path / "runs"))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        notice = client.predict(*form(defaults, window="5:10"), api_name="/start")
        notice = notice[0] if isinstance(notice, (list, tuple)) else notice
        assert "Started" in notice, notice
        deadline = time.time() + 180
        while time.time() < deadline:
            status = client.predict(api_name="/status")
            if status["state"] not in ("starting", "running", "stopping"):
                break
            time.sleep(0.5)
        assert status["state"] == "done", status
        assert status["epoch"] == 2 and status["rows"] == 3
        metrics = status["latest_metrics"]
        assert metrics["epoch"] == 2 and "reward_mean" in metrics and "vendi_pixel" in metrics
        if DIGITS16:
            assert "vendi_classifier@16" in metrics and "is_classifier@16" in metrics
        run = manager.store.get(status["run_id"])
        assert tuple(run.config["window"]) == (5, 10) and run.checkpoints()
        # a second client (another visitor) sees the same job
        assert Client(f"http://127.0.0.1:{port}/", verbose=False).predict(api_name="/status")["run_id"] == run.run_id
        grid = client.predict(f"ckpt:{run.run_id}:{run.checkpoints()[-1].name}", 4, 0, api_name="/sample")
        assert grid
    finally:
        demo.close()


def test_uncached_hub_model_is_not_sampled_in_a_handler(monkeypatch):
    from hrf_core import models

    monkeypatch.setattr(models, "availability", lambda name: (True, "weights will be downloaded on first use"))
    ok, reason = views.runnable("google/ddpm-celebahq-256")
    assert not ok and "start a run" in reason and "hf download google/ddpm-celebahq-256" in reason
    assert views.runnable("/some/local/folder") == (True, "")


def test_fit_window_keeps_the_window_inside_new_k():
    assert views.fit_window("20:40", 30) == (20, 30)
    assert views.fit_window("35:40", 30) == (29, 30)  # never empty
    assert views.fit_window("-3:8", 10) == (0, 8)
    assert views.fit_window("garbage", 40) == (20, 40)
