"""The app's handlers called directly (validation, presets, presenter token), the live feed's state and
messages, and the served app through gradio_client and its plain routes."""

from __future__ import annotations

import json
import threading
import time

import gradio as gr
import pytest
from test_jobs import fake_factory

from explorer import server
from explorer.jobs import JobManager
from explorer.livefeed import LiveFeed
from explorer.page import Lab
from explorer.server import free_port
from explorer.views import live, results, train
from hrf_core import CHECKPOINTS_DIR, settings
from hrf_core.config import TrainConfig
from hrf_core.presets import PRESETS
from hrf_core.rewards import headline
from hrf_core.store.runs import RunStore

NUMBERS = settings.form_numbers()
DIGITS16 = (CHECKPOINTS_DIR / "digits16" / "unet" / "config.json").is_file() and (
    CHECKPOINTS_DIR / "digits16-classifier" / "model.safetensors").is_file()


def small_defaults(model: str) -> TrainConfig:
    return TrainConfig(model=model, method="hrf", window=(4, 10), num_steps=10, epochs=2, samples_per_epoch=8,
                       batch_size=8, siblings=4, eval_samples=16, train_batch_size=8, updates_per_epoch=1,
                       checkpoint_every=1)


def form(config: TrainConfig, token: str = "", **changes):
    """The Start handler's arguments for ``config``: token, preset, the form's values (window as "start:end")."""
    return token, "custom", {**train.form_from_config(config), **changes}


@pytest.fixture
def lab(tmp_path, tiny_model_dir):
    gate = threading.Event()
    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=fake_factory(gate=gate), preflight=None)
    lab = Lab(manager, small_defaults(str(tiny_model_dir)), docs_dir=tmp_path / "docs")
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
    ({"start_mode": "sometimes"}, "choose a start mode"),
    ({"kl_coef": -1}, "KL penalty to the base"),
    ({"diversity_weight": -1}, "The diversity weight must be between 0 and 100, got -1"),
])
def test_start_validation(lab, changes, message):
    notice, tabs = lab.train.start(*form(lab.defaults, **changes))
    assert "Not started" in notice and message in notice
    assert isinstance(tabs, gr.Tabs) and tabs.selected is None  # stays on the Train tab
    assert lab.store.list() == [] and not lab.manager.busy


def test_start_then_second_start_refused(lab):
    notice, tabs = lab.train.start(*form(lab.defaults))
    assert "Started" in notice and tabs.selected == "live"
    assert lab.manager.busy
    notice, tabs = lab.train.start(*form(lab.defaults))
    assert "already in progress" in notice and tabs.selected is None
    assert len(lab.store.list()) == 1
    assert "Stopping" in lab.train.stop("")


def test_duel_button_trains_the_form_against_ddpo(lab):
    notice, tabs = lab.train.duel(*form(lab.defaults, window="5:10", kl_coef=0.5))
    assert "Started" in notice and " and " in notice and tabs.selected == "live"
    runs = {run.config["method"]: run.config for run in lab.store.list()}
    assert set(runs) == {"hrf", "ddpo"} and runs["hrf"]["window"] == [5, 10] and runs["hrf"]["kl_coef"] == 0.5
    assert runs["ddpo"]["kl_coef"] == 0.0 and runs["ddpo"]["seed"] == runs["hrf"]["seed"]
    partner = train.duel_partner(lab.defaults.replace(method="ddpo"))
    assert (partner.method, partner.window) == ("hrf", (5, 10))  # DDPO's opponent: HRF on the late half


