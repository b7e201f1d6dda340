"""The window rules of the methods (:mod:`hrf_core.methods`) against hand-computed expectations.

- the sliding schedule: which cluster each epoch draws its starts from (``Method.window``);
- window-only sampling: from which step the tuned network samples in each epoch (``Method.handover``);
- HRF-D: the start is the candidate *after* the argmax of the score (``dynamic_start``), on a controlled
  probe whose rewards and distances are set by hand.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import make_scheduler

from hrf_core import methods
from hrf_core.config import TrainConfig
from hrf_core.rl.probe import dynamic_start

K = 40


def active_window(config: TrainConfig, epoch: int) -> tuple[int, int]:
    return methods.get(config.method).window(config, epoch)


def draw_start(config: TrainConfig, epoch: int, generator: torch.Generator) -> int:
    """One batch's start step in ``epoch``."""
    return methods.get(config.method).starts(config, epoch, 1, generator, methods.StartState())[0]


def sampling_handover(config: TrainConfig, epoch: int, earliest_dynamic: int | None = None) -> int:
    return methods.get(config.method).handover(config, epoch, methods.StartState(earliest=earliest_dynamic))


def test_active_window_slides_through_clusters_and_the_last_stays():
    config = TrainConfig(method="hrf-sliding", clusters=((0, 20, 3), (20, 30, 2), (10, 40, 1)), num_steps=K)
    # epochs 1-3: the first cluster; 4-5: the second; 6: the third, which stays active afterwards
    expected = {1: (0, 20), 2: (0, 20), 3: (0, 20), 4: (20, 30), 5: (20, 30), 6: (10, 40), 7: (10, 40),
                50: (10, 40)}
    assert {epoch: active_window(config, epoch) for epoch in expected} == expected


def test_active_window_of_the_fixed_methods():
    assert active_window(TrainConfig(method="ddpo", num_steps=K), 7) == (0, K)
    assert active_window(TrainConfig(method="hrf", window=(12, 31), num_steps=K), 7) == (12, 31)
    with pytest.raises(ValueError, match="no fixed window"):
        active_window(TrainConfig(method="hrf-d"), 1)


def test_starts_are_drawn_inside_the_active_cluster():
    config = TrainConfig(method="hrf-sliding", clusters=((0, 5, 1), (30, 32, 1)), num_steps=K)
    generator = torch.Generator().manual_seed(0)
    assert {draw_start(config, 1, generator) for _ in range(200)} == set(range(0, 5))
    assert {draw_start(config, 2, generator) for _ in range(200)} == {30, 31}
    fixed = config.replace(start_mode="fixed")
    assert {draw_start(fixed, 2, generator) for _ in range(20)} == {30}


def test_window_only_handover_per_epoch():
    """S = the smallest start among the windows the run has reached; the tuned network everywhere otherwise."""
    sliding = TrainConfig(method="hrf-sliding", clusters=((20, 40, 2), (10, 20, 2), (30, 40, 1)), num_steps=K,
                          outside_window="base")
    # epochs 1-2: cluster [20, 40); 3-4: [10, 20) reached, so steps 10.. are tuned; 5+: [30, 40) adds nothing
    expected = {0: 0, 1: 20, 2: 20, 3: 10, 4: 10, 5: 10, 9: 10}
    assert {epoch: sampling_handover(sliding, epoch) for epoch in expected} == expected
    assert sampling_handover(sliding.replace(outside_window="tuned"), 3) == 0

    hrf = TrainConfig(method="hrf", window=(25, 40), num_steps=K, outside_window="base")
    assert [sampling_handover(hrf, e) for e in (0, 1, 8)] == [0, 25, 25]
    assert sampling_handover(hrf.replace(outside_window="tuned"), 1) == 0

    hrfd = TrainConfig(method="hrf-d", num_steps=K, outside_window="base")
    assert sampling_handover(hrfd, 1) == K  # no dynamic start chosen yet: the base model samples every step
    assert sampling_handover(hrfd, 3, earliest_dynamic=14) == 14
    assert sampling_handover(TrainConfig(method="ddpo", num_steps=K), 4) == 0


