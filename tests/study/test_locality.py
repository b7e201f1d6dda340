"""The locality profile: known answers on linear-Gaussian models, the estimator by hand, the CLI's refusals."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from hrf_core.models.base import BaseModel
from hrf_core.study.locality import (
    ProfileCache,
    ProfileSettings,
    decided_at,
    decided_share,
    default_probes,
    profile,
    suggest_window,
    summary_line,
)

K = 10
REPO = Path(__file__).resolve().parents[2]


class LinearUNet(torch.nn.Module):
    """eps(x, t) = c(t) x: with clip_sample off, every DDIM step is x -> a_i x + sigma_i z (linear-Gaussian).

    c(t) = 1 / sqrt(1 - abar_t) is the exact denoiser of data concentrated at 0 (x0_hat = 0); at the
    timesteps in ``zero_mean_at`` c(t) makes the step's mean exactly 0 (x is replaced by fresh noise).
    """

    def __init__(self, scheduler: DDIMScheduler, eta: float, zero_mean_at: tuple[int, ...] = ()):
        super().__init__()
        self.config = SimpleNamespace(sample_size=4, in_channels=1)
        self.scheduler, self.eta, self.zero_mean_at = scheduler, eta, set(zero_mean_at)

    def coefficient(self, t: int) -> float:
        abar_t, abar_prev, sigma = step_coefficients(self.scheduler, t, self.eta)
        if t not in self.zero_mean_at:
            return float(1 / np.sqrt(1 - abar_t))
        return float(-np.sqrt(abar_prev / abar_t) / slope(abar_t, abar_prev, sigma))

    def forward(self, x, t):
        c = torch.tensor([self.coefficient(int(v)) for v in t], dtype=x.dtype).reshape(-1, 1, 1, 1)
        return SimpleNamespace(sample=c * x)


def slope(abar_t: float, abar_prev: float, sigma: float) -> float:
    """d mu / d eps at fixed x: mu = sqrt(abar_prev / abar_t) x + eps * slope (DDIM eq. 12 with x0_hat expanded)."""
    return float(np.sqrt(1 - abar_prev - sigma**2) - np.sqrt(abar_prev * (1 - abar_t) / abar_t))


def step_coefficients(scheduler: DDIMScheduler, t: int, eta: float) -> tuple[float, float, float]:
    """(abar_t, abar_prev, sigma) of the DDIM step at train timestep t, in float64 (DDIM eqs. 12, 16)."""
    abar = scheduler.alphas_cumprod.double()
    prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    abar_t = float(abar[t])
    abar_prev = float(abar[prev]) if prev >= 0 else float(scheduler.final_alpha_cumprod)
    sigma = eta * np.sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
    return abar_t, abar_prev, float(sigma)


def linear_model(eta: float = 1.0, zero_mean_at: tuple[int, ...] = ()) -> BaseModel:
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    scheduler.set_timesteps(K)
    unet = LinearUNet(scheduler, eta, zero_mean_at)
    return BaseModel(name="linear", unet=unet, scheduler=scheduler, folder=Path("."), device=torch.device("cpu"))


def mean_pixel(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).mean(1)


def test_linear_gaussian_profile_matches_the_schedulers_coefficients():
    """r = mean pixel, x_{i+1} = a_i x_i + sigma_i z_i with a_i, sigma_i from the scheduler's alphas in float64:
    D(i) = (A_0^2 + sum_{l<i} A_{l+1}^2 sigma_l^2) / (A_0^2 + sum_l A_{l+1}^2 sigma_l^2), A_j = prod_{l>=j} a_l."""
    model = linear_model()
    settings = ProfileSettings(trunks=384, branches=4, num_steps=K, probes=tuple(range(K)), resamples=200, seed=3)
    result = profile(model, {"mean": mean_pixel}, settings)["mean"]
    a, s = [], []
    for t in model.scheduler.timesteps.tolist():
        abar_t, abar_prev, sigma = step_coefficients(model.scheduler, t, 1.0)
        a.append(np.sqrt(abar_prev / abar_t) + model.unet.coefficient(t) * slope(abar_t, abar_prev, sigma))
        s.append(sigma)
    tail = [float(np.prod(a[j:])) for j in range(K + 1)]  # A_j = prod_{l >= j} a_l (A_K = 1)
    parts = [tail[0] ** 2] + [tail[i + 1] ** 2 * s[i] ** 2 for i in range(K)]
    expected = np.cumsum(parts)[:K] / sum(parts)  # D(i): start noise and the noises of steps < i
    estimate = np.array(result["decided"])
    intervals = np.array(result["decided_interval"])
    assert expected[0] < 0.01 and expected[-1] > 0.3 and np.all(np.diff(expected) > 0)  # a profile that rises
    assert np.all(np.abs(estimate - expected) < 0.08), (estimate, expected)
    inside = (intervals[:, 0] - 0.01 <= expected) & (expected <= intervals[:, 1] + 0.01)
    assert inside.sum() >= K - 1, (intervals, expected)


def test_reward_of_the_last_steps_noise_only_is_undecided_before_it():
    """The last step's mean is 0, so x_0 = sigma_{K-1} z: nothing before the last step decides any reward."""
    last = 1 + 0  # the final train timestep of the grid (steps_offset = 1)
    model = linear_model(zero_mean_at=(last,))
    assert model.scheduler.timesteps[-1] == last
    settings = ProfileSettings(trunks=256, branches=4, num_steps=K, probes=(0, 5, K - 1), resamples=0)
    result = profile(model, {"mean": mean_pixel, "square": lambda x: mean_pixel(x) ** 2}, settings)
    for name in ("mean", "square"):
        assert np.all(np.abs(result[name]["decided"]) < 0.08), (name, result[name]["decided"])


