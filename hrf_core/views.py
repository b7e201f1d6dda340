"""What the app shows, computed without gradio: form <-> config, figures, tables, comparisons.

Everything here is plain Python returning plain data, PIL images or plotly figures, so the app
stays UI-only and these functions are testable on their own. Heavy modules (torch, diffusers,
plotly) are imported inside the functions that need them: importing this module is instant.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrf_core.config import PRESETS, TrainConfig
from hrf_core.runs import Run, RunStore

# ---------------------------------------------------------------------------------------------- form
METHOD_LABELS = {"ddpo": "DDPO", "hrf": "HRF", "hrf-sliding": "HRF sliding", "hrf-d": "HRF-D"}
METHOD_HELP = {
    "ddpo": "DDPO trains every step 0..K-1 from pure noise: the window is ignored.",
    "hrf": "HRF re-noises a sample to a start step drawn in the window and trains only the window's steps.",
    "hrf-sliding": "HRF sliding trains the first half of the window, then the second half (half the epochs each).",
    "hrf-d": "HRF-D picks the start step itself each epoch (reward gain vs. distance): the window is ignored.",
}
METHOD_COLORS = {"ddpo": "#d62728", "hrf": "#1f77b4", "hrf-sliding": "#9467bd", "hrf-d": "#2ca02c"}

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
}
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
                     **numbers: Any) -> TrainConfig:
    """The TrainConfig the Train tab describes (the preset supplies the fields the form lacks).

    Raises ValueError with one clear line for any bad field; the result is validated.
    """
    base = PRESETS.get(preset or "", None)
    config = base.replace() if base is not None else TrainConfig()
    if not model or not str(model).strip():
        raise ValueError("choose a base model")
    if not reward:
        raise ValueError("choose a reward")
    if method not in METHOD_LABELS:
        raise ValueError(f"choose a method: {', '.join(METHOD_LABELS.values())}")
    unknown = set(numbers) - set(NUMBER_FIELDS)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    values = {name: parse_number(name, value) for name, value in numbers.items()}
    config = config.replace(model=str(model).strip(), reward=reward, method=method, **values)
    k = config.num_steps
    span = parse_window(window, k)
    if method == "ddpo":
        config = config.replace(window=(0, k))
    elif method == "hrf-sliding":
        config = config.replace(window=span, clusters=sliding_clusters(span, config.epochs))
    else:
        config = config.replace(window=span)
    if config.batch_size > config.samples_per_epoch:
        raise ValueError(f"Batch ({config.batch_size}) cannot exceed samples per epoch ({config.samples_per_epoch})")
    if config.samples_per_epoch % config.batch_size:
        raise ValueError(f"Samples per epoch ({config.samples_per_epoch}) must be a multiple of the batch "
                         f"({config.batch_size})")
    if config.batch_size % config.siblings:
        raise ValueError(f"Batch ({config.batch_size}) must be a multiple of the siblings per image "
                         f"({config.siblings})")
    return config.validate()


def form_from_config(config: TrainConfig) -> dict[str, Any]:
    """Field values for the Train tab (inverse of :func:`config_from_form` for its fields)."""
    window = tuple(config.window)
    if config.method == "hrf-sliding" and config.clusters:
        window = (min(c[0] for c in config.clusters), max(c[1] for c in config.clusters))
    values = {name: getattr(config, name) for name in NUMBER_FIELDS}
    return {"model": config.model, "reward": config.reward, "method": config.method,
            "window": format_window(window), **values}


def window_note(method: str, window: Any, num_steps: Any, epochs: Any = None) -> str:
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
    return f"HRF trains steps {start}–{end - 1} ({end - start} of {k}){untouched}."


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


def reward_info(name: str) -> str:
    from hrf_core.rewards import REWARDS

    spec = REWARDS.get(name)
    if spec is None:
        return f"⚠ unknown reward {name!r}"
    ok, reason = spec.available()
    if not ok:
        return f"⚠ unavailable here: {reason}"
    return spec.description + (f" ({reason})" if reason else "")


# ------------------------------------------------------------------------------ model cache, x0 strip
_MODEL_LOCK = threading.Lock()  # serialises UI sampling (a scheduler's timesteps are mutable state)
_MODELS: OrderedDict[str, Any] = OrderedDict()
_STRIPS: dict[tuple[str, int, int], list[str]] = {}
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


# ------------------------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class MetricKeys:
    """Which row keys the plots use: the headline diversity, its label, and the IS key if any."""

    diversity: str
    diversity_label: str
    inception: str | None


def metric_keys(rows: list[dict]) -> MetricKeys:
    """Vendi on digit-classifier features when the rows have it (``vendi_classifier@N``), else pixels."""
    keys = {k for row in rows for k in row}
    classifier = sorted(k for k in keys if k.startswith("vendi_classifier@"))
    inception = sorted(k for k in keys if k.startswith("is_classifier@") or k.startswith("is_inception@"))
    if classifier:
        return MetricKeys(classifier[0], "Vendi (digit-classifier features)", inception[0] if inception else None)
    return MetricKeys("vendi_pixel", "Vendi (pixels)", inception[0] if inception else None)


def evaluated(rows: list[dict], keys: MetricKeys) -> list[dict]:
    return [r for r in rows if _finite(r.get("reward_mean")) and _finite(r.get(keys.diversity))]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def run_label(config: dict) -> str:
    """Short description of a run: method and trained steps."""
    method = config.get("method", "?")
    k = config.get("num_steps", "?")
    name = METHOD_LABELS.get(method, method)
    if method == "hrf":
        s, e = config.get("window", (0, k))
        return f"{name} {s}–{e - 1}"
    if method == "hrf-sliding":
        clusters = config.get("clusters") or ()
        return f"{name} " + " → ".join(f"{c[0]}–{c[1] - 1}" for c in clusters)
    return name


def history(store: RunStore, model: str, reward: str, exclude: str | None = None, limit: int = 5,
            rows_of=None) -> list[tuple[Run, list[dict]]]:
    """Earlier runs of the same model and reward (newest first) with their metric rows."""
    out = []
    for run in store.list():
        if run.run_id == exclude:
            continue
        config = run.config
        if config.get("model") != model or config.get("reward") != reward:
            continue
        rows = rows_of(run) if rows_of else run.metrics()
        if len(rows) >= 2:
            out.append((run, rows))
        if len(out) >= limit:
            break
    return out


def _empty_figure(message: str, height: int = 380):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#666"})
    fig.update_layout(template="plotly_white", height=height, xaxis={"visible": False},
                      yaxis={"visible": False}, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def trajectory_figure(rows: list[dict], config: dict, past: list[tuple[Run, list[dict]]] = ()):
    """Reward (y) against diversity (x), one point per evaluated epoch; epoch 0 is the base model.

    Earlier runs of the same model and reward are drawn faintly underneath.
    """
    import plotly.graph_objects as go

    keys = metric_keys(rows or [r for _, rs in past for r in rs])
    points = evaluated(rows, keys)
    if not points and not past:
        return _empty_figure("Press Start: the base model's point appears first,<br>"
                             "then one point per epoch.")
    fig = go.Figure()
    for run, past_rows in past:
        pts = evaluated(past_rows, keys)
        if len(pts) < 2:
            continue
        color = METHOD_COLORS.get(run.config.get("method"), "#888")
        fig.add_trace(go.Scatter(
            x=[r[keys.diversity] for r in pts], y=[r["reward_mean"] for r in pts], mode="lines+markers",
            line={"color": color, "width": 1.5}, marker={"size": 4, "color": color}, opacity=0.28,
            name=f"{run_label(run.config)} · earlier run", legendgroup=run.run_id, showlegend=True,
            hovertemplate=f"{html.escape(run_label(run.config))} · {run.run_id}<br>epoch %{{text}}<br>"
                          "Vendi %{x:.2f} · reward %{y:.3f}<extra></extra>",
            text=[r["epoch"] for r in pts]))
    if points:
        method = config.get("method") or points[-1].get("method", "")
        color = METHOD_COLORS.get(method, "#333")
        label = run_label(config) if config else METHOD_LABELS.get(method, method)
        fig.add_trace(go.Scatter(
            x=[r[keys.diversity] for r in points], y=[r["reward_mean"] for r in points], mode="lines+markers",
            line={"color": color, "width": 3}, marker={"size": 9, "color": color}, name=label,
            text=[r["epoch"] for r in points],
            hovertemplate="epoch %{text}<br>Vendi %{x:.2f} · reward %{y:.3f}<extra></extra>"))
        origin = points[0]
        fig.add_trace(go.Scatter(
            x=[origin[keys.diversity]], y=[origin["reward_mean"]], mode="markers+text", name="base model",
            marker={"size": 16, "symbol": "star", "color": "#ffbf00", "line": {"width": 1, "color": "#333"}},
            text=["base"], textposition="bottom center", hoverinfo="skip", cliponaxis=False))
        if len(points) > 1:
            last = points[-1]
            fig.add_trace(go.Scatter(
                x=[last[keys.diversity]], y=[last["reward_mean"]], mode="markers+text", showlegend=False,
                marker={"size": 15, "color": color, "line": {"width": 2, "color": "white"}},
                text=[f"epoch {last['epoch']}"], textposition="top center", hoverinfo="skip", cliponaxis=False))
    reward = config.get("reward", "") if config else ""
    fig.update_layout(
        template="plotly_white", height=400, margin={"l": 60, "r": 20, "t": 40, "b": 50},
        title={"text": "Reward vs diversity · goal: up without drifting left", "font": {"size": 15}},
        xaxis_title=f"diversity: {keys.diversity_label} →", yaxis_title=f"reward: {reward or 'mean'} ↑",
        legend={"orientation": "h", "y": -0.2, "x": 0}, hovermode="closest")
    return fig


def curves_figure(rows: list[dict]):
    """Per-epoch curves: reward (eval and training), Vendi, and the Inception Score (or PPO clip fraction)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not rows:
        return _empty_figure("Per-epoch reward, Vendi and Inception Score appear here.", height=280)
    keys = metric_keys(rows)
    third = (keys.inception, "Inception Score") if keys.inception else ("clip_fraction", "PPO clip fraction")
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Reward", keys.diversity_label, third[1]),
                        horizontal_spacing=0.08)

    def series(key: str) -> tuple[list, list]:
        pts = [r for r in rows if _finite(r.get(key))]
        return [r["epoch"] for r in pts], [r[key] for r in pts]

    x, y = series("reward_mean")
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name="eval reward", line={"color": "#1f77b4"}),
                  row=1, col=1)
    x, y = series("train_reward_mean")
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="training reward",
                             line={"color": "#1f77b4", "dash": "dot", "width": 1}, opacity=0.6), row=1, col=1)
    x, y = series(keys.diversity)
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name="Vendi", line={"color": "#ff7f0e"}),
                  row=1, col=2)
    x, y = series(third[0])
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=third[1], line={"color": "#2ca02c"}),
                  row=1, col=3)
    fig.update_layout(template="plotly_white", height=280, showlegend=False,
                      margin={"l": 50, "r": 20, "t": 40, "b": 40})
    fig.update_xaxes(title_text="epoch", dtick=None, rangemode="tozero")
    return fig


