"""Weights either way, safely: pickle-only UNets converted once (weights_only), malicious pickles refused
unrun, and truncated or corrupt weights, configs and run state as one line (ValueError, CLI exit 2)."""

from __future__ import annotations

import fnmatch
import json
import os
import pathlib
import pickle
import shutil

import pytest
import torch
from conftest import make_scheduler, make_tiny_unet
from safetensors.torch import load_file

from hrf_core import downloads
from hrf_core.cli import main
from hrf_core.models import registry as models
from hrf_core.models import weights
from hrf_core.models.registry import availability, load_base_model, model_folder

SMALL = ["--steps", "4", "--samples", "4", "--batch-size", "4", "--siblings", "2", "--eval-samples", "4",
         "--device", "cpu"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh HRF_CACHE_DIR per test, and no memoised hashes (as in a new process)."""
    monkeypatch.setenv("HRF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "_SHA_MEMO", {})
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def rgb_dirs(tmp_path_factory):
    """The same small RGB model (3 channels, 8x8) saved both ways: {"safetensors": folder, "pickle": folder}."""
    unet = make_tiny_unet(seed=1, channels=3)
    folders = {}
    for kind, safe in (("safetensors", True), ("pickle", False)):
        folder = tmp_path_factory.mktemp(f"rgb-{kind}")
        unet.save_pretrained(folder / "unet", safe_serialization=safe)
        make_scheduler().save_pretrained(folder / "scheduler")
        folders[kind] = folder
    assert not list(folders["pickle"].rglob("*.safetensors"))
    return folders


def copy_of(folder: pathlib.Path, tmp_path: pathlib.Path, name: str = "model") -> pathlib.Path:
    return pathlib.Path(shutil.copytree(folder, tmp_path / name))


def truncate(path: pathlib.Path, keep: float | int = 0.5) -> None:
    """Rewrite ``path`` with fewer bytes: a fraction of it, or the first ``keep`` bytes."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)] if isinstance(keep, float) else data[:keep])


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def count_conversions(monkeypatch) -> list[pathlib.Path]:
    calls: list[pathlib.Path] = []
    real = weights.load_pickle_state

    def spy(path):
        calls.append(pathlib.Path(path))
        return real(path)

    monkeypatch.setattr(weights, "load_pickle_state", spy)
    return calls


# -- conversion -------------------------------------------------------------------------------------------

def test_pickle_unet_is_converted_once_and_loads_the_same_weights(rgb_dirs, cache, monkeypatch, tmp_path):
    calls = count_conversions(monkeypatch)
    source = copy_of(rgb_dirs["pickle"], tmp_path)
    base = load_base_model(str(source), "cpu")
    digest = weights.file_sha256(source / "unet" / weights.UNET_PICKLE)
    root = cache / "converted" / digest
    assert base.name == str(source) and base.folder.parent == root and base.sample_shape == (3, 8, 8)
    assert len(calls) == 1 and not list(source.rglob("*.safetensors"))  # the source folder is left alone
    reference = load_base_model(str(rgb_dirs["safetensors"]), "cpu").unet.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in base.unet.state_dict().items())
    assert base.scheduler.config.steps_offset == 1  # the source's scheduler config came along
    assert json.loads((root / "source.json").read_text())["sha256"] == digest
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp leftovers
    cached = base.folder / "unet" / weights.UNET_SAFETENSORS
    stamp = cached.stat().st_mtime_ns

    monkeypatch.setattr(weights, "_SHA_MEMO", {})  # a second process
    assert model_folder(str(source)) == base.folder
    again = load_base_model(str(source), "cpu")
    assert len(calls) == 1 and cached.stat().st_mtime_ns == stamp  # read from the cache, not converted again
    assert all(torch.equal(v, reference[k]) for k, v in again.unet.state_dict().items())


