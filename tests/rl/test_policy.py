"""The DDIM policy step against diffusers and a float64 hand computation; rollouts and re-noising."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_scheduler, make_tiny_unet

from hrf_core.rl.policy import ddim_step_with_logprob, renoise, rollout, step_sigma, trainable_steps


def hand_logprob_float64(scheduler, eps, t, x, prev, eta):
    """DDIM eqs. (12) and (16) in float64, independent of diffusers' step()."""
    eps, x, prev = eps.double(), x.double(), prev.double()
    ac = scheduler.alphas_cumprod.double()
    t_prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    a_t = ac[t]
    a_prev = ac[t_prev] if t_prev >= 0 else scheduler.final_alpha_cumprod.double()
    x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
    var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = eta * var.sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std**2).sqrt() * eps
    logp = -((prev - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return mean, logp.mean(dim=(1, 2, 3)), std


@pytest.mark.parametrize("alpha_to_one", [False, True])
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_step_matches_diffusers_and_float64(alpha_to_one, eta):
    scheduler = make_scheduler(alpha_to_one)
    scheduler.set_timesteps(40)
    gen = torch.Generator().manual_seed(0)
    checked = 0
    for t in scheduler.timesteps[[0, 10, 20, 38, 39]].tolist():
        x = torch.randn(3, 1, 8, 8, generator=gen)
        eps = torch.randn(3, 1, 8, 8, generator=gen)
        reference = scheduler.step(eps, t, x, eta=eta, variance_noise=torch.zeros_like(x)).prev_sample
        action = reference + 0.05 * torch.randn(3, 1, 8, 8, generator=gen)
        prev, log_prob = ddim_step_with_logprob(scheduler, eps, t, x, eta=eta, prev_sample=reference)
        assert torch.equal(prev, reference)
        _, log_prob = ddim_step_with_logprob(scheduler, eps, torch.tensor(t), x, eta=eta, prev_sample=action)
        mean64, logp64, std64 = hand_logprob_float64(scheduler, eps, t, x, action, eta)
        assert log_prob.shape == (3,)
        assert torch.allclose(reference.double(), mean64, atol=1e-6)
        if float(std64) == 0:  # the last step with set_alpha_to_one=True: undefined, never trained
            assert alpha_to_one and t == scheduler.timesteps[-1]
            assert torch.isnan(log_prob).all()
        else:
            # near t = 0, 1 - abar_t loses digits in diffusers' float32 alphas_cumprod: looser there
            rtol = 1e-5 if t > 100 else 5e-4
            assert torch.allclose(log_prob.double(), logp64, rtol=rtol, atol=1e-5)
            checked += 1
    assert checked >= 4


def test_zero_variance_steps_are_excluded_from_training():
    with_one = make_scheduler(True)
    with_one.set_timesteps(40)
    without = make_scheduler(False)
    without.set_timesteps(40)
    assert trainable_steps(with_one, 1.0) == [True] * 39 + [False]
    assert all(trainable_steps(without, 1.0))
    assert step_sigma(without, int(without.timesteps[-1]), 1.0) > 0


def test_per_sample_timesteps_match_scalar_calls():
    scheduler = make_scheduler()
    scheduler.set_timesteps(40)
    x, eps, prev = torch.randn(3, 4, 1, 8, 8).unbind(0)
    ts = scheduler.timesteps[[3, 7, 3, 30]]
    _, batched = ddim_step_with_logprob(scheduler, eps, ts, x, prev_sample=prev)
    singles = [ddim_step_with_logprob(scheduler, eps[i:i + 1], int(ts[i]), x[i:i + 1], prev_sample=prev[i:i + 1])[1]
               for i in range(4)]
    assert torch.allclose(batched, torch.cat(singles))


def test_recomputed_logprobs_give_ratio_one():
    unet, scheduler = make_tiny_unet(), make_scheduler()
    scheduler.set_timesteps(10)
    traj = rollout(unet, scheduler, torch.randn(4, 1, 8, 8), 3, 1.0, torch.Generator().manual_seed(1))
    assert traj.states.shape == (4, 8, 1, 8, 8) and traj.log_probs.shape == (4, 7)
    states = traj.states.clone()
    for j, t in enumerate(traj.timesteps.tolist()):
        eps = unet(states[:, j], torch.full((4,), t)).sample  # grad mode, as in training
        _, log_prob = ddim_step_with_logprob(scheduler, eps, t, states[:, j], prev_sample=states[:, j + 1])
        ratio = torch.exp(log_prob - traj.log_probs[:, j])
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-5)


def test_renoise_uses_add_noise_and_groups_siblings():
    scheduler = make_scheduler()
    scheduler.set_timesteps(40)
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    out = renoise(scheduler, x0, 30, copies=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 1, 8, 8)
    noise = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = scheduler.add_noise(x0.repeat_interleave(3, 0), noise, scheduler.timesteps[30].repeat(6))
    assert torch.allclose(out, expected)
    abar = scheduler.alphas_cumprod[scheduler.timesteps[30]]
    assert torch.allclose(out[0], abar.sqrt() * x0[0] + (1 - abar).sqrt() * noise[0], atol=1e-6)


def test_renoise_leaves_the_scheduler_table_on_the_host():
    # diffusers' add_noise moves alphas_cumprod to the samples' device; the policy's scheduler must keep
    # its host table, or every sigma read on a GPU waits for the device (bench/epoch.py counts those)
    scheduler = make_scheduler()
    scheduler.set_timesteps(10)
    x0 = torch.zeros(2, 1, 8, 8, device="meta")
    out = renoise(scheduler, x0, 3, copies=2)
    assert out.shape == (4, 1, 8, 8) and out.device.type == "meta"
    assert scheduler.alphas_cumprod.device.type == "cpu"


def test_kl_to_base_matches_a_float64_hand_computation():
    """KL of two DDIM Gaussians with the same sigma = ||mu_theta - mu_base||^2 / (2 sigma^2), a mean over pixels."""
    from hrf_core.rl.policy import ddim_step_mean, gaussian_kl

    scheduler = make_scheduler()
    scheduler.set_timesteps(40)
    gen = torch.Generator().manual_seed(3)
    for t in scheduler.timesteps[[0, 15, 39]].tolist():
        x = torch.randn(4, 1, 8, 8, generator=gen)
        eps_theta, eps_base = torch.randn(2, 4, 1, 8, 8, generator=gen).unbind(0)
        mean_theta, sigma = ddim_step_mean(scheduler, eps_theta, t, x, eta=1.0)
        mean_base, _ = ddim_step_mean(scheduler, eps_base, t, x, eta=1.0)
        kl = gaussian_kl(mean_theta, mean_base, sigma)
        m1, _, std = hand_logprob_float64(scheduler, eps_theta, t, x, x, 1.0)
        m2, _, _ = hand_logprob_float64(scheduler, eps_base, t, x, x, 1.0)
        hand = ((m1 - m2) ** 2 / (2 * std**2)).mean(dim=(1, 2, 3))
        assert kl.shape == (4,) and (kl > 0).all()
        assert torch.allclose(kl.double(), hand, rtol=1e-3, atol=1e-7)  # float32 cancellation in mu_theta - mu_base
        # the same Gaussian: zero; and KL equals the expected log-ratio E_p[log p - log q] by Monte Carlo
        assert torch.allclose(gaussian_kl(mean_theta, mean_theta, sigma), torch.zeros(4))
        draws = mean_theta + sigma.reshape(4, 1, 1, 1) * torch.randn(4000, 4, 1, 8, 8, generator=gen)
        from hrf_core.rl.policy import gaussian_log_prob
        log_ratio = torch.stack([gaussian_log_prob(d, mean_theta, sigma) - gaussian_log_prob(d, mean_base, sigma)
                                 for d in draws[:400]])
        assert torch.allclose(log_ratio.mean(0), kl, rtol=0.1, atol=2e-3)


def test_row_noise_streams_depend_only_on_their_keys():
    from hrf_core.rl.policy import RowNoise, noise_like

    keys = [(0, 3, "sample", g) for g in range(6)]
    whole = RowNoise(keys)
    first, second = noise_like((6, 1, 4, 4), whole, torch.device("cpu")), noise_like((6, 1, 4, 4), whole, "cpu")
    halves = [RowNoise(keys[:3]), RowNoise(keys[3:])]  # the same samples, split over two "ranks"
    split_first = torch.cat([noise_like((3, 1, 4, 4), h, torch.device("cpu")) for h in halves])
    split_second = torch.cat([noise_like((3, 1, 4, 4), h, torch.device("cpu")) for h in halves])
    assert torch.equal(first, split_first) and torch.equal(second, split_second)
    assert not torch.equal(first, second) and not torch.equal(first[0], first[1])
    other_epoch = noise_like((1, 1, 4, 4), RowNoise([(0, 4, "sample", 0)]), torch.device("cpu"))
    assert not torch.equal(other_epoch[0], first[0])
    with pytest.raises(ValueError, match="3 streams"):
        noise_like((4, 1, 4, 4), halves[0], torch.device("cpu"))


def test_handover_identities():
    """Same noise: handover 0 gives the tuned model's samples exactly, handover K the base model's."""
    tuned, base, scheduler = make_tiny_unet(seed=1), make_tiny_unet(seed=2), make_scheduler()
    scheduler.set_timesteps(10)

    def sample(unet, **kw):
        gen = torch.Generator().manual_seed(5)
        x = torch.randn(3, 1, 8, 8, generator=gen)
        return rollout(unet, scheduler, x, 0, 1.0, gen, record=False, **kw).final

    only_tuned, only_base = sample(tuned), sample(base)
    assert torch.equal(sample(tuned, early_unet=base, handover=0), only_tuned)
    assert torch.equal(sample(tuned, early_unet=base, handover=10), only_base)
    middle = sample(tuned, early_unet=base, handover=5)
    assert not torch.equal(middle, only_tuned) and not torch.equal(middle, only_base)
    with pytest.raises(ValueError, match="early_unet"):
        sample(tuned, handover=3)
