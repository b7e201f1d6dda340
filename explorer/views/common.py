"""Shared pieces of the tab views: labels, formatting, metric keys, the small model cache (no gradio)."""

from __future__ import annotations

import base64
import html
import io
import math
import threading
from collections import OrderedDict
from typing import Any

_MODEL_LOCK = threading.Lock()  # serialises UI sampling (a scheduler's timesteps are mutable state)
_MODELS: OrderedDict[str, Any] = OrderedDict()
MAX_CACHED_MODELS = 3


def cached_model(name: str):
    """A loaded base model or checkpoint (registry name, Hub id or folder), kept in a small LRU cache."""
    from hrf_core.models.registry import load_base_model

    key = str(name)
    if key in _MODELS:
        _MODELS.move_to_end(key)
        return _MODELS[key]
    model = load_base_model(key)
    _MODELS[key] = model
    while len(_MODELS) > MAX_CACHED_MODELS:
        _MODELS.popitem(last=False)
    return model


_EVALUATORS: dict[tuple, Any] = {}


def cached_evaluator(sample_shape: tuple[int, int, int]):
    """One CPU :class:`~hrf_core.measure.evaluation.Evaluator` per sample shape (Inception/CLIP are built once)."""
    from hrf_core.measure.evaluation import Evaluator

    key = tuple(sample_shape)
    if key not in _EVALUATORS:
        _EVALUATORS[key] = Evaluator(key, "cpu")
    return _EVALUATORS[key]


def runnable(model: str) -> tuple[bool, str]:
    """Whether sampling ``model`` here is quick and needs no download: (ok, reason when not).

    Registry models must be available with no caveat (cached weights, a GPU when they need one);
    anything else (a local folder, a checkpoint) is loaded as is.
    """
    from hrf_core.models.registry import MODELS, availability

    if model not in MODELS:
        return True, ""
    ok, reason = availability(model)
    if ok and reason:  # weights not cached yet: a UI handler must not block on a download
        return False, f"{reason}; start a run to fetch them, or run: hf download {model}"
    return ok, reason


def require_runnable(model: str) -> None:
    ok, reason = runnable(model)
    if not ok:
        raise ValueError(f"{model} cannot be sampled here: {reason}")


def png_data_uri(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"



def notice_html(message: str, kind: str = "info") -> str:
    color = {"info": "#2563eb", "warning": "#d97706", "error": "#dc2626", "ok": "#059669"}.get(kind, "#2563eb")
    return f"<div class='hrf-notice' style='border-left:4px solid {color}'>{html.escape(message)}</div>"



def parse_bounded(label: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high and number == int(number)):
        raise ValueError(f"{label} must be a whole number between {low:g} and {high:g}, got {value!r}")
    return number


