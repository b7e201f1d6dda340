"""The arm grammar: a run's name in the frontier's tables and in the experiments' ``--arms``, built and parsed here.

An arm is its method's name, or for a windowed method ``<method>[start,end)`` (:func:`window_label`; ``-fixed``
for a fixed start), then its variants, innermost first: ``/image`` (advantages over each re-noised image's
siblings) and ``/wo`` (window-only: the base model samples the steps before the window), then its coefficients
``+kl<c>`` (the KL penalty c) and ``+div<w>`` (the diversity bonus of weight w), in either order
(:func:`with_coefficient`, :func:`split_coefficient`). A run's own arm is :func:`hrf_core.methods.arm_label`;
the experiments' arms and what they train are :mod:`hrf_core.study.arms`'.
"""

from __future__ import annotations

import re

#: The coefficient suffixes (``+kl0.1``) and the ``TrainConfig`` field each sets, in the order they are parsed.
COEFFICIENTS = {"kl": "kl_coef", "div": "diversity_weight"}
#: The variant suffixes (``/wo``, ``/image``), outermost first, and the ``TrainConfig`` field and value each sets.
VARIANTS = {"/wo": ("outside_window", "base"), "/image": ("adv_scope", "image")}


def window_label(method: str, start: int, end: int) -> str:
    """A windowed method's arm: ``hrf[20,40)``."""
    return f"{method}[{start},{end})"


def parse_window(method: str, arm: str) -> tuple[int, int] | None:
    """(start, end) of ``method``'s windowed arm (``hrf[20,40)`` -> (20, 40)); None for any other arm."""
    match = re.fullmatch(re.escape(method) + r"\[(\d+),(\d+)\)", arm)
    return (int(match[1]), int(match[2])) if match else None


def with_coefficient(arm: str, suffix: str, value: float) -> str:
    """``arm`` with a coefficient (``suffix``: ``kl`` or ``div``): ``ddpo+kl0.1``."""
    return f"{arm}+{suffix}{value:g}"


def coefficients(arm: str) -> dict[str, float]:
    """Every coefficient an arm names, by ``TrainConfig`` field (``ddpo+kl0.1+div0.5`` ->
    {"diversity_weight": 0.5, "kl_coef": 0.1}); {} without one."""
    found: dict[str, float] = {}
    while (split := split_coefficient(arm)) is not None:
        arm, field, value = split
        found.setdefault(field, value)
    return found


def split_coefficient(arm: str) -> tuple[str, str, float] | None:
    """(the arm inside, the ``TrainConfig`` field, its value) of an arm's outermost coefficient
    (``ddpo+kl0.1+div0.5`` -> ("ddpo+kl0.1", "diversity_weight", 0.5)); None without one."""
    for suffix, field in COEFFICIENTS.items():
        match = re.fullmatch(rf"(.+)\+{suffix}([0-9.eE+-]+)", arm)
        if match:
            return match[1], field, float(match[2])
    return None