# -------------------------------------------------------------------------------------------- status
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


STATE_BADGES = {
    "idle": ("#6b7280", "Idle"), "starting": ("#2563eb", "Starting"), "running": ("#2563eb", "Running"),
    "stopping": ("#d97706", "Stopping"), "done": ("#059669", "Done"), "stopped": ("#d97706", "Stopped"),
    "failed": ("#dc2626", "Failed"), "interrupted": ("#6b7280", "Interrupted"),
    "running elsewhere": ("#6b7280", "Running elsewhere"),
}


def status_html(snap) -> str:
    """The status line: badge, run, epoch i/N with a progress bar, seconds per epoch, ETA, phase."""
    if snap.run_id is None:
        return ("<div class='hrf-status'><span class='hrf-badge' style='background:#6b7280'>Idle</span> "
                "No runs yet: choose settings on the <b>Train</b> tab and press <b>Start</b>.</div>")
    color, badge = STATE_BADGES.get(snap.state, ("#6b7280", snap.state.capitalize()))
    fraction = min(1.0, snap.epoch / snap.epochs) if snap.epochs else 0.0
    parts = [f"epoch <b>{snap.epoch}/{snap.epochs}</b>"]
    if snap.seconds_per_epoch is not None:
        parts.append(f"{snap.seconds_per_epoch:.1f} s/epoch")
    if snap.active:
        parts.append(f"ETA {format_seconds(snap.eta_seconds) if snap.eta_seconds is not None else 'estimating…'}")
    elif snap.elapsed_seconds is not None:
        parts.append(f"took {format_seconds(snap.elapsed_seconds)}")
    detail = ""
    if snap.state == "failed":
        detail = f"<div class='hrf-error'>{html.escape(snap.error or 'unknown error')}</div>"
    elif snap.phase and snap.active:
        detail = f"<div class='hrf-phase'>{html.escape(snap.phase)}</div>"
    label = html.escape(run_label(snap.config)) if snap.config else ""
    return (
        f"<div class='hrf-status' data-state='{html.escape(snap.state)}'>"
        f"<span class='hrf-badge' style='background:{color}'>{badge}</span> "
        f"<b>{label}</b> <code>{html.escape(snap.run_id)}</code> · {' · '.join(parts)}"
        f"<div class='hrf-bar'><div style='width:{fraction * 100:.1f}%;background:{color}'></div></div>"
        f"{detail}</div>")


