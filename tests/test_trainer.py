"""The training loop on a tiny random model: trained steps, resume equivalence, stop, HRF-D."""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors.torch import load_file

from hrf_core.config import TrainConfig
from hrf_core.runs import RunStore
from hrf_core.trainer import Trainer, resume_training


def small_config(model_dir, **changes) -> TrainConfig:
    base = TrainConfig(model=str(model_dir), method="hrf", window=(4, 8), num_steps=10, epochs=2,
                       samples_per_epoch=8, batch_size=4, siblings=2, train_batch_size=4, updates_per_epoch=2,
                       eval_samples=8, eval_every=1, checkpoint_every=1, device="cpu", lr=1e-3)
    return base.replace(**changes).validate()


def record_grad_timesteps(unet) -> list[int]:
    """Timesteps the UNet sees with gradient enabled (i.e. trained calls)."""
    seen: list[int] = []

    def hook(module, args):
        if torch.is_grad_enabled():
            seen.extend(torch.as_tensor(args[1]).reshape(-1).unique().tolist())

    unet.register_forward_pre_hook(hook)
    return seen


@pytest.mark.parametrize("method,window,expected", [
    ("hrf", (4, 8), range(4, 8)),
    ("ddpo", (0, 10), range(0, 10)),
])
def test_window_trains_only_its_steps(tiny_model_dir, tmp_path, method, window, expected):
    config = small_config(tiny_model_dir, method=method, window=window, epochs=1)
    run = RunStore(tmp_path).create(config.to_dict())
    trainer = Trainer(config, run)
    seen = record_grad_timesteps(trainer.unet)
    assert trainer.train() == "done"
    timesteps = trainer.scheduler.timesteps.tolist()
    trained_indices = sorted({timesteps.index(t) for t in seen})
    rows = run.metrics()
    starts = rows[1]["starts"]
    assert all(window[0] <= s < window[1] for s in starts)
    # every trained step lies in [min start, end) and every step from the earliest start is trained
    assert trained_indices == list(range(min(starts), window[1]))
    assert set(trained_indices) <= set(expected)


def test_fixed_start_and_metrics_keys(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, start_mode="fixed", epochs=1)
    run = RunStore(tmp_path).create(config.to_dict())
    Trainer(config, run).train()
    rows = run.metrics()
    assert [r["epoch"] for r in rows] == [0, 1]
    for key in ("epoch", "method", "window_start", "window_end", "reward_mean", "reward_std", "vendi_pixel",
                "seconds", "vendi_pixel@8", "approx_kl", "clip_fraction"):
        assert key in rows[1], key
    assert rows[1]["starts"] == [4, 4] and rows[1]["window_end"] == 8
    assert rows[1]["first_ratio_deviation"] < 1e-4  # sampling and training numerics agree
    assert run.status["state"] == "done" and run.latest_grid() is not None


def weights(folder):
    return load_file(next((folder / "unet").glob("*.safetensors")))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hrf", "hrf-d"])
def test_resume_equals_uninterrupted(tiny_model_dir, tmp_path, method):
    config = small_config(tiny_model_dir, method=method, epochs=4, checkpoint_every=2, hrfd_stride=3)
    full = RunStore(tmp_path / "a").create(config.to_dict())
    Trainer(config, full).train()

    half = RunStore(tmp_path / "b").create(config.replace(epochs=2).to_dict())
    Trainer(config.replace(epochs=2), half).train()
    resumed = resume_training(half, epochs=4)
    assert resumed.epoch == 2
    assert resumed.train() == "done"

    drop = {"seconds", "sample_seconds", "update_seconds", "eval_seconds"}
    clean = [{k: v for k, v in r.items() if k not in drop} for r in full.metrics()]
    assert clean == [{k: v for k, v in r.items() if k not in drop} for r in half.metrics()]
    a, b = weights(full.checkpoints()[-1]), weights(half.checkpoints()[-1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in half.checkpoints()] == ["epoch-0002", "epoch-0004"]


def test_stop_takes_effect_within_one_unet_call(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, epochs=3)
    run = RunStore(tmp_path).create(config.to_dict())
    stop = threading.Event()
    calls = {"n": 0, "at_stop": None}
    trainer = Trainer(config, run, stop_event=stop)

    def hook(module, args):
        calls["n"] += 1
        if calls["n"] == 60:
            stop.set()
            calls["at_stop"] = calls["n"]

    trainer.unet.register_forward_pre_hook(hook)
    assert trainer.train() == "stopped"
    assert calls["n"] == calls["at_stop"]  # no UNet call after the stop was requested
    assert run.status["state"] == "stopped"


def test_hrf_d_picks_a_candidate_start(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, method="hrf-d", epochs=1, hrfd_stride=2)
    run = RunStore(tmp_path).create(config.to_dict())
    Trainer(config, run).train()
    row = run.metrics()[1]
    assert row["hrfd"]["candidates"] == [0, 2, 4, 6, 8]
    assert row["window_start"] in row["hrfd"]["candidates"][1:] and row["window_end"] == 10
    assert len(row["hrfd"]["score"]) == 4


def test_resume_with_frozen_base_start_states(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, start_source="base", epochs=1)
    run = RunStore(tmp_path).create(config.to_dict())
    trainer = Trainer(config, run)
    assert trainer.frozen is not trainer.unet and not any(p.requires_grad for p in trainer.frozen.parameters())
    trainer.train()
    resumed = resume_training(run, epochs=2)
    assert resumed.frozen is not None and resumed.frozen is not resumed.unet
    assert resumed.train() == "done" and [r["epoch"] for r in run.metrics()] == [0, 1, 2]


def test_cpu_noise_shares_the_index_stream(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, epochs=1)
    trainer = Trainer(config, RunStore(tmp_path).create(config.to_dict()))
    assert trainer.noise_generator is trainer.generator  # one CPU stream: results unchanged by the GPU split


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_resume_restores_the_noise_stream(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, device="cuda", epochs=4, checkpoint_every=2)
    full = RunStore(tmp_path / "a").create(config.to_dict())
    trainer = Trainer(config, full)
    assert trainer.noise_generator.device.type == "cuda" and trainer.generator.device.type == "cpu"
    trainer.train()

    half = RunStore(tmp_path / "b").create(config.replace(epochs=2).to_dict())
    Trainer(config.replace(epochs=2), half).train()
    resumed = resume_training(half, epochs=4)
    resumed.train()
    # cuDNN kernels need not be bitwise deterministic; a lost noise stream would change the rewards wholesale
    for a, b in zip(full.metrics(), half.metrics(), strict=True):
        assert a["reward_mean"] == pytest.approx(b["reward_mean"], rel=1e-3, abs=1e-4)
    a, b = weights(full.checkpoints()[-1]), weights(half.checkpoints()[-1])
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
