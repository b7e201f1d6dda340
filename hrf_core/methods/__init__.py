"""The method registry: every fine-tuning method by name, one module each behind :class:`Method`.

Adding a method is one module with a :class:`~hrf_core.methods.base.Method` subclass and one line in
:data:`METHODS` (or :func:`register` at run time, e.g. from a test or a plugin). Everything that depends on a
method's name asks it here: the config's checks, the trainer's start steps and window-only hand-over, the
page's method choices, labels, notes and Duel partner, the settings' CLI and API choices, the frontier's arms,
the experiment's arms and an exported model card.
"""

from __future__ import annotations

from hrf_core.methods.arms import with_coefficient
from hrf_core.methods.base import METHODS, EpochContext, Method, StartState, reference
from hrf_core.methods.ddpo import DDPO
from hrf_core.methods.handover import Handover
from hrf_core.methods.hrf import HRF
from hrf_core.methods.hrf_d import HRFD
from hrf_core.methods.hrf_sliding import HRFSliding

__all__ = ["DDPO", "HRF", "HRFD", "METHODS", "EpochContext", "Handover", "HRFSliding", "Method", "StartState", "get",
           "reference", "register"]

#: Every method by name, in the order the app lists them (the dict lives in base.py, so methods can ask it).
METHODS.update({method.name: method for method in (DDPO(), HRF(), HRFSliding(), HRFD(), Handover())})


#: Add a method under its name (a name already taken is refused; returns it); remove one (tests).
register, unregister = METHODS.register, METHODS.unregister


def trainable() -> list[str]:
    """The names of the methods a run can train, in the app's order."""
    return [name for name, method in METHODS.items() if method.trainable]


def get(name: str, trainable_only: bool = True) -> Method:
    """The method ``name``; ValueError with one line naming the choices when there is none (or, with
    ``trainable_only``, when it cannot be trained)."""
    method = METHODS.get(name)
    if method is None or (trainable_only and not method.trainable):
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(trainable())}")
    return method


def label_of(name: str) -> str:
    """A method's label ("HRF sliding"); an unknown name as it is."""
    method = METHODS.get(name)
    return method.label if method is not None else str(name)


def color_of(name: str, default: str = "#333") -> str:
    method = METHODS.get(name)
    return method.color if method is not None else default


def run_label(config: dict) -> str:
    """A run's short description: its method's words, "· window-only" when the steps before its window sample
    with the base model, and "· diversity λ=<w>" when its advantage has the diversity bonus."""
    method = METHODS.get(config.get("method", "?"))
    if method is None:
        return str(config.get("method", "?"))
    only = " · window-only" if config.get("outside_window") == "base" and method.windowed else ""
    weight = float(config.get("diversity_weight") or 0.0)
    diverse = f" · diversity λ={weight:g}" if weight > 0 else ""
    return method.run_label(config) + only + diverse


def arm_label(config: dict) -> str:
    """A run's arm: the experiment's name for it, else its method's (window, start mode), KL coefficient and
    diversity weight (``+kl<c>``, ``+div<w>``)."""
    extra = config.get("extra") or {}
    if extra.get("arm"):
        return str(extra["arm"])
    name = str(config.get("method", "?"))
    method = METHODS.get(name)
    if method is not None and not method.trainable:
        return method.arm_label(config)
    label = method.arm_label(config) if method is not None else name
    kl = float(config.get("kl_coef") or 0.0)
    weight = float(config.get("diversity_weight") or 0.0)
    label = with_coefficient(label, "kl", kl) if kl > 0 else label
    return with_coefficient(label, "div", weight) if weight > 0 else label


def window_only_split(config: dict) -> int | None:
    """The hand-over step of a window-only run the frontier pairs with the hand-over at the same step, else None."""
    method = METHODS.get(config.get("method", ""))
    return method.window_only_split(config) if method is not None else None
