"""``python -m hrf_core export``: a run checkpoint as a diffusers pipeline folder with a model card; its UNet
is the checkpoint's bit for bit, its DDIM samples score like ``sample``'s; the Hub upload up to the call."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hrf_core.cli import main
from hrf_core.config import TrainConfig
from hrf_core.rl.trainer import Trainer
from hrf_core.store.runs import RunStore

UNET_FILE = "diffusion_pytorch_model.safetensors"


def short_run(root, name: str, **changes):
    """One real epoch of HRF [30, 40) on digits16 (seconds on a CPU)."""
    config = TrainConfig(method="hrf", window=(30, 40), epochs=1, samples_per_epoch=8, batch_size=8, siblings=4,
                         eval_every=1, eval_samples=8, device="cpu", **changes)
    run = RunStore(root).create(config.to_dict(), name=name)
    assert Trainer(config, run).train() == "done"
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = short_run(root / "runs", "hrf-digits")
    out = root / "exported"
    assert main(["export", str(run.path), "--out", str(out)]) == 0
    return run, out


def test_exported_folder_loads_in_diffusers_with_the_checkpoints_unet(trained):
    from diffusers import DDIMPipeline, DDPMPipeline

    run, out = trained
    weights = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.suffix in
                     (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".msgpack", ".h5"))
    assert weights == [f"unet/{UNET_FILE}"]  # safetensors only
    exported = load_file(out / "unet" / UNET_FILE)
    original = load_file(run.checkpoint_dir(1) / "unet" / UNET_FILE)
    assert exported.keys() == original.keys()
    assert all(torch.equal(exported[k], original[k]) and exported[k].dtype == original[k].dtype for k in original)
    for cls in (DDIMPipeline, DDPMPipeline):
        pipe = cls.from_pretrained(out)
        assert isinstance(pipe, cls) and torch.equal(pipe.unet.state_dict()["conv_in.weight"],
                                                     original["conv_in.weight"])


def test_model_card_metadata_and_body(trained):
    from huggingface_hub import ModelCard

    run, out = trained
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "diffusers" and card.data.license == "apache-2.0"
    assert {"diffusers", "ddpo", "hrf", "reinforcement-learning"} <= set(card.data.tags)
    assert card.data.base_model is None  # digits16 is not on the Hub: named in the text instead
    text = card.text
    final = run.metrics()[-1]
    assert "`digits16`" in text and "`jpeg-compressibility`" in text and "steps [30, 40) of K = 40" in text
    assert "training 0, evaluation 1234" in text and f"| reward_mean | {run.metrics()[0]['reward_mean']:.4g} | " \
        f"{final['reward_mean']:.4g} |" in text
    assert "![evaluation samples of epoch 1](grid.png)" in text
    assert (out / "grid.png").read_bytes() == (run.path / "grids" / "epoch-0001.png").read_bytes()
    assert "Window-only" not in text


def test_ddim_pipeline_samples_score_like_the_sample_command(trained, tmp_path):
    """Shape and range of a DDIMPipeline call at the run's K and eta; mean reward within 4 standard errors
    of ``python -m hrf_core sample`` of the same checkpoint (different noise streams)."""
    from diffusers import DDIMPipeline

    from hrf_core.rewards.registry import make_reward

    run, out = trained
    config, n = run.config, 48
    pipe = DDIMPipeline.from_pretrained(out)
    images = pipe(batch_size=n, num_inference_steps=config["num_steps"], eta=config["eval_eta"], output_type="np",
                  generator=torch.Generator().manual_seed(7)).images
    assert images.shape == (n, 16, 16, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0.1
    array = tmp_path / "sample.npy"
    assert main(["sample", "--checkpoint", str(run.checkpoint_dir(1)), "--n", str(n), "--steps",
                 str(config["num_steps"]), "--eta", str(config["eval_eta"]), "--seed", "3", "--device", "cpu",
                 "--out", str(tmp_path / "grid.png"), "--array", str(array)]) == 0
    reward = make_reward(config["reward"])
    ours = reward(torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1).double()
    theirs = reward(torch.from_numpy(np.load(array)) * 2 - 1).double()
    error = math.sqrt(ours.var() / n + theirs.var() / n)
    assert abs(ours.mean() - theirs.mean()) <= 4 * error, (float(ours.mean()), float(theirs.mean()), error)


def test_window_only_checkpoint_card_says_how_it_was_sampled(tmp_path):
    from huggingface_hub import ModelCard

    run = short_run(tmp_path / "runs", "window-only", outside_window="base")
    assert main(["export", "window-only", "--runs", str(tmp_path / "runs"), "--epoch", "1",
                 "--out", str(tmp_path / "out")]) == 0
    text = " ".join(ModelCard.load(tmp_path / "out" / "README.md").text.split())
    assert "## Window-only checkpoint" in text and run.run_id in text
    assert "steps 0 to 29 of K = 40 with the frozen base model `digits16`" in text
    assert "samples every step with the fine-tuned UNet" in text


def test_push_to_hub_creates_the_repo_then_uploads_the_folder(trained, tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi, RepoUrl

    run, _ = trained
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        assert (tmp_path / "out" / "README.md").is_file()  # written before the upload

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert main(["export", str(run.path), "--out", str(tmp_path / "out"), "--push-to-hub", "someone/hrf-digits"]) == 0
    assert [(c[0], c[1]) for c in calls] == [("create_repo", "someone/hrf-digits"),
                                             ("upload_folder", "someone/hrf-digits")]
    assert calls[0][2]["exist_ok"] is True and calls[1][2]["folder_path"] == str(tmp_path / "out")
    assert 'DDIMPipeline.from_pretrained("someone/hrf-digits")' in (tmp_path / "out" / "README.md").read_text()
    assert "pushed to https://huggingface.co/someone/hrf-digits" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["no-such-run"], "unknown run 'no-such-run'"),
    (["{run}", "--epoch", "7"], "has no checkpoint of epoch 7; it has epochs 1"),
    (["{run}", "--out", "{nonempty}"], "already exists and is not an empty folder"),
    (["{run}", "--push-to-hub", "not a repo//"], "is not a Hub repo id"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, trained, tmp_path, capsys):
    run, _ = trained
    nonempty = tmp_path / "taken"
    nonempty.mkdir()
    (nonempty / "notes.txt").write_text("mine")
    argv = [a.format(run=run.path, nonempty=nonempty) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "new")]
    assert main(["export", *argv, "--runs", str(run.path.parent)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "new").exists() and (nonempty / "notes.txt").read_text() == "mine"
