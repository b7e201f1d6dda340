"""No run dies on a download it cannot make (#41): with every download made to fail, ``TORCH_HOME`` and the caches
empty and ``HF_HUB_OFFLINE`` unset, a run either finishes on a labelled proxy or is refused with one line before its
first epoch, from the command line, the scripting API and the page alike; the page stays up. Two networks: one whose
probe fails (a machine with none) and one whose probe answers but whose downloads fail (a firewall that lets the Hub's
front page through)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from test_app import DIGITS16
from test_text_to_image import SMALL, config_of

from hrf_core import downloads
from hrf_core.cli import main
from hrf_core.store.runs import RunStore


class _Answer:
    def close(self) -> None:
        pass


class Calls(list):
    """The download calls made; ``probe_answers``: whether the reachability probe got an answer."""

    probe_answers = False


def patch_network(monkeypatch, tmp_path, probe_answers: bool) -> Calls:
    """Every download raises a connection error (its calls are listed in the list returned); the caches empty;
    HF_HUB_OFFLINE unset; the reachability probe fails, or answers (``probe_answers``)."""
    import huggingface_hub
    import open_clip.pretrained
    import torch.hub
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the Hub read the suite's HF_HUB_OFFLINE=1 at import
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HRF_CACHE_DIR", str(tmp_path / "hrf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("os.path.expanduser", lambda p: p.replace("~", str(tmp_path / "home")))
    calls = Calls()
    calls.probe_answers = probe_answers

    def refused(*args, **kwargs):
        calls.append(str(args[0]) if args else "")
        raise ConnectionError("[Errno 101] Network is unreachable")

    for owner, name in ((torch.hub, "download_url_to_file"), (huggingface_hub, "hf_hub_download"),
                        (huggingface_hub, "snapshot_download"), (open_clip.pretrained, "hf_hub_download"),
                        (open_clip.pretrained, "download_pretrained_from_url")):
        monkeypatch.setattr(owner, name, refused)

    def probe(*args, **kwargs):
        if probe_answers:
            return _Answer()
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", probe)
    downloads.set_offline(None)  # found out afresh, once
    return calls


@pytest.fixture(params=["probe-fails", "probe-answers"])
def no_downloads(request, monkeypatch, tmp_path):
    """No download succeeds: on a machine without network, and behind a firewall that lets the probe through."""
    yield patch_network(monkeypatch, tmp_path, request.param == "probe-answers")
    downloads.set_offline(None)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """A machine without network (the probe fails too)."""
    yield patch_network(monkeypatch, tmp_path, False)
    downloads.set_offline(None)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_text_to_image_run_finishes_on_a_labelled_proxy(no_downloads, tiny_sd_dir, tmp_path, capsys, caplog):
    assert main(["train", "--model", str(tiny_sd_dir), "--prompts", "cat,dog", "--reward", "jpeg-compressibility",
                 "--method", "ddpo", "--epochs", "1", "--out", str(tmp_path / "runs"), *SMALL]) == 0
    assert "Traceback" not in capsys.readouterr().err
    (run,) = (tmp_path / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    line = config["extra"]["evaluation_fallback"]
    assert line.startswith("evaluation on pixels, a weak proxy") and "Inception-v3" in line and "CLIP" in line
    assert "offline" in line and "docs/OFFLINE.md" in line and "\n" not in line
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [line]  # the run's log, once
    assert config["eval_embeddings"] == ["pixel"]
    # decided before the run: without network nothing is tried; behind a firewall, the first download fails, no other
    assert len(no_downloads) == (1 if no_downloads.probe_answers else 0), no_downloads
    assert json.loads((run / "status.json").read_text())["state"] == "done"


@pytest.mark.parametrize("reward,needle", [("clip-alignment", "open_clip weights ViT-L-14/openai"),
                                           ("aesthetic", "LAION aesthetic MLP weights")])
def test_a_reward_that_needs_its_model_is_refused_in_one_line_before_any_epoch(no_downloads, tiny_sd_dir, tmp_path,
                                                                              capsys, reward, needle):
    assert main(["train", "--model", str(tiny_sd_dir), "--prompts", "cat,dog", "--reward", reward, "--method", "ddpo",
                 "--epochs", "1", "--out", str(tmp_path / "runs"), *SMALL]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and needle in line and "python -c" in line and "docs/OFFLINE.md" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing started


@pytest.mark.skipif(not DIGITS16, reason="the embedded digits models are not built")
def test_a_digits_run_needs_no_download_and_an_rgb_reward_is_refused(no_downloads, tmp_path, capsys):
    digits = ["--model", "digits16", "--steps", "6", "--samples", "4", "--batch-size", "2", "--siblings", "2",
              "--eval-samples", "4", "--train-batch-size", "4", "--updates", "1", "--epochs", "1", "--device", "cpu"]
    assert main(["train", "--reward", "jpeg-compressibility", "--out", str(tmp_path / "runs"), *digits]) == 0
    assert no_downloads == [] and "Traceback" not in capsys.readouterr().err  # the classifier is embedded
    assert main(["train", "--reward", "aesthetic", "--out", str(tmp_path / "refused"), *digits]) == 2
    assert "LAION aesthetic" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())  # nothing started


def test_offline_is_found_out_once_and_an_explicit_word_needs_no_probe(monkeypatch, no_network):
    probes = []
    monkeypatch.setattr(downloads, "probe", lambda timeout=downloads.PROBE_SECONDS: probes.append(1) or "no route")
    assert downloads.offline() and downloads.offline() and probes == [1]
    downloads.set_offline(True)
    assert downloads.offline() and downloads.reason() == "offline (--offline)" and probes == [1]
    downloads.set_offline(None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert downloads.reason() == "offline (HF_HUB_OFFLINE is set)" and probes == [1]


def test_a_probe_that_hangs_is_given_up_on(monkeypatch):
    """A name lookup or connection that hangs (urllib's timeout does not cover the lookup) is not waited for."""
    import threading

    release = threading.Event()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *args, **kwargs: release.wait(30))
    try:
        assert downloads.probe(0.1).endswith("did not answer within 0.1 s")
    finally:
        release.set()


