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
#: The numbers in the main form (what every run sets); the prompted model's guidance sits beside its prompts.
MAIN_NUMBERS = ("epochs", "samples_per_epoch", "num_steps", "eval_samples")
PROMPT_NUMBERS = ("guidance",)
#: Settings that only matter on a GPU (precision, memory, LoRA): their own group on the page.
GPU_SETTINGS = ("bf16", "fp16", "grad_checkpointing", "finetune", "lora_rank", "lora_alpha")


def form_groups() -> dict[str, list[str]]:
    """Where each of the form's settings sits on the page: ``main`` numbers, ``prompt`` (beside the prompts),
    ``advanced`` and ``gpu`` (choices, switches and numbers, in the settings table's order)."""
    groups: dict[str, list[str]] = {"main": [], "prompt": [], "advanced": [], "gpu": []}
    for setting in settings.on("form"):
        if setting.name in MAIN_NUMBERS:
            groups["main"].append(setting.name)
        elif setting.name in PROMPT_NUMBERS:
            groups["prompt"].append(setting.name)
        elif setting.name in GPU_SETTINGS:
            groups["gpu"].append(setting.name)
        elif setting.form in ("advanced", "number"):
            groups["advanced"].append(setting.name)
    return groups


def class_prompts(model: Any, text: Any) -> Any:
    """Prompts typed with spaces for a class-conditional model ("3 7") as the commas the settings read ("3,7");
    anything else (a text-to-image prompt has spaces of its own) unchanged."""
    if not isinstance(text, str) or "," in text or "\n" in text or len(text.split()) < 2:
        return text
    from hrf_core.models.registry import takes_class_labels

    return ",".join(text.split()) if takes_class_labels(str(model)) else text


def preset_matches(preset: str | None, values: dict[str, Any]) -> bool:
    """Whether the form still describes ``preset`` exactly (False once any field was edited away from it)."""
    if preset not in PRESETS:
        return False
    try:
        return config_from_form(values, preset).to_dict() == PRESETS[preset].to_dict()
    except ValueError:
        return False


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
    if "prompts" in values:
        values = {**values, "prompts": class_prompts(values.get("model"), values["prompts"])}
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
    if found.free_gb is not None:
        return found.line()
    total = f"about {found.total_gb:.1f} GB" if found.total_gb >= 0.1 else "under 0.1 GB"
    ram = _ram_gb()
    return f"Memory: {total} of this computer's memory" + (f", of {ram:.0f} GB" if ram else "") + " (no GPU here)."


def _ram_gb() -> float | None:
    """This computer's memory in GB (None where the system does not say)."""
    import os

    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (AttributeError, ValueError, OSError):
        return None


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


def reward_info(name: str, model: str | None = None, prompts: Any = None, store=None) -> str:
    """One line about a reward choice, and a warning when the base model already scores near its maximum."""
    from hrf_core.rewards.registry import REWARDS

    spec = REWARDS.get(name)
    if spec is None:
        return f"⚠ unknown reward {name!r}"
    ok, reason = spec.available()
    if not ok:
        return f"⚠ unavailable here: {reason}"
    line = spec.description + (f" ({reason})" if reason else "")
    base = base_reward(store, model, name, prompts) if model else None
    if base is not None and spec.saturated(base):
        line += (f"\n\n⚠ Saturated: the base model already scores {base:.3f} of at most {spec.maximum:g}: "
                 f"fine-tuning has almost nothing to gain. Pick another reward or prompts.")
    return line


def base_reward(store, model: str, reward: str, prompts: Any = None) -> float | None:
    """The base model's mean reward for (model, reward, prompts), where one was measured: a run's epoch-0
    evaluation in ``store`` (examples included), else the model's ``base_metrics.json``; None when unknown."""
    from hrf_core.measure.headline import finite
    from hrf_core.study.base_metrics import load_base_metrics

    try:
        wanted = set(settings.parse_prompts(class_prompts(model, prompts))) if prompts else set()
    except settings.SettingError:
        wanted = set()
    for run in store.list() if store is not None else ():
        config = run.config
        if config.get("model") != model or config.get("reward") != reward or set(config.get("prompts") or ()) != wanted:
            continue
        first = next((r for r in run.metrics() if r.get("epoch") == 0 and finite(r.get("reward_mean"))), None)
        if first is not None:
            return float(first["reward_mean"])
    if wanted:
        return None
    try:
        from hrf_core.models.registry import model_folder

        saved = load_base_metrics(model_folder(model))
    except (ValueError, OSError):
        return None
    return next((float(m["reward_mean"]) for key, m in saved.items()
                 if key.startswith(f"{reward}|") and finite(m.get("reward_mean"))), None)


# ------------------------------------------------------------------------------------ locality profile
def profile_props(profile: dict | None, num_steps: int) -> dict:
    """The window widget's profile props: ``profile`` (D at every step 0..K-1), ``lines`` (the summary line
    for a window starting at each step) and ``plabel`` (what the bars show, or how to get them)."""
    from hrf_core.study.locality import decided_at, suggest_window, summary_line

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
    from hrf_core.study.locality import suggest_window

    if profile is None or profile.get("num_steps") != num_steps:
        raise ValueError("no locality profile for this model, reward and K yet: press “Compute profile” first")
    (start, end), reason = suggest_window(profile)
    return settings.format_window((start, end)), f"Suggested window {start}:{end}: {reason}."


def stored_profile(store, model: str, reward: str, num_steps: int) -> dict | None:
    """The base-model locality profile of (model, reward, K) that the store's cache (or the shipped file)
    holds, else None."""
    from hrf_core.study.locality import ProfileCache, ProfileSettings

    return ProfileCache(store.root / ".profiles").get(model, reward, None, ProfileSettings(num_steps=num_steps))


def start_profile(manager, model: str, reward: str, num_steps: int):
    """Compute the locality profile of (model, reward, K) as a task in ``manager``'s job slot, into the store's
    cache (refused while a run trains); returns the task. The caller has checked model and reward."""
    from hrf_core.study.locality import ProfileCache, ProfileSettings, compute_cached

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

