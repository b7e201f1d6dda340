"""The scripting API (explorer.api) through gradio_client against a served app: named, typed parameters;
every registered reward and model; errors that name the parameter, with nothing started; plain data with the
page's seeds; the presenter token; and the README's "Scripting" examples, run as written."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image
from test_app import DIGITS16, small_defaults

from explorer import server
from explorer.jobs import JobManager
from explorer.server import free_port
from explorer.views import compare, train
from hrf_core import CHECKPOINTS_DIR, REPO_ROOT, settings
from hrf_core.rewards import registry as rewards
from hrf_core.store.runs import RunStore

FORM = ["model", "reward", "method", "window_start", "window_end", "window", "start_mode", "adv_scope",
        "outside_window", "epochs", "samples_per_epoch", "batch_size", "siblings", "num_steps", "lr", "clip_range",
        "adv_clip", "seed", "eval_every", "eval_samples", "kl_coef", "diversity_weight",  # the diversity bonus (#37)
        "prompts", "guidance_grad", "guidance", "prompt_buffer", "prompt_min_count",  # the prompts' parameters (#29)
        "train_batch_size", "bf16", "fp16", "grad_checkpointing", "finetune", "lora_rank", "lora_alpha",
        "lora_targets", "preset", "token"]  # memory and LoRA (#30)
PARAMETERS = {
    "/start": FORM, "/duel": FORM, "/stop": ["token"], "/status": [],
    "/compare": ["a", "b", "a_run_id", "a_epoch", "b_run_id", "b_epoch", "n", "seed", "reward", "handover", "token"],
    "/sample": ["run_id", "epoch", "n", "seed", "token"],
    "/suggest_window": ["model", "reward", "num_steps"],
    "/compute_profile": ["model", "reward", "num_steps", "wait", "token"],
}


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    """The app over a fresh store, its defaults small (K = 10, 8 samples an epoch, a checkpoint every epoch)."""
    root = tmp_path_factory.mktemp("api")
    manager = JobManager(RunStore(root / "runs"), torch_threads=1)
    model = "digits16" if DIGITS16 else str(tiny_model_dir)
    served = server.serve(manager, small_defaults(model), port=free_port(), docs_dir=root / "docs")
    yield served
    manager.stop()
    manager.wait(60)
    served.close()


@pytest.fixture(scope="module")
def client(served):
    client = Client(served.url, verbose=False)
    yield client
    client.close()


@pytest.fixture
def manager(served) -> JobManager:
    manager = served.api.state.lab.manager
    yield manager
    manager.stop()  # every test leaves the job slot free
    assert manager.wait(60)


@pytest.fixture(scope="module")
def trained(client, served) -> str:
    """A two-epoch run on the reward "ink", asked for by name (the page's dropdown offers only its first choice)."""
    run = client.predict(reward="ink", api_name="/start")
    assert served.api.state.lab.manager.wait(120)
    return run["run_id"]


def settled(client) -> dict:
    """/status once the job has ended (the status follows the live feed, which publishes a moment later)."""
    deadline = time.time() + 30
    while (status := client.predict(api_name="/status"))["state"] in ("starting", "running", "stopping"):
        assert time.time() < deadline, status
        time.sleep(0.2)
    return status


def refusal(client, api_name: str, **kwargs) -> str:
    with pytest.raises(AppError) as caught:
        client.predict(api_name=api_name, **kwargs)
    return str(caught.value)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else Image.open(image).convert("RGB"))