def test_advantage_baseline_from_the_form(lab):
    """Per-image advantages for HRF; DDPO (no re-noised images) refuses it in one line, and a duel's DDPO
    partner of a per-image HRF run standardises over the epoch."""
    notice, _ = lab.train.duel(*form(lab.defaults, adv_scope="image"))
    assert "Started" in notice
    runs = {run.config["method"]: run.config for run in lab.store.list()}
    assert runs["hrf"]["adv_scope"] == "image" and runs["ddpo"]["adv_scope"] == "epoch"
    notice, _ = lab.train.start(*form(lab.defaults, method="ddpo", adv_scope="image"))
    assert "Not started" in notice and "image" in notice and len(lab.store.list()) == 2
    notice, _ = lab.train.start(*form(lab.defaults, adv_scope="prompt"))
    assert "Not started" in notice and "advantage baseline" in notice


def test_presenter_token_refuses_and_allows(lab, monkeypatch):
    monkeypatch.setenv("HRF_PRESENTER_TOKEN", "s3cret")
    notice, tabs = lab.train.start(*form(lab.defaults, token="wrong"))
    assert "Refused" in notice and "presenter" in notice and tabs.selected is None
    assert lab.store.list() == [] and not lab.manager.busy
    notice, _ = lab.train.duel(*form(lab.defaults))
    assert "Refused" in notice and lab.store.list() == []
    notice, tabs = lab.train.start(*form(lab.defaults, token="s3cret"))
    assert "Started" in notice and lab.manager.busy
    assert "Refused" in lab.train.stop("") and lab.manager.busy  # nothing stopped
    with pytest.raises(gr.Error, match="presenter mode"):
        lab.runs.sample("ckpt:x:epoch-0001", 4, 0, "")
    with pytest.raises(gr.Error, match="presenter mode"):
        lab.compare.compare("base:a", "base:b", 8, 0, "jpeg-compressibility", False, 0, "")
    assert lab.unlock("wrong")[0] is not None and "Wrong" in lab.unlock("wrong")[1]
    assert lab.unlock("s3cret")[0] == "s3cret"
    assert "Stopping" in lab.train.stop("s3cret")


def test_preset_fills_the_fields(lab):
    values = lab.train.fill_preset("paper-hrf-sliding")
    model, reward, method, window, start_mode, adv_scope, outside, note = (values[k] for k in (
        "model", "reward", "method", "window", "start_mode", "adv_scope", "outside_window", "note"))
    assert (model, reward, method, start_mode) == ("google/ddpm-celebahq-256", "jpeg-compressibility", "hrf-sliding",
                                                   "uniform")
    assert window == "0:40"
    assert "steps 0–19 then steps 20–39" in note
    filled = {name: values[name] for name in NUMBERS}
    preset = PRESETS["paper-hrf-sliding"]
    assert filled["epochs"] == 70 and filled["lr"] == preset.lr and filled["batch_size"] == 5
    assert adv_scope == "batch"
    assert outside == "tuned"
    config = train.config_from_form({k: v for k, v in values.items() if k != "note"}, "paper-hrf-sliding")
    assert config.clusters == preset.clusters and config.replace(window=preset.window) == preset
    assert lab.train.fill_preset("custom") is None


@pytest.mark.parametrize("name", ["sd-ddpo", "sd-hrf"])
def test_stable_diffusion_presets_are_in_the_train_tab_with_their_memory(lab, name):
    """The SD presets (issue #38) fill the form like any other, round trip, and get the memory line under the form."""
    values = lab.train.fill_preset(name)
    assert (values["model"], values["bf16"], values["lora_rank"]) == ("CompVis/stable-diffusion-v1-4", True, 4)
    assert (values["guidance"], values["num_steps"], values["batch_size"], values["train_batch_size"]) == (5, 50, 8, 4)
    assert values["adv_scope"] == "prompt"
    config = train.config_from_form({k: v for k, v in values.items() if k != "note"}, name)
    assert config == PRESETS[name]
    line = lab.train.memory(name, {k: v for k, v in values.items() if k != "note"})
    assert line.startswith("Memory: about 1") and " GB" in line, line  # 13-14 GB (docs/GPU.md), in CPU words here


@pytest.mark.parametrize("name,window,start_mode", [("digits-random-start", "0:40", "uniform"),
                                                    ("digits-renoise-fixed", "20:40", "fixed")])
