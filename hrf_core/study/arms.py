"""The arm grammar of the experiments, and ``frontier-digits``'s arms.

An arm is a method and its variant, named as the tables and ``--arms`` name it: ``ddpo``, ``hrf[20,40)`` (an HRF
window in the experiment's 40-step units), ``hrf-d``, ``hrf-sliding``, ``random-start``, ``renoise-fixed``,
``handover``, with suffixes (outermost first) ``+div<w>`` / ``+kl<c>``, ``/wo`` (window-only) and ``/image``
(per-image advantages). This module builds the names (:func:`window_arm`, :func:`diversity_arms`,
:func:`suggested_arm`) and parses them back (:func:`arm_overrides`, :func:`arm_method`, :func:`handover_source`);
and it says which arms ``frontier-digits`` runs on which task (:class:`Settings`, :func:`arms_of`,
:data:`RUN_ORDER`) and with what config (:func:`arm_config`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hrf_core.config import TrainConfig
from hrf_core.methods import DDPO, HRF, HRFD, Handover, HRFSliding
from hrf_core.methods.arms import VARIANTS, parse_window, split_coefficient, window_label, with_coefficient

NAME = "frontier-digits"
#: The experiment's arms are named after the methods they run (:mod:`hrf_core.methods`).
DDPO_ARM, HRFD_ARM, SLIDING_ARM, HANDOVER_ARM = DDPO.name, HRFD.name, HRFSliding.name, Handover.name


def window_arm(start: int, end: int) -> str:
    """The HRF arm on the window [start, end) (in the experiment's 40-step units): ``hrf[20,40)``."""
    return window_label(HRF.name, start, end)


JPEG_TASKS = ("jpeg-compressibility", "jpeg-incompressibility")
VISIBLE_TASKS = ("ink", "digit:3", "symmetry")
VISIBLE_ARMS = (DDPO_ARM, window_arm(20, 40), window_arm(30, 40), HANDOVER_ARM)
#: The arms repeated with per-image advantages on the ablation tasks (see docs/METHOD.md, "The update").
ABLATION_BASES = (window_arm(20, 40), window_arm(30, 40), HRFD_ARM)
#: The KL coefficients swept (nats per pixel per trained step; see docs/METHOD.md for DPOK's units).
KL_COEFS = (0.1, 1.0)
#: The order units run in, arm by arm over every task and seed: the comparisons that matter most first,
#: so a cut-off experiment leaves whole arms (arms not listed run last); the window the locality profile
#: suggests runs right after the first window-only arm, since it is the window the app recommends.
RUN_ORDER = (DDPO_ARM, window_arm(20, 40), window_arm(30, 40), HRFD_ARM, HANDOVER_ARM,
             f"{window_arm(20, 40)}/image/wo", "suggested/wo", f"{window_arm(30, 40)}/image/wo",
             f"{window_arm(20, 40)}/image/wo+kl0.1", "renoise-fixed", "random-start", f"{window_arm(20, 40)}/image",
             f"{HRFD_ARM}/image", f"{window_arm(30, 40)}/image", f"{DDPO_ARM}+kl0.1", f"{DDPO_ARM}+kl1")
#: Window-only arms (every task of ``window_only_tasks``), besides the locality profile's suggested window.
WINDOW_ONLY_ARMS = (f"{window_arm(20, 40)}/image/wo", f"{window_arm(30, 40)}/image/wo",
                    f"{window_arm(20, 40)}/image/wo+kl0.1")


@dataclass
class Settings:
    """The experiment's shared settings (every arm, every task)."""

    #: a headline claim needs at least 5 seeds (hrf_core.study.frontier.MIN_HEADLINE_SEEDS)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    tasks: list[str] = field(default_factory=lambda: [*JPEG_TASKS, *VISIBLE_TASKS])
    epochs: int = 24
    eval_every: int = 3
    eval_samples: int = 128
    samples: int = 32
    batch_size: int = 16
    siblings: int = 4
    steps: int = 40
    lr: float = 3e-4
    kl_coefs: list[float] = field(default_factory=lambda: list(KL_COEFS))
    #: the diversity bonus's weights: each adds the arms of :func:`diversity_arms` on every task (none by default)
    diversity_weights: list[float] = field(default_factory=list)
    handover_every: int = 5
    model: str = "digits16"
    ablation_tasks: list[str] = field(default_factory=lambda: [*JPEG_TASKS, *VISIBLE_TASKS])
    window_only_tasks: list[str] = field(default_factory=lambda: [*JPEG_TASKS, *VISIBLE_TASKS])
    #: task -> the window start its base-model locality profile suggests (filled from the shipped profiles)
    suggested: dict[str, int] = field(default_factory=dict)
    #: run only these arms ("suggested/wo" for each task's suggested window); empty: every arm
    arms: list[str] = field(default_factory=list)


def full_arms(settings: Settings) -> list[str]:
    return [DDPO_ARM, *(with_coefficient(DDPO_ARM, "kl", c) for c in settings.kl_coefs), window_arm(20, 40),
            window_arm(30, 40),
            HRFD_ARM, "random-start", "renoise-fixed", HANDOVER_ARM, SLIDING_ARM]


def diversity_arms(weight: float) -> list[str]:
    """The arms of one diversity weight: DDPO, window-only HRF [30,40) and the hand-over of the DDPO run."""
    return [with_coefficient(arm, "div", weight) for arm in (DDPO_ARM, f"{window_arm(30, 40)}/image/wo", HANDOVER_ARM)]


def arms_of(task: str, settings: Settings) -> list[str]:
    arms = full_arms(settings) if task in JPEG_TASKS else list(VISIBLE_ARMS)
    arms += [arm for weight in settings.diversity_weights for arm in diversity_arms(weight)]
    ablation = [f"{arm}/image" for arm in arms if arm in ABLATION_BASES] if task in settings.ablation_tasks else []
    window_only: list[str] = []
    if task in settings.window_only_tasks:
        window_only = list(WINDOW_ONLY_ARMS)
        start = settings.suggested.get(task)
        if start is not None and start > 0:
            window_only.insert(2, suggested_arm(start, settings.steps))
    return arms + ablation + list(dict.fromkeys(a for a in window_only if a not in arms + ablation))


def arm_method(arm: str) -> str:
    """The method an arm trains (or, for the hand-over, derives): the longest registered method name it starts
    with; the HRF variants named by their start rule (``renoise-fixed``, ``random-start``, ``suggested``) are HRF."""
    from hrf_core.methods import METHODS

    return next((name for name in sorted(METHODS, key=len, reverse=True) if arm.startswith(name)), HRF.name)


def suggested_arm(start: int, k: int) -> str:
    """The window-only arm at the suggested window [start, K) (in the experiment's 40-step units)."""
    return f"{window_arm(start * 40 // k, 40)}/image/wo"


def arm_role(arm: str, settings: Settings) -> str:
    """An arm's name in :data:`RUN_ORDER` and ``--arms``: ``suggested/wo`` for a suggested-window arm."""
    suggested = {suggested_arm(s, settings.steps) for s in settings.suggested.values()}
    return "suggested/wo" if arm in suggested and arm not in RUN_ORDER else arm


def arm_priority(arm: str, settings: Settings) -> int:
    """Where an arm runs in :data:`RUN_ORDER` (unlisted arms last)."""
    role = arm_role(arm, settings)
    return RUN_ORDER.index(role) if role in RUN_ORDER else len(RUN_ORDER)


def arm_overrides(arm: str, k: int, epochs: int = 2) -> dict:
    """The TrainConfig fields that make an arm (``handover`` trains nothing).

    Suffixes, outermost first: ``+div<w>`` the diversity bonus of weight w and ``+kl<c>`` the KL penalty c (in
    either order), ``/wo`` window-only sampling, ``/image`` per-image advantages (e.g.
    ``hrf[20,40)/image/wo+kl0.1``, ``ddpo+div0.5``).
    """
    coefficient = split_coefficient(arm)
    if coefficient:
        inner, field_name, value = coefficient
        return {**arm_overrides(inner, k, epochs), field_name: value}
    for suffix, (field_name, value) in VARIANTS.items():
        if arm.endswith(suffix):
            return {**arm_overrides(arm[: -len(suffix)], k, epochs), field_name: value}
    if arm == DDPO_ARM:
        return dict(method=DDPO.name, window=(0, k))
    window = parse_window(HRF.name, arm)
    if window:
        return dict(method=HRF.name, window=(window[0] * k // 40, window[1] * k // 40))
    half = max(1, epochs // 2)
    return {HRFD_ARM: dict(method=HRFD.name), "random-start": dict(method=HRF.name, window=(0, k)),
            "renoise-fixed": dict(method=HRF.name, window=(k // 2, k), start_mode="fixed"),
            SLIDING_ARM: dict(method=HRFSliding.name, clusters=((0, k // 2, half), (k // 2, k, max(1, epochs - half))))
            }[arm]


def handover_source(arm: str) -> str | None:
    """The trained arm whose final checkpoint a hand-over arm hands over to (``handover``: ``ddpo``;
    ``handover+div0.5``: ``ddpo+div0.5``), or None for an arm that trains."""
    if arm == HANDOVER_ARM or arm.startswith(HANDOVER_ARM + "+"):
        return DDPO_ARM + arm[len(HANDOVER_ARM):]
    return None


def run_name(task: str, arm: str, seed: int) -> str:
    """A run-store id: ``jpeg-compressibility-hrf-20-40-seed0``."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{task}-{arm}").strip("-")
    return f"{slug}-seed{seed}"


def sitting_config(experiment: str, task: str, arm: str, seed: int, settings, device: str = "cpu",
                   **fields) -> TrainConfig:
    """The config of one unit of an experiment (any settings dataclass with the shared fields: model, epochs,
    steps, samples, batch size, siblings, lr, evaluation): the task is the reward, a checkpoint halfway and at the
    end, ``extra`` names the experiment, arm and task; ``fields``: the arm's own (:func:`arm_overrides`, ...)."""
    s = settings
    return TrainConfig(
        model=s.model, reward=task, seed=seed, epochs=s.epochs, num_steps=s.steps, samples_per_epoch=s.samples,
        batch_size=s.batch_size, siblings=s.siblings, lr=s.lr, eval_every=s.eval_every,
        eval_samples=s.eval_samples, checkpoint_every=max(1, s.epochs // 2), device=device,
        extra={"experiment": experiment, "arm": arm, "task": task}, **fields).validate()


def arm_config(task: str, arm: str, seed: int, settings: Settings, device: str = "cpu") -> TrainConfig:
    """The config of one ``frontier-digits`` unit: the arm's fields (:func:`arm_overrides`) on the shared ones."""
    fields = arm_overrides(arm, settings.steps, settings.epochs)
    return sitting_config(NAME, task, arm, seed, settings, device, **fields)


def suggested_starts(tasks: list[str], model: str, steps: int) -> dict[str, int]:
    """task -> the window start suggested by the shipped base-model locality profile (tasks without one: none)."""
    from hrf_core.study.locality import shipped_profile, suggest_window

    out = {}
    for task in tasks:
        profile = shipped_profile(model, task)
        if profile is not None and profile["num_steps"] == steps:
            out[task] = suggest_window(profile)[0][0]
    return out

