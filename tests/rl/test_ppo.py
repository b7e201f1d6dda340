"""Advantages, the PPO-clip loss and window scaling on hand-computed values."""

from __future__ import annotations

import math

import torch

from hrf_core.rl.ppo import ppo_clip_loss, ppo_diagnostics, standardized_advantages, window_scale


def test_advantages_per_epoch_hand_computed():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0])  # mean 3, population std sqrt(3.5)
    adv = standardized_advantages(rewards, clip=10.0)
    s = math.sqrt(3.5)
    assert torch.allclose(adv, torch.tensor([-2 / s, -1 / s, 0.0, 3 / s]), atol=1e-6)
    clipped = standardized_advantages(rewards, clip=1.0)
    assert torch.allclose(clipped, torch.tensor([-1.0, -1 / s, 0.0, 1.0]), atol=1e-6)


def test_advantages_per_batch_and_per_sample_clip():
    rewards = torch.tensor([0.0, 2.0, 10.0, 30.0])
    groups = torch.tensor([0, 0, 1, 1])
    adv = standardized_advantages(rewards, clip=5.0, groups=groups)
    assert torch.allclose(adv, torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-6)
    adv = standardized_advantages(rewards, clip=torch.tensor([0.5, 0.5, 5.0, 5.0]), groups=groups)
    assert torch.allclose(adv, torch.tensor([-0.5, 0.5, -1.0, 1.0]), atol=1e-6)


def test_ppo_clip_loss_hand_computed():
    eps = 0.1
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 1.5, 0.5, 1.05]))  # ratios
    adv = torch.tensor([1.0, -1.0, -2.0, 2.0])
    loss = ppo_clip_loss(new, old, adv, eps)
    # A>0, r=1.5: max(-1.5, -1.1) = -1.1 ; A<0, r=1.5: max(1.5, 1.1) = 1.5
    # A=-2, r=0.5: max(1.0, 1.8) = 1.8    ; A=2, r=1.05 (inside): -2.1
    assert torch.allclose(loss, torch.tensor([-1.1, 1.5, 1.8, -2.1]), atol=1e-6)


def test_ppo_gradient_vanishes_outside_clip():
    new = torch.log(torch.tensor([1.5, 1.05])).requires_grad_(True)
    ppo_clip_loss(new, torch.zeros(2), torch.tensor([1.0, 1.0]), 0.1).sum().backward()
    assert new.grad[0] == 0 and abs(float(new.grad[1]) + 1.05) < 1e-6  # d(-A r)/dlogp = -A r


def test_diagnostics_and_window_scale():
    diag = ppo_diagnostics(torch.tensor([0.0, 0.2]), torch.zeros(2), 0.1)
    assert abs(diag["approx_kl"] - 0.5 * 0.02) < 1e-7 and diag["clip_fraction"] == 0.5
    assert window_scale(30, 40) == 0.25 and window_scale(0, 40) == 1.0