def test_ablation_presets_are_one_click(lab, name, window, start_mode):
    values = lab.train.fill_preset(name)
    method, widget, mode, note = (values[k] for k in ("method", "window", "start_mode", "note"))
    assert (method, widget, mode) == ("hrf", window, start_mode)
    assert ("re-noised start at step 20" in note) == (start_mode == "fixed")


def test_window_note_and_steps(lab):
    config = train.config_from_form({"model": "m", "reward": "jpeg-compressibility", "method": "ddpo", "window": "3:5",
                                     **{name: getattr(lab.defaults, name) for name in NUMBERS}})
    assert config.window == (0, 10)
    assert "window is ignored" in lab.train.note("ddpo", "3:5", 10, 2)
    assert "HRF trains steps 3–4" in lab.train.note("hrf", "3:5", 10, 2)
    assert "⚠" in lab.train.note("hrf", "5:3", 10, 2)
    update = lab.train.steps_changed(8, "4:10")
    assert update.value == "4:8" and update.props["steps"] == 8


def test_x0_strip(lab, tiny_model_dir):
    update = lab.train.strip(str(tiny_model_dir), 10)
    assert len(update.props["strip"]) == 10 and update.props["strip"][0].startswith("data:image/png;base64,")
    assert lab.train.strip(str(tiny_model_dir), 10).props["strip"] is update.props["strip"]  # cached
    update = lab.train.strip("google/ddpm-celebahq-256", 40)
    assert update.props["strip"] == [] and update.props["hint"].startswith("no x0 previews: ")


