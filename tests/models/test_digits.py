"""The embedded defaults in checkpoints/: the digits16 DDPM, the digits classifier, their model cards."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

from hrf_core import CHECKPOINTS_DIR
from hrf_core.commands.pretrain import main as cli_main
from hrf_core.measure.metrics import inception_score
from hrf_core.models.digits import (
    DigitClassifier,
    classifier_accuracy,
    load_digit_classifier,
    load_split,
    split_indices,
)
from hrf_core.models.pretrain import (
    load_digits_ddpm,
    make_unet,
    sample_ddim,
    train_ddpm,
)
from hrf_core.models.registry import load_base_model
from hrf_core.study.digits_quality import GUIDANCE_SWEEP, folder_hashes, write_ddpm_card

DDPM_DIR = CHECKPOINTS_DIR / "digits16"
CLF_DIR = CHECKPOINTS_DIR / "digits16-classifier"


@pytest.fixture(scope="module")
def ddpm() -> tuple[UNet2DModel, DDIMScheduler]:
    unet = UNet2DModel.from_pretrained(str(DDPM_DIR / "unet"), use_safetensors=True).eval()
    return unet, DDIMScheduler.from_pretrained(str(DDPM_DIR / "scheduler"))


def test_split_is_fixed_stratified_and_in_range():
    tr, ho = split_indices()
    assert len(tr) == 1437 and len(ho) == 360 and not set(tr) & set(ho)
    assert (split_indices()[1] == ho).all()
    x, y = load_split("heldout")
    assert x.shape == (360, 1, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    assert torch.bincount(y, minlength=10).min() >= 35  # stratified: ~36 per class
    with pytest.raises(ValueError, match="unknown digits split"):
        load_split("test")


def test_ddpm_loads_offline_with_nonzero_ddim_variance(ddpm):
    unet, sched = ddpm
    assert unet.config.sample_size == 16 and unet.config.in_channels == unet.config.out_channels == 1
    assert 1.0e6 < sum(p.numel() for p in unet.parameters()) < 1.2e6
    cfg = json.loads((DDPM_DIR / "scheduler" / "scheduler_config.json").read_text())
    assert cfg["_class_name"] == "DDIMScheduler"
    assert cfg["set_alpha_to_one"] is False and cfg["clip_sample"] is True and cfg["steps_offset"] == 1
    info = json.loads((DDPM_DIR / "training.json").read_text())
    assert cfg["beta_schedule"] == info["recipe"]["beta_schedule"]  # same betas as training
    sched.set_timesteps(40)
    assert len(sched.timesteps) == 40
    ratio = sched.config.num_train_timesteps // 40
    variances = torch.stack([sched._get_variance(int(t), int(t) - ratio) for t in sched.timesteps])
    assert bool((variances > 0).all()), variances


def test_ddpm_samples_digits(ddpm):
    unet, sched = ddpm
    x = sample_ddim(unet, sched, 8, steps=40, eta=1.0, seed=0, batch=8)  # its speed: bench/fail_fast.py
    assert x.shape == (8, 1, 16, 16) and bool(torch.isfinite(x).all())
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert (x - x[0]).abs().amax() > 0.5  # not one image repeated
    torch.testing.assert_close(x, sample_ddim(unet, sched, 8, steps=40, eta=1.0, seed=0, batch=8))  # seeded
    with torch.no_grad():
        probs = load_digit_classifier(CLF_DIR)(x).softmax(1)
    assert float(probs.max(1).values.mean()) > 0.85  # recognisable digits (an untrained model gives ~0.6)


def test_load_base_model_digits16():
    base = load_base_model("digits16", "cpu")
    assert base.sample_shape == (1, 16, 16)
    assert base.scheduler.config.set_alpha_to_one is False


def test_classifier_heldout_accuracy_and_embedding():
    model = load_digit_classifier(CLF_DIR)
    assert isinstance(model, DigitClassifier) and not model.training
    x, y = load_split("heldout")
    assert classifier_accuracy(model, x, y) >= 0.95
    with torch.no_grad():
        feats, logits = model.features(x[:5]), model(x[:5])
    assert feats.shape == (5, model.config["embed_dim"]) and logits.shape == (5, 10)
    with pytest.raises(ValueError, match="no digit classifier"):
        load_digit_classifier(DDPM_DIR)


@pytest.mark.parametrize("folder", [DDPM_DIR, CLF_DIR], ids=["digits16", "digits16-classifier"])
def test_model_card_sha256_matches_files(folder: Path):
    card = (folder / "README.md").read_text()
    listed = dict(re.findall(r"^\| `([^`]+)` \| \d+ \| `([0-9a-f]{64})` \|$", card, flags=re.M))
    assert listed and listed == folder_hashes(folder)


def test_checkpoints_fit_in_10_mb():
    size = sum(p.stat().st_size for d in (DDPM_DIR, CLF_DIR) for p in d.rglob("*") if p.is_file())
    assert size <= 10 * 2**20


def test_inception_score_bounds():
    assert inception_score(torch.eye(10))[0] == pytest.approx(10.0)
    assert inception_score(torch.eye(10)[[3] * 10])[0] == pytest.approx(1.0)
    assert inception_score(torch.full((4, 10), 0.1))[0] == pytest.approx(1.0)


def test_pretrain_pipeline_writes_loadable_folder(tmp_path):
    info = train_ddpm(tmp_path, recipe={"steps": 2, "batch_size": 4})
    write_ddpm_card(tmp_path)
    assert info["recipe"]["steps"] == 2 and (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    unet = UNet2DModel.from_pretrained(str(tmp_path / "unet"), use_safetensors=True)
    sched = DDIMScheduler.from_pretrained(str(tmp_path / "scheduler"))
    assert sched.config.set_alpha_to_one is False and unet.config.block_out_channels == [32, 64, 64]
    assert set(folder_hashes(tmp_path)) == {"training.json", "unet/config.json",
                                            "unet/diffusion_pytorch_model.safetensors",
                                            "scheduler/scheduler_config.json"}
    with pytest.raises(SystemExit):
        cli_main(["no-such-model"])


def test_shipped_example_runs():
    """Finished duels (examples.DUELS): metrics and grids, no weights, well under 3 MB; the window-only duel
    samples the steps before its window with the base model."""
    from hrf_core.presets import PRESETS
    from hrf_core.store.runs import RunStore
    from hrf_core.study.examples import DUELS, EXAMPLES_DIR

    store = RunStore(EXAMPLES_DIR.parent / "no-such-store", examples=EXAMPLES_DIR)
    runs = store.list()
    expected = {f"example-{d.order + half}": (d.reward, PRESETS[preset].method, PRESETS[preset].model,
                                              PRESETS[d.preset].outside_window if half == 0 else "tuned")
                for d in DUELS for half, preset in ((0, d.preset), (1, d.partner))}
    found = {r.run_id.split("-", 2)[0] + "-" + r.run_id.split("-", 2)[1]:
             (r.config["reward"], r.config["method"], r.config["model"], r.config.get("outside_window", "tuned"))
             for r in runs}
    assert found == expected
    assert any(outside == "base" for *_, outside in found.values())  # a window-only duel ships
    prompted = [r for r in runs if r.config.get("prompts")]  # prompted duels ship, with per-prompt DDPO
    assert len(prompted) == 4 and {r.config["adv_scope"] for r in prompted} == {"image", "prompt"}
    diverse = [r for r in runs if r.config.get("diversity_weight")]  # the diversity bonus's duel (issue #37)
    assert len(diverse) == 1 and not store.get(diverse[0].config["extra"]["duel_with"]).config.get("diversity_weight")
    assert "vendi_hog_within@63" in diverse[0].metrics()[-1]  # judged on the measure the bonus does not read
    size = sum(p.stat().st_size for p in EXAMPLES_DIR.rglob("*") if p.is_file())
    assert size < 3e6
    for run in runs:
        assert run.is_example and run.status["state"] == "done" and not run.checkpoints()
        partner = store.get(run.config["extra"]["duel_with"])
        assert partner.config["extra"]["duel_with"] == run.run_id and partner.config["reward"] == run.config["reward"]
        rows = run.metrics()
        assert [r["epoch"] for r in rows] == list(range(run.config["epochs"] + 1))
        assert len(run.grids()) == len(rows) and not list(run.path.glob("**/*.safetensors"))


COND_DIR = CHECKPOINTS_DIR / "digits16-cond"


def test_pretrain_conditional_variant_writes_loadable_folder(tmp_path):
    """`pretrain digits16-cond` runs a few steps and loads back with 11 class embeddings; labels are dropped
    to the null class with probability p_uncond (p_uncond = 1: only the null class's embedding trains)."""
    assert cli_main(["digits16-cond", "--steps", "2", "--out", str(tmp_path / "cli"), "--no-eval",
                     "--threads", "1"]) == 0
    unet = UNet2DModel.from_pretrained(str(tmp_path / "cli" / "unet"), use_safetensors=True)
    info = json.loads((tmp_path / "cli" / "training.json").read_text())
    assert unet.config.num_class_embeds == 11 and unet.config.block_out_channels == [32, 64, 64]
    assert info["model"] == "digits16-cond" and info["conditioning"]["null_label"] == 10
    assert 0.1 <= info["conditioning"]["p_uncond"] == info["recipe"]["p_uncond"] <= 0.2
    assert "digits16-cond" in (tmp_path / "cli" / "README.md").read_text().splitlines()[0]

    train_ddpm(tmp_path / "drop", recipe={"steps": 2, "batch_size": 4, "p_uncond": 1.0}, conditional=True)
    trained = UNet2DModel.from_pretrained(str(tmp_path / "drop" / "unet"), use_safetensors=True).class_embedding.weight
    torch.manual_seed(0)
    initial = make_unet(11).class_embedding.weight
    assert torch.equal(trained[:10], initial[:10]) and not torch.equal(trained[10], initial[10])


def test_shipped_conditional_model_and_card():
    unet = UNet2DModel.from_pretrained(str(COND_DIR / "unet"), use_safetensors=True)
    assert unet.config.num_class_embeds == 11 and unet.config.sample_size == 16
    assert DDIMScheduler.from_pretrained(str(COND_DIR / "scheduler")).config.set_alpha_to_one is False
    assert sum(p.stat().st_size for p in COND_DIR.rglob("*") if p.is_file()) <= 6 * 2**20
    assert not list(COND_DIR.rglob("*.bin")) and not list(COND_DIR.rglob("*.pt"))
    card = (COND_DIR / "README.md").read_text()
    listed = dict(re.findall(r"^\| `([^`]+)` \| \d+ \| `([0-9a-f]{64})` \|$", card, flags=re.M))
    assert listed and listed == folder_hashes(COND_DIR)
    q = json.loads((COND_DIR / "training.json").read_text())["quality"]
    assert [row["guidance"] for row in q["guidance_sweep"]] == list(GUIDANCE_SWEEP)
    for row in q["guidance_sweep"]:  # the sweep's table in the card
        assert re.search(rf"^\| {row['guidance']:g}( \(default\))? \| {row['prompted_accuracy']:.3f} \| "
                         rf"{row['inception_score']:.3f} \|", card, flags=re.M)
    assert q["default_guidance"] in GUIDANCE_SWEEP and all(q["passes"].values())


def test_shipped_conditional_model_draws_the_prompted_digit():
    unet, sched = load_digits_ddpm(COND_DIR)
    guidance = json.loads((COND_DIR / "training.json").read_text())["quality"]["default_guidance"]
    labels = torch.arange(10).repeat(2)
    x = sample_ddim(unet, sched, 20, steps=20, eta=1.0, seed=1, batch=20, labels=labels, guidance=guidance)
    with torch.no_grad():
        predicted = load_digit_classifier(CLF_DIR)(x).argmax(1)
    assert float((predicted == labels).double().mean()) >= 0.8  # chance: 0.1