class TargetUNet(torch.nn.Module):
    """A stand-in UNet whose x0 prediction for each probe row is a chosen image.

    ``dynamic_start`` denoises the rows of every candidate together, candidate-major, and at step i only
    the rows whose start is <= i call the network: those are the first rows. Row r belongs to candidate
    r // rows_per_candidate, so eps = (x_t - sqrt(abar_t) target) / sqrt(1 - abar_t) makes x0_hat = target.
    """

    def __init__(self, scheduler, targets: torch.Tensor, rows_per_candidate: int):
        super().__init__()
        self.alphas_cumprod = scheduler.alphas_cumprod
        self.rows = targets.repeat_interleave(rows_per_candidate, dim=0)  # (candidates * rows, C, H, W)

    def forward(self, x, t):
        abar = self.alphas_cumprod[t[0]].to(x.dtype)
        target = self.rows[: x.shape[0]]
        return SimpleNamespace(sample=(x - abar.sqrt() * target) / (1 - abar).sqrt())


def probe_case(rewards: list[float], distances: list[float], beta: float, copies: int = 2):
    """Run ``dynamic_start`` with K = 10, stride 2 (candidates 0, 2, 4, 6, 8) on one image.

    Candidate k's denoised image has reward ``rewards[k]`` and cosine distance ``distances[k]`` to the image.
    """
    scheduler = make_scheduler(set_alpha_to_one=True)  # the last step returns x0_hat itself
    scheduler.set_timesteps(10)
    image = torch.tensor([1.0, 0.0, 0.0, 0.0]).reshape(1, 1, 2, 2)
    # target k: (cos theta, sin theta, 0, 0) * 0.5 has cosine distance 1 - cos theta to the image
    targets = []
    for d in distances:
        theta = math.acos(1 - d)
        targets.append(torch.tensor([math.cos(theta), math.sin(theta), 0.0, 0.0]).reshape(1, 2, 2) * 0.5)
    targets = torch.stack(targets)

    def reward(x):  # the reward of the target each row came out as
        nearest = torch.cdist(x.flatten(1), targets.flatten(1)).argmin(dim=1)
        return torch.tensor(rewards)[nearest]

    unet = TargetUNet(scheduler, targets, rows_per_candidate=copies)
    start, info = dynamic_start(unet, scheduler, image, reward, stride=2, beta=beta, copies=copies,
                                generator=torch.Generator().manual_seed(0))
    assert info["candidates"] == [0, 2, 4, 6, 8]
    assert info["reward"] == pytest.approx(rewards, abs=1e-5)
    assert info["distance"] == pytest.approx(distances, abs=1e-4)
    return start, info


def test_hrf_d_starts_at_the_candidate_after_the_best_reward_gain():
    # R = 0, 1, 1.5, 4, 4.2: gains 1, 0.5, 2.5, 0.2 -> minmax (g - 0.2) / 2.3 = 0.348, 0.130, 1, 0.
    # With beta = 0 the best gain is k* = 2 (candidate 4 -> candidate 6): the start is 6, not 4 (the argmax
    # itself) and not 8 (the highest reward).
    start, info = probe_case(rewards=[0.0, 1.0, 1.5, 4.0, 4.2], distances=[0.3, 0.0, 0.1, 0.5, 0.2], beta=0.0)
    assert info["score"] == pytest.approx([0.8 / 2.3, 0.3 / 2.3, 1.0, 0.0], abs=1e-4)
    assert start == 6


def test_hrf_d_distance_penalty_moves_the_start():
    # Same rewards; D of candidates 1..4 = 0, 0.1, 0.5, 0.2 -> minmax 0, 0.2, 1, 0.4. With beta = 1:
    # score = 0.348 - 0, 0.130 - 0.2, 1 - 1, 0 - 0.4 = 0.348, -0.070, 0, -0.4 -> k* = 0: the start is 2.
    start, info = probe_case(rewards=[0.0, 1.0, 1.5, 4.0, 4.2], distances=[0.3, 0.0, 0.1, 0.5, 0.2], beta=1.0)
    assert info["score"] == pytest.approx([0.8 / 2.3, 0.3 / 2.3 - 0.2, 0.0, -0.4], abs=1e-4)
    assert start == 2