def test_the_command_lines_offline_word_needs_no_probe(monkeypatch, no_network, tiny_sd_dir, tmp_path, capsys):
    probes = []
    monkeypatch.setattr(downloads, "probe", lambda timeout=downloads.PROBE_SECONDS: probes.append(1) or "")
    assert main(["--offline", "train", "--model", str(tiny_sd_dir), "--prompts", "cat", "--reward", "clip-alignment",
                 "--out", str(tmp_path), *SMALL]) == 2
    assert "offline (--offline)" in one_line(capsys.readouterr().err) and probes == [] and no_network == []


def test_the_page_and_the_api_show_the_one_line_and_stay_up(no_network, tiny_sd_dir, tmp_path):
    from explorer.api import ScriptingApi
    from explorer.jobs import JobManager
    from explorer.page import Lab
    from explorer.views import train

    config = config_of(tiny_sd_dir, epochs=1)
    manager = JobManager(RunStore(tmp_path / "runs"), torch_threads=1)  # the real preflight and trainer
    lab = Lab(manager, config, docs_dir=tmp_path / "docs")
    api = ScriptingApi(manager, config)
    try:
        values = {**train.form_from_config(config), "reward": "clip-alignment"}
        notice, _ = lab.train.start("", "custom", values)
        assert "Not started: reward clip-alignment is unavailable: open_clip weights" in notice
        assert "docs/OFFLINE.md" in notice and "\n" not in notice and not lab.store.list()  # nothing started
        with pytest.raises(ValueError, match="open_clip weights ViT-L-14/openai") as refused:
            api.start(reward="clip-alignment", prompts="cat,dog")
        assert "\n" not in str(refused.value)
        # the app is still up: a start that can run, runs, on pixels, and says so in one line
        notice, _ = lab.train.start("", "custom", {**values, "reward": "jpeg-compressibility"})
        assert "Started " in notice and "Evaluation on pixels, a weak proxy" in notice and "docs/OFFLINE.md" in notice
        assert manager.wait(120) and manager.snapshot().status == "done"
        started = api.start(reward="jpeg-compressibility", prompts="cat,dog")
        assert "evaluation on pixels, a weak proxy" in started["message"]
        assert manager.wait(120) and manager.snapshot().status == "done"
    finally:
        manager.stop()
        manager.wait(30)


# ------------------------------------------------------------------ settings derived from others never blame the user
@pytest.mark.parametrize("name", ["frontier-digits", "prompts-digits"])
def test_every_experiment_takes_its_smallest_sizes(name, monkeypatch, tmp_path, capsys):
    """1 epoch, 1 seed, each task alone: every arm's config is built (checkpoint_every, derived from the epochs, was 0)
    and the sitting starts; its units are not run here (too slow for the suite: run by hand for #41)."""
    import contextlib

    from hrf_core.study import arms, backends, prompts_experiment, report, units

    module = arms if name == "frontier-digits" else prompts_experiment
    sittings = []
    monkeypatch.setattr(backends, "backend_from_arguments", lambda args, out: contextlib.nullcontext())
    monkeypatch.setattr(units, "run_experiment", lambda settings, *a, **k: sittings.append(settings) or {
        "units": {}})
    monkeypatch.setattr(report if name == "frontier-digits" else prompts_experiment, "write_report",
                        lambda *args, **kwargs: tmp_path / "RESULTS.md")
    for task in module.Settings().tasks:
        assert main(["experiment", name, "--epochs", "1", "--seeds", "0", "--tasks", task, "--out",
                     str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")]) == 0, capsys.readouterr().err
        settings = sittings[-1]
        for arm in module.arms_of(task, settings):
            if arm != module.HANDOVER_ARM:
                assert module.arm_config(task, arm, 0, settings).checkpoint_every == 1
    assert len(sittings) == len(module.Settings().tasks)


def test_every_preset_takes_one_epoch_and_a_default_window_follows_the_steps():
    from hrf_core.cli import build_parser
    from hrf_core.commands.train import config_from_args
    from hrf_core.presets import PRESETS

    for preset in PRESETS:
        config = config_from_args(build_parser().parse_args(["train", "--preset", preset, "--epochs", "1"]))
        assert config.epochs == 1 and 1 <= config.checkpoint_every
    # the default window 20:40 is not the user's: --steps 6 keeps it inside 0..6 (as the page does); a typed one is
    # still checked against the steps
    assert config_from_args(build_parser().parse_args(["train", "--steps", "6"])).window == (5, 6)
    with pytest.raises(ValueError, match="window 20:40 must satisfy"):
        config_from_args(build_parser().parse_args(["train", "--steps", "6", "--window", "20:40"]))