def notice_html(message: str, kind: str = "info") -> str:
    color = {"info": "#2563eb", "warning": "#d97706", "error": "#dc2626", "ok": "#059669"}.get(kind, "#2563eb")
    return f"<div class='hrf-notice' style='border-left:4px solid {color}'>{html.escape(message)}</div>"


def snapshot_dict(snap) -> dict:
    """A JSON-friendly summary of a snapshot (for the API): the latest row, not all of them."""
    last = next((r for r in reversed(snap.rows) if "reward_mean" in r), None)
    return {"state": snap.state, "status": snap.status, "run_id": snap.run_id, "epoch": snap.epoch,
            "epochs": snap.epochs, "seconds_per_epoch": snap.seconds_per_epoch, "eta_seconds": snap.eta_seconds,
            "phase": snap.phase, "error": snap.error, "rows": len(snap.rows), "latest_metrics": last or {},
            "grid": snap.grid}


# ------------------------------------------------------------------------------------------ run table
RUN_COLUMNS = ["run", "status", "model", "reward", "method", "epochs", "reward", "Vendi", "IS", "s/epoch"]


def _arrow(rows: list[dict], key: str | None, digits: int = 2) -> str:
    if not key:
        return "–"
    values = [r[key] for r in rows if _finite(r.get(key))]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values[0]:.{digits}f} → {values[-1]:.{digits}f}"


