"""The Train tab: form <-> config, presets, the window note, model and reward choices, the x0 strip."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hrf_core.config import PRESETS, TrainConfig
from hrf_core.views.common import _MODEL_LOCK, METHOD_LABELS, _require_runnable, cached_model, png_data_uri

METHOD_HELP = {
    "ddpo": "DDPO trains every step 0..K-1 from pure noise: the window is ignored.",
    "hrf": "HRF re-noises a sample to a start step drawn in the window and trains only the window's steps.",
    "hrf-sliding": "HRF sliding trains the first half of the window, then the second half (half the epochs each).",
    "hrf-d": "HRF-D picks the start step itself each epoch (reward gain vs. distance): the window is ignored.",
}

#: Numeric form fields: (label, minimum, maximum, type).
NUMBER_FIELDS: dict[str, tuple[str, float, float, type]] = {
    "epochs": ("Epochs", 1, 1000, int),
    "samples_per_epoch": ("Samples per epoch", 2, 4096, int),
    "batch_size": ("Batch", 1, 1024, int),
    "siblings": ("Siblings per image (B)", 1, 256, int),
    "num_steps": ("DDIM steps K", 2, 1000, int),
    "lr": ("Learning rate", 1e-9, 0.1, float),
    "clip_range": ("PPO clip range", 1e-8, 1.0, float),
    "adv_clip": ("Advantage clip", 0.01, 100.0, float),
    "seed": ("Seed", 0, 2**31 - 1, int),
    "eval_every": ("Evaluate every (epochs)", 1, 1000, int),
    "eval_samples": ("Evaluation samples", 2, 4096, int),
    "kl_coef": ("KL penalty to the base (DPOK; 0 = off)", 0.0, 1000.0, float),
}
START_MODES = {"uniform": "uniform in the window (per batch)", "fixed": "fixed at the window start"}
#: The advantage baselines (TrainConfig.adv_scope): which rewards a reward is standardised against.
ADV_SCOPES = {"epoch": "the epoch", "batch": "its sampling batch", "image": "its re-noised image's siblings (HRF)"}
#: What samples the steps before the window (TrainConfig.outside_window).
OUTSIDE_WINDOW = {"tuned": "the fine-tuned network (the paper's HRF)",
                  "base": "the base model (window-only: untrained steps stay the base model's)"}
NO_PRESET = "custom"
DEFAULT_PRESET = "digits-hrf-late"


def parse_window(text: Any, num_steps: int) -> tuple[int, int]:
    """``"20:40"`` -> (20, 40), checked against K = ``num_steps``; ValueError with a clear message."""
    try:
        if isinstance(text, (list, tuple)):
            start, end = (int(v) for v in text)
        else:
            start, end = (int(float(v)) for v in str(text).split(":"))
    except (TypeError, ValueError):
        raise ValueError(f"window must look like START:END (e.g. 20:40), got {text!r}") from None
    if start == end:
        raise ValueError(f"the window {start}:{end} is empty: drag the two handles apart")
    if start > end:
        raise ValueError(f"the window {start}:{end} is inverted: the start must come before the end")
    if start < 0 or end > num_steps:
        raise ValueError(f"the window {start}:{end} must lie within steps 0..{num_steps} (K = {num_steps})")
    return start, end


def format_window(window: tuple[int, int]) -> str:
    return f"{int(window[0])}:{int(window[1])}"


def fit_window(text: Any, num_steps: int) -> tuple[int, int]:
    """The window ``text`` clamped into steps 0..K (non-empty); unparsable text gives the late half."""
    try:
        start, end = (int(float(v)) for v in str(text).split(":"))
    except (TypeError, ValueError):
        start, end = num_steps // 2, num_steps
    end = min(max(end, 1), num_steps)
    return min(max(start, 0), end - 1), end


def parse_number(name: str, value: Any) -> int | float:
    """A numeric field, checked against :data:`NUMBER_FIELDS`; ValueError names the field."""
    label, low, high, kind = NUMBER_FIELDS[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{label} is empty")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{label} must be a finite number, got {value!r}")
    if kind is int:
        if number != int(number):
            raise ValueError(f"{label} must be a whole number, got {value!r}")
        number = int(number)
    if not low <= number <= high:
        shown = (f"{low:g}", f"{high:g}")
        raise ValueError(f"{label} must be between {shown[0]} and {shown[1]}, got {value!r}")
    return number


def sliding_clusters(window: tuple[int, int], epochs: int) -> tuple[tuple[int, int, int], ...]:
    """HRF sliding over a window: its first half for half the epochs, then its second half."""
    start, end = window
    if end - start < 2 or epochs < 2:
        return ((start, end, epochs),)
    middle = (start + end) // 2
    first = epochs // 2
    return ((start, middle, first), (middle, end, epochs - first))


def config_from_form(preset: str | None, model: str, reward: str, method: str, window: Any,
                     start_mode: str = "uniform", adv_scope: str | None = None, outside_window: str | None = None,
                     base: TrainConfig | None = None, **numbers: Any) -> TrainConfig:
    """The TrainConfig the Train tab describes (the preset, else ``base``, supplies the fields the form lacks).

    Raises ValueError with one clear line for any bad field; the result is validated.
    """
    base = PRESETS.get(preset or "", base)
    config = base.replace() if base is not None else TrainConfig()
    if not model or not str(model).strip():
        raise ValueError("choose a base model")
    if not reward:
        raise ValueError("choose a reward")
    if method not in METHOD_LABELS:
        raise ValueError(f"choose a method: {', '.join(METHOD_LABELS.values())}")
    if start_mode not in START_MODES:
        raise ValueError(f"choose a start mode: {', '.join(START_MODES)}")
    if adv_scope is not None and adv_scope not in ADV_SCOPES:
        raise ValueError(f"choose an advantage baseline: {', '.join(ADV_SCOPES)}")
    if outside_window is not None and outside_window not in OUTSIDE_WINDOW:
        raise ValueError(f"choose what samples the steps before the window: {', '.join(OUTSIDE_WINDOW)}")
    if outside_window == "base" and method == "ddpo":
        outside_window = "tuned"  # DDPO trains every step: nothing lies before its window
    unknown = set(numbers) - set(NUMBER_FIELDS)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    values = {name: parse_number(name, value) for name, value in numbers.items()}
    config = config.replace(model=str(model).strip(), reward=reward, method=method, start_mode=start_mode,
                            adv_scope=adv_scope or config.adv_scope,
                            outside_window=outside_window or config.outside_window, **values)
    k = config.num_steps
    span = parse_window(window, k)
    if method == "ddpo":
        config = config.replace(window=(0, k))
    elif method == "hrf-sliding":
        config = config.replace(window=span, clusters=sliding_clusters(span, config.epochs))
    else:
        config = config.replace(window=span)
    check_batches(config.samples_per_epoch, config.batch_size, config.siblings)
    return config.validate()


#: How the form's messages call the settings :func:`check_batches` relates (the API passes the parameter names).
FORM_WORDS = {"samples_per_epoch": "samples per epoch", "batch_size": "the batch", "siblings": "the siblings per image"}


def check_batches(samples: int, batch: int, siblings: int, words: dict[str, str] | None = None) -> None:
    """ValueError unless the batch fits the samples per epoch a whole number of times and the siblings fit the batch."""
    w = words or FORM_WORDS

    def first(text: str) -> str:
        return text if words else text[:1].upper() + text[1:]

    if batch > samples:
        raise ValueError(f"{first(w['batch_size'])} ({batch}) cannot exceed {w['samples_per_epoch']} ({samples})")
    if samples % batch:
        raise ValueError(f"{first(w['samples_per_epoch'])} ({samples}) must be a multiple of {w['batch_size']} ({batch})")
    if batch % siblings:
        raise ValueError(f"{first(w['batch_size'])} ({batch}) must be a multiple of {w['siblings']} ({siblings})")


def form_from_config(config: TrainConfig) -> dict[str, Any]:
    """Field values for the Train tab (inverse of :func:`config_from_form` for its fields)."""
    window = tuple(config.window)
    if config.method == "hrf-sliding" and config.clusters:
        window = (min(c[0] for c in config.clusters), max(c[1] for c in config.clusters))
    values = {name: getattr(config, name) for name in NUMBER_FIELDS}
    return {"model": config.model, "reward": config.reward, "method": config.method,
            "window": format_window(window), "start_mode": config.start_mode, "adv_scope": config.adv_scope,
            "outside_window": config.outside_window, **values}


def duel_partner(config: TrainConfig) -> TrainConfig:
    """The Duel button's opponent: DDPO with the same settings, or HRF on the late half when the form is DDPO."""
    k = config.num_steps
    if config.method == "ddpo":
        return config.replace(method="hrf", window=(k // 2, k), start_mode="uniform", kl_coef=0.0).validate()
    scope = "epoch" if config.adv_scope == "image" else config.adv_scope  # DDPO has no re-noised images
    return config.replace(method="ddpo", window=(0, k), kl_coef=0.0, adv_scope=scope,
                          outside_window="tuned").validate()


def window_note(method: str, window: Any, num_steps: Any, epochs: Any = None, start_mode: str = "uniform") -> str:
    """One line under the window selector saying what the chosen method trains."""
    try:
        k = int(num_steps)
        start, end = parse_window(window, k)
    except (TypeError, ValueError) as error:
        return f"⚠ {error}"
    if method == "ddpo":
        return f"DDPO trains all {k} steps from pure noise; the window is ignored."
    if method == "hrf-d":
        return "HRF-D chooses the start step itself every epoch; the window is ignored."
    if method == "hrf-sliding":
        clusters = sliding_clusters((start, end), int(epochs) if epochs else 2)
        parts = " then ".join(f"steps {s}–{e - 1}" for s, e, _ in clusters)
        return f"HRF sliding trains {parts}; steps 0–{start - 1 if start else 0} are never trained." if start else \
            f"HRF sliding trains {parts}."
    untouched = f"; steps 0–{start - 1} keep the base model's coarse content" if start > 0 else ""
    where = "from a re-noised start at step {start}" if start_mode == "fixed" else "from re-noised starts drawn in it"
    return f"HRF trains steps {start}–{end - 1} ({end - start} of {k}), {where.format(start=start)}{untouched}."


# ------------------------------------------------------------------------------------ availability
def model_choices(extra: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(label, value) for the base-model dropdown: every registered model, marked when unavailable."""
    from hrf_core.models import MODELS, availability

    choices = []
    for name, spec in MODELS.items():
        ok, _ = availability(name)
        where = "GPU" if spec.needs_gpu else "CPU"
        label = f"{name} ({spec.source}, {where})" if ok else f"{name} · unavailable here"
        choices.append((label, name))
    for value in extra:
        if value and value not in MODELS:
            choices.append((f"{Path(value).name} · local folder", value))
    return choices


def model_info(name: str) -> str:
    """One line about a model choice: what it is, and why it cannot run here when it cannot."""
    from hrf_core.models import MODELS, availability, model_folder

    if name in MODELS:
        ok, reason = availability(name)
        text = MODELS[name].description
        if not ok:
            return f"⚠ unavailable here: {reason}"
        return text + (f" ({reason})" if reason else "")
    try:
        folder = model_folder(name)
    except ValueError as error:
        return f"⚠ {error}"
    return f"local diffusers folder {folder}"


def reward_choices() -> list[tuple[str, str]]:
    """(label, value) for the reward dropdown, marked when unavailable."""
    from hrf_core.rewards import REWARDS

    choices = []
    for name, spec in REWARDS.items():
        ok, reason = spec.available()
        choices.append((name if ok else f"{name} · unavailable", name))
    return choices


def reward_status(name: str) -> tuple[bool, str]:
    """Whether the registered reward ``name`` can run here, and the reason when it cannot."""
    from hrf_core.rewards import REWARDS

    spec = REWARDS.get(name)
    if spec is None:
        return False, f"unknown reward {name!r}: choose one of {', '.join(REWARDS)}"
    ok, reason = spec.available()
    return ok, "" if ok else f"reward {name} is unavailable here: {reason}"


def reward_info(name: str) -> str:
    from hrf_core.rewards import REWARDS

    spec = REWARDS.get(name)
    if spec is None:
        return f"⚠ unknown reward {name!r}"
    ok, reason = spec.available()
    if not ok:
        return f"⚠ unavailable here: {reason}"
    return spec.description + (f" ({reason})" if reason else "")


# ------------------------------------------------------------------------------------ locality profile
def profile_props(profile: dict | None, num_steps: int) -> dict:
    """The window widget's profile props: ``profile`` (D at every step 0..K-1), ``lines`` (the summary line
    for a window starting at each step) and ``plabel`` (what the bars show, or how to get them)."""
    from hrf_core.locality import decided_at, suggest_window, summary_line

    if profile is None or profile.get("num_steps") != num_steps:
        return {"profile": [], "lines": [], "plabel": "no locality profile for this model, reward and K yet: "
                "press “Compute profile” to see where this reward is decided"}
    values = [round(min(max(decided_at(profile, i), 0.0), 1.0), 4) for i in range(num_steps)]
    (start, _), _ = suggest_window(profile)
    source = "fine-tuned checkpoint" if profile.get("checkpoint") else "base model"
    trunks = profile.get("settings", {}).get("trunks", "?")
    label = (f"bars: share of {profile['reward']}'s variance decided before each step ({source}, {trunks} trunks; "
             f"suggested window from step {start})")
    return {"profile": values, "lines": [summary_line(profile, i) for i in range(num_steps)], "plabel": label}


def suggested_window(profile: dict | None, num_steps: int) -> tuple[str, str]:
    """(window "s:K", the reason) from the profile; ValueError when there is none for this K."""
    from hrf_core.locality import suggest_window

    if profile is None or profile.get("num_steps") != num_steps:
        raise ValueError("no locality profile for this model, reward and K yet: press “Compute profile” first")
    (start, end), reason = suggest_window(profile)
    return format_window((start, end)), f"Suggested window {start}:{end}: {reason}."


def stored_profile(store, model: str, reward: str, num_steps: int) -> dict | None:
    """The base-model locality profile of (model, reward, K) that the store's cache (or the shipped file)
    holds, else None."""
    from hrf_core.locality import ProfileCache, ProfileSettings

    return ProfileCache(store.root / ".profiles").get(model, reward, None, ProfileSettings(num_steps=num_steps))


def start_profile(manager, model: str, reward: str, num_steps: int):
    """Compute the locality profile of (model, reward, K) as a task in ``manager``'s job slot, into the store's
    cache (refused while a run trains); returns the task. The caller has checked model and reward."""
    from hrf_core.locality import ProfileCache, ProfileSettings, compute_cached

    settings = ProfileSettings(num_steps=num_steps).validate()
    cache = ProfileCache(manager.store.root / ".profiles")
    return manager.run_task(f"the locality profile of {reward} on {model} (K = {num_steps})",
                            lambda stop, progress: compute_cached(cache, model, reward, None, settings,
                                                                  stop=stop.is_set, progress=progress))


# ------------------------------------------------------------------------------------------- x0 strip
_STRIPS: dict[tuple[str, int, int], list[str]] = {}


def x0_strip(model: str, num_steps: int, seeds: int = 3, cell: int = 48) -> list[str]:
    """For each DDIM step 0..K-1, a PNG data URI of the model's x0-predictions (one per seed, stacked).

    Computed once per (model, K, seeds) and cached: shows which steps fix coarse shape, which detail.
    """
    key = (str(model), int(num_steps), int(seeds))
    if key in _STRIPS:
        return _STRIPS[key]
    _require_runnable(model)
    from PIL import Image

    from hrf_core.imaging import image_grid
    from hrf_core.sampling import x0_preview

    with _MODEL_LOCK:
        base = cached_model(model)
        previews = x0_preview(base, num_steps, seed=0, n=seeds).cpu()  # (K, seeds, C, H, W)
    uris = []
    for column in previews:  # (seeds, C, H, W) for one step
        image = image_grid(column, nrow=1, padding=0)
        scale = cell / image.width
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS)
        uris.append(png_data_uri(image))
    _STRIPS[key] = uris
    return uris

