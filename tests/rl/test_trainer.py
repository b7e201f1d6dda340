"""The training loop on a tiny random model: trained steps, resume equivalence, stop, HRF-D."""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors.torch import load_file

from hrf_core.config import TrainConfig
from hrf_core.rl.launch import resume_training
from hrf_core.rl.trainer import Trainer
from hrf_core.store.runs import RunStore


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


def test_the_epoch_batches_must_share_equally_among_processes(tiny_model_dir, tmp_path):
    """One rule for the trainer and the command line (``TrainConfig.check_processes``)."""
    from hrf_core.rl.distributed import Dist

    config = small_config(tiny_model_dir, samples_per_epoch=12, batch_size=4)  # 3 batches
    assert config.batches_per_epoch == 3
    config.check_processes(3)
    with pytest.raises(ValueError, match="3 sampling batches per epoch cannot be shared by 2 processes"):
        Trainer(config, RunStore(tmp_path).create(config.to_dict()), dist=Dist(rank=0, world=2))


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

    drop = {"seconds", "sample_seconds", "update_seconds", "eval_seconds", "logged_at"}
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


def test_hrf_d_starts_after_the_best_scoring_candidate(tiny_model_dir, tmp_path):
    """The trainer trains from the probe's candidate after argmax(score), every batch, to the last step."""
    config = small_config(tiny_model_dir, method="hrf-d", epochs=1, hrfd_stride=2)
    run = RunStore(tmp_path).create(config.to_dict())
    trainer = Trainer(config, run)
    seen = record_grad_timesteps(trainer.unet)
    trainer.train()
    row = run.metrics()[1]
    candidates, scores = row["hrfd"]["candidates"], row["hrfd"]["score"]
    assert candidates == [0, 2, 4, 6, 8] and len(scores) == 4
    start = candidates[scores.index(max(scores)) + 1]
    assert row["window_start"] == start and row["starts"] == [start, start] and row["window_end"] == 10
    timesteps = trainer.scheduler.timesteps.tolist()
    assert sorted({timesteps.index(t) for t in seen}) == list(range(start, 10))
    assert trainer.start_state.start == trainer.start_state.earliest == start


def test_resume_with_frozen_base_start_states(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, start_source="base", epochs=1)
    run = RunStore(tmp_path).create(config.to_dict())
    trainer = Trainer(config, run)
    assert trainer.frozen is not trainer.unet and not any(p.requires_grad for p in trainer.frozen.parameters())
    trainer.train()
    resumed = resume_training(run, epochs=2)
    assert resumed.frozen is not None and resumed.frozen is not resumed.unet
    assert resumed.train() == "done" and [r["epoch"] for r in run.metrics()] == [0, 1, 2]


def test_compute_is_counted_and_kl_logged(tiny_model_dir, tmp_path):
    """UNet rows are counted by kind; evaluation is not compute; the KL run calls the base on trained rows only."""
    config = small_config(tiny_model_dir, method="hrf", window=(4, 8), start_mode="fixed", epochs=1, kl_coef=0.5)
    run = RunStore(tmp_path).create(config.to_dict())
    Trainer(config, run).train()
    base_row, row = run.metrics()
    assert base_row["compute"] == 0 and base_row["cum_rows_trained"] == 0
    # 2 batches of 4 rows: 2 trajectory-of-interest images per batch (K = 10 steps), 4 siblings from step 4
    assert row["rows_sampled"] == 2 * (2 * 10 + 4 * 6)
    assert row["rows_trained"] == row["trained_steps"] == 8 * 4  # 8 samples x steps 4..7
    assert row["rows_reference"] == row["rows_trained"]  # the frozen base runs on trained rows only
    assert row["compute"] == row["rows_sampled"] + row["rows_reference"] + 3 * row["rows_trained"]
    assert row["kl_to_base"] >= 0 and "kl_to_base" not in base_row
    saved = run.load_eval(1)
    assert saved["rewards"].shape == (8,) and saved["features.pixel"].shape == (8, 64)
    assert float(saved["rewards"].mean()) == pytest.approx(row["reward_mean"], abs=1e-6)