def wait_for(predicate, seconds: float = 10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_live_feed_publishes_once_per_change(lab):
    feed = LiveFeed(build=lambda: live.live_state(lab.manager), key=lab.manager.live_key)
    builds = feed.builds
    assert feed.refresh() and feed.builds == builds + 1
    assert not feed.refresh() and feed.builds == builds + 1  # nothing changed: nothing built, nothing sent
    version, full = feed.full()
    state = json.loads(full)
    assert state["kind"] == "full" and state["runs"] == [] and "No runs yet" in state["status"]["html"]
    lab.train.start(*form(lab.defaults))
    assert wait_for(lambda: len(lab.manager.snapshot().rows) >= 1)
    feed.refresh()
    first = json.loads(feed.since(version)[-1][1])
    assert first["kind"] == "full" and first["runs"][0]["run_id"] == lab.manager.current_run_id()
    at = feed.version
    lab.manager.store.get(lab.manager.current_run_id()).append_metrics(
        {"epoch": 1, "reward_mean": -0.49, "vendi_pixel": 4.0, "seconds": 1.0})
    lab.manager._changes += 1  # what an epoch report does
    assert feed.refresh()
    message = json.loads(feed.since(at)[0][1])
    assert message["kind"] == "rows" and list(message["append"].values())[0][0]["epoch"] == 1
    assert feed.since(feed.version) == [] and feed.since(-100) is None  # too old: send the full state


def test_live_state_names_the_reference_and_where_the_run_stands(tmp_path):
    store = RunStore(tmp_path / "runs")
    for name, method, rewards, scores in (("ddpo-a", "ddpo", [-0.5, -0.49, -0.48], [9.0, 8.0, 7.0]),
                                          ("hrf-b", "hrf", [-0.5, -0.495], [9.0, 8.9])):
        run = store.create({"model": "m", "reward": "jpeg-compressibility", "method": method, "seed": 0,
                            "eval_samples": 8, "epochs": 2, "window": [5, 10], "kl_coef": 0.0}, name=name)
        for epoch, (reward, score) in enumerate(zip(rewards, scores, strict=True)):
            run.append_metrics({"epoch": epoch, "reward_mean": reward, "is_classifier@8": score,
                                "vendi_classifier@8": score / 2, "seconds": 1.0})
        run.set_status("done", 2, 2, "finished")
    manager = JobManager(store, preflight=None)
    state = live.live_state(manager)  # the newest run: hrf-b
    assert [r["run_id"] for r in state["runs"]] == ["hrf-b"]
    assert state["reference"]["source"].startswith("DDPO run on disk: ddpo-a")
    assert state["reference"]["band"]["mean"][0] == pytest.approx(4.5)  # Vendi at gain 0
    assert "early-stopped DDPO had IS 8.50" in state["status"]["standing"]  # gain 0.005: half-way 9 -> 8
    assert "this run: IS 8.90" in state["status"]["standing"]
    assert state["keys"]["diversity"] == "vendi_classifier@8" and state["status"]["proxy_note"] == ""
    assert [h["run_id"] for h in state["history"]] == ["ddpo-a"]
    replay = live.live_state(manager, "ddpo-a")
    assert replay["runs"][0]["run_id"] == "ddpo-a" and "No DDPO reference" in replay["status"]["standing"]


def test_results_images_point_at_the_figure_route(tmp_path):
    (tmp_path / "results").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "results" / "frontier.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "results" / "grid-a.png")
    (tmp_path / "results" / "leak.png").symlink_to(tmp_path / "results" / "frontier.png")
    (tmp_path / "RESULTS.md").write_text("# R\n![f](results/frontier.png) ![g](results/missing.png) "
                                         "![l](results/leak.png) ![u](../secret.png)")
    text, figures = results.results_content(tmp_path)
    assert "![f](live/results/frontier.png)" in text  # relative to the page: any path prefix works
    assert "*g: not generated yet*" in text and "*l: not generated yet*" in text and "secret" not in text
    assert [f[1] for f in figures] == ["frontier"]  # grids stay inline in the report; links are not served


def served_store(tmp_path):
    """A store with a run, its checkpoint and config, and path tricks: symlinks to a checkpoint and outside."""
    from PIL import Image

    outside = tmp_path / "outside"
    (outside / "grids").mkdir(parents=True)
    (outside / "config.json").write_text("{}")
    Image.new("L", (8, 8)).save(outside / "grids" / "epoch-0001.png")
    (outside / "secret.txt").write_text("TOP-SECRET")
    store = RunStore(tmp_path / "runs")
    run = store.create({"method": "hrf", "reward": "ink", "epochs": 1, "num_steps": 10, "window": [4, 10]}, name="r1")
    checkpoint = run.checkpoint_dir(1)
    (checkpoint / "unet").mkdir(parents=True)
    (checkpoint / "optimizer.safetensors").write_bytes(b"OPTIMISER-STATE")
    (checkpoint / "trainer_state.safetensors").write_bytes(b"TRAINER-STATE")
    for epoch in (0, 1):
        run.append_metrics({"epoch": epoch, "reward_mean": 0.1 * epoch, "vendi_pixel": 2.0, "seconds": 1.0})
        run.save_grid(Image.new("L", (8, 8), 30 * epoch), epoch)
    (run.path / "grids" / "epoch-0002.png").symlink_to(checkpoint / "optimizer.safetensors")
    (run.path / "grids" / "epoch-0003.png").symlink_to(outside / "secret.txt")
    (store.root / "evil").symlink_to(outside, target_is_directory=True)
    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(docs / "results" / "frontier.png")
    (docs / "results" / "frontier.json").write_text("{}")
    (docs / "results" / "leak.png").symlink_to(checkpoint / "optimizer.safetensors")
    return store, run, docs, outside


def test_only_grids_and_figures_are_served(tmp_path, tiny_model_dir):
    """The routes and Gradio's file route give grids and the Results figures, never checkpoints, optimiser or
    trainer state, configs, or anything outside the store: not through '..', symlinks or encoded separators."""
    import httpx

    store, run, docs, outside = served_store(tmp_path)
    manager = JobManager(store, trainer_factory=fake_factory(), preflight=None)
    served = server.serve(manager, small_defaults(str(tiny_model_dir)), port=free_port(), docs_dir=docs)
    try:
        url = served.url
        ok = httpx.get(url + "live/grid/r1/1.png")
        assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
        assert httpx.get(url + "live/results/frontier.png").status_code == 200
        assert httpx.get(url + f"gradio_api/file={docs / 'results' / 'frontier.png'}").status_code == 200
        checkpoint = run.checkpoint_dir(1)
        refused = [
            # the store through Gradio's file route: checkpoints, optimiser and trainer state, config, even grids
            f"gradio_api/file={checkpoint / 'optimizer.safetensors'}",
            f"gradio_api/file={checkpoint / 'trainer_state.safetensors'}",
            f"gradio_api/file={run.path / 'config.json'}",
            f"gradio_api/file={run.path / 'grids' / 'epoch-0001.png'}",
            f"gradio_api/file={outside / 'secret.txt'}",
            f"gradio_api/file={docs / 'results' / 'frontier.json'}",
            f"gradio_api/file={docs / 'results' / 'leak.png'}",
            f"gradio_api/file={docs / 'results'}/../../runs/r1/config.json",
            f"gradio_api/file={docs / 'results'}/%2e%2e/%2e%2e/runs/r1/config.json",
            f"gradio_api/file={docs / 'results' / 'frontier.png'}%2f..%2ffrontier.json",
            # the app's routes: symlinks inside the store, a symlinked run folder, '..', encoded separators
            "live/grid/r1/2.png", "live/grid/r1/3.png", "live/grid/evil/1.png", "live/animate/evil.gif",
            "live/animate/r1.gif", "live/grid/..%2Fevil/1.png", "live/grid/r1%2F..%2Fevil/1.png",
            "live/grid/%2e%2e/1.png", "live/grid/r1/-1.png", "live/run/..", "live/run/%2e%2e",
            "live/results/leak.png", "live/results/frontier.json", "live/results/..%2FRESULTS.md",
            "live/results/%2e%2e%2fRESULTS.md", "live/assets/..%2F..%2Fapp.py",
        ]
        for path in refused:
            response = httpx.get(url + path)
            assert response.status_code in (403, 404, 422), (path, response.status_code)
            assert b"STATE" not in response.content and b"SECRET" not in response.content, path
    finally:
        served.close()


def test_bad_sources_warn_instead_of_crashing(lab):
    with pytest.warns(UserWarning):
        result = lab.compare.compare("base:nowhere", "ckpt:nope:epoch-0001", 8, 0, "jpeg-compressibility")
    assert all(isinstance(v, type(gr.skip())) for v in result)
    with pytest.warns(UserWarning, match="no checkpoint yet"):
        assert isinstance(lab.runs.sample(None, 4, 0), type(gr.skip()))


def test_a_truncated_checkpoint_is_one_line_in_the_ui(lab, tiny_model_dir):
    import shutil

    run = lab.manager.store.create(PRESETS["digits-ddpo"].replace(model=str(tiny_model_dir)).to_dict(), name="broken")
    target = run.checkpoint_dir(1)
    shutil.copytree(tiny_model_dir, target)
    weights = target / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.warns(UserWarning) as caught:
        result = lab.runs.sample(f"ckpt:broken:{target.name}", 4, 0)
    assert isinstance(result, type(gr.skip()))
    message = str(caught[-1].message)
    assert "truncated or corrupt" in message and "\n" not in message and "Traceback" not in message


def test_metric_keys_prefer_learned_embeddings():
    rows = [{"vendi_pixel@8": 1.0, "vendi_clip@8": 2.0, "is_inception@8": 3.0}]
    keys = headline.metric_keys(rows)
    assert (keys.diversity, keys.inception) == ("vendi_clip@8", "is_inception@8")
    assert headline.metric_keys([{"vendi_pixel": 1}]).diversity_label.endswith("weak proxy")


@pytest.mark.slow
def test_served_app_runs_a_job(tmp_path, tiny_model_dir, monkeypatch):
    """Start a 2-epoch run through the API of the served app, follow the live feed, sample the checkpoint."""
    import httpx
    from gradio_client import Client

    monkeypatch.setenv("HRF_PRESENTER_TOKEN", "tok")
    model = "digits16" if DIGITS16 else str(tiny_model_dir)
    manager = JobManager(RunStore(tmp_path / "runs"), torch_threads=1)
    defaults = small_defaults(model)
    served = server.serve(manager, defaults, port=free_port(), docs_dir=tmp_path / "docs")
    try:
        client = Client(served.url, verbose=False)
        with pytest.raises(Exception, match="presenter mode"):
            client.predict(window="5:10", api_name="/start")
        assert manager.store.list() == []  # nothing started
        started = client.predict(window="5:10", token="tok", api_name="/start")
        assert started["message"].startswith("Started"), started
        with httpx.stream("GET", served.url + "live/stream", timeout=180) as stream:  # what a viewer receives
            seen = []
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    message = json.loads(line[len("data: "):])
                    seen.append(message["kind"])
                    if message["status"]["state"] == "done":
                        break
        assert seen[0] == "full" and "rows" in seen
        status = client.predict(api_name="/status")  # open to everyone
        assert status["state"] == "done", status
        assert status["epoch"] == 2 and status["rows"] == 3
        metrics = status["latest_metrics"]
        assert metrics["epoch"] == 2 and "reward_mean" in metrics and "vendi_pixel" in metrics
        if DIGITS16:
            assert "vendi_classifier@16" in metrics and "is_classifier@16" in metrics
        run = manager.store.get(status["run_id"])
        assert tuple(run.config["window"]) == (5, 10) and run.checkpoints()
        plain = httpx.get(served.url + "status").json()  # the same JSON without Gradio's queue
        assert plain["state"] == "done" and plain["run_id"] == status["run_id"] and plain["rows"] == 3
        state = httpx.get(served.url + "live/state").json()
        rows = state["runs"][0]["rows"]
        assert [r["epoch"] for r in rows] == [0, 1, 2] and all("logged_at" in r for r in rows[1:])
        assert httpx.get(served.url + rows[-1]["grid"].lstrip("/")).headers["content-type"] == "image/png"
        etag = httpx.get(served.url + "live/state").headers["etag"]
        assert httpx.get(served.url + "live/state", headers={"If-None-Match": etag}).status_code == 304
        assert httpx.get(served.url + f"live/run/{run.run_id}").json()["runs"][0]["run_id"] == run.run_id
        assert httpx.get(served.url + "live/run/..").status_code == 404
        assert httpx.get(served.url + "live/grid/nope/1.png").status_code == 404
        gif = httpx.get(served.url + f"live/animate/{run.run_id}.gif", timeout=60)
        assert gif.status_code == 200 and gif.content[:6] == b"GIF89a"
        viewer = httpx.get(served.url + "?view=1").text
        assert "hrf-live" in viewer and "start-btn" not in viewer
        with pytest.raises(Exception, match="presenter mode"):
            client.predict(run_id=run.run_id, n=4, api_name="/sample")
        assert client.predict(run_id=run.run_id, n=4, token="tok", api_name="/sample")["grid"]
        with pytest.raises(Exception, match="presenter mode"):
            client.predict(api_name="/stop")
    finally:
        served.close()


# ------------------------------------------------------------------------------ the locality profile
def test_profile_bars_line_and_suggested_window_from_the_shipped_profile(tmp_path):
    """digits16 ships its profiles: the bars, one line per window start, and Suggest window work at once."""
    import json

    from hrf_core.study.locality import suggest_window, summary_line

    shipped = json.loads((CHECKPOINTS_DIR / "digits16" / "locality.json").read_text())["rewards"]
    manager = JobManager(RunStore(tmp_path / "runs"), preflight=None)
    lab = Lab(manager, docs_dir=tmp_path / "docs")
    widget = lab.train.profile_view("digits16", "ink", 40)
    assert len(widget.props["profile"]) == 40 and widget.props["profile"][0] < 0.1 and widget.props["profile"][-1] > 0.9
    assert widget.props["lines"][20] == summary_line(shipped["ink"], 20)
    assert "suggested window from step" in widget.props["plabel"]
    window, notice = lab.train.suggest("digits16", "ink", 40)
    start = suggest_window(shipped["ink"])[0][0]
    assert window.value == f"{start}:40" and "Suggested window" in notice
    # another K has no profile yet: the bars go, the label says how to get them, Suggest refuses
    assert lab.train.profile_view("digits16", "ink", 20).props["profile"] == []
    window, notice = lab.train.suggest("digits16", "ink", 20)
    assert "Compute profile" in notice


def test_compute_profile_runs_in_the_job_slot_with_progress(tmp_path, tiny_model_dir, monkeypatch):
    manager = JobManager(RunStore(tmp_path / "runs"), preflight=None)
    lab = Lab(manager, small_defaults(str(tiny_model_dir)), docs_dir=tmp_path / "docs")
    monkeypatch.setenv("HRF_PRESENTER_TOKEN", "tok")
    notice, timer = lab.train.compute_profile("wrong", str(tiny_model_dir), "ink", 10)
    assert "Not started" in notice and manager.task() is None  # the token guards it
    notice, timer = lab.train.compute_profile("tok", str(tiny_model_dir), "ink", 10)
    assert "Computing" in notice and timer.active
    with pytest.raises(ValueError, match="locality profile of ink"):  # the slot is taken: no run starts meanwhile
        manager.start(small_defaults(str(tiny_model_dir)))
    manager.task().thread.join(120)
    notice, widget, timer = lab.train.profile_tick(str(tiny_model_dir), "ink", 10)
    assert "Computed" in notice and not timer.active
    assert len(widget.props["profile"]) == 10 and len(widget.props["lines"]) == 10
    assert list((tmp_path / "runs" / ".profiles").glob("*.json"))  # cached on disk
    assert not manager.busy
    notice, _ = lab.train.compute_profile("tok", str(tiny_model_dir), "no-such-reward", 10)
    assert "unknown reward" in notice


def test_standing_line_names_the_hand_over_of_the_same_seed(tmp_path):
    store = RunStore(tmp_path / "runs")
    for name, method, rewards, scores in (("ddpo-a", "ddpo", [-0.5, -0.49, -0.48], [9.0, 8.0, 7.0]),
                                          ("handover-a", "handover", [-0.5, -0.495, -0.48], [9.0, 9.2, 8.0]),
                                          ("hrf-b", "hrf", [-0.5, -0.495], [9.0, 8.9])):
        run = store.create({"model": "m", "reward": "jpeg-compressibility", "method": method, "seed": 0,
                            "eval_samples": 8, "epochs": 2, "window": [5, 10], "kl_coef": 0.0,
                            "extra": {"source_run": "ddpo-a"} if method == "handover" else {}}, name=name)
        for epoch, (reward, score) in enumerate(zip(rewards, scores, strict=True)):
            run.append_metrics({"epoch": epoch, "reward_mean": reward, "is_classifier@8": score,
                                "vendi_classifier@8": score / 2, "seconds": 1.0})
        run.set_status("done", 2, 2, "finished")
        time.sleep(0.02)  # distinct config mtimes: hrf-b is the newest
    line = live.live_state(JobManager(store, preflight=None), "hrf-b")["status"]["standing"]
    assert "early-stopped DDPO had IS 8.50" in line and "the hand-over of ddpo-a: IS 9.20" in line
    other_seed = store.get("handover-a")
    data = other_seed.config
    data["seed"] = 1
    (other_seed.path / "config.json").write_text(json.dumps(data))
    assert "hand-over" not in live.live_state(JobManager(store, preflight=None), "hrf-b")["status"]["standing"]


def test_wrong_tokens_are_rate_limited_per_client_through_the_api(tmp_path, tiny_model_dir, monkeypatch, caplog,
                                                                  capfd):
    """Through gradio_client: a client that keeps guessing is refused for a while with a clear message, whatever
    it sends; another client with the right token is not slowed down; no log line holds a token."""
    import logging

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from explorer import presenter

    secret = "lectern-9d2b"
    monkeypatch.setenv("HRF_PRESENTER_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    gate = threading.Event()
    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=fake_factory(gate=gate), preflight=None)
    defaults = small_defaults(str(tiny_model_dir))
    served = server.serve(manager, defaults, port=free_port(), docs_dir=tmp_path / "docs")
    try:  # uvicorn takes the client's address from X-Forwarded-For set by a local proxy (here: the test)
        guesser = Client(served.url, verbose=False, headers={"X-Forwarded-For": "203.0.113.7"})
        owner = Client(served.url, verbose=False, headers={"X-Forwarded-For": "198.51.100.2"})

        def refusal(client, api_name, **params) -> str:
            with pytest.raises(AppError) as refused:
                client.predict(api_name=api_name, **params)
            return str(refused.value)

        for i in range(presenter.MAX_FAILURES - 1):
            assert "presenter mode" in refusal(guesser, "/stop", token=f"guess-{i}")
        assert "too many wrong presenter tokens" in refusal(guesser, "/stop", token="guess-last")
        assert "too many wrong presenter tokens" in refusal(guesser, "/stop", token=secret)  # locked, even so
        assert "too many wrong presenter tokens" in refusal(guesser, "/start", token=secret)
        assert manager.store.list() == []
        assert "too many wrong presenter tokens" in refusal(guesser, "/compare", a=defaults.model, b=defaults.model,
                                                            n=8, token=secret)
        assert not owner.predict(token=secret, api_name="/stop")["stopping"]  # never slowed down: nothing runs
        assert owner.predict(token=secret, api_name="/start")["run_id"] == manager.current_run_id()
        assert owner.predict(token=secret, api_name="/stop")["stopping"]
    finally:
        gate.set()
        manager.wait(10)
        served.close()
    out, err = capfd.readouterr()
    assert secret not in caplog.text + out + err and "guess-" not in caplog.text + out + err
    assert "203.0.113.7" in caplog.text  # the lock is logged, with the address and no token


def test_a_forwarded_path_prefix_is_served(tmp_path, tiny_model_dir):
    """A proxy that forwards /hrf/... unchanged (no stripping) reaches the same app as one that strips it; the
    page's own addresses are relative, and its icon link keeps the browser inside the prefix."""
    import httpx

    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=fake_factory(), preflight=None)
    served = server.serve(manager, small_defaults(str(tiny_model_dir)), port=free_port(), docs_dir=tmp_path / "docs",
                       root_path="/hrf")
    try:
        for prefix in ("", "hrf/"):
            page = httpx.get(served.url + prefix)
            assert page.status_code == 200 and '<head><link rel="icon" href="favicon.ico">' in page.text
            head = httpx.get(served.url + prefix + "config").json()["head"]
            assert 'src="live/assets/live.js"' in head and '"/live/' not in head
            assert httpx.get(served.url + prefix + "favicon.ico").status_code == 200
            viewer = httpx.get(served.url + prefix + "?view=1").text
            assert 'src="live/assets/live.js"' in viewer and "/live/" not in viewer
            assert httpx.get(served.url + prefix + "live/state").json()["runs"] == []
            assert httpx.get(served.url + prefix + "status").json()["state"] == "idle"
        config = httpx.get(served.url + "hrf/config").json()
        assert config["root"].endswith("/hrf")  # Gradio builds its own addresses under the prefix
    finally:
        served.close()
