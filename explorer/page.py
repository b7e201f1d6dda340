"""The page: a header and five tabs (one module each in :mod:`explorer.tabs`), over one job manager.

:class:`Lab` builds the Gradio Blocks; each tab owns its layout, its events and its handlers (plain methods,
callable directly in tests: ``lab.train.start(token, preset, values)``). The components a tab's events need from
another (the token, the tab strip, the notice) are shared on one namespace ``c``. The scripting API
(:mod:`explorer.api`) is registered here, at the end of the build.
"""

from __future__ import annotations

import functools
import inspect
import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from explorer import DOCS_DIR, UI_DIR, presenter, storage
from explorer import api as scripting
from explorer.jobs import JobManager
from explorer.livefeed import LiveFeed
from explorer.notices import refusal, shown
from explorer.tabs.compare import CompareTab
from explorer.tabs.live import LiveTab
from explorer.tabs.results import ResultsTab
from explorer.tabs.runs import RunsTab
from explorer.tabs.train import TrainTab
from explorer.views import common, live, train
from hrf_core.config import TrainConfig
from hrf_core.presets import PRESETS
from hrf_core.rl.launch import default_torch_threads
from hrf_core.store.runs import RunStore
from hrf_core.study.examples import EXAMPLES_DIR

STORAGE = storage.runs_location()  # HRF_RUNS_DIR, a Space's /data/runs, else runs/ (never a read-only repository)
RUNS_DIR = STORAGE.path
APP_CSS = (UI_DIR / "app.css").read_text()
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


class Lab:
    """The page over one job manager: its tabs (``train``, ``live``, ``compare``, ``runs``, ``results``) and the
    handlers they share (the presenter token, ``/status``)."""

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
        self.train, self.live = TrainTab(self), LiveTab(self)
        self.compare, self.runs, self.results = CompareTab(self), RunsTab(self), ResultsTab(self)

    @property
    def tabs(self) -> list:
        return [self.train, self.live, self.compare, self.runs, self.results]

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
            return gr.skip(), shown(PermissionError(text))
        return token, common.notice_html("Presenter controls unlocked in this browser.", "ok")

    def guarded(self, handler):
        """``handler`` as an event function that knows its web client, so wrong tokens are rate-limited per client
        (:class:`explorer.presenter.Guard`). The handler's own parameters are unchanged (direct calls in tests)."""
        guard = self.guard

        def event(request: gr.Request, *args):
            with guard.serving(request.client.host if request is not None and request.client else None):
                return handler(*args)

        event.__name__ = handler.__name__
        return event

    # -- layout ------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        """The page: the header, the tabs (each adds its components to ``c``), then every tab's events."""
        d = self.defaults
        values = train.form_from_config(d)
        c = SimpleNamespace(d=d, values=values, k=d.num_steps, locked=presenter.token_required())
        with gr.Blocks(title="HRF Explorer", fill_width=True) as demo:  # the whole width: grids read on a projector
            self._header(c)
            with gr.Tabs(elem_id="tabs") as c.tabs:
                for tab in self.tabs:
                    tab.layout(c)
            c.unlock.click(self.guarded(self.unlock), c.token, [c.stored_token, c.notice], api_visibility="private")
            demo.load(lambda saved: saved or "", c.stored_token, c.token, api_visibility="private",
                      show_progress="hidden")
            gr.api(self.status_api, api_name="status", queue=False)
            for tab in self.tabs:
                tab.events(c, demo)
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


def register_api(lab: Lab) -> None:
    """The scripting API (explorer.api) as named, typed gradio_client endpoints."""
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
            raise gr.Error(refusal(error), print_exception=False) from None
        return scripting.map_files(result, lambda path: gr.FileData(path=str(path)).model_dump())

    signature = inspect.signature(fn)  # gradio injects the request where the signature names it
    endpoint.__signature__ = signature.replace(parameters=[
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request),
        *signature.parameters.values()])
    endpoint.__annotations__ = {**getattr(fn, "__annotations__", {}), "request": gr.Request}
    return endpoint