def test_kl_penalty_pulls_the_policy_toward_the_base(tiny_model_dir, tmp_path):
    """A large KL coefficient ends closer to the base model than a small one after the same epochs; the penalty
    enters the update only (the first epoch samples identically), and without it no reference pass runs."""
    def final(name, **changes):
        config = small_config(tiny_model_dir, method="ddpo", window=(0, 10), epochs=3, **changes)
        run = RunStore(tmp_path / name).create(config.to_dict())
        trainer = Trainer(config, run)
        trainer.train()
        return run.metrics()

    plain, weak, strong = final("plain"), final("weak", kl_coef=0.01), final("strong", kl_coef=100.0)
    assert plain[1]["rows_reference"] == 0 and "kl_to_base" not in plain[1]
    assert strong[1]["rows_reference"] == strong[1]["rows_trained"]
    assert strong[1]["train_reward_mean"] == weak[1]["train_reward_mean"] == plain[1]["train_reward_mean"]
    # epoch 1 starts at the base (KL 0 in its first optimiser step): both runs take the same first step,
    # so their epoch-1 KL agrees; from then on the penalty holds the strong run nearer the base
    assert strong[1]["kl_to_base"] == pytest.approx(weak[1]["kl_to_base"], rel=1e-6)
    for epoch in (2, 3):  # on the tiny model: weak 0.33, 0.35; strong 0.26, 0.21
        assert 0 < strong[epoch]["kl_to_base"] < 0.9 * weak[epoch]["kl_to_base"], epoch


def test_resume_keeps_the_compute_totals(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, epochs=2, checkpoint_every=1)
    full = RunStore(tmp_path / "a").create(config.to_dict())
    Trainer(config, full).train()
    half = RunStore(tmp_path / "b").create(config.replace(epochs=1).to_dict())
    Trainer(config.replace(epochs=1), half).train()
    resume_training(half, epochs=2).train()
    assert [r["compute"] for r in full.metrics()] == [r["compute"] for r in half.metrics()]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_resume_equals_uninterrupted(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, device="cuda", epochs=4, checkpoint_every=2)
    full = RunStore(tmp_path / "a").create(config.to_dict())
    Trainer(config, full).train()

    half = RunStore(tmp_path / "b").create(config.replace(epochs=2).to_dict())
    Trainer(config.replace(epochs=2), half).train()
    resumed = resume_training(half, epochs=4)
    resumed.train()
    # cuDNN kernels need not be bitwise deterministic; wrong noise keys would change the rewards wholesale
    for a, b in zip(full.metrics(), half.metrics(), strict=True):
        assert a["reward_mean"] == pytest.approx(b["reward_mean"], rel=1e-3, abs=1e-4)
    a, b = weights(full.checkpoints()[-1]), weights(half.checkpoints()[-1])
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


def test_image_scope_standardises_each_image_siblings(tiny_model_dir, tmp_path):
    """adv_scope "image": each re-noised image's B siblings against each other; noise-started rows per batch."""
    from types import SimpleNamespace

    config = small_config(tiny_model_dir, adv_scope="image", batch_size=4, siblings=2, epochs=1)
    trainer = Trainer(config, RunStore(tmp_path).create(config.to_dict()))
    rewards = torch.tensor([[1.0, 3.0, 10.0, 30.0],  # batch 0, start 4: images (1, 3) and (10, 30)
                            [1.0, 2.0, 3.0, 6.0]])  # batch 1, start 0: four unrelated samples
    batches = {0: SimpleNamespace(), 1: SimpleNamespace()}
    trainer.update.assign_advantages(batches, rewards, starts=[4, 0])
    assert batches[0].advantages.tolist() == pytest.approx([-1, 1, -1, 1], abs=1e-6)
    expected = (rewards[1] - rewards[1].mean()) / rewards[1].std(unbiased=False)
    assert batches[1].advantages.tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="adv_scope 'image'"):
        small_config(tiny_model_dir, method="ddpo", adv_scope="image")


@pytest.mark.parametrize("start_source", ["policy", "base"])
def test_batched_source_images_equal_one_batch_at_a_time(tiny_model_dir, tmp_path, start_source):
    """HRF's trajectory-of-interest images of several batches in one rollout (siblings batches per UNet call) are
    the images each batch gets alone, bit for bit: every image draws its noise from its own stream."""
    config = small_config(tiny_model_dir, samples_per_epoch=16, batch_size=4, siblings=2, start_source=start_source)
    trainer = Trainer(config, RunStore(tmp_path).create(config.to_dict()))
    batches = list(range(config.batches_per_epoch))
    trainer._roll_images(1, batches)
    together = {b: trainer._images[b][0] for b in batches}
    assert all(len(images) == 2 for images in together.values())
    for b in batches:
        trainer._images = {}
        assert torch.equal(trainer.images_of(1, b), together[b])
