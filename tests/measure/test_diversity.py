"""The diversity bonus in the advantage (docs/METHOD.md, "The diversity bonus"): a hand-computed leave-one-out
Vendi contribution, lambda = 0 bit for bit today's run, a softmax policy that plain policy gradient collapses and the
bonus keeps spread, every method and prompts, and the one-line refusal of a negative weight on every surface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_prompts import tiny
from test_trainer import small_config

from hrf_core import settings
from hrf_core.measure import diversity
from hrf_core.rl import ppo
from hrf_core.rl.trainer import Trainer
from hrf_core.rl.update import PolicyUpdate
from hrf_core.store.runs import RunStore


def vendi_by_hand(kernel: np.ndarray) -> float:
    """exp of the Shannon entropy of the eigenvalues of K / n, float64."""
    mu = np.linalg.eigvalsh(kernel / len(kernel))
    mu = mu[mu > 1e-15]
    return float(np.exp(-(mu * np.log(mu)).sum()))


# ------------------------------------------------------------------------------------------- the bonus
def test_the_bonus_reads_the_calibrated_measure_on_digits():
    """On 1x16x16 digits the bonus's kernel is the calibrated measure's (the Live plot's within-prompt axis), not the
    classifier's features that `digit:N` and `alignment` read."""
    from hrf_core.measure import calibrated

    images = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert np.allclose(diversity.diversity_kernel(images), calibrated.similarity(images).numpy(), atol=0)


def test_the_bonus_of_a_four_sample_group_matches_a_hand_computation():
    """Four 2x2 images, two of them alike: each one's VS(K) - VS(K without it) on the pixels' cosine kernel, from
    eigenvalues in float64; the standardised bonus by hand; a fifth row alone in its group gets 0."""
    images = torch.tensor([[1.0, -1.0, -1.0, -1.0],  # a and its near twin b
                           [0.9, -1.0, -1.0, -0.9],
                           [-1.0, 1.0, -1.0, -1.0],  # c
                           [-1.0, -1.0, 0.5, 1.0],  # d
                           [0.0, 0.0, 0.0, 0.0]]).reshape(5, 1, 2, 2)
    pixels = ((images[:4].double() + 1) / 2).flatten(1).numpy()  # the measure's pixel features, [0, 1]
    unit = pixels / np.linalg.norm(pixels, axis=1, keepdims=True)
    kernel = unit @ unit.T
    whole = vendi_by_hand(kernel)
    expected = np.array([whole - vendi_by_hand(np.delete(np.delete(kernel, i, 0), i, 1)) for i in range(4)])

    assert np.allclose(diversity.diversity_kernel(images[:4]), kernel, atol=1e-12)
    assert np.allclose(diversity.leave_one_out_vendi(kernel), expected, atol=1e-10)
    bonus = diversity.group_bonus(images, torch.tensor([0, 0, 0, 0, 1]))
    assert np.allclose(bonus[:4].numpy(), expected, atol=1e-10) and bonus[4] == 0
    # the twins add least, the lone images most
    assert expected[:2].max() < expected[2:].min()
    z = ppo.group_standardized(bonus, torch.tensor([0, 0, 0, 0, 1]))
    assert np.allclose(z[:4].numpy(), (expected - expected.mean()) / expected.std(), atol=1e-6) and z[4] == 0
    # groups of one or two, and groups of identical images, say nothing
    assert diversity.leave_one_out_vendi(kernel[:1, :1]).tolist() == [0.0]
    assert ppo.group_standardized(torch.tensor([0.3, 0.3, 2.0]), torch.tensor([0, 0, 1])).tolist() == [0, 0, 0]


def test_the_bonus_is_added_before_the_clip_and_its_notes():
    advantages, bonus = torch.tensor([1.0, -1.0, 4.0, -0.5]), torch.tensor([0.1, 0.2, 0.3, 0.4])
    z = torch.tensor([-1.0, 1.5, 2.0, 1.0])
    combined, notes = ppo.with_diversity(advantages, bonus, z, weight=0.5)
    assert combined.tolist() == [0.5, -0.25, 5.0, 0.0]
    assert notes["diversity_sign_flips"] == 0.25  # -0.5 + 0.5 = 0: one row of four loses its sign
    assert notes["adv_reward_std"] == pytest.approx(float(advantages.std(unbiased=False)))
    assert notes["diversity_bonus_mean"] == pytest.approx(0.25)


def softmax_policy(weight: float, steps: int = 300, n: int = 16, lr: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Policy gradient on a softmax over four points (points 0 and 1 alike): the reward's advantage standardised
    over each batch of n draws, plus ``weight`` x the standardised leave-one-out Vendi bonus; the final
    probabilities."""
    points = torch.tensor([[1.0, 0, 0], [0.6, 0.8, 0], [0, 1.0, 0], [0, 0, 1.0]])
    reward = torch.tensor([1.0, 0.9, 0.9, 0.9])  # point 0 slightly better
    logits = torch.zeros(4)
    generator = torch.Generator().manual_seed(seed)
    group = torch.zeros(n, dtype=torch.long)
    for _ in range(steps):
        p = torch.softmax(logits, 0)
        drawn = torch.multinomial(p, n, replacement=True, generator=generator)
        advantages = ppo.standardized_advantages(reward[drawn], clip=math.inf)
        if weight > 0:
            bonus = torch.from_numpy(diversity.leave_one_out_vendi(diversity.cosine_kernel(points[drawn])))
            advantages, _ = ppo.with_diversity(advantages, bonus, ppo.group_standardized(bonus, group), weight)
        advantages = advantages.clamp(-5, 5)
        logits = logits + lr * (advantages[:, None] * (torch.nn.functional.one_hot(drawn, 4) - p)).mean(0)
    return torch.softmax(logits, 0)


def test_the_bonus_keeps_modes_that_plain_policy_gradient_collapses():
    """Plain: point 0 takes everything. With lambda = 2 at least two points keep > 10% (seen: 0.61, 0.01, 0.22,
    0.16: the bonus keeps the distinct points 2 and 3, not point 0's near twin)."""
    plain, diverse = softmax_policy(0.0), softmax_policy(2.0)
    assert plain.max() > 0.99
    assert (diverse > 0.1).sum() >= 2 and diverse.max() < 0.9


# ---------------------------------------------------------------------------------------- in the trainer
class TodaysUpdate(PolicyUpdate):
    """The advantages as they were computed before the diversity bonus existed (the reference of lambda = 0)."""

    def assign_advantages(self, batches, rewards, starts, prompts=None, diversity=None):
        c = self.t.config
        n_batches = rewards.shape[0]
        groups = None
        if c.adv_scope == "batch":
            groups = torch.arange(n_batches).repeat_interleave(c.batch_size)
        elif c.adv_scope == "image":
            per_image = torch.arange(n_batches * c.batch_size) // c.siblings
            per_batch = n_batches * c.batch_size + torch.arange(n_batches).repeat_interleave(c.batch_size)
            from_noise = torch.tensor(starts).repeat_interleave(c.batch_size) == 0
            groups = torch.where(from_noise, per_batch, per_image)
        clip = torch.cat([torch.full((c.batch_size,), c.adv_clip * self.clip_scale(s)) for s in starts])
        if c.adv_scope == "prompt":
            flat = [p for batch_prompts in prompts for p in batch_prompts]
            advantages = self.t.prompt_stats.update(flat, rewards.reshape(-1)).clamp(-clip, clip)
        else:
            advantages = ppo.standardized_advantages(rewards.reshape(-1), clip=clip, groups=groups)
        for b, batch in batches.items():
            batch.advantages = advantages[b * c.batch_size:(b + 1) * c.batch_size].to(self.t.device)
        return {}


TIMES = ("seconds", "sample_seconds", "update_seconds", "eval_seconds", "logged_at")


def trained(config, path, today: bool = False):
    trainer = Trainer(config, RunStore(path).create(config.to_dict()))
    if today:
        trainer.update = TodaysUpdate(trainer)
    assert trainer.train() == "done"
    rows = [{k: v for k, v in row.items() if k not in TIMES} for row in trainer.run.metrics()]
    return trainer.unet.state_dict(), rows


@pytest.mark.parametrize("case", ["hrf-image", "ddpo-prompt"])
def test_weight_zero_is_todays_run_bit_for_bit(tiny_model_dir, tiny_cond_model_dir, tmp_path, monkeypatch, case):
    """lambda = 0: the weights after an epoch and every metric equal today's update's, and no bonus is computed."""
    if case == "hrf-image":
        config = small_config(tiny_model_dir, adv_scope="image", epochs=1, diversity_weight=0.0)
    else:
        config = tiny(tiny_cond_model_dir, method="ddpo", window=(0, 6), adv_scope="prompt", prompt_min_count=2,
                      epochs=1, diversity_weight=0.0)
    today_weights, today_rows = trained(config, tmp_path / "today", today=True)

    def refuse(*args, **kwargs):
        raise AssertionError("lambda = 0 computed a diversity bonus")

    monkeypatch.setattr(diversity, "group_bonus", refuse)
    weights, rows = trained(config, tmp_path / "now")
    assert rows == today_rows and not any(k.startswith(("diversity_", "adv_reward")) for k in rows[-1])
    assert weights.keys() == today_weights.keys()
    assert all(torch.equal(weights[k], today_weights[k]) for k in weights)


@pytest.mark.parametrize("case", ["ddpo", "hrf-image", "window-only", "prompted"])
def test_every_method_trains_with_the_bonus(tiny_model_dir, tiny_cond_model_dir, tmp_path, case):
    """DDPO, HRF (per-image: groups are siblings), window-only HRF and a prompted run train with lambda > 0, the
    first epoch sampling exactly as lambda = 0 (the bonus enters the update only) and logging its notes."""
    changes = {"ddpo": dict(method="ddpo", window=(0, 10)), "hrf-image": dict(adv_scope="image", siblings=4),
               "window-only": dict(outside_window="base", adv_scope="image", siblings=4), "prompted": {}}[case]
    if case == "prompted":
        config = tiny(tiny_cond_model_dir, epochs=1, adv_scope="image", siblings=4, diversity_weight=1.0)
    else:
        config = small_config(tiny_model_dir, epochs=1, diversity_weight=1.0, **changes)
    weights, rows = trained(config, tmp_path / "bonus")
    plain_weights, plain_rows = trained(config.replace(diversity_weight=0.0), tmp_path / "plain")
    row = rows[-1]
    assert row["train_reward_mean"] == plain_rows[-1]["train_reward_mean"]
    assert not all(torch.equal(weights[k], plain_weights[k]) for k in weights)
    for key in ("adv_reward_std", "diversity_bonus_mean", "diversity_bonus_std", "diversity_term_std",
                "diversity_sign_flips"):
        assert math.isfinite(row[key]), key
    assert 0 <= row["diversity_sign_flips"] <= 1 and row["diversity_term_std"] > 0


def test_groups_follow_prompts_and_siblings(tiny_cond_model_dir, tmp_path):
    config = tiny(tiny_cond_model_dir, epochs=1, adv_scope="image", batch_size=4, siblings=2)
    update = Trainer(config, RunStore(tmp_path).create(config.to_dict())).update
    assert update.diversity_groups(3, ["0", "0", "1", "1"]).tolist() == [0, 0, 1, 1]
    assert update.diversity_groups(0, ["0", "1", "0", "2"]).tolist() == [0, 1, 0, 2]  # from noise: per prompt
    plain = config.replace(adv_scope="epoch")
    update.t.config = plain
    assert update.diversity_groups(3, None).tolist() == [0, 0, 0, 0]  # unconditional: the batch


# --------------------------------------------------------------------------------------------- surfaces
def test_a_negative_weight_is_refused_in_one_line(tiny_model_dir, tmp_path, capsys):
    from explorer.api import ScriptingApi
    from explorer.jobs import JobManager
    from hrf_core.cli import main

    with pytest.raises(settings.SettingError) as refused:
        settings.parse("diversity_weight", -0.5)
    assert str(refused.value) == "diversity_weight: the diversity weight must be between 0 and 100, got -0.5"
    with pytest.raises(ValueError, match="diversity_weight"):
        small_config(tiny_model_dir, diversity_weight=-1.0)
    with pytest.raises(ValueError, match="needs siblings >= 3"):  # groups of two siblings always tie
        small_config(tiny_model_dir, diversity_weight=1.0, adv_scope="image", siblings=2)

    assert main(["train", "--out", str(tmp_path / "cli"), "--diversity-weight", "-1"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: --diversity-weight must be between 0 and 100, got '-1'"], lines

    manager = JobManager(RunStore(tmp_path / "runs"))
    api = ScriptingApi(manager, small_config(tiny_model_dir))
    with pytest.raises(ValueError) as refused:
        api.start(diversity_weight=-1)
    assert "\n" not in str(refused.value) and str(refused.value).startswith("diversity_weight:")
    assert manager.store.list() == [] and not manager.busy


def test_the_run_label_the_live_plot_and_arms_name_the_weight(tmp_path):
    from explorer.views import live
    from hrf_core import methods
    from hrf_core.study.arms import Settings, arm_overrides, arms_of, handover_source

    config = {"method": "ddpo", "window": (0, 40), "num_steps": 40, "diversity_weight": 0.5}
    assert methods.run_label(config).endswith("· diversity λ=0.5")
    run = RunStore(tmp_path).create(config)
    assert live.run_payload(run, [])["label"] == "DDPO · diversity λ=0.5"  # the Live plot's legend
    assert "λ" not in methods.run_label({**config, "diversity_weight": 0.0})
    assert methods.arm_label({**config, "kl_coef": 0.1}) == "ddpo+kl0.1+div0.5"
    assert arm_overrides("hrf[30,40)/image/wo+div0.5", 40) == dict(
        method="hrf", window=(30, 40), adv_scope="image", outside_window="base", diversity_weight=0.5)
    assert arm_overrides("ddpo+div0.5+kl0.1", 40) == arm_overrides("ddpo+kl0.1+div0.5", 40) == dict(
        method="ddpo", window=(0, 40), kl_coef=0.1, diversity_weight=0.5)
    assert handover_source("handover+div0.5") == "ddpo+div0.5" and handover_source("handover") == "ddpo"
    arms = arms_of("ink", Settings(diversity_weights=[0.5]))
    assert {"ddpo+div0.5", "hrf[30,40)/image/wo+div0.5", "handover+div0.5"} <= set(arms)
    assert not any("+div" in arm for arm in arms_of("ink", Settings()))


def test_the_hand_over_of_a_diversity_run_waits_for_it(tmp_path):
    from hrf_core.study.arms import Settings
    from hrf_core.study.units import build_units, handover_unit

    units = {u.name: u for u in build_units(Settings(seeds=[0], tasks=["ink"], diversity_weights=[0.5]), tmp_path)}
    handover = units["ink-handover-div0.5-seed0"]
    assert handover.fn is handover_unit and handover.after == ("ink-ddpo-div0.5-seed0",)
    assert handover.args[0] == "ink-ddpo-div0.5-seed0" and handover.args[-1] == "handover+div0.5"
    assert units["ink-ddpo-div0.5-seed0"].args[0]["diversity_weight"] == 0.5
    assert units["ink-hrf-30-40-image-wo-div0.5-seed0"].args[0]["outside_window"] == "base"
    assert units["ink-handover-seed0"].after == ("ink-ddpo-seed0",)
