"""Where is a reward decided? The share of its variance already fixed at each denoising step.

Let x_i be the state before DDIM step i (i = 0: pure noise; step K-1 yields x_0) and r the reward of
the final image. The **decided share** at step i is

    D(i) = Var(E[r | x_i]) / Var(r)          (law of total variance: Var r = Var E[r|x_i] + E Var[r|x_i])

the fraction of the reward's variance that the steps before i have already fixed; 1 - D(i) is the
most that training steps i..K-1 can still move by choosing among continuations. D rises from about
0 at i = 0 (eta > 0) to 1 after the last step; with eta = 0 every step is deterministic and D = 1.

Estimator: N trunks are sampled from pure noise; at each probed step i, M continuations branch from
each trunk's x_i with fresh noise. With r_nm the reward of trunk n's branch m,

    between(i) = var_n(mean_m r_nm) - mean_n(var_m r_nm) / M      (unbiased for Var E[r | x_i])
    total(i)   = between(i) + mean_n(var_m r_nm)                   (unbiased for Var r)
    D(i)       = between(i) / total(i)

Variances are unbiased (ddof = 1). Numerator and denominator come from the same branches, so their
sampling noise largely cancels and D <= 1 always (it can dip below 0 where the true D is about 0).
The **directional companion** is the gain that picking the best of the M continuations from x_i still
buys, in the reward's own direction (higher is better) and in units of the reward's standard deviation
(the trunks' finals and every probe's total(i), pooled):

    G(i) = mean_n(max_m r_nm - mean_m r_nm) / sd(r)

It tells apart two rewards with the same D (JPEG compressibility and its negative): a reward whose good
tail is reachable late has a large late G. Intervals: 2.5-97.5 percentiles of a bootstrap over trunks
(the same resampled trunks for every probe and reward). All branches of all probes (and every reward)
share one batched set of trajectories: at step j only rows that started at or before j call the UNet.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hrf_core import CHECKPOINTS_DIR
from hrf_core.models.base import BaseModel
from hrf_core.models.ddim import denoise
from hrf_core.rewards.registry import RewardFn
from hrf_core.rl.policy import StopCheck, StopRequested, ddim_step_with_logprob, noise_like, rollout, unet_eps
from hrf_core.rl.sampling import prompt_condition, round_robin

#: the suggestion rule's default: the latest probed start that leaves at least this share undecided
UNDECIDED_MIN = 0.25
SHIPPED_FILE = "locality.json"


@dataclass
class ProfileSettings:
    """How a profile is estimated. ``probes``: step indices in 0..K-1 (empty: every 5th step and the last)."""

    trunks: int = 64
    branches: int = 4
    num_steps: int = 40
    eta: float = 1.0
    probes: tuple[int, ...] = ()
    seed: int = 0
    resamples: int = 400
    batch_size: int = 512  # rows per UNet call
    prompts: tuple[str, ...] = ()  # a prompted model: trunk i draws prompts[i % P] (empty: every one it knows)

    def validate(self) -> ProfileSettings:
        """Raise ValueError with one line for a bad value; return self with the probes filled in."""
        if self.trunks < 2 or self.branches < 2:
            raise ValueError(f"trunks and branches must be >= 2 (variances need two values), got "
                             f"trunks={self.trunks}, branches={self.branches}")
        if not 2 <= self.num_steps <= 1000:
            raise ValueError(f"num_steps must be in 2..1000, got {self.num_steps}")
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")
        if self.resamples < 0 or self.batch_size < 1:
            raise ValueError("resamples must be >= 0 and batch_size >= 1")
        bad = [p for p in self.probes if not 0 <= p < self.num_steps]
        if bad:
            raise ValueError(f"probed steps must be in 0..{self.num_steps - 1} (K - 1), got {bad}")
        self.probes = tuple(sorted(set(self.probes))) or default_probes(self.num_steps)
        return self


def default_probes(k: int) -> tuple[int, ...]:
    """Every 5th step index and the last one: (0, 5, ..., K - 1)."""
    return tuple(sorted({*range(0, k, 5), k - 1}))


# ------------------------------------------------------------------------------------------ sampling
def branch_finals(model: BaseModel, settings: ProfileSettings, stop: StopCheck | None = None,
                  progress: Callable[[float, str], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Final images of the trunks (N, C, H, W) and of every branch (P, N, M, C, H, W), in [-1, 1] (decoded).

    A window-only checkpoint (``model.early``) samples its untrained steps with its base model, as
    everywhere else. ``stop`` is checked before every UNet call.
    """
    s = settings.validate()
    k, n, m = s.num_steps, s.trunks, s.branches
    model.scheduler.set_timesteps(k)
    early, handover = model.early, model.handover_at(k)
    generator = torch.Generator().manual_seed(s.seed)
    x = noise_like((n, *model.sample_shape), generator, model.device)
    cond = prompt_condition(model, trunk_prompts(model, s), n)
    trunk = rollout(model.unet, model.scheduler, x, 0, s.eta, generator, stop=stop,
                    early_unet=early.unet if early is not None and handover else None, handover=handover, cond=cond)
    # rows: probe-major, then trunk, then branch; row r starts at step index starts[r] from the trunk's state
    states = torch.cat([trunk.states[:, p].repeat_interleave(m, dim=0) for p in s.probes])
    rows = None if cond is None else cond.cat([cond.repeat_interleave(m)] * len(s.probes))
    starts = torch.tensor(s.probes).repeat_interleave(n * m)
    branch_generator = torch.Generator().manual_seed(s.seed + 1_000_003)
    total_rows = int(sum((k - p) * n * m for p in s.probes))
    done = 0

    def eps_of(i: int, t: int, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        unet = early.unet if early is not None and i < handover else model.unet
        parts = []
        for chunk in active.split(s.batch_size):
            if stop is not None and stop():
                raise StopRequested
            parts.append(unet_eps(unet, states[chunk], t, cond=None if rows is None else rows[chunk]))
        return torch.cat(parts)

    def step(t: int, eps: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ddim_step_with_logprob(model.scheduler, eps, t, x, eta=s.eta, generator=branch_generator)

    with torch.inference_mode():
        for i, _, _ in denoise(model.scheduler.timesteps, states, eps_of, step, starts=starts):
            done += int((starts <= i).sum())
            if progress is not None:
                progress(done / total_rows, f"step {i + 1}/{k}")
    finals = model.decode(states)  # what the rewards read (a latent model's decoded images)
    return model.decode(trunk.final), finals.reshape(len(s.probes), n, m, *finals.shape[1:])


# ------------------------------------------------------------------------------------------ estimation
def pooled_total(rewards: np.ndarray, trunk_rewards: np.ndarray | None = None) -> float:
    """Var(r) pooled from every probe's law-of-total-variance estimate (and the trunks' finals). rewards (P, N, M)."""
    m = rewards.shape[-1]
    means, within = rewards.mean(-1), rewards.var(-1, ddof=1)
    estimates = list(means.var(-1, ddof=1) + (1 - 1 / m) * within.mean(-1))
    if trunk_rewards is not None:
        estimates.append(float(np.var(trunk_rewards, ddof=1)))
    return float(np.mean(estimates))


def decided_share(rewards: np.ndarray, trunk_rewards: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(D (P,), G (P,), total variance) from branch rewards (P, N, M) in the reward's direction.

    D(i) = between(i) / total(i), between = var_n(mean_m) - mean_n(var_m) / M, total = between + mean_n(var_m);
    G = mean_n(max_m - mean_m) / sd(r), sd from the pooled total. Returns (D, G, pooled Var r).
    A probe with no variance at all is decided (D = 1, G = 0).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    m = rewards.shape[-1]
    means, within = rewards.mean(-1), rewards.var(-1, ddof=1).mean(-1)
    between = means.var(-1, ddof=1) - within / m
    total_i = between + within
    with np.errstate(invalid="ignore", divide="ignore"):
        decided = np.where(total_i > 0, between / np.where(total_i > 0, total_i, 1), 1.0)
    total = pooled_total(rewards, trunk_rewards)
    gain = (rewards.max(-1) - means).mean(-1) / np.sqrt(total) if total > 0 else np.zeros(len(rewards))
    return decided, gain, total


def bootstrap(rewards: np.ndarray, trunk_rewards: np.ndarray, resamples: int, seed: int = 0) -> dict:
    """2.5-97.5 percentiles of D and G over ``resamples`` resamplings of the trunks (P, 2) each."""
    if resamples == 0:
        return {}
    rng = np.random.default_rng(seed)
    n = rewards.shape[1]
    ds, gs = [], []
    for _ in range(resamples):
        index = rng.integers(0, n, n)
        d, g, _ = decided_share(rewards[:, index], trunk_rewards[index])
        ds.append(d)
        gs.append(g)
    return {"decided_interval": np.percentile(ds, [2.5, 97.5], axis=0).T.tolist(),
            "gain_interval": np.percentile(gs, [2.5, 97.5], axis=0).T.tolist()}


def profile(model: BaseModel, rewards: dict[str, RewardFn], settings: ProfileSettings | None = None,
            stop: StopCheck | None = None, progress: Callable[[float, str], None] | None = None,
            label: dict | None = None) -> dict[str, dict]:
    """The locality profile of every reward in ``rewards`` on ``model``, from one shared set of branches.

    Returns {reward name: profile}; a profile holds the settings, ``probes``, ``decided`` (D),
    ``undecided`` (1 - D), ``gain`` (G), their intervals, the reward's mean and standard deviation,
    the UNet rows spent and the wall time. ``label`` (model, checkpoint) is copied into each.
    """
    s = (settings or ProfileSettings()).validate()
    started = time.perf_counter()
    trunk_final, finals = branch_finals(model, s, stop, progress)
    p, n, m = finals.shape[:3]
    flat = finals.reshape(p * n * m, *finals.shape[3:])
    k = s.num_steps
    rows = n * k + sum((k - q) * n * m for q in s.probes)
    prompts = trunk_prompts(model, s)
    branch_prompts = None if prompts is None else [q for _ in s.probes for q in prompts for _ in range(m)]
    out = {}
    for name, fn in rewards.items():
        trunk_r = np.asarray((fn(trunk_final) if prompts is None else fn(trunk_final, prompts)).float().cpu(),
                             dtype=np.float64)
        r = np.asarray(torch.cat([(fn(c) if prompts is None else fn(c, branch_prompts[i:i + len(c)])).float().cpu()
                                  for i, c in zip(range(0, len(flat), s.batch_size), flat.split(s.batch_size),
                                                  strict=True)]), dtype=np.float64).reshape(p, n, m)
        decided, gain, total = decided_share(r, trunk_r)
        out[name] = {
            **(label or {}), "reward": name, "settings": asdict(s), "num_steps": k, "probes": list(s.probes),
            "decided": decided.tolist(), "undecided": (1 - decided).tolist(), "gain": gain.tolist(),
            **bootstrap(r, trunk_r, s.resamples, s.seed), "reward_mean": float(r.mean()),
            "reward_sd": float(np.sqrt(max(total, 0.0))), "unet_rows": int(rows),
            "seconds": time.perf_counter() - started,
        }
        if prompts is not None:  # pooled above; each prompt's own trunks here (a prompt decides part of the reward)
            out[name]["per_prompt"] = {}
            for prompt in dict.fromkeys(prompts):
                mine = np.array([q == prompt for q in prompts])
                if mine.sum() >= 2:
                    d, g, _ = decided_share(r[:, mine], trunk_r[mine])
                    out[name]["per_prompt"][prompt] = {"decided": d.tolist(), "gain": g.tolist(),
                                                       "trunks": int(mine.sum())}
    return out


def trunk_prompts(model: BaseModel, settings: ProfileSettings) -> list[str] | None:
    """Each trunk's prompt (a prompted model: the settings' prompts, else every one it knows, in turn)."""
    if model.conditioner is None:
        return None
    return round_robin(settings.prompts or model.conditioner.vocabulary, settings.trunks)


# ------------------------------------------------------------------------------------------ reading it
def decided_at(profile: dict, step: int) -> float:
    """D at step index ``step`` (linear between probed steps; D(K) = 1 after the last step)."""
    xs = [*profile["probes"], profile["num_steps"]]
    ys = [*profile["decided"], 1.0]
    return float(np.interp(step, xs, ys))


def suggest_window(profile: dict, undecided_min: float = UNDECIDED_MIN) -> tuple[tuple[int, int], str]:
    """The window [s, K) the profile suggests, and the reason in one line.

    Rule: keep as many early steps the base model's as the reward allows: s is the **latest** probed
    step at which at least ``undecided_min`` of the reward's variance is still undecided (1 - D(s) >=
    undecided_min). A reward decided almost entirely in the first probed steps gets s = 0: no window
    keeps diversity there, only a whole-trajectory method can move it.
    """
    k = profile["num_steps"]
    candidates = [p for p, d in zip(profile["probes"], profile["decided"], strict=True) if 1 - d >= undecided_min]
    start = max(candidates) if candidates else 0
    share = 1 - decided_at(profile, start)
    if start == 0:
        reason = (f"{profile['reward']} is decided early: fewer than {undecided_min:.0%} of its variance is open "
                  "after the first probed step, so no late window can move it")
    else:
        reason = (f"the latest step with at least {undecided_min:.0%} of {profile['reward']}'s variance undecided "
                  f"({share:.0%} at step {start})")
    return (start, k), reason


def summary_line(profile: dict, start: int) -> str:
    """"by step s, X% of this reward's variance is decided: training steps s..K-1 can move at most the remaining Y%"."""
    d = min(max(decided_at(profile, start), 0.0), 1.0)
    k = profile["num_steps"]
    return (f"by step {start}, {d:.0%} of this reward's variance is decided: training steps {start}..{k - 1} "
            f"can move at most the remaining {1 - d:.0%}")


# ------------------------------------------------------------------------------------------ storage
def shipped_profile(model: str, reward: str) -> dict | None:
    """The base-model profile that ships beside an embedded model (``checkpoints/<model>/locality.json``)."""
    path = CHECKPOINTS_DIR / model / SHIPPED_FILE
    if "/" in model or "\\" in model or model.startswith(".") or not path.is_file():
        return None
    return json.loads(path.read_text()).get("rewards", {}).get(reward)


def cache_key(model: str, reward: str, checkpoint: str | None, settings: ProfileSettings) -> str:
    """A file name for a (model, reward, checkpoint, settings) profile: readable prefix + hash."""
    text = json.dumps([model, reward, checkpoint or "", asdict(settings.validate())], sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    slug = "".join(c if c.isalnum() or c in "-." else "-" for c in f"{model}-{reward}")[-60:].strip("-")
    return f"{slug}-{digest}.json"


@dataclass
class ProfileCache:
    """Profiles on disk, one JSON file per (model, reward, checkpoint, settings); written atomically."""

    root: Path
    shipped: bool = True  # fall back to the profiles that ship beside embedded models

    def path(self, model: str, reward: str, checkpoint: str | None, settings: ProfileSettings) -> Path:
        return Path(self.root) / cache_key(model, reward, checkpoint, settings)

    def get(self, model: str, reward: str, checkpoint: str | None = None,
            settings: ProfileSettings | None = None) -> dict | None:
        settings = settings or ProfileSettings()
        path = self.path(model, reward, checkpoint, settings)
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return None
        if self.shipped and checkpoint is None:
            found = shipped_profile(model, reward)
            if found is not None and found.get("settings", {}).get("num_steps") == settings.num_steps:
                return found
        return None

    def put(self, profile_: dict, model: str, checkpoint: str | None, settings: ProfileSettings) -> Path:
        from hrf_core.store.runs import write_json

        path = self.path(model, profile_["reward"], checkpoint, settings)
        write_json(path, profile_)
        return path


def write_shipped(model: str, profiles: dict[str, dict]) -> Path:
    """Merge base-model profiles into those beside an embedded model (``checkpoints/<model>/locality.json``), per
    reward; the other rewards' stay. Refuses (one line) to replace a profile with one of fewer trunks."""
    from hrf_core.models.registry import MODELS
    from hrf_core.store.runs import read_json, write_json

    spec = MODELS.get(model)
    if spec is None or spec.source != "embedded":
        embedded = ", ".join(name for name, m in MODELS.items() if m.source == "embedded")
        raise ValueError(f"--ship writes beside an embedded model ({embedded}), not {model!r}")
    path = CHECKPOINTS_DIR / model / SHIPPED_FILE
    shipped = (read_json(path, {}) or {}).get("rewards", {})
    for reward, new in profiles.items():
        old = shipped.get(reward, {}).get("settings", {}).get("trunks", 0)
        if new.get("settings", {}).get("trunks", 0) < old:
            raise ValueError(f"{path} has a {old}-trunk profile of {reward}: refusing to replace it with a "
                             f"{new['settings']['trunks']}-trunk one (write it elsewhere with --json)")
    write_json(path, {"model": model, "rewards": {**shipped, **profiles}})
    return path


# ------------------------------------------------------------------------------------------ command line
def format_table(profiles: dict[str, dict]) -> list[str]:
    """A Markdown table: D with its interval and G per reward at every probed step."""
    first = next(iter(profiles.values()))
    lines = ["| reward | " + " | ".join(f"D({p})" for p in first["probes"]) + " | suggested window |",
             "|---" * (len(first["probes"]) + 2) + "|"]
    for name, p in profiles.items():
        cells = []
        for i, d in enumerate(p["decided"]):
            low, high = p["decided_interval"][i] if p.get("decided_interval") else (float("nan"),) * 2
            cells.append(f"{d:.2f} [{low:.2f}, {high:.2f}]")
        (start, end), _ = suggest_window(p)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | [{start}, {end}) |")
    lines += ["", "| reward | " + " | ".join(f"G({p})" for p in first["probes"]) + " |",
              "|---" * (len(first["probes"]) + 1) + "|"]
    for name, p in profiles.items():
        lines.append(f"| {name} | " + " | ".join(f"{g:.2f}" for g in p["gain"]) + " |")
    return lines


def compute_cached(cache: ProfileCache, model: str, reward: str, checkpoint: str | None = None,
                   settings: ProfileSettings | None = None, stop: StopCheck | None = None,
                   progress: Callable[[float, str], None] | None = None, device: str = "auto") -> dict:
    """Compute the profile of ``reward`` on ``model`` (or its run ``checkpoint``) and store it in ``cache``."""
    from hrf_core.models.registry import load_base_model
    from hrf_core.rewards.registry import make_reward

    settings = (settings or ProfileSettings()).validate()
    fn = make_reward(reward)
    loaded = load_base_model(checkpoint or model, device)
    result = profile(loaded, {reward: fn}, settings, stop=stop, progress=progress,
                     label={"model": model, "checkpoint": checkpoint})[reward]
    cache.put(result, model, checkpoint, settings)
    return result
