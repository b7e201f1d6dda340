"""Reinforcement learning of a denoising policy: the DDIM policy and its log-prob, the PPO update, the trainer,
HRF-D's probe, counted compute, data-parallel ranks, sampling, and the one way to start a run
(:mod:`hrf_core.rl.launch`)."""
