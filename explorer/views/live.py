"""The Live tab: the status line and the state the live feed publishes to every viewer.

:func:`live_state` is what a viewer sees: the status, the current run (two in a duel) with its
evaluated rows and grid addresses, earlier runs of the same model and reward (faint history), DDPO's
reference curve for that model and reward, and one line saying where the run stands against it.
The browser draws it (``ui/live.js``); rows are trimmed to what it draws.
"""

from __future__ import annotations

import html
import math

from explorer.views.common import (
    format_seconds,
)
from hrf_core import methods
from hrf_core.measure.headline import PIXEL_PROXY_NOTE, finite
from hrf_core.methods import run_label
from hrf_core.rewards.headline import metric_keys
from hrf_core.store.runs import Run, RunStore

#: Row keys the browser needs (besides the metric keys ``is_*@N``, ``vendi_*@N``, ``class_*@N``).
ROW_KEYS = ("epoch", "handover", "reward_mean", "train_reward_mean", "seconds", "compute", "kl_to_base",
            "clip_fraction", "logged_at")


def history(store: RunStore, model: str, reward: str, exclude=(), limit: int = 5,
            rows_of=None) -> list[tuple[Run, list[dict]]]:
    """Earlier runs of the same model and reward (newest first) with their metric rows."""
    exclude = {exclude} if isinstance(exclude, str) else set(exclude or ())
    out = []
    for run in store.list():
        if run.run_id in exclude:
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



STATE_BADGES = {
    "idle": ("#6b7280", "Idle"), "starting": ("#2563eb", "Starting"), "running": ("#2563eb", "Running"),
    "stopping": ("#d97706", "Stopping"), "done": ("#059669", "Done"), "stopped": ("#d97706", "Stopped"),
    "failed": ("#dc2626", "Failed"), "interrupted": ("#6b7280", "Interrupted"),
    "running elsewhere": ("#6b7280", "Running elsewhere"),
}


def is_example(store: RunStore, run_id: str | None) -> bool:
    """Whether ``run_id`` is one of the example runs that ship with the app (its status reads "Example")."""
    if run_id is None:
        return False
    try:
        return store.get(run_id).is_example
    except ValueError:
        return False


def status_html(snap, example: bool = False) -> str:
    """The status line: badge, run, epoch i/N with a progress bar, seconds per epoch, ETA, phase."""
    if snap.run_id is None:
        return ("<div class='hrf-status'><span class='hrf-badge' style='background:#6b7280'>Idle</span> "
                "No runs yet: choose settings on the <b>Train</b> tab and press <b>Start</b>.</div>")
    color, badge = STATE_BADGES.get(snap.state, ("#6b7280", snap.state.capitalize()))
    if example:
        color, badge = "#7c3aed", "Example"
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
    elif example:
        detail = ("<div class='hrf-phase'>A finished run that ships with the app (metrics and grids, no weights): "
                  "press <b>Start</b> on the Train tab to train your own.</div>")
    label = html.escape(run_label(snap.config)) if snap.config else ""
    return (
        f"<div class='hrf-status' data-state='{html.escape(snap.state)}'>"
        f"<span class='hrf-badge' style='background:{color}'>{badge}</span> "
        f"<b>{label}</b> <code>{html.escape(snap.run_id)}</code> · {' · '.join(parts)}"
        f"<div class='hrf-bar'><div style='width:{fraction * 100:.1f}%;background:{color}'></div></div>"
        f"{detail}</div>")



def snapshot_dict(snap) -> dict:
    """A JSON-friendly summary of a snapshot (for the API): the latest row, not all of them."""
    last = next((r for r in reversed(snap.rows) if "reward_mean" in r), None)
    return {"state": snap.state, "status": snap.status, "run_id": snap.run_id, "epoch": snap.epoch,
            "epochs": snap.epochs, "seconds_per_epoch": snap.seconds_per_epoch, "eta_seconds": snap.eta_seconds,
            "phase": snap.phase, "error": snap.error, "rows": len(snap.rows), "latest_metrics": last or {},
            "grid": snap.grid}



# ------------------------------------------------------------------------------------------- the state
def trim_row(row: dict) -> dict:
    """The keys of a metric row the browser draws, finite numbers only."""
    out = {}
    for key, value in row.items():
        if key in ROW_KEYS or ("@" in key and key.startswith(("is_", "vendi_", "class_"))):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[key] = value
    return out


def grid_url(run: Run, epoch: int) -> str | None:
    """The address of an epoch's grid, relative to the app's root (cache-busted by its modification time), or
    None when it has none."""
    path = run.grid_path(epoch)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    return f"live/grid/{run.run_id}/{epoch}.png?v={stamp}"


def run_payload(run: Run, rows: list[dict]) -> dict:
    """One run as the browser draws it: its label and colour (its method's, the same on every tab), its prompts
    (the grid's rows, in order) and its evaluated rows with their grids' addresses."""
    config = run.config
    method = config.get("method", "")
    payload_rows = []
    for row in rows:
        trimmed = trim_row(row)
        if "epoch" in trimmed and (url := grid_url(run, int(trimmed["epoch"]))):
            trimmed["grid"] = url
        payload_rows.append(trimmed)
    return {"run_id": run.run_id, "label": run_label(config), "method": method, "reward": config.get("reward"),
            "model": config.get("model"), "epochs": config.get("epochs"), "seed": config.get("seed"),
            "color": methods.color_of(method), "example": run.is_example,
            "prompts": list(dict.fromkeys(config.get("prompts") or ())),
            "animate": f"live/animate/{run.run_id}.gif", "rows": payload_rows}


def _gain(value: float) -> str:
    """A reward gain in two significant figures (+0.088, -0.0051)."""
    return f"{value:+.2g}"


