"""Reinforcement learning of a denoising policy: the DDIM policy and its log-prob, the PPO update, the trainer,
counted compute, data-parallel ranks, sampling, and the one way to start a run (:mod:`hrf_core.rl.launch`)."""