def runs_table(store: RunStore, snapshot_of=None) -> list[list[Any]]:
    """One row per run on disk (newest first), columns :data:`RUN_COLUMNS`."""
    table = []
    for run in store.list():
        config = run.config
        snap = snapshot_of(run.run_id) if snapshot_of else None
        rows = snap.rows if snap is not None else run.metrics()
        status = snap.status if snap is not None else run.status.get("state", "?")
        keys = metric_keys(rows)
        trained = [r["seconds"] for r in rows if r.get("epoch", 0) >= 1 and _finite(r.get("seconds"))]
        done = max((r.get("epoch", 0) for r in rows), default=0)
        model = str(config.get("model", "?"))
        table.append([
            run.run_id, status, Path(model).name if "/" in model and Path(model).exists() else model,
            config.get("reward", "?"), run_label(config), f"{done}/{config.get('epochs', '?')}",
            _arrow(rows, "reward_mean", 3), _arrow(rows, keys.diversity), _arrow(rows, keys.inception),
            f"{sum(trained) / len(trained):.1f}" if trained else "–",
        ])
    return table


def run_details(run: Run) -> dict:
    """The config and the last evaluated metrics of a run, for a JSON view."""
    rows = run.metrics()
    last = next((r for r in reversed(rows) if "reward_mean" in r), {})
    return {"status": run.status, "config": run.config, "last_metrics": last}


