"""HRF Explorer: the Gradio app (UI only: layout, events, serving; the work lives in hrf_core).

Run ``python app.py`` and open http://127.0.0.1:7860 (``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``
override the address; ``HRF_RUNS_DIR`` the run store (default ``runs/``, or ``/data/runs`` on a Space with
persistent storage: :mod:`hrf_core.storage`); ``GRADIO_ROOT_PATH`` a path prefix; ``HRF_PRESENTER_TOKEN`` turns on
presenter mode; ``HRF_EXTRA_REWARDS`` registers the operator's own rewards).

One global :class:`~hrf_core.jobs.JobManager` runs one fine-tuning job at a time in a background
thread. What viewers see comes from one :class:`~hrf_core.livefeed.LiveFeed` per process, published
once per change and pushed to every open page over one server-sent-events stream each
(``/live/stream``); the browser draws it (``ui/live.js``). So a viewer costs the server nothing while
nothing changes, and 100 viewers cost what one does. ``/?view=1`` is a read-only page of the Live tab
alone, without Gradio, for a slide. Gradio serves the controls: Train, Compare, Runs, Results.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import gzip
import inspect
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Gradio recomputes an analytics summary over up to 10,000 past events after every queued event by
# default; once per 1,000 events is plenty for an app that shows none of it.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
# Idle OpenMP threads sleep instead of spinning (a spinning training thread starves the UI on small CPUs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
from fastapi import FastAPI, HTTPException, Request  # noqa: E402
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse  # noqa: E402

from hrf_core import CHECKPOINTS_DIR, REPO_ROOT, presenter, serving, storage  # noqa: E402
from hrf_core.animate import ReplayCache  # noqa: E402
from hrf_core.config import PRESETS, TrainConfig  # noqa: E402
from hrf_core.examples import EXAMPLES_DIR  # noqa: E402
from hrf_core.jobs import MAX_MORE_EPOCHS, JobManager, default_torch_threads  # noqa: E402
from hrf_core.livefeed import LiveFeed  # noqa: E402
from hrf_core.runs import RunStore  # noqa: E402
from hrf_core.views import api as scripting  # noqa: E402
from hrf_core.views import common, compare, live, results, runs, train  # noqa: E402

log = logging.getLogger("hrf_explorer")

STORAGE = storage.runs_location()  # HRF_RUNS_DIR, a Space's /data/runs, else runs/ (never a read-only repository)
RUNS_DIR = STORAGE.path
DOCS_DIR = REPO_ROOT / "docs"
UI_DIR = REPO_ROOT / "ui"
#: Gradio's queue polls for work every 1 ms when idle (10 ms for progress): 7% of a core with nobody
#: watching. 100 / 200 ms add no visible latency to a button (a click starts up to 0.1 s later) and take
#: the idle server under 0.5% of a core (bench/README.md). ``HRF_QUEUE_SLEEP`` sets the queue's interval
#: (the progress loop's is twice it); the benchmark sets Gradio's own 0.001 to measure the difference.
QUEUE_SLEEP_SECONDS = float(os.environ.get("HRF_QUEUE_SLEEP", "0.1"))
PROGRESS_SLEEP_SECONDS = 2 * QUEUE_SLEEP_SECONDS
#: Seconds a Gradio session is kept after its last event once no page (heartbeat) holds it open; see
#: :class:`SessionJanitor`. ``HRF_SESSION_GRACE`` sets it.
SESSION_GRACE_SECONDS = float(os.environ.get("HRF_SESSION_GRACE", "300"))
KEYS_HELP = "Keys: S start · D duel · X stop · 1–5 tabs · ←/→ replay epochs · L latest"

_MANAGER: JobManager | None = None
_MANAGER_LOCK = threading.Lock()


def global_manager() -> JobManager:
    """The one job manager of this process (shared by every visitor)."""
    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            _MANAGER = JobManager(RunStore(RUNS_DIR, examples=EXAMPLES_DIR), torch_threads=default_torch_threads())
        return _MANAGER


def default_config() -> TrainConfig:
    return PRESETS[train.DEFAULT_PRESET].replace()


NUMBER_NAMES = tuple(train.NUMBER_FIELDS)

# ------------------------------------------------------------------------------- the window widget
#: The window widget (a gr.HTML template: two handles over the DDIM steps, the x0 strip, the locality profile's
#: bars and line) and the page's own CSS, kept in ui/ beside the live panel's files.
WINDOW_TEMPLATE = (UI_DIR / "window.html").read_text()
WINDOW_CSS = (UI_DIR / "window.css").read_text()
WINDOW_JS = (UI_DIR / "window.js").read_text()
APP_CSS = (UI_DIR / "app.css").read_text()

# relative to the page: the app may be served under any path prefix (a reverse proxy, GRADIO_ROOT_PATH)
HEAD = ('<link rel="stylesheet" href="live/assets/live.css">'
        '<script src="live/assets/plotly.min.js" defer></script>'
        '<script src="live/assets/live.js" defer></script>')


def _refusal(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _shown(error: BaseException, prefix: str = "") -> str:
    """The one way the page shows a failure: a warning toast and an error notice (returned as HTML), on one line.

    A refusal (ValueError, PermissionError) is the user's to fix and shows its message; anything else is logged
    with its traceback (call this inside the ``except``) and shows its type too. The page never crashes.
    """
    if isinstance(error, (ValueError, PermissionError)):
        text = f"{prefix}{_refusal(error)}"
    else:
        log.exception("handler failed")
        text = f"{prefix}{type(error).__name__}: {_refusal(error)}"
    gr.Warning(text)
    return common.notice_html(text, "error")


def _safe(fallback_outputs: int):
    """Turn any exception of a handler into a warning toast; outputs are left unchanged (never crash).

    A presenter-mode refusal is an error instead, so an API client gets it as an exception, not an empty result.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except PermissionError as error:
                raise gr.Error(_refusal(error)) from None
            except Exception as error:  # noqa: BLE001 - a talk must go on
                _shown(error, "" if isinstance(error, ValueError) else f"{fn.__name__} failed: ")
            skips = tuple(gr.skip() for _ in range(fallback_outputs))
            return skips[0] if fallback_outputs == 1 else skips

        return wrapper

    return decorate