# ------------------------------------------------------------------------------------------ the schema
def test_every_endpoint_has_named_typed_parameters(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for endpoint, expected in PARAMETERS.items():
        assert [p["parameter_name"] for p in named[endpoint]["parameters"]] == expected, endpoint
    for endpoint, info in named.items():  # and so is any endpoint added later
        for p in info["parameters"]:
            assert not re.fullmatch(r"param(eter)?_\d+", p["parameter_name"]), (endpoint, p["parameter_name"])
            assert p["type"] and p["python_type"]["type"], (endpoint, p["parameter_name"])
    start = {p["parameter_name"]: p for p in named["/start"]["parameters"]}
    for name in settings.form_numbers():
        kind = settings.TABLE[name].python_type
        assert start[name]["python_type"]["type"] == f"None | {kind.__name__}", name
        assert start[name]["parameter_has_default"]
    assert "ddpo" in str(start["method"]["type"]) and "digits-hrf-late" in str(start["preset"]["type"])
    assert "window='4:10'" in named["/start"]["description"]  # the page's defaults are documented


# ------------------------------------------------------------------------------------------ training
def test_train_on_ink_by_name(served, client, trained):
    run = served.api.state.lab.store.get(trained)
    assert run.config["reward"] == "ink" and run.config["epochs"] == 2 and tuple(run.config["window"]) == (4, 10)
    assert [c.name for c in run.checkpoints()] == ["epoch-0001", "epoch-0002"]
    status = settled(client)
    assert status["run_id"] == trained and status["state"] == "done" and "reward_mean" in status["latest_metrics"]


def test_start_by_name_then_stop(client, manager):
    run = client.predict(reward="ink", epochs=200, window_start=6, adv_clip=2.5, api_name="/start")
    config = manager.store.get(run["run_id"]).config
    assert (config["reward"], config["epochs"], tuple(config["window"]), config["adv_clip"]) == ("ink", 200, (6, 10),
                                                                                                 2.5)
    assert client.predict(api_name="/stop") == {"stopping": True,
                                                "message": "Stopping after the current denoising step."}
    assert manager.wait(60)
    assert settled(client)["state"] == "stopped"
    assert client.predict(api_name="/stop")["stopping"] is False


def test_duel_takes_registered_extras_and_a_local_folder(client, manager, tiny_model_dir, tmp_path, monkeypatch):
    """A reward of HRF_EXTRA_REWARDS and a typed local diffusers folder, as in the page."""
    (tmp_path / "bright.py").write_text("def brightness(images):\n    return images.mean(dim=(1, 2, 3))\n")
    monkeypatch.setitem(rewards.REWARDS, "bright", None)  # removed again after the test
    assert rewards.register_from_env({"HRF_EXTRA_REWARDS": f"bright={tmp_path / 'bright.py'}:brightness"}) == ["bright"]
    duel = client.predict(model=str(tiny_model_dir), reward="bright", epochs=200, api_name="/duel")
    configs = [manager.store.get(run_id).config for run_id in duel["run_ids"]]
    assert [(c["model"], c["reward"], c["method"]) for c in configs] == [
        (str(tiny_model_dir), "bright", "hrf"), (str(tiny_model_dir), "bright", "ddpo")]
    assert client.predict(api_name="/stop")["stopping"]


def test_a_preset_fills_what_is_left_out(client, manager):
    run = client.predict(preset="digits-ddpo", reward="symmetry", num_steps=10, samples_per_epoch=8, batch_size=8,
                         eval_samples=16, api_name="/start")
    config = run["config"]
    preset = train.PRESETS["digits-ddpo"]
    assert (config["method"], config["epochs"], config["reward"], config["num_steps"]) == (
        "ddpo", preset.epochs, "symmetry", 10)
    assert config["train_batch_size"] == preset.train_batch_size  # fields the form lacks too
    assert client.predict(api_name="/stop")["stopping"]


# ------------------------------------------------------------------------------------------ compare, sample
def test_compare_by_model_name_and_by_run_and_epoch(served, client, trained):
    store = served.api.state.lab.store
    result = client.predict(a="digits16" if DIGITS16 else None, b_run_id=trained, b_epoch=1, n=8, seed=3,
                            api_name="/compare")
    assert result["b"]["source"] == f"ckpt:{trained}:epoch-0001" and result["a"]["source"].startswith("base:")
    assert (result["reward"], result["num_steps"], result["n"], result["seed"]) == ("ink", 10, 8, 3)
    page = compare.compare(store, result["a"]["source"], result["b"]["source"], n=8, seed=3)  # what the page shows
    for side, grid, metrics in (("a", page.grid_a, page.metrics_a), ("b", page.grid_b, page.metrics_b)):
        assert Path(result[side]["grid"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert np.array_equal(pixels(result[side]["grid"]), pixels(grid)), side  # the page's seeds
        assert result[side]["metrics"] == pytest.approx(metrics) and "reward_mean" in metrics
    assert result["a"]["metrics"] != result["b"]["metrics"]
    same = client.predict(a=result["a"]["source"].removeprefix("base:"), b=result["a"]["source"].removeprefix("base:"),
                          n=4, api_name="/compare")  # two model names: the same samples, the same metrics
    assert same["a"]["metrics"] == same["b"]["metrics"] and same["a"]["metrics"]["eval_samples"] == 4


def test_sample_a_checkpoint_by_run_and_epoch(served, client, trained):
    result = client.predict(run_id=trained, epoch=2, n=4, seed=5, api_name="/sample")
    assert (result["run_id"], result["epoch"], result["num_steps"]) == (trained, 2, 10)
    page = compare.sample_grid(served.api.state.lab.store, f"ckpt:{trained}:epoch-0002", n=4, seed=5)
    assert np.array_equal(pixels(result["grid"]), pixels(page))


# ------------------------------------------------------------------------------------------ the locality profile
@pytest.mark.skipif(not DIGITS16, reason="needs the embedded digits16 model and its shipped profiles")
def test_suggest_window_from_the_shipped_profile(client):
    import json

    from hrf_core.study.locality import suggest_window

    shipped = json.loads((CHECKPOINTS_DIR / "digits16" / "locality.json").read_text())["rewards"]["ink"]
    (start, end), _ = suggest_window(shipped)
    result = client.predict(model="digits16", reward="ink", num_steps=40, api_name="/suggest_window")
    assert (result["window"], result["window_start"], result["window_end"]) == (f"{start}:{end}", start, end)
    assert len(result["decided"]) == 40 and "Suggested window" in result["reason"]


def test_compute_profile_then_suggest(client, manager, tiny_model_dir):
    model = str(tiny_model_dir)
    assert "/compute_profile" in refusal(client, "/suggest_window", model=model, reward="symmetry", num_steps=6)
    result = client.predict(model=model, reward="symmetry", num_steps=6, api_name="/compute_profile")
    assert result["state"] == "done" and result["error"] is None, result
    window = client.predict(model=model, reward="symmetry", num_steps=6, api_name="/suggest_window")
    assert 0 <= window["window_start"] < window["window_end"] == 6


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("endpoint,kwargs,words", [
    ("/start", {"reward": "nope"}, ["reward:", "'nope'", "ink", "symmetry", "digit:3"]),
    ("/start", {"epochs": 0}, ["epochs:", "between 1 and 1000"]),
    ("/start", {"batch_size": 16}, ["batch_size (16) cannot exceed samples_per_epoch (8)"]),
    ("/start", {"window_start": 7, "window_end": 3}, ["window_start, window_end:", "inverted"]),
    ("/start", {"window": "2:5", "window_end": 8}, ["window:", "window_end", "not both"]),
    ("/start", {"outside_window": "sometimes"}, ["outside_window:", "tuned, base"]),
    ("/start", {"preset": "fast"}, ["preset:", "digits-hrf-late"]),
    ("/duel", {"method": "sgd"}, ["method:", "ddpo, hrf, hrf-sliding, hrf-d"]),
    ("/duel", {"model": "no/such-model"}, ["model:", "digits16", "local diffusers folder"]),
    ("/compare", {"a": "nope", "b": "digits16"}, ["a:", "digits16", "local diffusers folder"]),
    ("/compare", {"b_run_id": "no-such-run"}, ["b_run_id:", "no run 'no-such-run'", "runs:"]),
    ("/compare", {"a": "digits16", "b": "digits16", "n": 2}, ["n must be", "between 4 and 256"]),
    ("/sample", {"run_id": "no-such-run"}, ["run_id:", "no run"]),
    ("/suggest_window", {"num_steps": 1}, ["num_steps:", "between 2 and 1000"]),
    ("/compute_profile", {"reward": "nope"}, ["reward:", "ink"]),
])
def test_a_bad_value_names_the_parameter_and_nothing_starts(client, manager, endpoint, kwargs, words):
    before = [run.run_id for run in manager.store.list()]
    message = refusal(client, endpoint, **kwargs)
    for word in words:
        assert word in message, (word, message)
    assert [run.run_id for run in manager.store.list()] == before and not manager.busy


def test_a_missing_epoch_lists_the_run_checkpoints(client, trained):
    message = refusal(client, "/sample", run_id=trained, epoch=7)
    assert "epoch:" in message and "checkpoints at epochs 1, 2" in message
    assert "b_epoch:" in refusal(client, "/compare", b_run_id=trained, b_epoch=9)


def test_presenter_token(client, manager, trained, monkeypatch):
    monkeypatch.setenv("HRF_PRESENTER_TOKEN", "s3cret")
    before = [run.run_id for run in manager.store.list()]
    for i, (endpoint, kwargs) in enumerate([
            ("/start", {"reward": "ink"}), ("/duel", {}), ("/stop", {}), ("/sample", {}), ("/compare", {"n": 4}),
            ("/compute_profile", {"wait": False}), ("/continue", {"run_id": trained}),
            ("/start", {"reward": "ink", "token": "wrong"})]):
        # each refusal from its own address: wrong tokens from one client are rate-limited (test_app)
        one = Client(client.src, verbose=False, headers={"X-Forwarded-For": f"198.51.100.{10 + i}"})
        assert "presenter mode" in refusal(one, endpoint, **kwargs), endpoint
    assert [run.run_id for run in manager.store.list()] == before and not manager.busy
    assert client.predict(api_name="/status")["run_id"]  # watching stays open
    assert client.predict(run_id=trained, n=1, token="s3cret", api_name="/sample")["grid"]
    assert client.predict(token="s3cret", api_name="/stop")["stopping"] is False


# ------------------------------------------------------------------------------------------ the README
def readme_examples() -> str:
    """The Python code of docs/API.md (the scripting guide the README's "Scripting" section links)."""
    text = (REPO_ROOT / "docs" / "API.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/API.md has no python example"
    return "\n".join(blocks)


@pytest.mark.skipif(not DIGITS16, reason="the examples use the embedded digits16 model")
def test_readme_scripting_examples_run(served, manager, capsys):
    code = readme_examples()
    assert 'Client("http://127.0.0.1:7860/")' in code
    exec(compile(code.replace("http://127.0.0.1:7860/", served.url), "README.md", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out
    assert "method: 'sgd' is not allowed" in printed and "started" in printed
    runs = {}
    for run in manager.store.list():  # newest first: the README's own runs
        runs.setdefault(run.config["reward"], run)
    assert runs["ink"].status["state"] == "done" and len(runs["ink"].checkpoints()) == 2
    assert runs["symmetry"].config["extra"].get("duel") is not None  # the duel started (and was stopped)


def test_sessions_no_page_holds_are_forgotten(served):
    """Gradio keeps a copy of every component's config per session (one per script's client, one per page) and
    forgets none below 10,000 sessions: the janitor forgets a session once no heartbeat holds it and it has been
    idle for the grace period, and keeps one whose page (heartbeat) is still open."""
    import threading

    import httpx

    janitor, holder = served.api.state.sessions, served.api.state.demo.state_holder
    clients = [Client(served.url, verbose=False) for _ in range(3)]
    hashes = []
    for script in clients:
        script.predict(api_name="/status")
        hashes.append(script.session_hash)
        script.close()
    assert set(hashes) <= set(holder.session_data)
    page, closing = hashes[0], threading.Event()

    def hold_page() -> None:  # a browser tab: its heartbeat stays connected
        with httpx.stream("GET", f"{served.url}gradio_api/heartbeat/{page}", timeout=None) as response:
            for _ in response.iter_bytes():
                if closing.is_set():
                    return

    threading.Thread(target=hold_page, daemon=True).start()
    deadline = time.time() + 30
    while not janitor.open_pages.get(page):
        assert time.time() < deadline, "the heartbeat was not seen"
        time.sleep(0.05)
    janitor.prune()  # within the grace period: every session stays
    assert set(hashes) <= set(holder.session_data)
    later = time.time() + janitor.grace + 1
    janitor.prune(later)
    assert page in holder.session_data and not set(hashes[1:]) & set(holder.session_data)
    closing.set()  # the tab closes: the server sees the disconnect at the heartbeat's next message
    deadline = time.time() + 60
    while janitor.open_pages.get(page):
        assert time.time() < deadline, "the closed heartbeat is still counted"
        time.sleep(0.1)
    janitor.prune(later)
    assert page not in holder.session_data