def test_reward_of_the_start_noise_is_decided_at_step_0_with_eta_0():
    model = linear_model(eta=0.0)
    settings = ProfileSettings(trunks=32, branches=3, num_steps=K, eta=0.0, probes=(0, 4, K - 1), resamples=0)
    result = profile(model, {"mean": mean_pixel}, settings)["mean"]
    assert np.allclose(result["decided"], 1.0)
    assert np.allclose(result["gain"], 0.0)


def test_estimator_by_hand():
    # one probe, 3 trunks x 2 branches
    r = np.array([[[1.0, 3.0], [2.0, 2.0], [6.0, 4.0]]])
    means, within = np.array([2.0, 2.0, 5.0]), np.array([2.0, 0.0, 2.0]).mean()  # var ddof=1 of each pair
    between = means.var(ddof=1) - within / 2  # 3 - 2/3
    d, g, _ = decided_share(r)
    assert d[0] == pytest.approx(between / (between + within))
    total = means.var(ddof=1) + 0.5 * within
    assert g[0] == pytest.approx(np.mean([1.0, 0.0, 1.0]) / np.sqrt(total))
    # a branch-only reward (independent of the trunk) is undecided; a trunk-only reward is decided
    rng = np.random.default_rng(0)
    assert abs(decided_share(rng.normal(size=(1, 2000, 4)))[0][0]) < 0.05
    trunk_only = np.repeat(rng.normal(size=(1, 50, 1)), 4, axis=2)
    assert decided_share(trunk_only)[0][0] == pytest.approx(1.0)


def test_directional_companion_tells_a_reward_from_its_negative():
    """A right-skewed reward gains more from picking the best continuation than its negative does."""
    rng = np.random.default_rng(1)
    r = np.exp(rng.normal(size=(1, 4000, 4)))
    g_up = decided_share(r)[1][0]
    g_down = decided_share(-r)[1][0]
    assert decided_share(r)[0][0] == pytest.approx(decided_share(-r)[0][0])  # D is sign-blind
    assert g_up > 1.2 * g_down


def test_suggested_window_rule_and_line():
    probes = [0, 5, 10, 15, 20, 25, 30, 35, 39]
    jpeg = {"reward": "jpeg", "num_steps": 40, "probes": probes,
            "decided": [0.0, 0.02, 0.28, 0.42, 0.59, 0.69, 0.81, 0.89, 0.97]}
    early = {**jpeg, "reward": "early", "decided": [0.0, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 1.0, 1.0]}
    assert suggest_window(jpeg)[0] == (25, 40)  # 1 - 0.69 = 0.31 >= 0.25; 1 - 0.81 < 0.25
    assert suggest_window(jpeg, undecided_min=0.5)[0] == (15, 40)
    assert suggest_window(early)[0] == (0, 40)
    assert decided_at(jpeg, 22) == pytest.approx(0.59 + 0.4 * 0.10)
    assert decided_at(jpeg, 40) == 1.0
    assert summary_line(jpeg, 20) == ("by step 20, 59% of this reward's variance is decided: training steps 20..39 "
                                      "can move at most the remaining 41%")


def test_settings_are_validated():
    assert default_probes(40) == (0, 5, 10, 15, 20, 25, 30, 35, 39)
    for bad in (dict(trunks=1), dict(branches=1), dict(probes=(40,)), dict(probes=(-1,))):
        with pytest.raises(ValueError):
            ProfileSettings(**bad).validate()


def test_cache_round_trip_and_shipped_profiles(tmp_path):
    cache = ProfileCache(tmp_path)
    settings = ProfileSettings()
    shipped = cache.get("digits16", "ink")
    assert shipped is not None and shipped["probes"] == list(default_probes(40))  # ships with the repo
    assert ProfileCache(tmp_path, shipped=False).get("digits16", "ink") is None
    mine = {**shipped, "decided": [0.5] * len(shipped["probes"])}
    cache.put(mine, "digits16", None, settings)
    assert cache.get("digits16", "ink")["decided"][0] == 0.5  # a computed profile wins over the shipped one
    assert cache.get("digits16", "ink", checkpoint="runs/x/checkpoints/epoch-0001") is None


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``python -m hrf_core locality ARGS`` in this process: (exit code, stdout, stderr)."""
    from hrf_core.cli import main

    try:
        code = main(["locality", *args])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("args,message", [
    (["--reward", "no-such-reward"], "unknown reward"),
    (["--reward", "ink", "--model", "no-such-model"], "unknown model"),
    (["--reward", "ink", "--trunks", "1"], "trunks and branches must be >= 2"),
    (["--reward", "ink", "--branches", "1"], "trunks and branches must be >= 2"),
    (["--reward", "ink", "--probes", "0", "40"], "probed steps must be in 0..39"),
    (["--model", "digits16"], "the following arguments are required: --reward"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message, capsys):
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_cli_profiles_the_embedded_model(tmp_path, capsys):
    out = tmp_path / "profile.json"
    code, stdout, err = run_cli(["--model", "digits16", "--reward", "ink", "symmetry", "--trunks", "4", "--branches",
                                 "2", "--steps", "10", "--resamples", "20", "--json", str(out), "--device", "cpu"],
                                capsys)
    assert code == 0, err
    profiles = json.loads(out.read_text())
    assert set(profiles) == {"ink", "symmetry"}
    assert profiles["ink"]["probes"] == [0, 5, 9] and len(profiles["ink"]["decided_interval"]) == 3
    assert "| ink |" in stdout
