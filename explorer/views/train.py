"""The Train tab's logic without gradio: form <-> config, presets, the window note, model and reward choices,
the locality profile and the x0 strip.

The form's settings, their labels, ranges and checks come from the settings table (:mod:`hrf_core.settings`);
what a method does with the window from the method registry (:mod:`hrf_core.methods`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explorer.views.common import _MODEL_LOCK, cached_model, png_data_uri, require_runnable
from hrf_core import methods, settings
from hrf_core.config import TrainConfig
from hrf_core.presets import PRESETS

NO_PRESET = "custom"
DEFAULT_PRESET = "digits-hrf-late"


def parse_number(name: str, value: Any) -> int | float:
    """A numeric form field, checked by the settings table; ValueError naming the field in words."""
    try:
        return settings.parse(name, value)
    except settings.SettingError as error:
        raise ValueError(error.sentence()) from None


def config_from_form(values: dict[str, Any], preset: str | None = None,
                     base: TrainConfig | None = None) -> TrainConfig:
    """The TrainConfig the Train tab describes: ``values`` by setting name (the form's fields), over the preset's
    config, else ``base``, for the fields the form lacks. ValueError with one line naming the field."""
    base = PRESETS.get(preset or "", base)
    try:
        return settings.from_values(values, base.replace() if base is not None else TrainConfig(), none_is_empty=True)
    except settings.SettingError as error:
        raise ValueError(error.sentence()) from None


def form_from_config(config: TrainConfig) -> dict[str, Any]:
    """The form's field values for ``config`` (inverse of :func:`config_from_form`)."""
    return settings.to_values(config, "form")


def duel_partner(config: TrainConfig) -> TrainConfig:
    """The Duel button's opponent (its method's: DDPO for a windowed method, HRF on the late half for DDPO)."""
    return methods.get(config.method).partner(config)


def window_note(method: str, window: Any, num_steps: Any, epochs: Any = None, start_mode: str = "uniform") -> str:
    """One line under the window selector saying what the chosen method trains."""
    try:
        k = int(num_steps)
        span = settings.parse_window(window, k)
        chosen = methods.get(method)
    except settings.SettingError as error:
        return f"⚠ {error.sentence()}"
    except (TypeError, ValueError) as error:
        return f"⚠ {error}"
    try:
        epochs = int(epochs) if epochs else 2
    except (TypeError, ValueError):
        epochs = 2
    return chosen.note(span, k, epochs, start_mode)


def memory_line(values: dict[str, Any], preset: str | None = None, base: TrainConfig | None = None) -> str:
    """The Train tab's memory line: what the form's run needs on its device (an estimate before it starts:
    :mod:`hrf_core.rl.memory`), and whether it fits; "" while the form does not describe a valid run."""
    from hrf_core.rl.memory import estimate

    try:
        config = config_from_form(values, preset, base)
        found = estimate(config)
    except Exception:  # noqa: BLE001 - an incomplete form or an unreadable model: the start refuses it with its reason
        return ""
    return found.line()


# ------------------------------------------------------------------------------------ availability
def model_choices(extra: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(label, value) for the base-model dropdown: every registered model, marked when unavailable."""
    from hrf_core.models.registry import MODELS, availability

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
    from hrf_core.models.registry import MODELS, availability, model_folder

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
    from hrf_core.rewards.registry import REWARDS

    choices = []
    for name, spec in REWARDS.items():
        ok, reason = spec.available()
        choices.append((name if ok else f"{name} · unavailable", name))
    return choices


def reward_status(name: str) -> tuple[bool, str]:
    """Whether the registered reward ``name`` can run here, and the reason when it cannot."""
    from hrf_core.rewards.registry import REWARDS

    spec = REWARDS.get(name)
    if spec is None:
        return False, f"unknown reward {name!r}: choose one of {', '.join(REWARDS)}"
    ok, reason = spec.available()
    return ok, "" if ok else f"reward {name} is unavailable here: {reason}"


def reward_info(name: str) -> str:
    from hrf_core.rewards.registry import REWARDS

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
    from hrf_core.measure.locality import decided_at, suggest_window, summary_line

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
    from hrf_core.measure.locality import suggest_window

    if profile is None or profile.get("num_steps") != num_steps:
        raise ValueError("no locality profile for this model, reward and K yet: press “Compute profile” first")
    (start, end), reason = suggest_window(profile)
    return settings.format_window((start, end)), f"Suggested window {start}:{end}: {reason}."


def stored_profile(store, model: str, reward: str, num_steps: int) -> dict | None:
    """The base-model locality profile of (model, reward, K) that the store's cache (or the shipped file)
    holds, else None."""
    from hrf_core.measure.locality import ProfileCache, ProfileSettings

    return ProfileCache(store.root / ".profiles").get(model, reward, None, ProfileSettings(num_steps=num_steps))


def start_profile(manager, model: str, reward: str, num_steps: int):
    """Compute the locality profile of (model, reward, K) as a task in ``manager``'s job slot, into the store's
    cache (refused while a run trains); returns the task. The caller has checked model and reward."""
    from hrf_core.measure.locality import ProfileCache, ProfileSettings, compute_cached

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
    require_runnable(model)
    from PIL import Image

    from hrf_core.imaging import image_grid
    from hrf_core.rl.sampling import x0_preview

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