class Lab:
    """The app's handlers (plain methods, callable directly in tests) and its layout (:meth:`build`)."""

    def __init__(self, manager: JobManager | None = None, defaults: TrainConfig | None = None,
                 preset: str | None = None, docs_dir: Path = DOCS_DIR, storage_note: str | None = None):
        #: one line about where runs are kept (a Space with or without persistent storage), shown once
        self.storage_note = (STORAGE.note if manager is None else "") if storage_note is None else storage_note
        self.manager = manager or global_manager()
        self.store = self.manager.store
        self.defaults = defaults or default_config()
        self.preset = preset if preset is not None else (train.DEFAULT_PRESET if defaults is None else train.NO_PRESET)
        self.docs_dir = docs_dir
        self.feed = LiveFeed(build=lambda: live.live_state(self.manager), key=self.manager.live_key)
        self._status: tuple[int, dict] | None = None
        self.guard = presenter.Guard()  # wrong presenter tokens, rate-limited per client

    # -- Train tab ---------------------------------------------------------------------------------
    def _config(self, preset, model, reward, method, window, start_mode, adv_scope, outside, numbers) -> TrainConfig:
        return train.config_from_form(preset, model, reward, method, window, start_mode, adv_scope, outside,
                                      **dict(zip(NUMBER_NAMES, numbers, strict=True)))

    def start(self, token, preset, model, reward, method, window, start_mode, adv_scope, outside, *numbers):
        """Validate the form and start a run; on a problem: a warning, the reason in the notice."""
        return self._launch(token, lambda: [self.manager.start(
            self._config(preset, model, reward, method, window, start_mode, adv_scope, outside, numbers))])

    def duel(self, token, preset, model, reward, method, window, start_mode, adv_scope, outside, *numbers):
        """Train the form's configuration against DDPO (or, for DDPO, against HRF on the late half), side by side."""
        def go():
            config = self._config(preset, model, reward, method, window, start_mode, adv_scope, outside, numbers)
            return list(self.manager.start_duel(config, train.duel_partner(config)))

        return self._launch(token, go)

    def _launch(self, token, go):
        try:
            presenter.check(token)
            run_ids = go()
        except Exception as error:  # noqa: BLE001 - refusals and failures alike leave the page up
            return _shown(error, "Not started: "), gr.Tabs()
        return common.notice_html(f"Started {' and '.join(run_ids)}.", "ok"), gr.Tabs(selected="live")

    def stop(self, token):
        try:
            presenter.check(token)
        except PermissionError as error:
            return _shown(error)
        if self.manager.stop():
            return common.notice_html("Stopping after the current denoising step…", "warning")
        gr.Info("Nothing is running.")
        return common.notice_html("Nothing is running.", "info")

    def fill_preset(self, preset):
        """Field values of a preset (model, reward, method, window, start mode, advantage baseline, outside the
        window, note, numbers), or no change."""
        if preset not in PRESETS:
            return tuple(gr.skip() for _ in range(8 + len(NUMBER_NAMES)))
        values = train.form_from_config(PRESETS[preset])
        k = values["num_steps"]
        return (values["model"], values["reward"], values["method"], gr.HTML(value=values["window"], steps=k),
                values["start_mode"], values["adv_scope"], values["outside_window"],
                train.window_note(values["method"], values["window"], k, values["epochs"], values["start_mode"]),
                *[values[name] for name in NUMBER_NAMES])

    def note(self, method, window, num_steps, epochs, start_mode="uniform"):
        return train.window_note(method, window, num_steps, epochs, start_mode)

    def method_help(self, method):
        return train.METHOD_HELP.get(method, "")

    def steps_changed(self, num_steps, window):
        """K changed: rescale the window widget to 0..K, keeping the window inside it."""
        try:
            k = int(train.parse_number("num_steps", num_steps))
        except ValueError:
            return gr.skip()
        start, end = train.fit_window(window, k)
        return gr.HTML(value=f"{start}:{end}", steps=k, strip=[], hint="computing x0 previews…")

    def strip(self, model, num_steps):
        """The base model's x0-prediction strip under the window (computed once per model and K)."""
        try:
            k = int(train.parse_number("num_steps", num_steps))
        except ValueError:
            return gr.skip()
        try:
            uris = train.x0_strip(model, k)
        except Exception as error:  # noqa: BLE001 - a missing model must not break the page
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            return gr.HTML(strip=[], hint=f"no x0 previews: {reason}")
        return gr.HTML(strip=uris, hint="")

    # -- locality profile ----------------------------------------------------------------------------
    def _profile(self, model, reward, num_steps):
        """(the cached or shipped base-model profile of (model, reward, K) or None, K); ValueError for a bad K."""
        k = int(train.parse_number("num_steps", num_steps))
        return train.stored_profile(self.store, str(model), str(reward), k), k

    def profile_view(self, model, reward, num_steps):
        """The profile bars under the window strip, and the line per window start."""
        try:
            profile, k = self._profile(model, reward, num_steps)
        except ValueError:
            return gr.skip()
        return gr.HTML(**train.profile_props(profile, k))

    def suggest(self, model, reward, num_steps):
        """Set the window from the reward's profile (the rule: hrf_core.locality.suggest_window)."""
        try:
            profile, k = self._profile(model, reward, num_steps)
            value, reason = train.suggested_window(profile, k)
        except ValueError as error:
            return gr.skip(), _shown(error)
        return gr.HTML(value=value), common.notice_html(reason, "ok")

    def compute_profile(self, token, model, reward, num_steps):
        """Start computing the profile in the job slot (presenter-guarded); the timer then shows its progress."""
        try:
            presenter.check(token)
            k = int(train.parse_number("num_steps", num_steps))
            common._require_runnable(str(model))
            ok, reason = train.reward_status(str(reward))
            if not ok:
                raise ValueError(reason)
            train.start_profile(self.manager, str(model), str(reward), k)
        except (ValueError, PermissionError) as error:
            return _shown(error, "Not started: "), gr.Timer(active=False)
        return common.notice_html(f"Computing the locality profile of {reward} on {model}…", "info"), \
            gr.Timer(active=True)

    def profile_tick(self, model, reward, num_steps):
        """While a profile computes: its progress; when it ends: the bars, and the timer stops."""
        task = self.manager.task()
        if task is None:
            return gr.skip(), gr.skip(), gr.Timer(active=False)
        if task.state == "running":
            detail = f" ({task.message})" if task.message else ""
            return common.notice_html(f"Computing {task.label}: {task.fraction:.0%}{detail}", "info"), gr.skip(), \
                gr.skip()
        if task.state == "done":
            notice = common.notice_html(f"Computed {task.label} in {task.result.get('seconds', 0):.0f} s.", "ok")
        elif task.state == "stopped":
            notice = common.notice_html(f"Stopped {task.label}.", "warning")
        else:
            notice = common.notice_html(f"{task.label} failed: {task.error}", "error")
        return notice, self.profile_view(model, reward, num_steps), gr.Timer(active=False)

    @_safe(4)
    def choices(self, model, reward):
        """Model and reward dropdowns with availability (loaded after the page is up: imports torch)."""
        models = train.model_choices(extra=[model] if model else [])
        rewards = train.reward_choices()
        return (gr.Dropdown(choices=models, value=model), train.model_info(model),
                gr.Dropdown(choices=rewards, value=reward), train.reward_info(reward))

    def status_api(self) -> dict:
        """The current job as JSON (``/status``; open to everyone, no queue).

        Built once per live-feed version: a room full of scripts polling it costs one snapshot per change.
        """
        version = self.feed.version
        cached = self._status
        if cached is None or cached[0] != version or not self.feed.running:
            cached = (version, live.snapshot_dict(self.manager.snapshot()))
            self._status = cached
        return cached[1]

    # -- presenter token ---------------------------------------------------------------------------
    def unlock(self, token):
        """Check a typed presenter token: remember it in this browser when it is right."""
        try:
            presenter.check(token)
        except PermissionError as error:
            text = "Wrong presenter token: controls stay locked." if str(error) == presenter.REFUSAL else str(error)
            return gr.skip(), _shown(PermissionError(text))
        return token, common.notice_html("Presenter controls unlocked in this browser.", "ok")

    def guarded(self, handler):
        """``handler`` as an event function that knows its web client, so wrong tokens are rate-limited per client
        (:class:`hrf_core.presenter.Guard`). The handler's own parameters are unchanged (direct calls in tests)."""
        guard = self.guard

        def event(request: gr.Request, *args):
            with guard.serving(request.client.host if request is not None and request.client else None):
                return handler(*args)

        event.__name__ = handler.__name__
        return event

    # -- Compare and Runs tabs ---------------------------------------------------------------------
    def sources(self, a=None, b=None):
        choices = compare.source_choices(self.store, models=[self.defaults.model])
        values = [c[1] for c in choices]
        first = values[0] if values else None
        latest = next((v for v in values if v.startswith("ckpt:")), first)
        a = a if a in values else first
        b = b if b in values else latest
        return gr.Dropdown(choices=choices, value=a), gr.Dropdown(choices=choices, value=b)

    @_safe(5)
    def compare(self, a, b, n, seed, reward, thumbnails=False, handover=0, token=""):
        presenter.check(token)
        result = compare.compare(self.store, a, b, n=n, seed=seed, reward=reward or None,
                                 thumbnails=bool(thumbnails), handover=handover or 0)
        headers = ["metric", "A", "B", "B − A"]
        return (gr.Image(value=result.grid_a, label=f"A · {result.label_a}"),
                gr.Image(value=result.grid_b, label=f"B · {result.label_b}"),
                gr.Dataframe(value=result.table, headers=headers), result.figure,
                common.notice_html(f"{n} samples each, seeds {int(seed)}…{int(seed) + int(n) - 1}", "ok"))

    @_safe(2)
    def runs(self):
        table = runs.runs_table(self.store, snapshot_of=self._snapshot_of)
        ids = [row[0] for row in table]
        return gr.Dataframe(value=table or [["–"] * len(runs.RUN_COLUMNS)], headers=runs.RUN_COLUMNS), \
            gr.Dropdown(choices=ids, value=ids[0] if ids else None)

    def _snapshot_of(self, run_id):
        return self.manager.snapshot(run_id)

    @_safe(4)
    def run_selected(self, run_id):
        if not run_id:
            return {}, gr.Dropdown(choices=[], value=None), gr.skip(), ""
        run = self.store.get(run_id)
        checkpoints = runs.checkpoint_choices(run)
        more, hint = runs.continue_hint(run, self.manager.snapshot(run_id))
        return (runs.run_details(run), gr.Dropdown(choices=checkpoints, value=checkpoints[0][1] if checkpoints else None),
                more, common.notice_html(hint, "info"))

    def continue_run(self, run_id, more, token):
        """Continue a stopped, interrupted or finished run for ``more`` epochs (``python -m hrf_core resume``)."""
        try:
            presenter.check(token)
            at = self.manager.continue_run(run_id or "", more)
        except (ValueError, PermissionError) as error:
            return _shown(error, "Not continued: "), gr.Tabs()
        snap = self.manager.snapshot()
        return (common.notice_html(f"Continuing {run_id} from epoch {at} to epoch {snap.epochs}.", "ok"),
                gr.Tabs(selected="live"))

    @_safe(1)
    def sample(self, source, n, seed, token="", run_id=None):
        presenter.check(token)
        if not source:
            if run_id and self.store.get(run_id).is_example:
                raise ValueError("example runs ship without weights: regenerate them (with checkpoints in a "
                                 "run store) with `python -m hrf_core examples`, or train your own run")
            raise ValueError("this run has no checkpoint yet: checkpoints are saved every few epochs and at the end")
        return compare.sample_grid(self.store, source, n=n, seed=seed)

    def results(self):
        content = results.results_content(self.docs_dir)
        if content is None:
            return ("*No results yet.* The experiments (`python -m hrf_core experiment frontier-digits`) write "
                    "`docs/RESULTS.md` and `docs/results/`; they appear here once generated.", [])
        text, figures = content
        return text or "*docs/results/ exists but has no summary yet.*", figures

    # -- layout ------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        """The page: the header, one method per tab (its components kept on ``c``), then the events."""
        d = self.defaults
        c = SimpleNamespace(d=d, form=train.form_from_config(d), k=d.num_steps, locked=presenter.token_required())
        with gr.Blocks(title="HRF Explorer") as demo:
            self._header(c)
            with gr.Tabs(elem_id="tabs") as c.tabs:
                self._train_tab(c)
                self._live_tab(c)
                self._compare_tab(c)
                self._runs_tab(c)
                self._results_tab(c)
            self._train_events(c, demo)
            self._other_events(c)
            register_api(self)
        return demo

    def _header(self, c) -> None:
        """The title, the keys, where runs are kept, and the presenter token."""
        with gr.Row(elem_classes="hrf-header", equal_height=False):
            with gr.Column(scale=4):
                gr.Markdown("# HRF Explorer\nRL fine-tuning of a diffusion model, live: **DDPO** trains every "
                            "denoising step and collapses diversity; **HRF** trains only a window of late steps "
                            "and keeps the coarse content. Pick a reward, drag the window, press Start, or "
                            "**Duel** to race both.")
                gr.Markdown(KEYS_HELP, elem_id="keys-help")
                gr.Markdown(self.storage_note, elem_id="storage-note", visible=bool(self.storage_note))
            with gr.Column(scale=1, min_width=240, visible=c.locked, elem_id="presenter"):
                c.token = gr.Textbox("", type="password", label="Presenter token", elem_id="presenter-token",
                                   info="this app is in presenter mode: the token unlocks Start, Stop, "
                                        "Sample and Compare")
                c.unlock = gr.Button("Unlock", size="sm", elem_id="unlock-btn")
        c.stored_token = gr.BrowserState("", storage_key="hrf-presenter-token")

    def _train_tab(self, c) -> None:
        """Train: preset, model, reward, method, the window (x0 strip and locality profile), settings, Start."""
        with gr.Tab("Train", id="train", elem_id="tab-train"):
            with gr.Row(equal_height=False):
                with gr.Column(min_width=200):
                    c.preset = gr.Dropdown([train.NO_PRESET, *PRESETS], value=self.preset, label="Preset",
                                         info="fills every field", elem_id="preset")
                with gr.Column(min_width=260):
                    c.model = gr.Dropdown([(c.d.model, c.d.model)], value=c.d.model, label="Base model",
                                        allow_custom_value=True, elem_id="model",
                                        info="or type a local diffusers folder")
                    c.model_info = gr.Markdown("", elem_classes="hrf-info", elem_id="model-info")
                with gr.Column(min_width=220):
                    c.reward = gr.Dropdown([(c.d.reward, c.d.reward)], value=c.d.reward, label="Reward",
                                         info="what fine-tuning maximises", elem_id="reward")
                    c.reward_info = gr.Markdown("", elem_classes="hrf-info", elem_id="reward-info")
                with gr.Column(scale=2, min_width=380):
                    c.method = gr.Radio([(v, key) for key, v in train.METHOD_LABELS.items()],
                                      value=c.d.method, label="Method", elem_id="method",
                                      info="which denoising steps are trained")
                    c.method_help = gr.Markdown(train.METHOD_HELP.get(c.d.method, ""), elem_classes="hrf-info")
            c.window = gr.HTML(c.form["window"], html_template=WINDOW_TEMPLATE, css_template=WINDOW_CSS,
                             js_on_load=WINDOW_JS, steps=c.k, strip=[], hint="computing x0 previews…",
                             profile=[], lines=[], plabel="",
                             elem_id="window", apply_default_css=False, container=True, padding=True)
            with gr.Row(equal_height=False):
                c.suggest = gr.Button("✦ Suggest window", size="sm", elem_id="suggest-btn", scale=0,
                                    min_width=170)
                c.compute = gr.Button("Compute profile", size="sm", elem_id="profile-btn", scale=0,
                                    min_width=150)
                c.profile_note = gr.HTML("", elem_id="profile-note")
                c.profile_timer = gr.Timer(1.0, active=False)
            with gr.Row(equal_height=False):
                c.note = gr.Markdown(train.window_note(c.d.method, c.form["window"], c.k, c.d.epochs, c.d.start_mode),
                                   elem_id="window-note", elem_classes="hrf-note")
                c.start_mode = gr.Radio([(v, key) for key, v in train.START_MODES.items()],
                                      value=c.d.start_mode, label="HRF start step", elem_id="start-mode",
                                      info="uniform: the paper's HRF; fixed: the reviewers' re-noised-start "
                                           "ablation")
            with gr.Accordion("Advanced settings", open=False, elem_id="advanced"):
                c.adv_scope = gr.Radio([(v, key) for key, v in train.ADV_SCOPES.items()], value=c.d.adv_scope,
                                     label="Advantage baseline: standardise each reward against",
                                     elem_id="adv-scope",
                                     info="per re-noised image is what the paper's code does (batch = "
                                          "siblings = 5); see Results for what it changes")
                c.outside = gr.Radio([(v, key) for key, v in train.OUTSIDE_WINDOW.items()],
                                   value=c.d.outside_window, label="Steps before the window sample with",
                                   elem_id="outside-window",
                                   info="window-only keeps every step the run never trained the base "
                                        "model's, in training, evaluation and sampling alike")
                c.numbers = []
                with gr.Row():
                    for name in NUMBER_NAMES:
                        label, low, high, kind = train.NUMBER_FIELDS[name]
                        c.numbers.append(gr.Number(c.form[name], label=label, precision=0 if kind is int
                                                 else None, elem_id=f"num-{name}", min_width=150))
            with gr.Row():
                c.start = gr.Button("▶ Start", variant="primary", elem_id="start-btn", scale=3)
                c.duel = gr.Button("⚔ Duel: this vs DDPO", variant="secondary", elem_id="duel-btn", scale=2)
                c.stop = gr.Button("■ Stop", variant="stop", elem_id="stop-btn", scale=1)
            c.train_status = gr.HTML(live.status_html(self.manager.snapshot()), elem_id="train-status")
            c.notice = gr.HTML("", elem_id="notice")

    def _live_tab(self, c) -> None:
        """Live: the panel ui/live.js draws from the live stream."""
        with gr.Tab("Live", id="live", elem_id="tab-live"):
            with gr.Row(equal_height=False):
                gr.HTML("<div class='hrf-live-hint'>Share <code>?view=1</code> (this address plus "
                        "<code>?view=1</code>) for a read-only page of this tab.</div>")
                c.live_stop = gr.Button("■ Stop", variant="stop", elem_id="live-stop-btn", scale=0,
                                      min_width=110)
            gr.HTML("<div id='hrf-live' data-mode='live'></div>", elem_id="live-panel")

    def _compare_tab(self, c) -> None:
        """Compare: two models or checkpoints with the same seeds."""
        with gr.Tab("Compare", id="compare", elem_id="tab-compare") as c.compare_tab:
            gr.Markdown("Sample two models with the **same seeds**: the base model or any checkpoint of "
                        "any run. Lines in the scatter join the two samples of one seed. The hand-over "
                        "slider samples B's first S steps with its base model (S = 0: B itself; S = K: the "
                        "base model): one checkpoint traces a whole frontier without training.")
            with gr.Row():
                c.source_a = gr.Dropdown([], label="A", elem_id="compare-a", scale=3, allow_custom_value=True)
                c.source_b = gr.Dropdown([], label="B", elem_id="compare-b", scale=3, allow_custom_value=True)
                c.compare_n = gr.Number(32, label="Samples", precision=0, min_width=100, scale=1)
                c.compare_seed = gr.Number(0, label="First seed", precision=0, min_width=100, scale=1)
                c.compare_reward = gr.Dropdown([(c.d.reward, c.d.reward)], value=c.d.reward, label="Reward",
                                             scale=2)
            with gr.Row():
                c.handover = gr.Slider(0, c.k, value=0, step=1, label="Hand-over step S (B)", scale=3,
                                     elem_id="compare-handover")
                c.compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn", scale=2)
                c.compare_thumbs = gr.Checkbox(False, label="images in the scatter", scale=1,
                                             elem_id="compare-thumbnails")
            c.compare_note = gr.HTML("")
            with gr.Row():
                c.grid_a = gr.Image(label="A", type="pil", elem_id="grid-a", interactive=False, height=320)
                c.grid_b = gr.Image(label="B", type="pil", elem_id="grid-b", interactive=False, height=320)
            with gr.Row(equal_height=False):
                c.metrics_table = gr.Dataframe(headers=["metric", "A", "B", "B − A"], label="Metrics",
                                             elem_id="compare-metrics", interactive=False, scale=1,
                                             column_widths=["46%", "18%", "18%", "18%"])
                c.projection = gr.Plot(label="Embedding projection", elem_id="projection-plot", scale=1)

    def _runs_tab(self, c) -> None:
        """Runs: every run on disk, its replay, Continue and checkpoint samples."""
        with gr.Tab("Runs", id="runs", elem_id="tab-runs") as c.runs_tab:
            c.refresh = gr.Button("↻ Refresh", size="sm", elem_id="runs-refresh")
            c.runs_table = gr.Dataframe(headers=runs.RUN_COLUMNS, label="Runs on disk, newest first (metrics: "
                                      "base model → last evaluation)", elem_id="runs-table", interactive=False,
                                      wrap=True, column_widths=["24%", "8%", "8%", "12%", "10%", "6%", "10%",
                                                                "10%", "7%", "5%"])
            c.run_pick = gr.Dropdown([], label="Run: replay it below (slider, ←/→) or sample a checkpoint",
                                   elem_id="run-pick", allow_custom_value=True)
            with gr.Row(equal_height=True):
                c.more_epochs = gr.Number(5, label="More epochs", precision=0, minimum=1,
                                        maximum=MAX_MORE_EPOCHS, elem_id="more-epochs", min_width=120,
                                        scale=1)
                c.continue_btn = gr.Button("⏵ Continue", elem_id="continue-btn", scale=1)
                c.continue_note = gr.HTML("", elem_id="continue-note", scale=4)
            gr.HTML("<div id='hrf-replay' data-mode='replay'></div>", elem_id="replay-panel")
            with gr.Row():
                c.checkpoint_pick = gr.Dropdown([], label="Checkpoint", elem_id="checkpoint-pick", scale=2,
                                              allow_custom_value=True)
                c.sample_n = gr.Number(16, label="Samples", precision=0, min_width=100, scale=1)
                c.sample_seed = gr.Number(0, label="Seed", precision=0, min_width=100, scale=1)
                c.sample_btn = gr.Button("Sample", variant="primary", scale=1, elem_id="sample-btn")
            with gr.Row(equal_height=False):
                c.details = gr.JSON(label="Config and last metrics", elem_id="run-details")
                c.sampled = gr.Image(label="Samples from the checkpoint", type="pil", interactive=False,
                                   elem_id="sampled-grid")

    def _results_tab(self, c) -> None:
        """Results: docs/RESULTS.md and its figures."""
        with gr.Tab("Results", id="results", elem_id="tab-results") as c.results_tab:
            results_text, results_figures = self.results()
            c.results_md = gr.Markdown(results_text, elem_id="results-md")
            c.results_gallery = gr.Gallery(results_figures, label="Figures", columns=2, height="auto",
                                         interactive=False, elem_id="results-gallery")

    def _train_events(self, c, demo) -> None:
        """The Train tab's events (and the token's)."""
        c.form_inputs = [c.token, c.preset, c.model, c.reward, c.method, c.window, c.start_mode, c.adv_scope, c.outside, *c.numbers]
        c.start.click(self.guarded(self.start), c.form_inputs, [c.notice, c.tabs], api_name="ui_start",
                    api_visibility="private", concurrency_id="control", concurrency_limit=4)
        c.duel.click(self.guarded(self.duel), c.form_inputs, [c.notice, c.tabs], api_name="ui_duel",
                   api_visibility="private", concurrency_id="control", concurrency_limit=4)
        for button in (c.stop, c.live_stop):
            button.click(self.guarded(self.stop), c.token, c.notice, api_name="ui_stop", api_visibility="private",
                         concurrency_id="control", concurrency_limit=4)
        c.unlock.click(self.guarded(self.unlock), c.token, [c.stored_token, c.notice], api_visibility="private")
        demo.load(lambda saved: saved or "", c.stored_token, c.token, api_visibility="private",
                  show_progress="hidden")
        c.preset.change(self.fill_preset, c.preset, [c.model, c.reward, c.method, c.window, c.start_mode, c.adv_scope, c.outside,
                                                 c.note, *c.numbers],
                      show_progress="hidden", api_visibility="private")
        c.model.change(lambda m: train.model_info(m), c.model, c.model_info, show_progress="hidden",
                     api_visibility="private").then(
            self.strip, [c.model, c.numbers[NUMBER_NAMES.index("num_steps")]], c.window, show_progress="hidden",
            api_visibility="private", concurrency_id="sampling", concurrency_limit=1)
        c.reward.change(lambda r: train.reward_info(r), c.reward, c.reward_info, show_progress="hidden",
                      api_visibility="private")
        c.profile_inputs = [c.model, c.reward, c.numbers[NUMBER_NAMES.index("num_steps")]]
        for trigger in (c.reward.change, c.model.change, c.numbers[NUMBER_NAMES.index("num_steps")].change):
            trigger(self.profile_view, c.profile_inputs, c.window, show_progress="hidden", api_visibility="private")
        c.suggest.click(self.suggest, c.profile_inputs, [c.window, c.profile_note], show_progress="hidden",
                      api_name="ui_suggest_window", api_visibility="private")
        c.compute.click(self.guarded(self.compute_profile), [c.token, *c.profile_inputs], [c.profile_note, c.profile_timer],
                      show_progress="hidden", api_name="ui_compute_profile", api_visibility="private",
                      concurrency_id="control", concurrency_limit=4)
        c.profile_timer.tick(self.profile_tick, c.profile_inputs, [c.profile_note, c.window, c.profile_timer],
                           show_progress="hidden", api_visibility="private")
        c.method.change(self.method_help, c.method, c.method_help, show_progress="hidden", api_visibility="private")
        c.steps_box = c.numbers[NUMBER_NAMES.index("num_steps")]
        c.epochs_box = c.numbers[NUMBER_NAMES.index("epochs")]
        c.steps_box.change(self.steps_changed, [c.steps_box, c.window], c.window, show_progress="hidden",
                         api_visibility="private").then(
            self.strip, [c.model, c.steps_box], c.window, show_progress="hidden", api_visibility="private",
            concurrency_id="sampling", concurrency_limit=1)
        for trigger in (c.method.change, c.window.change, c.steps_box.change, c.epochs_box.change, c.start_mode.change):
            trigger(self.note, [c.method, c.window, c.steps_box, c.epochs_box, c.start_mode], c.note,
                    show_progress="hidden", api_visibility="private")
        gr.api(self.status_api, api_name="status", queue=False)
        demo.load(self.choices, [c.model, c.reward], [c.model, c.model_info, c.reward, c.reward_info],
                  show_progress="hidden", api_visibility="private").then(
            self.profile_view, c.profile_inputs, c.window, show_progress="hidden", api_visibility="private").then(
            self.strip, [c.model, c.steps_box], c.window, show_progress="hidden", api_visibility="private",
            concurrency_id="sampling", concurrency_limit=1)

    def _other_events(self, c) -> None:
        """The Compare, Runs and Results tabs' events."""
        c.compare_tab.select(self.sources, [c.source_a, c.source_b], [c.source_a, c.source_b], show_progress="hidden",
                           api_visibility="private")
        c.compare_tab.select(lambda r: gr.Dropdown(choices=train.reward_choices(), value=r), c.compare_reward,
                           c.compare_reward, show_progress="hidden", api_visibility="private")
        c.compare_btn.click(self.guarded(self.compare), [c.source_a, c.source_b, c.compare_n, c.compare_seed, c.compare_reward,
                                         c.compare_thumbs, c.handover, c.token],
                          [c.grid_a, c.grid_b, c.metrics_table, c.projection, c.compare_note], api_name="ui_compare",
                          api_visibility="private", concurrency_id="sampling", concurrency_limit=1)
        for trigger in (c.runs_tab.select, c.refresh.click):
            trigger(self.runs, None, [c.runs_table, c.run_pick], show_progress="hidden", api_visibility="private")
        c.run_pick.change(self.run_selected, c.run_pick, [c.details, c.checkpoint_pick, c.more_epochs, c.continue_note],
                        show_progress="hidden", api_visibility="private")
        c.continue_btn.click(self.guarded(self.continue_run), [c.run_pick, c.more_epochs, c.token], [c.continue_note, c.tabs],
                           api_name="ui_continue", api_visibility="private", concurrency_id="control",
                           concurrency_limit=4)
        c.run_pick.change(None, c.run_pick, None, js="(runId) => window.hrfReplay && window.hrfReplay(runId)")
        c.sample_btn.click(self.guarded(self.sample), [c.checkpoint_pick, c.sample_n, c.sample_seed, c.token, c.run_pick],
                         c.sampled, api_name="ui_sample", api_visibility="private", concurrency_id="sampling",
                         concurrency_limit=1)
        c.results_tab.select(self.results, None, [c.results_md, c.results_gallery], show_progress="hidden",
                           api_visibility="private")
        self.train_status = c.train_status