# ------------------------------------------------------------------------------------ sample sources
def source_choices(store: RunStore, models: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(label, value) of everything one can sample from: base models, then every checkpoint of every run.

    Values: ``base:<model>`` or ``ckpt:<run_id>:<checkpoint folder name>``.
    """
    seen: list[str] = []
    for name in models:
        if name not in seen:
            seen.append(name)
    runs = store.list()
    for run in runs:
        model = run.config.get("model")
        if model and model not in seen:
            seen.append(model)
    choices = [(f"{Path(m).name if '/' in m and Path(m).exists() else m} · base model", f"base:{m}") for m in seen]
    for run in runs:
        for checkpoint in reversed(run.checkpoints()):
            epoch = int(checkpoint.name.split("-")[1])
            choices.append((f"{run.run_id} · epoch {epoch} · {run_label(run.config)}",
                            f"ckpt:{run.run_id}:{checkpoint.name}"))
    return choices


def checkpoint_choices(run: Run) -> list[tuple[str, str]]:
    return [(f"epoch {int(c.name.split('-')[1])}", f"ckpt:{run.run_id}:{c.name}") for c in reversed(run.checkpoints())]


@dataclass(frozen=True)
class Source:
    """A resolved sample source: what to load, its base-model family, and a short label."""

    load: str  # registry name, Hub id or folder to load
    family: str  # the base model it descends from (decides the evaluation embeddings)
    label: str
    reward: str | None = None
    num_steps: int | None = None  # the K its run was trained with


def resolve_source(store: RunStore, value: str) -> Source:
    """``base:<model>`` or ``ckpt:<run_id>:<epoch-NNNN>`` -> :class:`Source` (validated)."""
    if not value or not isinstance(value, str):
        raise ValueError("choose what to sample from")
    if value.startswith("base:"):
        model = value[len("base:"):]
        return Source(load=model, family=model, label=f"{Path(model).name} (base)")
    if value.startswith("ckpt:"):
        try:
            _, run_id, folder = value.split(":", 2)
        except ValueError:
            raise ValueError(f"bad checkpoint reference {value!r}") from None
        run = store.get(run_id)
        for checkpoint in run.checkpoints():
            if checkpoint.name == folder:
                epoch = int(folder.split("-")[1])
                return Source(load=str(checkpoint), family=str(run.config.get("model", "")),
                              label=f"{run_label(run.config)} · epoch {epoch}", reward=run.config.get("reward"),
                              num_steps=run.config.get("num_steps"))
        raise ValueError(f"run {run_id} has no checkpoint {folder}")
    raise ValueError(f"unknown sample source {value!r}")


def sample_grid(store: RunStore, value: str, n: int = 16, seed: int = 0, num_steps: int | None = None):
    """A grid (PIL) of ``n`` samples from a base model or checkpoint with a fixed seed (K: its run's)."""
    from hrf_core.imaging import image_grid
    from hrf_core.sampling import sample_from

    n = int(parse_bounded("Samples", n, 1, 256))
    seed = int(parse_bounded("Seed", seed, 0, 2**31 - 1))
    source = resolve_source(store, value)
    _require_runnable(source.family)
    num_steps = int(num_steps or source.num_steps or 40)
    with _MODEL_LOCK:
        base = cached_model(source.load)
        images = sample_from(base, n, seed, num_steps=num_steps).cpu()
    return image_grid(images, scale=max(1, 128 // images.shape[-1]))


def parse_bounded(label: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high and number == int(number)):
        raise ValueError(f"{label} must be a whole number between {low:g} and {high:g}, got {value!r}")
    return number


@dataclass
class Comparison:
    grid_a: Any
    grid_b: Any
    label_a: str
    label_b: str
    table: list[list[Any]]
    figure: Any


METRIC_NAMES = {
    "reward_mean": "reward (mean)", "reward_std": "reward (std)", "vendi_pixel": "Vendi (pixels)",
}


def _metric_name(key: str) -> str:
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    name, _, n = key.partition("@")
    pretty = {"vendi_classifier": "Vendi (classifier)", "vendi_pixel": "Vendi (pixels)",
              "is_classifier": "Inception Score (classifier)", "class_entropy": "class entropy (bits)",
              "class_coverage": "class coverage"}.get(name, name)
    return pretty


def compare(store: RunStore, value_a: str, value_b: str, n: int = 32, seed: int = 0, reward: str | None = None,
            num_steps: int | None = None, thumbnails: bool = False) -> Comparison:
    """Same-seed samples of two sources side by side, their metrics, and a joint 2D projection.

    Both are sampled with the same seeds and K (default: the K their runs were trained with, else 40).
    """
    import torch

    from hrf_core.evaluation import Evaluator
    from hrf_core.features import ClassifierFeatures, make_feature_extractor
    from hrf_core.imaging import image_grid
    from hrf_core.projection import project_pair, projection_figure
    from hrf_core.rewards import REWARDS, make_reward
    from hrf_core.sampling import sample_from

    n = int(parse_bounded("Samples", n, 4, 256))
    seed = int(parse_bounded("Seed", seed, 0, 2**31 - 1))
    a, b = resolve_source(store, value_a), resolve_source(store, value_b)
    num_steps = int(num_steps or b.num_steps or a.num_steps or 40)
    _require_runnable(a.family)
    _require_runnable(b.family)
    reward = reward or a.reward or b.reward or "jpeg-compressibility"
    if reward not in REWARDS:
        raise ValueError(f"unknown reward {reward!r}")
    ok, why = REWARDS[reward].available()
    if not ok:
        raise ValueError(f"reward {reward} is unavailable: {why}")
    with _MODEL_LOCK:
        model_a, model_b = cached_model(a.load), cached_model(b.load)
        if model_a.sample_shape != model_b.sample_shape:
            raise ValueError("these two produce different image sizes: compare checkpoints of the same base model")
        images_a = sample_from(model_a, n, seed, num_steps=num_steps).cpu()
        images_b = sample_from(model_b, n, seed, num_steps=num_steps).cpu()
    reward_fn = make_reward(reward, device="cpu")
    evaluator = Evaluator(model_a.sample_shape, torch.device("cpu"))
    metrics_a = evaluator(images_a, reward_fn(images_a).float().cpu())
    metrics_b = evaluator(images_b, reward_fn(images_b).float().cpu())
    keys = [k for k in metrics_a if k in metrics_b and k not in ("eval_samples", "vendi_pixel")]
    order = sorted(keys, key=lambda k: (not k.startswith("reward"), k))
    table = [[_metric_name(k), round(float(metrics_a[k]), 4), round(float(metrics_b[k]), 4),
              f"{float(metrics_b[k]) - float(metrics_a[k]):+.4f}"] for k in order]
    if evaluator.classifier is not None:
        extractor, space = ClassifierFeatures(evaluator.classifier), "digit-classifier features"
    else:
        extractor, space = make_feature_extractor("pixel"), "pixels"
    projection = project_pair(extractor(images_a), extractor(images_b), seeds_a=range(seed, seed + n))
    figure = projection_figure(projection, images_a, images_b, labels=(f"A · {a.label}", f"B · {b.label}"),
                               thumbnails=thumbnails and n <= 64,
                               thumb_size=32, title=f"Same seeds, joint PCA of {space}")
    figure.update_layout(height=460, margin={"l": 50, "r": 20, "t": 60, "b": 50})
    scale = max(1, 128 // images_a.shape[-1])
    return Comparison(image_grid(images_a, scale=scale), image_grid(images_b, scale=scale), a.label, b.label,
                      table, figure)


# ------------------------------------------------------------------------------- results (paper) hook
def results_content(docs_dir: Path) -> tuple[str, list[tuple[str, str]]] | None:
    """``docs/RESULTS.md`` and the figures in ``docs/results/`` when they exist, else None.

    HOOK: the paper-reproduction experiment (``hrf_core.experiment``) writes these; the Results tab
    shows whatever is there, so nothing here depends on their exact contents.
    """
    results = docs_dir / "results"
    markdown_file = docs_dir / "RESULTS.md"
    if not results.is_dir() and not markdown_file.is_file():
        return None
    text = markdown_file.read_text() if markdown_file.is_file() else ""
    figures = [(str(p), p.stem.replace("_", " ").replace("-", " ")) for p in sorted(results.glob("*.png"))] \
        if results.is_dir() else []
    if not text:
        summaries = sorted(results.glob("*.json")) if results.is_dir() else []
        if summaries:
            try:
                data = json.loads(summaries[0].read_text())
                text = f"```json\n{json.dumps(data, indent=2)[:6000]}\n```"
            except (OSError, json.JSONDecodeError):
                text = ""
    return text, figures