def test_same_pickle_with_another_scheduler_config_gets_its_own_folder(rgb_dirs, cache, monkeypatch, tmp_path):
    calls = count_conversions(monkeypatch)
    first = load_base_model(str(rgb_dirs["pickle"]), "cpu")
    edited = copy_of(rgb_dirs["pickle"], tmp_path)
    config_path = edited / "scheduler" / "scheduler_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "steps_offset": 0}))
    second = load_base_model(str(edited), "cpu")
    assert len(calls) == 1 and second.folder != first.folder and second.folder.parent == first.folder.parent
    assert (first.scheduler.config.steps_offset, second.scheduler.config.steps_offset) == (1, 0)


def test_tied_and_strided_tensors_are_saved_as_independent_copies(tmp_path):
    shared = torch.arange(12.0).reshape(3, 4)
    path = tmp_path / "tied.bin"
    torch.save({"a": shared, "b": shared, "row": shared[1], "t": shared.t()}, path)
    state = weights.load_pickle_state(path)
    weights.save_state(state, tmp_path / "tied.safetensors")
    loaded = load_file(str(tmp_path / "tied.safetensors"))
    assert torch.equal(loaded["a"], shared) and torch.equal(loaded["b"], shared)
    assert torch.equal(loaded["row"], shared[1]) and torch.equal(loaded["t"], shared.t())
    assert not state  # emptied as it went