def standing(rows: list[dict], curve, keys, handover=None) -> str:
    """One line: where the run's latest evaluation stands against early-stopped DDPO at the same reward, and
    against the training-free hand-over of DDPO's checkpoint of the same seed when ``handover`` (a curve) exists.
    Numbers rounded, one level of brackets at most, the reference named once at the end."""
    if curve is None:
        return ("No DDPO reference for this model and reward yet: a DDPO run (or the frontier experiment) "
                "gives one.")
    reference = f"Reference: early-stopped DDPO, {curve.source}."
    points = [r for r in rows if finite(r.get("reward_mean"))]
    if len(points) < 2:
        return reference
    gain = points[-1]["reward_mean"] - points[0]["reward_mean"]
    # a prompted run stands on its plot's within-prompt measure (the calibrated one); an unconditional one on IS
    order = (keys.diversity, keys.inception) if "_within@" in keys.diversity else (keys.inception, keys.diversity)
    name = next((k.split("@")[0] for k in order if k and k.split("@")[0] in curve.metrics), None)
    if name is None:
        return f"{reference[:-1]}; it has no {keys.diversity.split('@')[0]}."
    label = "IS" if name.startswith("is_") else "calibrated Vendi" if name.startswith("vendi_rbf") else "Vendi"
    mine_key = keys.inception if name.startswith("is_") else keys.diversity
    mine = points[-1].get(mine_key)
    if gain <= 0:
        return f"No reward gain yet: {_gain(gain)}. {reference}"
    if gain > curve.reach:
        return f"At reward gain {_gain(gain)} the run is beyond what DDPO reached: {_gain(curve.reach)}. {reference}"
    mean, std, n = curve.at(gain)[name]
    spread = f" ± {std:.2f}" if n > 1 else ""
    seeds = "" if "seed" in curve.source else f" over {n} seed{'s' if n > 1 else ''}"
    this = f"; this run: {label} {mine:.2f}" if finite(mine) else ""
    other = handover.at(gain).get(name) if handover is not None else None
    also = f"; the {handover.source}: {label} {other[0]:.2f}" if other else ""
    return (f"At reward gain {_gain(gain)}, early-stopped DDPO had {label} {mean:.2f}{spread}{seeds}{this}{also}. "
            f"{reference}")


def live_state(manager, run_id: str | None = None) -> dict:
    """Everything a Live viewer sees, as JSON-ready data (``manager``: a :class:`~explorer.jobs.JobManager`).

    The current job (or the newest run on disk); ``run_id`` instead gives the same view of any run
    (the Runs tab's replay).
    """
    from hrf_core.study import reference

    store = manager.store
    snap = manager.snapshot(run_id)
    config = snap.config or {}
    runs: list[dict] = []
    main_rows = snap.rows
    example = False
    weight = config.get("diversity_weight") or 0.0  # any run on the plot trained with the bonus: off its kernel
    if snap.run_id is not None:
        try:
            main = store.get(snap.run_id)
        except ValueError:
            main = None
        if main is not None:
            example = main.is_example
            runs.append(run_payload(main, main_rows))
            if snap.partner_id is not None:
                try:
                    partner = store.get(snap.partner_id)
                    runs.append(run_payload(partner, manager.rows(partner)))
                    weight = max(weight, partner.config.get("diversity_weight") or 0.0)
                except ValueError:
                    pass
    all_rows = main_rows or [r for run in runs for r in run["rows"]]
    keys = metric_keys(all_rows, config.get("reward"), weight)
    measured = any(keys.diversity in r for r in all_rows)  # before the base model's evaluation: no metric yet
    model, reward = config.get("model"), config.get("reward")
    samples = int(config.get("eval_samples") or 0)
    curve = None
    handover = None
    if model and reward and samples:
        candidates = reference.runs_of(store, model, reward)  # one walk of the store for both curves
        curve = reference.find(store, model, reward, samples, exclude=snap.run_id, rows_of=manager.rows,
                               runs=candidates)
        handover = reference.handover_curve(store, model, reward, config.get("seed"), samples, rows_of=manager.rows,
                                            runs=candidates)
    past = []
    if model and reward:
        shown = [r["run_id"] for r in runs]
        for run, rows in history(store, model, reward, exclude=shown, rows_of=manager.rows):
            pts = [[r[keys.diversity], r["reward_mean"], r.get("epoch", 0)] for r in rows
                   if finite(r.get(keys.diversity)) and finite(r.get("reward_mean"))]
            if len(pts) >= 2:
                past.append({"run_id": run.run_id, "label": run_label(run.config), "example": run.is_example,
                             "color": methods.color_of(run.config.get("method"), "#888"), "points": pts})
    ref = None
    diversity_name = keys.diversity.split("@")[0]
    if curve is not None and diversity_name in curve.metrics:
        base_reward = next((r["reward_mean"] for r in main_rows if finite(r.get("reward_mean"))), None)
        ref = {"source": curve.source, "samples": curve.samples, "metric": diversity_name,
               "base_reward": base_reward, "band": curve.band(diversity_name)}
    status = {"html": status_html(snap, example), "state": snap.state, "active": snap.active, "run_id": snap.run_id,
              "epoch": snap.epoch, "epochs": snap.epochs, "example": example,
              "standing": standing(main_rows, curve, keys, handover) if snap.run_id else "",
              "proxy_note": PIXEL_PROXY_NOTE if measured and diversity_name == "vendi_pixel" else ""}
    return {"status": status, "runs": runs, "history": past, "reference": ref,
            "keys": {"diversity": keys.diversity, "diversity_label": keys.diversity_label if measured else "Vendi",
                     "inception": keys.inception}, "reward": reward or ""}