def register_api(lab: Lab) -> None:
    """The scripting API (hrf_core.views.api) as named, typed gradio_client endpoints."""
    for name, fn in scripting.ScriptingApi(lab.manager, lab.defaults).endpoints().items():
        sampling = name in ("compare", "sample")
        gr.api(_endpoint(fn, lab.guard), api_name=name, concurrency_id="sampling" if sampling else "control",
               concurrency_limit=1 if sampling else 4)


def _endpoint(fn, guard):
    """``fn`` with its signature, run under the caller's client guard (wrong tokens are rate-limited per client),
    a refusal (ValueError, PermissionError) a gr.Error, a PNG path a file Gradio serves."""
    @functools.wraps(fn)
    def endpoint(request: gr.Request, *args, **kwargs):
        client = request.client.host if request is not None and request.client else None
        try:
            with guard.serving(client):
                result = fn(*args, **kwargs)
        except (ValueError, PermissionError) as error:  # the caller's mistake: no traceback in the server's log
            raise gr.Error(_refusal(error), print_exception=False) from None
        return scripting.map_files(result, lambda path: gr.FileData(path=str(path)).model_dump())

    signature = inspect.signature(fn)  # gradio injects the request where the signature names it
    endpoint.__signature__ = signature.replace(parameters=[
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request),
        *signature.parameters.values()])
    endpoint.__annotations__ = {**getattr(fn, "__annotations__", {}), "request": gr.Request}
    return endpoint