def test_hub_snapshot_with_only_a_pickle_unet_is_converted(rgb_dirs, tmp_path, monkeypatch):
    """A cached snapshot laid out like the Hub's (symlinks into blobs, flat layout), offline."""
    import huggingface_hub.constants

    repo, commit = "test/tiny-pickle", "0123456789abcdef0123456789abcdef01234567"
    hub = tmp_path / "hub" / "models--test--tiny-pickle"
    snapshot = hub / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text(commit)
    (hub / "blobs").mkdir()
    files = {"config.json": rgb_dirs["pickle"] / "unet" / "config.json",
             weights.UNET_PICKLE: rgb_dirs["pickle"] / "unet" / weights.UNET_PICKLE,
             "scheduler_config.json": rgb_dirs["pickle"] / "scheduler" / "scheduler_config.json"}
    for i, (name, src) in enumerate(files.items()):
        shutil.copyfile(src, hub / "blobs" / f"blob{i}")
        (snapshot / name).symlink_to(f"../../blobs/blob{i}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setitem(models.MODELS, repo, models.ModelSpec(repo, "hub", repo, "test model"))

    assert availability(repo) == (True, "")
    base = load_base_model(repo, "cpu")
    assert base.name == repo and base.sample_shape == (3, 8, 8)
    assert (base.folder / weights.UNET_SAFETENSORS).is_file() and not (snapshot / weights.UNET_SAFETENSORS).exists()

    (snapshot / weights.UNET_PICKLE).unlink()  # a snapshot without UNet weights is not usable offline
    ok, reason = availability(repo)
    assert not ok and f"hf download {repo}" in reason
    with pytest.raises(ValueError, match=f"hf download {repo}"):
        model_folder(repo)


@pytest.mark.parametrize("remote_has_safetensors", [True, False])
def test_hub_download_falls_back_to_the_pickle_only_without_safetensors(rgb_dirs, tmp_path, monkeypatch,
                                                                          remote_has_safetensors):
    """Online (a fake Hub: no network): configs + safetensors first; the UNet's .bin only when there are none."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    kind = "safetensors" if remote_has_safetensors else "pickle"
    remote = {p.relative_to(rgb_dirs[kind]).as_posix(): p for p in rgb_dirs[kind].rglob("*") if p.is_file()}
    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None, local_files_only=False):
        calls.append((allow_patterns, local_files_only))
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        folder = tmp_path / "snapshot"
        for name, src in remote.items():
            if any(fnmatch.fnmatch(name, pattern) for pattern in allow_patterns):  # as huggingface_hub filters
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, folder / name)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read at import, from conftest's "1"
    monkeypatch.setattr(downloads, "_state", {"reason": ""})  # the network is reachable (no probe)
    monkeypatch.setitem(models.MODELS, "test/remote", models.ModelSpec("test/remote", "hub", "test/remote", "t"))
    assert availability("test/remote") == (True, "weights will be downloaded on first use (about 455 MB)")
    calls.clear()
    base = load_base_model("test/remote", "cpu")
    expected = [(["*.json"], True), (models.HUB_PATTERNS, False)]
    if not remote_has_safetensors:
        expected.append((models.HUB_PICKLE_PATTERNS, False))
    assert calls == expected and base.sample_shape == (3, 8, 8)
    assert (base.folder.parent.parent.name == "converted") is not remote_has_safetensors


# -- malicious and broken pickles ------------------------------------------------------------------------

class Payload:
    """Pickles to a call that creates ``marker`` when unpickled by a plain pickle load."""

    def __init__(self, marker: pathlib.Path, how: str):
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize("how,writer", [("system", "torch.save"), ("system", "pickle.dump"), ("touch", "torch.save")])
def test_malicious_pickle_is_refused_and_nothing_in_it_runs(rgb_dirs, tmp_path, cache, capsys, how, writer):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control, how)))  # the payload is live: a plain pickle load runs it
    assert control.exists()

    marker = tmp_path / "pwned"
    folder = copy_of(rgb_dirs["pickle"], tmp_path)
    bin_path = folder / "unet" / weights.UNET_PICKLE
    state = {"conv_in.weight": torch.zeros(1), "evil": Payload(marker, how)}
    if writer == "torch.save":
        torch.save(state, bin_path)
    else:
        with open(bin_path, "wb") as handle:
            pickle.dump(state, handle)

    with pytest.raises(ValueError) as error:
        load_base_model(str(folder), "cpu")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"refused {bin_path}") and "nothing in it was run" in message
    assert not marker.exists()

    out = tmp_path / "grid.png"
    assert main(["sample", "--model", str(folder), "--n", "1", "--steps", "2", "--device", "cpu",
                 "--out", str(out)]) == 2
    assert one_error_line(capsys).startswith(f"error: refused {bin_path}")
    assert not marker.exists() and not out.exists()
    assert main(["train", "--model", str(folder), "--window", "0:4", "--out", str(tmp_path / "runs"), *SMALL]) == 2
    assert one_error_line(capsys).startswith(f"error: refused {bin_path}")
    assert not marker.exists() and not (tmp_path / "runs").exists()  # refused before a run was created
    assert not (cache / "converted").exists() or not any((cache / "converted").iterdir())  # nothing cached


@pytest.mark.parametrize("damage,message", [
    (lambda p: truncate(p), "not a readable PyTorch weights file (truncated or corrupt"),
    (lambda p: p.write_bytes(b""), "not a readable PyTorch weights file"),
    (lambda p: torch.save({"state_dict": {"w": torch.zeros(1)}}, p), "entry 'state_dict' is of type dict"),
    (lambda p: torch.save([torch.zeros(1)], p), "it holds a list"),
    (lambda p: torch.save({"conv_in.weight": torch.zeros(8, 3, 3, 3)}, p), "the weights lack"),
])
def test_unusable_pickle_weights_are_one_line(rgb_dirs, tmp_path, damage, message):
    folder = copy_of(rgb_dirs["pickle"], tmp_path)
    damage(folder / "unet" / weights.UNET_PICKLE)
    with pytest.raises(ValueError, match="^[^\n]*$") as error:
        load_base_model(str(folder), "cpu")
    assert message in str(error.value)


# -- truncated or corrupt safetensors and configs --------------------------------------------------------

UNET_WEIGHTS = f"unet/{weights.UNET_SAFETENSORS}"


@pytest.mark.parametrize("file,damage,message", [
    (UNET_WEIGHTS, lambda p: truncate(p), "is not a readable safetensors file (truncated or corrupt"),
    (UNET_WEIGHTS, lambda p: truncate(p, 4), "is not a readable safetensors file"),
    (UNET_WEIGHTS, lambda p: truncate(p, 0), "is not a readable safetensors file"),
    (UNET_WEIGHTS, lambda p: p.write_bytes(p.read_bytes()[:8] + b"{garbage" + p.read_bytes()[16:]),
     "is not a readable safetensors file"),
    (UNET_WEIGHTS, lambda p: p.unlink(), "has no UNet weights"),
    ("unet/config.json", lambda p: p.write_text("{not json"), "is not a readable JSON config"),
    ("unet/config.json", lambda p: truncate(p), "is not a readable JSON config"),
    ("unet/config.json", lambda p: p.write_text("[]"), "is not a JSON object"),
    ("unet/config.json",
     lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "block_out_channels": [8, 32]})),
     "could not be loaded as a UNet2DModel"),
    ("scheduler/scheduler_config.json", lambda p: truncate(p), "is not a readable JSON config"),
])
def test_broken_safetensors_model_is_one_line_in_the_library_and_the_cli(rgb_dirs, tmp_path, capsys, file, damage,
                                                                            message):
    folder = copy_of(rgb_dirs["safetensors"], tmp_path)
    damage(folder / file)
    with pytest.raises(ValueError) as error:
        load_base_model(str(folder), "cpu")
    assert "\n" not in str(error.value) and message in str(error.value)
    assert main(["sample", "--model", str(folder), "--n", "1", "--steps", "2", "--device", "cpu",
                 "--out", str(tmp_path / "grid.png")]) == 2
    assert message in one_error_line(capsys)


def test_run_checkpoint_and_resume_with_broken_files_exit_2_with_one_line(rgb_dirs, tmp_path, capsys):
    """One tiny run trained from the pickle-only model; then each broken copy of it is sampled or resumed."""
    source = copy_of(rgb_dirs["pickle"], tmp_path, "source")
    assert main(["train", "--model", str(source), "--method", "ddpo", "--epochs", "1", "--out", str(tmp_path / "runs"),
                 "--name", "good", *SMALL]) == 0
    good = tmp_path / "runs" / "good"
    assert json.loads((good / "config.json").read_text())["model"] == str(source)  # the name, not the cache
    capsys.readouterr()

    cases = [
        ("unet/" + weights.UNET_SAFETENSORS, truncate, "is not a readable safetensors file"),
        ("unet/" + weights.UNET_SAFETENSORS, pathlib.Path.unlink, "has no UNet weights"),
        ("optimizer.safetensors", truncate, "optimizer.safetensors is not a readable safetensors file"),
        ("optimizer.safetensors", pathlib.Path.unlink, "missing weight file"),
        ("trainer_state.safetensors", truncate, "trainer_state.safetensors is not a readable safetensors file"),
    ]
    for i, (file, damage, message) in enumerate(cases):
        run = pathlib.Path(shutil.copytree(good, tmp_path / "runs" / f"broken{i}"))
        checkpoint = run / "checkpoints" / "epoch-0001"
        damage(checkpoint / file)
        metrics = (run / "metrics.jsonl").read_text()
        assert main(["resume", str(run), "--epochs", "2"]) == 2, file
        assert message in one_error_line(capsys)
        assert (run / "metrics.jsonl").read_text() == metrics  # nothing started
        if file.startswith("unet/"):
            assert main(["sample", "--checkpoint", str(checkpoint), "--n", "1", "--steps", "2", "--device", "cpu",
                         "--out", str(tmp_path / "grid.png")]) == 2
            assert message in one_error_line(capsys)


def test_cli_error_messages_are_joined_onto_one_line(monkeypatch, capsys):
    from hrf_core.commands import sample

    def multi_line(args):
        raise ValueError("first line\nsecond line\n")

    monkeypatch.setattr(sample.COMMAND, "run", multi_line)
    assert main(["sample", "--model", "x", "--out", "y.png"]) == 2
    assert one_error_line(capsys) == "error: first line second line"
