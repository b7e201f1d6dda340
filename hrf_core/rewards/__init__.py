"""Rewards: the registry of reward factories (JPEG, ink, symmetry, digit, aesthetic, your own function)."""
