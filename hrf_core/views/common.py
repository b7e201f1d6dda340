"""Shared pieces of the tab views: labels, formatting, metric keys, the small model cache (no gradio)."""

from __future__ import annotations

import base64
import html
import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

METHOD_LABELS = {"ddpo": "DDPO", "hrf": "HRF", "hrf-sliding": "HRF sliding", "hrf-d": "HRF-D"}
METHOD_COLORS = {"ddpo": "#d62728", "hrf": "#1f77b4", "hrf-sliding": "#9467bd", "hrf-d": "#2ca02c"}


_MODEL_LOCK = threading.Lock()  # serialises UI sampling (a scheduler's timesteps are mutable state)
_MODELS: OrderedDict[str, Any] = OrderedDict()
MAX_CACHED_MODELS = 3


def cached_model(name: str):
    """A loaded base model or checkpoint (registry name, Hub id or folder), kept in a small LRU cache."""
    from hrf_core.models import load_base_model

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
    """One CPU :class:`~hrf_core.evaluation.Evaluator` per sample shape (Inception/CLIP are built once)."""
    from hrf_core.evaluation import Evaluator

    key = tuple(sample_shape)
    if key not in _EVALUATORS:
        _EVALUATORS[key] = Evaluator(key, "cpu")
    return _EVALUATORS[key]


def runnable(model: str) -> tuple[bool, str]:
    """Whether sampling ``model`` here is quick and needs no download: (ok, reason when not).

    Registry models must be available with no caveat (cached weights, a GPU when they need one);
    anything else (a local folder, a checkpoint) is loaded as is.
    """
    from hrf_core.models import MODELS, availability

    if model not in MODELS:
        return True, ""
    ok, reason = availability(model)
    if ok and reason:  # weights not cached yet: a UI handler must not block on a download
        return False, f"{reason}; start a run to fetch them, or run `hf download {model}`"
    return ok, reason


def _require_runnable(model: str) -> None:
    ok, reason = runnable(model)
    if not ok:
        raise ValueError(f"{model} cannot be sampled here: {reason}")


def png_data_uri(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ------------------------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class MetricKeys:
    """Which row keys the plots use: the headline diversity, its label, and the IS key if any."""

    diversity: str
    diversity_label: str
    inception: str | None


#: Diversity embeddings in order of preference, with their labels. Pixel Vendi is a weak proxy: it does
#: not track class collapse on the digits model (docs/RESULTS.md), so it is labelled as such.
DIVERSITY_LABELS = {
    "vendi_classifier": "Vendi (digit-classifier features)",
    "vendi_clip": "Vendi (CLIP features)",
    "vendi_inception": "Vendi (Inception features)",
    "vendi_pixel": "Vendi (pixels) · weak proxy",
}
INCEPTION_LABELS = {"is_classifier": "Inception Score (digits classifier)", "is_inception": "Inception Score"}
PIXEL_PROXY_NOTE = "pixel Vendi: weak proxy (no learned embedding here: diversity is measured on raw pixels)"


def metric_keys(rows: list[dict]) -> MetricKeys:
    """The best diversity embedding the rows have (classifier, CLIP, Inception, else pixels) and the IS key."""
    keys = {k for row in rows for k in row}

    def first(prefixes) -> str | None:
        for prefix in prefixes:
            found = sorted(k for k in keys if k.startswith(prefix + "@"))
            if found:
                return found[0]
        return None

    inception = first(INCEPTION_LABELS)
    for name, label in DIVERSITY_LABELS.items():
        key = first([name])
        if key:
            return MetricKeys(key, label, inception)
    return MetricKeys("vendi_pixel", DIVERSITY_LABELS["vendi_pixel"], inception)


def evaluated(rows: list[dict], keys: MetricKeys) -> list[dict]:
    return [r for r in rows if _finite(r.get("reward_mean")) and _finite(r.get(keys.diversity))]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def run_label(config: dict) -> str:
    """Short description of a run: method, trained steps, and "· window-only" when the steps before the
    window sample with the base model (``outside_window="base"``)."""
    method = config.get("method", "?")
    k = config.get("num_steps", "?")
    name = METHOD_LABELS.get(method, method)
    only = " · window-only" if config.get("outside_window") == "base" and method != "ddpo" else ""
    if method == "hrf":
        s, e = config.get("window", (0, k))
        return f"{name} {s}–{e - 1}{only}"
    if method == "hrf-sliding":
        clusters = config.get("clusters") or ()
        return f"{name} " + " → ".join(f"{c[0]}–{c[1] - 1}" for c in clusters) + only
    return name + only


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


