"""The DDPO update: advantages and the PPO-clip surrogate (pure functions).

ddpo-pytorch's recipe (Black et al. 2023): rewards are standardised, A = (r - mean) / (std + eps),
clipped to +-adv_clip; each trained step contributes the PPO-clip loss

    L = max(-A * ratio, -A * clip(ratio, 1 - eps_clip, 1 + eps_clip)),   ratio = exp(logp_new - logp_old)

averaged over samples and trained steps. HRF's window-scaled clipping multiplies both adv_clip
and eps_clip by (K - s) / K for a start index s (:func:`window_scale`).

The diversity bonus (docs/METHOD.md, "The diversity bonus") adds lambda * z(b) to the reward's advantage before
the clip, z(b) each sample's leave-one-out Vendi contribution standardised within its group
(:func:`group_standardized`, :func:`with_diversity`).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch


def standardized_advantages(
    rewards: torch.Tensor, clip: float, groups: torch.Tensor | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """(r - mean) / (std + eps), clipped to [-clip, clip].

    rewards: (N,). groups: optional (N,) integer ids; statistics are then taken per group
    (e.g. per sampling batch). std is the population std (unbiased=False), as in ddpo-pytorch.
    """
    rewards = rewards.float()
    if groups is None:
        groups = torch.zeros_like(rewards, dtype=torch.long)
    advantages = torch.empty_like(rewards)
    for group in groups.unique():
        mask = groups == group
        r = rewards[mask]
        advantages[mask] = (r - r.mean()) / (r.std(unbiased=False) + eps)
    return advantages.clamp(-clip, clip)


def group_standardized(values: torch.Tensor, groups: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
    """z = (v - mean) / std within each group (population std), computed in float64: (N,) values, (N,) integer
    ids -> (N,) float32. A group whose std is at most ``tol`` (one row, or all alike) gets 0: it says nothing."""
    values = values.double()
    z = torch.zeros_like(values)
    for group in groups.unique():
        mask = groups == group
        v = values[mask]
        std = v.std(unbiased=False)
        if std > tol:
            z[mask] = (v - v.mean()) / std
    return z.float()


def with_diversity(advantages: torch.Tensor, bonus: torch.Tensor, z: torch.Tensor,
                   weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """A = A_reward + weight * z, before the clip; and what it did: the reward advantage's std, the raw bonus's
    mean and std (Vendi units), the weighted term's std and the share of rows (A_reward != 0) whose sign it flips.

    advantages, bonus, z: (N,); returns (N,) float32 and the notes of an epoch's metrics row.
    """
    term = weight * z
    combined = advantages + term
    moved = advantages != 0
    flips = ((torch.sign(combined) != torch.sign(advantages)) & moved).sum() / max(int(moved.sum()), 1)
    return combined, {
        "adv_reward_std": float(advantages.std(unbiased=False)),
        "diversity_bonus_mean": float(bonus.double().mean()),
        "diversity_bonus_std": float(bonus.double().std(unbiased=False)),
        "diversity_term_std": float(term.std(unbiased=False)),
        "diversity_sign_flips": float(flips),
    }


def ppo_clip_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> torch.Tensor:
    """Per-sample PPO-clip loss (B,): max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped)


def ppo_diagnostics(log_prob: torch.Tensor, old_log_prob: torch.Tensor, clip_range: float) -> dict[str, torch.Tensor]:
    """Approximate KL (0.5 * mean (dlogp)^2) and the fraction of ratios outside the clip range.

    0-d tensors on the inputs' device: reading them is left to the caller, once per epoch, so a
    GPU training loop does not wait for the device after every call.
    """
    with torch.no_grad():
        diff = (log_prob - old_log_prob).float()
        return {
            "approx_kl": 0.5 * (diff**2).mean(),
            "clip_fraction": ((torch.exp(diff) - 1).abs() > clip_range).float().mean(),
        }


def window_scale(start: int, num_steps: int) -> float:
    """HRF's clip scaling (K - s) / K for a window starting at step index s of K."""
    return (num_steps - start) / num_steps


class PerPromptStats:
    """ddpo-pytorch's per-prompt reward statistics: each prompt keeps its last ``buffer`` rewards across epochs,
    and a reward is standardised against its prompt's buffer once that holds ``min_count`` rewards, before then
    against all of this call's rewards. Advantages (r - mean) / (std + 1e-6), population std, as there.

    The buffers are a run's state: :meth:`state` and :meth:`restore` keep them in checkpoints, so a resumed run
    continues them exactly (ddpo-pytorch's resume loses them).
    """

    def __init__(self, buffer: int = 16, min_count: int = 16):
        self.buffer, self.min_count = int(buffer), int(min_count)
        self.stats: dict[str, deque] = {}

    def update(self, prompts: list[str], rewards: torch.Tensor) -> torch.Tensor:
        """Advantages (N,) of ``rewards`` (N,) whose rows have ``prompts``; adds the rewards to the buffers.

        Prompts are taken in sorted order, each prompt's rewards in row order (ddpo-pytorch's ``np.unique``).
        """
        r = rewards.detach().double().cpu().numpy()
        names = np.array(prompts, dtype=object)
        advantages = np.empty_like(r)
        for prompt in sorted(set(prompts)):
            mask = names == prompt
            kept = self.stats.setdefault(prompt, deque(maxlen=self.buffer))
            kept.extend(r[mask].tolist())
            pool = np.array(kept) if len(kept) >= self.min_count else r
            advantages[mask] = (r[mask] - pool.mean()) / (pool.std() + 1e-6)
        return torch.as_tensor(advantages, dtype=torch.float32)

    def state(self) -> dict[str, list[float]]:
        return {prompt: list(kept) for prompt, kept in self.stats.items()}

    def restore(self, state: dict[str, list[float]]) -> None:
        self.stats = {prompt: deque(values, maxlen=self.buffer) for prompt, values in state.items()}
