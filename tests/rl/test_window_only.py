"""Window-only sampling (``outside_window="base"``): the steps before the window are the base model's.

Bit-for-bit identities on a tiny random model whose policy is perturbed away from the base, and the
same UNet-call count as the paper's shared-network sampling.
"""

from __future__ import annotations

import pytest
import torch

from hrf_core.config import TrainConfig
from hrf_core.models.registry import load_base_model
from hrf_core.rewards.registry import make_reward
from hrf_core.rl.policy import RowNoise, noise_like, rollout
from hrf_core.rl.sampling import sample_from
from hrf_core.rl.trainer import Trainer
from hrf_core.store.runs import RunStore


def config_of(model_dir, **changes) -> TrainConfig:
    base = TrainConfig(model=str(model_dir), method="hrf", window=(4, 8), num_steps=8, epochs=1,
                       samples_per_epoch=8, batch_size=4, siblings=2, train_batch_size=8, updates_per_epoch=1,
                       eval_samples=6, eval_every=1, checkpoint_every=1, device="cpu", lr=1e-2,
                       outside_window="base")
    return base.replace(**changes).validate()


def perturb(unet, seed: int = 1) -> None:
    """Move the policy away from the base model (as training would)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))


def test_steps_before_the_window_use_base_weights_bit_for_bit(tiny_model_dir, tmp_path):
    config = config_of(tiny_model_dir)
    trainer = Trainer(config, RunStore(tmp_path).create(config.to_dict()))
    perturb(trainer.unet)
    s = trainer.handover(1)
    assert s == 4
    keys = [(0, 1, "image", r) for r in range(2)]
    x = noise_like((2, 1, 8, 8), RowNoise(keys), trainer.device)
    # the trainer's trajectory-of-interest rollout (steps < s with the frozen base) ...
    mixed = trainer._rollout(trainer.unet, x, 0, config.eta, RowNoise(keys), handover=s)
    # ... against the base model alone and the tuned policy alone, with the same noise streams
    base = rollout(trainer.frozen, trainer.scheduler, x, 0, config.eta, RowNoise(keys))
    tuned = rollout(trainer.unet, trainer.scheduler, x, 0, config.eta, RowNoise(keys))
    assert torch.equal(mixed.states[:, : s + 1], base.states[:, : s + 1])  # x at steps 0..s: base steps only
    assert not torch.equal(mixed.states[:, s + 1], base.states[:, s + 1])  # step s is the checkpoint's
    assert not torch.equal(tuned.states[:, s], base.states[:, s])  # the perturbation matters before s


def test_trajectory_of_interest_images_equal_the_base_models_before_the_window(tiny_model_dir, tmp_path):
    """The start images of an epoch: base for steps < s; with s = K they would be the base model's samples."""
    config = config_of(tiny_model_dir, window=(7, 8))
    trainer = Trainer(config, RunStore(tmp_path).create(config.to_dict()))
    perturb(trainer.unet)
    images = trainer.images_of(1, 0)
    keys = [(config.seed, 1, "image", r) for r in range(2)]

    def sample(**handover):  # as the trainer draws it: the start noise, then each step's, from one stream per row
        noise = RowNoise(keys)
        x = noise_like((2, 1, 8, 8), noise, trainer.device)
        return rollout(trainer.unet if handover else trainer.frozen, trainer.scheduler, x, 0, config.eta, noise,
                       **handover)

    base, mixed = sample(), sample(early_unet=trainer.frozen, handover=7)
    assert torch.equal(images, mixed.final)
    assert not torch.equal(images, base.final)  # the last step is the policy's
    tuned_config = config.replace(outside_window="tuned")
    tuned_trainer = Trainer(tuned_config, RunStore(tmp_path / "t").create(tuned_config.to_dict()))
    tuned_trainer.unet.load_state_dict(trainer.unet.state_dict())
    assert not torch.equal(tuned_trainer.images_of(1, 0), images)  # "tuned" samples every step with the policy


def test_evaluation_and_checkpoint_sample_window_only(tiny_model_dir, tmp_path):
    config = config_of(tiny_model_dir, epochs=1)
    run = RunStore(tmp_path).create(config.to_dict())
    trainer = Trainer(config, run)
    assert trainer.train() == "done"
    rows = run.metrics()
    assert rows[1]["sample_handover"] == 4
    checkpoint = run.checkpoints()[-1]
    loaded = load_base_model(str(checkpoint), "cpu")
    assert loaded.early is not None and loaded.handover == 4 and loaded.handover_steps == 8
    base = load_base_model(str(tiny_model_dir), "cpu")
    tuned_only = load_base_model(str(checkpoint), "cpu", window_only=False)
    assert tuned_only.early is None
    by_default = sample_from(loaded, 6, config.eval_seed, 8, config.eval_eta)
    explicit = sample_from(tuned_only, 6, config.eval_seed, 8, config.eval_eta, early=base, handover=4)
    everywhere = sample_from(tuned_only, 6, config.eval_seed, 8, config.eval_eta)
    assert torch.equal(by_default, explicit)
    assert not torch.equal(by_default, everywhere)
    # the run's own final evaluation is the checkpoint sampled window-only
    reward = make_reward(config.reward)
    saved = run.load_eval(1)["rewards"]
    assert torch.equal(saved, reward(by_default).float())
    assert not torch.equal(saved, reward(everywhere).float())


def test_window_only_costs_the_same_unet_calls(tiny_model_dir, tmp_path):
    rows = {}
    for mode in ("tuned", "base"):
        config = config_of(tiny_model_dir, outside_window=mode, epochs=2)
        run = RunStore(tmp_path / mode).create(config.to_dict())
        Trainer(config, run).train()
        rows[mode] = [{k: r[k] for k in ("rows_sampled", "rows_trained", "rows_reference", "compute")}
                      for r in run.metrics()]
    assert rows["base"] == rows["tuned"]
    assert rows["base"][1]["rows_sampled"] > 0


def test_sliding_and_hrfd_hand_over_at_the_earliest_trained_step(tiny_model_dir, tmp_path):
    config = config_of(tiny_model_dir, method="hrf-d", hrfd_stride=2, epochs=2)
    run = RunStore(tmp_path).create(config.to_dict())
    trainer = Trainer(config, run)
    trainer.train()
    rows = run.metrics()
    starts = [r["starts"][0] for r in rows[1:]]
    assert [r["sample_handover"] for r in rows[1:]] == [starts[0], min(starts)]


def test_ddpo_has_no_outside():
    with pytest.raises(ValueError, match="needs a windowed method"):
        TrainConfig(method="ddpo", window=(0, 40), outside_window="base").validate()
    with pytest.raises(ValueError, match="outside_window: .elsewhere. is not allowed; choose one of tuned, base"):
        TrainConfig(outside_window="elsewhere").validate()


def test_cli_outside_flag_sets_the_config():
    from hrf_core.cli import build_parser
    from hrf_core.commands.train import config_from_args

    args = build_parser().parse_args(["train", "--method", "hrf", "--window", "20:40", "--outside", "base"])
    assert config_from_args(args).outside_window == "base"
    assert config_from_args(build_parser().parse_args(["train"])).outside_window == "tuned"