# ----------------------------------------------------------------------------------------- serving
class Fanout:
    """Wakes every open live stream when the feed publishes: one asyncio.Event per publish, shared by all."""

    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None

    def current(self) -> asyncio.Event:
        """The event the next publish sets (bound to the server's loop on first use)."""
        if self.event is None:
            self.loop = asyncio.get_running_loop()
            self.event = asyncio.Event()
        return self.event

    def notify(self) -> None:
        """Called from the feed's thread after a publish."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        old, self.event = self.event, asyncio.Event()
        if old is not None:
            old.set()


class ViewerPage:
    """ASGI middleware: ``/?view=1`` answers with the read-only live page (no Gradio), everything else passes.

    ``prefix`` (the app's root path, e.g. ``/hrf``): a request for ``/hrf/...`` is served as ``/...``, for a
    proxy that forwards the prefix instead of stripping it (nginx ``proxy_pass`` without a URI part).
    Gradio's page names no icon, so a browser would ask the server's root for ``/favicon.ico`` (outside the
    prefix: a 404 behind a proxy); the page gets a relative icon link in its ``<head>``.
    """

    ICON = b'<link rel="icon" href="favicon.ico">'

    def __init__(self, app, html: bytes, prefix: str = ""):
        self.app, self.html, self.prefix = app, html, prefix.rstrip("/")

    async def __call__(self, scope, receive, send):
        if self.prefix and scope["type"] in ("http", "websocket"):
            path = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                scope = {**scope, "path": path[len(self.prefix):] or "/",
                         "raw_path": (path[len(self.prefix):] or "/").encode()}
        if scope["type"] != "http" or scope["path"] != "/":
            await self.app(scope, receive, send)
            return
        if parse_qs(scope.get("query_string", b"").decode()).get("view") == ["1"]:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-cache")]})
            await send({"type": "http.response.body", "body": self.html})
            return
        start: dict | None = None

        async def with_icon(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message  # held until the body shows whether it is the page
                return
            if start is not None:
                body = message.get("body", b"")
                if message["type"] == "http.response.body" and not message.get("more_body") and \
                        body.count(b"<head>") == 1:
                    body = body.replace(b"<head>", b"<head>" + self.ICON)
                    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                    start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
                    message = {**message, "body": body}
                await send(start)
                start = None
            await send(message)

        await self.app(scope, receive, with_icon)


def _assets() -> dict[str, tuple[bytes, str]]:
    """The browser files the live panel needs: name -> (gzipped bytes, media type)."""
    import plotly

    files = {"live.js": (UI_DIR / "live.js", "text/javascript"), "live.css": (UI_DIR / "live.css", "text/css"),
             "plotly.min.js": (Path(plotly.__file__).parent / "package_data" / "plotly.min.js", "text/javascript")}
    return {name: (gzip.compress(path.read_bytes(), 6), media) for name, (path, media) in files.items()}


def add_live_routes(api: FastAPI, lab: Lab) -> None:
    """The live feed's routes: the SSE stream, the state, replays, grids, GIFs and the browser files."""
    feed, store, fanout = lab.feed, lab.store, Fanout()
    feed.add_listener(fanout.notify)
    assets = _assets()
    gif_dir = Path(tempfile.mkdtemp(prefix="hrf-gifs-"))
    atexit.register(shutil.rmtree, gif_dir, True)
    replays = ReplayCache(gif_dir)

    @api.get("/live/stream")
    async def stream(request: Request):
        async def events():
            event = fanout.current()
            version, full = feed.full()
            yield b"retry: 3000\ndata: " + full + b"\n\n"
            while True:
                try:
                    await asyncio.wait_for(event.wait(), timeout=15)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                event = fanout.current()
                messages = feed.since(version)
                if messages is None:
                    version, full = feed.full()
                    yield b"data: " + full + b"\n\n"
                else:
                    for version, message in messages:  # noqa: B007 - the loop variable is the cursor
                        yield b"data: " + message + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.get("/status")
    def status():
        """The job's status as plain JSON (the same as the ``/status`` API of gradio_client, without Gradio)."""
        return JSONResponse(lab.status_api(), headers={"Cache-Control": "no-cache"})

    @api.get("/live/state")
    def state(request: Request):
        version, full = feed.full()
        tag = f'"{version}"'
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers={"ETag": tag})
        return Response(full, media_type="application/json", headers={"ETag": tag, "Cache-Control": "no-cache"})

    @api.get("/live/run/{run_id}")
    def replay(run_id: str):
        try:
            store.get(run_id)
            return JSONResponse(live.live_state(lab.manager, run_id))
        except ValueError as error:
            raise HTTPException(404, str(error)) from None

    @api.get("/live/grid/{run_id}/{epoch}.png")
    def grid(run_id: str, epoch: int):
        try:
            path = serving.grid_file(store, run_id, epoch)  # a grid of the store, never anything else
        except ValueError as error:
            raise HTTPException(404, str(error)) from None
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    @api.get("/live/results/{name}")
    def figure(name: str):
        try:
            path = serving.figure_file(lab.docs_dir, name)
        except ValueError as error:
            raise HTTPException(404, str(error)) from None
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})

    @api.get("/live/animate/{run_id}.gif")
    def animate(run_id: str):
        try:
            run = store.get(run_id)
            serving.check_grids(run)
            body = replays.gif(run)
        except ValueError as error:
            raise HTTPException(404, str(error)) from None
        return Response(body, media_type="image/gif",
                        headers={"Content-Disposition": f'attachment; filename="{run_id}.gif"'})

    @api.get("/live/assets/{name}")
    def asset(name: str, request: Request):
        if name not in assets:
            raise HTTPException(404, f"no asset {name}")
        body, media = assets[name]
        headers = {"Cache-Control": "public, max-age=3600", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(body, media_type=media, headers={**headers, "Content-Encoding": "gzip"})
        return Response(gzip.decompress(body), media_type=media, headers=headers)


class SessionJanitor:
    """Forget Gradio's per-session state once no page can use it any more.

    Gradio keeps a ``SessionState`` for every session (each page and each ``gradio_client.Client``), with its
    own copy of every component's config (about 0.8 MB for this app), and forgets one only past 10,000
    sessions: the soak (``bench/soak.py``), one client per duel, grew the server by 3 MB a minute. A session
    is forgotten when no heartbeat connection holds it (the page or client that opened it is gone, counted by
    :class:`HeartbeatWatch`) and its last event is ``grace`` seconds old. A page that comes back later gets a
    fresh session, as after Gradio's own capacity eviction.
    """

    def __init__(self, demo: gr.Blocks, grace: float = SESSION_GRACE_SECONDS):
        self.demo, self.grace = demo, grace
        self.open_pages: dict[str, int] = {}  # session hash -> open heartbeat connections

    def prune(self, now: float | None = None) -> int:
        """Forget every session that no heartbeat holds and that has been idle ``grace`` s; returns how many."""
        import datetime

        holder = getattr(self.demo, "state_holder", None)
        if holder is None:
            return 0
        now_dt = datetime.datetime.fromtimestamp(time.time() if now is None else now)
        forgotten = 0
        for session in list(holder.session_data):
            last = holder.time_last_used.get(session)
            if self.open_pages.get(session) or (last is not None and (now_dt - last).total_seconds() < self.grace):
                continue
            holder.delete_state(session)  # gr.State values: their delete callbacks
            with holder.lock:
                holder.session_data.pop(session, None)
                holder.time_last_used.pop(session, None)
            forgotten += 1
        return forgotten

    def start(self, every: float = 60.0) -> None:
        def loop() -> None:
            while True:
                time.sleep(every)
                try:
                    self.prune()
                except Exception:  # noqa: BLE001 - housekeeping must never take the server down
                    log.exception("could not prune Gradio sessions")

        threading.Thread(target=loop, name="session-janitor", daemon=True).start()


class HeartbeatWatch:
    """ASGI middleware: counts the open heartbeat connections per Gradio session for :class:`SessionJanitor`."""

    HEARTBEAT = re.compile(r"/gradio_api/heartbeat/([^/]+)$")

    def __init__(self, app, janitor: SessionJanitor):
        self.app, self.janitor = app, janitor

    async def __call__(self, scope, receive, send):
        match = self.HEARTBEAT.search(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        pages, session = self.janitor.open_pages, match[1]
        pages[session] = pages.get(session, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            pages[session] -= 1
            if pages[session] <= 0:
                del pages[session]


def tune_queue(demo: gr.Blocks) -> None:
    """Let Gradio's idle queue loops sleep longer (see :data:`QUEUE_SLEEP_SECONDS`)."""
    queue = getattr(demo, "_queue", None)
    if queue is not None:
        queue.sleep_when_free = QUEUE_SLEEP_SECONDS
        queue.progress_update_sleep_when_free = PROGRESS_SLEEP_SECONDS


def create_server(lab: Lab, root_path: str | None = None) -> FastAPI:
    """The whole app: the live routes and the viewer page, with the Gradio Blocks mounted at ``/``.

    ``root_path`` (default ``GRADIO_ROOT_PATH``): the path prefix under which a reverse proxy serves the app.
    Gradio's file route may serve the Results figures only: grids go through :func:`add_live_routes`, and
    nothing of the run store (checkpoints, optimiser state, configs) is reachable through Gradio.
    """
    root_path = os.environ.get("GRADIO_ROOT_PATH", "") if root_path is None else root_path
    demo = lab.build()
    demo.queue(default_concurrency_limit=2)
    tune_queue(demo)
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_live_routes(api, lab)
    janitor = SessionJanitor(demo)
    api.add_middleware(HeartbeatWatch, janitor=janitor)  # inside ViewerPage: it sees paths without the prefix
    prefix = urlsplit(root_path).path if "://" in root_path else root_path
    api.add_middleware(ViewerPage, html=(UI_DIR / "viewer.html").read_bytes(), prefix=prefix)
    figures = [str(p) for p in serving.figure_files(lab.docs_dir)]
    blocked = [str(p.resolve()) for p in (lab.store.root, CHECKPOINTS_DIR)]
    gr.mount_gradio_app(api, demo, path="/", ssr_mode=False, allowed_paths=figures, blocked_paths=blocked,
                        root_path=root_path or None, footer_links=["api", "gradio"],
                        theme=gr.themes.Default(primary_hue="indigo", secondary_hue="pink"), css=APP_CSS,
                        head=HEAD)
    api.state.demo, api.state.lab, api.state.sessions = demo, lab, janitor
    lab.feed.start()
    janitor.start()
    return api


class Served:
    """A server running in a background thread (tests and scripts): ``.url``, ``.close()``."""

    def __init__(self, api: FastAPI, host: str, port: int):
        import uvicorn

        self.api = api
        self.server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="warning",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()

        deadline = time.time() + 60
        while not self.server.started and self.thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        self.url = f"http://{host}:{port}/"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.api.state.lab.feed.stop()


def serve(manager: JobManager | None = None, defaults: TrainConfig | None = None, host: str = "127.0.0.1",
          port: int = 7860, docs_dir: Path = DOCS_DIR, root_path: str | None = None) -> Served:
    """Build and serve the app in a background thread (tests pass their own manager and small defaults)."""
    lab = Lab(manager, defaults, docs_dir=docs_dir)
    return Served(create_server(lab, root_path=root_path), host, port)


def warm_up() -> None:
    """Import the heavy modules in the background so the first Start and preview are quick."""
    try:
        import hrf_core.evaluation  # noqa: F401
        import hrf_core.models  # noqa: F401
        import hrf_core.rewards  # noqa: F401
        import hrf_core.sampling  # noqa: F401
        import hrf_core.trainer  # noqa: F401
    except Exception:  # noqa: BLE001 - only a speed-up
        log.exception("warm-up import failed")


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX`` would) unless the environment already does.

    Every thread that allocates (the training thread, uvicorn's and Gradio's workers, GIF exports) may get an
    arena of its own that keeps freed memory: the soak (``bench/soak.py``) grew the server's RSS by 189 MB in
    6 minutes of back-to-back duels, and by 30 MB (flat after the first duel) with two arenas.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to cap
        pass


def main() -> None:
    import uvicorn

    from hrf_core.rewards import register_from_env

    limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registered = register_from_env()
    if registered:
        log.info("rewards registered from HRF_EXTRA_REWARDS: %s", ", ".join(registered))
    log.info("runs are stored in %s%s", RUNS_DIR, f" ({STORAGE.note})" if STORAGE.note else "")
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    api = create_server(Lab())
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    print(f"HRF Explorer on http://{host}:{port} (read-only live view: http://{host}:{port}/?view=1)", flush=True)
    uvicorn.run(api, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
