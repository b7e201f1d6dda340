"""Evaluation embeddings: learned ones for RGB models when their weights can be had, pixels (labelled as a
weak proxy) otherwise, recorded in the run's config; gradient checkpointing and bf16 autocast."""

from __future__ import annotations

import json

import pytest
import torch
from test_metrics import StubInception

from hrf_core.config import TrainConfig
from hrf_core.measure import evaluation
from hrf_core.measure.evaluation import Evaluator
from hrf_core.measure.features import ClipFeatures, InceptionFeatures
from hrf_core.models.registry import load_base_model
from hrf_core.rl.trainer import Trainer
from hrf_core.store.runs import RunStore


def rgb_images(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_rgb_models_are_measured_on_inception_and_clip(tiny_clip_model):
    extractors = {"inception": InceptionFeatures(model=StubInception()), "clip": ClipFeatures(model=tiny_clip_model)}
    evaluator = Evaluator((3, 16, 16), embeddings=("inception", "clip"), extractors=extractors)
    assert evaluator.embeddings == ("pixel", "inception", "clip") and evaluator.note == ""
    arrays: dict = {}
    metrics = evaluator(rgb_images(), torch.zeros(8), arrays=arrays)
    for key in ("is_inception@8", "vendi_inception@8", "vendi_clip@8", "vendi_pixel@8"):
        assert key in metrics and 1.0 <= metrics[key] <= 1000, key
    assert arrays["features.clip"].shape == (8, 768) and arrays["probs.inception"].shape == (8, 1000)


def test_offline_rgb_models_fall_back_to_pixels_with_a_label(monkeypatch):
    monkeypatch.setattr(evaluation, "embedding_available", lambda name: name in ("pixel", "classifier"))
    evaluator = Evaluator((3, 16, 16))
    assert evaluator.embeddings == ("pixel",) and evaluator.note == "pixel Vendi: weak proxy"
    assert evaluation.choose_embeddings((1, 16, 16)) == ("pixel", "classifier", "rbf", "hog")
    with pytest.raises(ValueError, match="unknown evaluation embeddings"):
        evaluation.choose_embeddings((3, 16, 16), ("dino",))


def small_config(model_dir, **changes) -> TrainConfig:
    return TrainConfig(model=str(model_dir), method="hrf", window=(5, 10), num_steps=10, epochs=1, samples_per_epoch=8,
                       batch_size=4, siblings=2, train_batch_size=8, updates_per_epoch=2, eval_samples=8,
                       eval_every=1, device="cpu", lr=1e-3).replace(**changes).validate()


def test_the_run_records_its_embeddings_and_the_live_view_labels_pixels(tiny_rgb_model_dir, tmp_path, monkeypatch):
    from explorer.jobs import JobManager
    from explorer.views.live import live_state

    monkeypatch.setattr(evaluation, "embedding_available", lambda name: name in ("pixel", "classifier"))
    config = small_config(tiny_rgb_model_dir)
    store = RunStore(tmp_path)
    run = store.create(config.to_dict())
    Trainer(config, run).train()
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["eval_embeddings"] == ["pixel"] and saved["extra"]["evaluation_note"] == "pixel Vendi: weak proxy"
    assert TrainConfig.from_dict(saved).eval_embeddings == ("pixel",)  # a resume measures the same way
    state = live_state(JobManager(store, preflight=None))
    assert state["keys"]["diversity_label"].endswith("weak proxy") and "weak proxy" in state["status"]["proxy_note"]


def final_weights(config, tmp_path, name):
    trainer = Trainer(config, RunStore(tmp_path / name).create(config.to_dict()))
    trainer.train()
    return {k: v.clone() for k, v in trainer.unet.state_dict().items()}, trainer.run.metrics()[1]


def initial_weights(config):
    return {k: v.clone() for k, v in load_base_model(config.model, "cpu").unet.state_dict().items()}


def max_change(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_gradient_checkpointing_takes_the_same_step(tiny_model_dir, tmp_path):
    """The weights move (a step far larger than the tolerance), and by the same step with checkpointing."""
    config = small_config(tiny_model_dir)
    before = initial_weights(config)
    plain, _ = final_weights(config, tmp_path, "plain")
    saved, _ = final_weights(small_config(tiny_model_dir, grad_checkpointing=True), tmp_path, "checkpointed")
    assert max_change(plain, before) > 1e-3  # two Adam steps at lr 1e-3: ~2e-3
    assert max_change(saved, before) > 1e-3
    assert max_change(plain, saved) <= 1e-6


def test_bf16_autocast_drifts_from_fp32_by_a_bounded_nonzero_amount(tiny_model_dir, tmp_path):
    """bf16 samples differ from fp32's (same noise) by a small nonzero amount; sampling and training share
    bf16 numerics, so the first importance ratio stays near 1."""
    _, fp32 = final_weights(small_config(tiny_model_dir, epochs=1), tmp_path, "fp32")
    _, bf16 = final_weights(small_config(tiny_model_dir, epochs=1, bf16=True), tmp_path, "bf16")
    # the base model's evaluation samples (epoch 0, fixed noise), as pixels in [0, 1]
    a, b = (RunStore(tmp_path / name).list()[0].load_eval(0)["features.pixel"] for name in ("fp32", "bf16"))
    drift = (a - b).abs()
    assert float(drift.max()) > 0  # bf16 is really in use
    assert float(drift.mean()) < 0.02 and float(drift.max()) < 0.25  # ~0.002 and ~0.04 on the tiny model
    assert 0 <= bf16["first_ratio_deviation"] < 0.05 and fp32["first_ratio_deviation"] < 1e-5
