"""HRF Explorer: the Gradio app (UI only: layout, events, polling; the work lives in hrf_core).

Run ``python app.py`` and open http://127.0.0.1:7860 (``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``
override the address; ``HRF_RUNS_DIR`` the run store, default ``runs/``).

One global :class:`~hrf_core.jobs.JobManager` runs one fine-tuning job at a time in a background
thread; every tab polls it with a cheap 1 s timer, so a reloaded tab or a second visitor sees the
running job. Heavy modules (torch, diffusers) load in the background after the server is up.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Idle OpenMP threads sleep instead of spinning (a spinning training thread starves the UI on small CPUs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402

from hrf_core import REPO_ROOT, views  # noqa: E402
from hrf_core.config import PRESETS, TrainConfig  # noqa: E402
from hrf_core.jobs import JobManager, default_torch_threads  # noqa: E402
from hrf_core.runs import RunStore  # noqa: E402

log = logging.getLogger("hrf_explorer")

RUNS_DIR = Path(os.environ.get("HRF_RUNS_DIR") or REPO_ROOT / "runs")
DOCS_DIR = REPO_ROOT / "docs"
TICK_SECONDS = 1.0

_MANAGER: JobManager | None = None
_MANAGER_LOCK = threading.Lock()


def global_manager() -> JobManager:
    """The one job manager of this process (shared by every visitor)."""
    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            _MANAGER = JobManager(RunStore(RUNS_DIR), torch_threads=default_torch_threads())
        return _MANAGER


def default_config() -> TrainConfig:
    return PRESETS[views.DEFAULT_PRESET].replace()


NUMBER_NAMES = tuple(views.NUMBER_FIELDS)

# ------------------------------------------------------------------------------- the window widget
WINDOW_TEMPLATE = """${(() => {
  const k = Number(steps) || 1;
  const [a, b] = String(value).split(':').map(Number);
  const cells = (strip || []).map((u, i) =>
    `<img src="${u}" data-step="${i}" class="${i >= a && i < b ? 'in' : 'out'}" alt="step ${i}"
          title="step ${i}: the model's prediction of the final image">`).join('');
  return `<div class="hw" data-steps="${k}">
  <div class="hw-head"><span class="hw-title">Trained window</span>
    <span class="hw-text">${b > a ? `steps ${a}–${b - 1}  (${b - a} of ${k})` : 'empty window'}</span></div>
  <div class="hw-slider">
    <div class="hw-rail"><div class="hw-fill" style="left:${100 * a / k}%;width:${100 * Math.max(0, b - a) / k}%">
    </div></div>
    <input type="range" class="hw-lo" aria-label="window start step" min="0" max="${k}" step="1" value="${a}">
    <input type="range" class="hw-hi" aria-label="window end step (exclusive)" min="0" max="${k}" step="1"
           value="${b}">
  </div>
  ${cells ? `<div class="hw-strip">${cells}</div>` : `<div class="hw-empty">${hint}</div>`}
  <div class="hw-axis"><span>step 0 · pure noise: early steps set the coarse shape</span>
    <span>the model's guess of the final image at each step (hover to zoom)</span>
    <span>late steps set the detail · step ${k - 1}</span></div>
</div>`;
})()}"""

WINDOW_CSS = """
.hw { padding: 4px 2px; user-select: none; }
.hw-head { display: flex; justify-content: space-between; align-items: baseline; margin-bottom: 4px; }
.hw-title { font-weight: 600; }
.hw-text { font-variant-numeric: tabular-nums; color: var(--color-accent); font-weight: 600; }
.hw-slider { position: relative; height: 28px; }
.hw-rail { position: absolute; left: 9px; right: 9px; top: 11px; height: 6px; border-radius: 3px;
           background: var(--neutral-200, #e5e7eb); }
.hw-fill { position: absolute; top: 0; bottom: 0; border-radius: 3px; background: var(--color-accent, #6366f1); }
.hw-slider input[type=range] { position: absolute; left: 0; top: 0; width: 100%; height: 28px; margin: 0;
           background: transparent; pointer-events: none; -webkit-appearance: none; appearance: none; }
.hw-slider input[type=range]::-webkit-slider-runnable-track { background: transparent; height: 28px; }
.hw-slider input[type=range]::-moz-range-track { background: transparent; }
.hw-slider input[type=range]::-webkit-slider-thumb { pointer-events: auto; -webkit-appearance: none;
           width: 18px; height: 26px; border-radius: 5px; background: white; cursor: ew-resize;
           border: 2px solid var(--color-accent, #6366f1); box-shadow: 0 1px 3px rgba(0,0,0,.3); margin-top: 1px; }
.hw-slider input[type=range]::-moz-range-thumb { pointer-events: auto; width: 14px; height: 22px;
           border-radius: 5px; background: white; cursor: ew-resize; border: 2px solid var(--color-accent, #6366f1); }
.hw-strip { display: flex; margin: 6px 9px 0 9px; gap: 0; height: 108px; }
.hw-strip img { flex: 1 1 0; width: 0; min-width: 0; height: 100%; object-fit: contain; image-rendering: pixelated;
           transition: opacity .15s, transform .15s; margin: 0 !important; border-radius: 0 !important;
           transform-origin: center top; position: relative; }
.hw-strip img.out { opacity: .45; }
.hw-strip img:hover { transform: scale(2.6); z-index: 5; opacity: 1; box-shadow: 0 2px 10px rgba(0,0,0,.35); }
.hw-empty { margin: 6px 9px; padding: 10px; font-size: 13px; color: var(--body-text-color-subdued);
           border: 1px dashed var(--border-color-primary); border-radius: 6px; text-align: center; }
.hw-axis { display: flex; justify-content: space-between; font-size: 12px; margin: 2px 9px 0 9px;
           color: var(--body-text-color-subdued); }
"""

WINDOW_JS = """
const q = (s) => element.querySelector(s);
function paint() {
  const lo = q('.hw-lo'), hi = q('.hw-hi'), root = q('.hw');
  if (!lo || !hi || !root) return;
  const k = Number(root.dataset.steps) || 1, a = Number(lo.value), b = Number(hi.value);
  const fill = q('.hw-fill');
  fill.style.left = (100 * a / k) + '%';
  fill.style.width = (100 * Math.max(0, b - a) / k) + '%';
  element.querySelectorAll('.hw-strip img').forEach((img) => {
    const i = Number(img.dataset.step), inside = i >= a && i < b;
    img.classList.toggle('in', inside);
    img.classList.toggle('out', !inside);
  });
  q('.hw-text').textContent = b > a ? `steps ${a}–${b - 1}  (${b - a} of ${k})` : 'empty window';
}
element.addEventListener('input', (e) => {
  const lo = q('.hw-lo'), hi = q('.hw-hi');
  if (e.target !== lo && e.target !== hi) return;
  const k = Number(q('.hw').dataset.steps) || 1;
  let a = Number(lo.value), b = Number(hi.value);
  if (e.target === lo && a >= b) { a = Math.max(0, b - 1); if (a >= b) { b = a + 1; hi.value = b; } lo.value = a; }
  if (e.target === hi && b <= a) { b = Math.min(k, a + 1); if (b <= a) { a = b - 1; lo.value = a; } hi.value = b; }
  paint();
});
element.addEventListener('change', (e) => {
  const lo = q('.hw-lo'), hi = q('.hw-hi');
  if (e.target !== lo && e.target !== hi) return;
  props.value = `${lo.value}:${hi.value}`;
});
watch(['value', 'steps', 'strip'], paint);
paint();
"""

APP_CSS = """
.hrf-header h1 { margin-bottom: 0; }
.hrf-header p { margin-top: 2px; }
.hrf-status { padding: 8px 12px; border: 1px solid var(--border-color-primary); border-radius: 8px;
              font-variant-numeric: tabular-nums; line-height: 1.7; }
.hrf-badge { color: white; border-radius: 999px; padding: 1px 10px; font-size: 13px; font-weight: 600; }
.hrf-bar { height: 6px; background: var(--neutral-200, #e5e7eb); border-radius: 3px; overflow: hidden; margin-top: 4px; }
.hrf-bar > div { height: 100%; transition: width .4s; }
.hrf-phase { font-size: 13px; color: var(--body-text-color-subdued); }
.hrf-error { font-size: 13px; color: #dc2626; white-space: pre-wrap; }
.hrf-notice { padding: 6px 10px; background: var(--background-fill-secondary); border-radius: 6px; }
.hrf-info { font-size: 13px; color: var(--body-text-color-subdued); margin-top: -6px; }
.hrf-note { font-size: 14px; margin-top: -4px; }
#start-btn { min-height: 48px; font-size: 18px; }
"""


def _safe(fallback_outputs: int):
    """Turn any exception of a handler into a warning toast; outputs are left unchanged (never crash)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ValueError as error:
                gr.Warning(str(error))
            except Exception as error:  # noqa: BLE001 - a talk must go on
                log.exception("handler %s failed", fn.__name__)
                gr.Warning(f"{fn.__name__} failed: {type(error).__name__}: {error}")
            skips = tuple(gr.skip() for _ in range(fallback_outputs))
            return skips[0] if fallback_outputs == 1 else skips

        return wrapper

    return decorate


class Lab:
    """The app's handlers (plain methods, callable directly in tests) and its layout (:meth:`build`)."""

    def __init__(self, manager: JobManager | None = None, defaults: TrainConfig | None = None,
                 preset: str | None = None, docs_dir: Path = DOCS_DIR):
        self.manager = manager or global_manager()
        self.store = self.manager.store
        self.defaults = defaults or default_config()
        self.preset = preset if preset is not None else (views.DEFAULT_PRESET if defaults is None else views.NO_PRESET)
        self.docs_dir = docs_dir
        self._figures: dict[tuple, tuple] = {}

    # -- Train tab ---------------------------------------------------------------------------------
    def start(self, preset, model, reward, method, window, *numbers):
        """Validate the form and start a run; on a problem: a warning, the reason in the status box."""
        try:
            config = views.config_from_form(preset, model, reward, method, window,
                                            **dict(zip(NUMBER_NAMES, numbers, strict=True)))
            run_id = self.manager.start(config)
        except ValueError as error:
            gr.Warning(str(error))
            return views.notice_html(f"Not started: {error}", "error"), gr.Tabs()
        except Exception as error:  # noqa: BLE001
            log.exception("start failed")
            gr.Warning(f"Not started: {type(error).__name__}: {error}")
            return views.notice_html(f"Not started: {type(error).__name__}: {error}", "error"), gr.Tabs()
        return views.notice_html(f"Started {run_id}.", "ok"), gr.Tabs(selected="live")

    def stop(self):
        if self.manager.stop():
            return views.notice_html("Stopping after the current denoising step…", "warning")
        gr.Info("Nothing is running.")
        return views.notice_html("Nothing is running.", "info")

    def fill_preset(self, preset):
        """Field values of a preset (model, reward, method, window, numbers), or no change for custom."""
        if preset not in PRESETS:
            return tuple(gr.skip() for _ in range(5 + len(NUMBER_NAMES)))
        values = views.form_from_config(PRESETS[preset])
        k = values["num_steps"]
        return (values["model"], values["reward"], values["method"], gr.HTML(value=values["window"], steps=k),
                views.window_note(values["method"], values["window"], k, values["epochs"]),
                *[values[name] for name in NUMBER_NAMES])

    def note(self, method, window, num_steps, epochs):
        return views.window_note(method, window, num_steps, epochs)

    def method_help(self, method):
        return views.METHOD_HELP.get(method, "")

    def steps_changed(self, num_steps, window):
        """K changed: rescale the window widget to 0..K, keeping the window inside it."""
        try:
            k = int(views.parse_number("num_steps", num_steps))
        except ValueError:
            return gr.skip()
        start, end = views.fit_window(window, k)
        return gr.HTML(value=f"{start}:{end}", steps=k, strip=[], hint="computing x0 previews…")

    def strip(self, model, num_steps):
        """The base model's x0-prediction strip under the window (computed once per model and K)."""
        try:
            k = int(views.parse_number("num_steps", num_steps))
        except ValueError:
            return gr.skip()
        try:
            uris = views.x0_strip(model, k)
        except Exception as error:  # noqa: BLE001 - a missing model must not break the page
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            return gr.HTML(strip=[], hint=f"no x0 previews: {reason}")
        return gr.HTML(strip=uris, hint="")

    @_safe(4)
    def choices(self, model, reward):
        """Model and reward dropdowns with availability (loaded after the page is up: imports torch)."""
        models = views.model_choices(extra=[model] if model else [])
        rewards = views.reward_choices()
        return (gr.Dropdown(choices=models, value=model), views.model_info(model),
                gr.Dropdown(choices=rewards, value=reward), views.reward_info(reward))

    # -- Live tab ----------------------------------------------------------------------------------
    def _live_figures(self, snap):
        key = (snap.run_id, len(snap.rows), snap.state in ("done", "stopped", "failed"))
        cached = self._figures.get(key)
        if cached is None:
            past = []
            if snap.config:
                past = views.history(self.store, snap.config.get("model"), snap.config.get("reward"),
                                     exclude=snap.run_id, rows_of=self.manager.rows)
            cached = (views.trajectory_figure(snap.rows, snap.config, past), views.curves_figure(snap.rows))
            if len(self._figures) > 64:
                self._figures.clear()
            self._figures[key] = cached
        return key, cached

    def tick(self, seen):
        """Timer tick: status, plots and grids, each sent only when it changed since this tab's last tick."""
        seen = dict(seen or {})
        try:
            snap = self.manager.snapshot()
            status = views.status_html(snap)
            key, (trajectory, curves) = self._live_figures(snap)
        except Exception as error:  # noqa: BLE001 - polling must never break
            log.exception("tick failed")
            message = views.notice_html(f"Status unavailable: {error}", "error")
            return message, message, gr.skip(), gr.skip(), gr.skip(), seen
        outputs = []
        outputs.append(status if seen.get("status") != status else gr.skip())
        outputs.append(status if seen.get("status") != status else gr.skip())
        seen["status"] = status
        fresh = seen.get("figures") != list(key)
        outputs += [trajectory, curves] if fresh else [gr.skip(), gr.skip()]
        seen["figures"] = list(key)
        grids = [(snap.base_grid, "epoch 0 · base model")] if snap.base_grid else []
        if snap.grid and snap.grid != snap.base_grid:
            latest = Path(snap.grid).stem.split("-")[-1]
            grids.append((snap.grid, f"epoch {int(latest)} · latest"))
        gallery_key = [g[0] for g in grids]
        outputs.append(grids if seen.get("gallery") != gallery_key else gr.skip())
        seen["gallery"] = gallery_key
        return (*outputs, seen)

    def status_api(self) -> dict:
        """The current job as JSON (``/status`` endpoint)."""
        return views.snapshot_dict(self.manager.snapshot())

    # -- Compare and Runs tabs ---------------------------------------------------------------------
    def sources(self, a=None, b=None):
        choices = views.source_choices(self.store, models=[self.defaults.model])
        values = [c[1] for c in choices]
        first = values[0] if values else None
        latest = next((v for v in values if v.startswith("ckpt:")), first)
        a = a if a in values else first
        b = b if b in values else latest
        return gr.Dropdown(choices=choices, value=a), gr.Dropdown(choices=choices, value=b)

    @_safe(5)
    def compare(self, a, b, n, seed, reward, thumbnails=False):
        result = views.compare(self.store, a, b, n=n, seed=seed, reward=reward or None, thumbnails=bool(thumbnails))
        headers = ["metric", "A", "B", "B − A"]
        return (gr.Image(value=result.grid_a, label=f"A · {result.label_a}"),
                gr.Image(value=result.grid_b, label=f"B · {result.label_b}"),
                gr.Dataframe(value=result.table, headers=headers), result.figure,
                views.notice_html(f"{n} samples each, seeds {int(seed)}…{int(seed) + int(n) - 1}", "ok"))

    @_safe(2)
    def runs(self):
        table = views.runs_table(self.store, snapshot_of=self._snapshot_of)
        ids = [row[0] for row in table]
        return gr.Dataframe(value=table or [["–"] * len(views.RUN_COLUMNS)], headers=views.RUN_COLUMNS), \
            gr.Dropdown(choices=ids, value=ids[0] if ids else None)

    def _snapshot_of(self, run_id):
        return self.manager.snapshot(run_id)

    @_safe(2)
    def run_selected(self, run_id):
        if not run_id:
            return {}, gr.Dropdown(choices=[], value=None)
        run = self.store.get(run_id)
        checkpoints = views.checkpoint_choices(run)
        return views.run_details(run), gr.Dropdown(choices=checkpoints,
                                                   value=checkpoints[0][1] if checkpoints else None)

    @_safe(1)
    def sample(self, source, n, seed):
        if not source:
            raise ValueError("this run has no checkpoint yet: checkpoints are saved every few epochs and at the end")
        return views.sample_grid(self.store, source, n=n, seed=seed)

    def results(self):
        content = views.results_content(self.docs_dir)
        if content is None:
            return ("*No paper results yet.* The reproduction experiment (`python -m hrf_core experiment`) "
                    "writes `docs/RESULTS.md` and `docs/results/`; they appear here once generated.", [])
        text, figures = content
        return text or "*docs/results/ exists but has no summary yet.*", figures

    # -- layout ------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        d = self.defaults
        form = views.form_from_config(d)
        k = d.num_steps
        with gr.Blocks(title="HRF Explorer") as demo:
            with gr.Column(elem_classes="hrf-header"):
                gr.Markdown("# HRF Explorer\nRL fine-tuning of a diffusion model, live: **DDPO** trains every "
                            "denoising step and collapses diversity; **HRF** trains only a window of late steps "
                            "and keeps the coarse content. Pick a reward, drag the window, press Start.")
            seen = gr.State({})
            with gr.Tabs(elem_id="tabs") as tabs:
                # ---------------------------------------------------------------------- Train
                with gr.Tab("Train", id="train", elem_id="tab-train"):
                    with gr.Row(equal_height=False):
                        with gr.Column(min_width=200):
                            preset = gr.Dropdown([views.NO_PRESET, *PRESETS], value=self.preset, label="Preset",
                                                 info="fills every field", elem_id="preset")
                        with gr.Column(min_width=260):
                            model = gr.Dropdown([(d.model, d.model)], value=d.model, label="Base model",
                                                allow_custom_value=True, elem_id="model",
                                                info="or type a local diffusers folder")
                            model_info = gr.Markdown("", elem_classes="hrf-info", elem_id="model-info")
                        with gr.Column(min_width=220):
                            reward = gr.Dropdown([(d.reward, d.reward)], value=d.reward, label="Reward",
                                                 info="what fine-tuning maximises", elem_id="reward")
                            reward_info = gr.Markdown("", elem_classes="hrf-info", elem_id="reward-info")
                        with gr.Column(scale=2, min_width=380):
                            method = gr.Radio([(v, key) for key, v in views.METHOD_LABELS.items()],
                                              value=d.method, label="Method", elem_id="method",
                                              info="which denoising steps are trained")
                            method_help = gr.Markdown(views.METHOD_HELP.get(d.method, ""), elem_classes="hrf-info")
                    window = gr.HTML(form["window"], html_template=WINDOW_TEMPLATE, css_template=WINDOW_CSS,
                                     js_on_load=WINDOW_JS, steps=k, strip=[], hint="computing x0 previews…",
                                     elem_id="window", apply_default_css=False, container=True, padding=True)
                    note = gr.Markdown(views.window_note(d.method, form["window"], k, d.epochs),
                                       elem_id="window-note", elem_classes="hrf-note")
                    with gr.Accordion("Advanced settings", open=False, elem_id="advanced"):
                        numbers = []
                        with gr.Row():
                            for name in NUMBER_NAMES:
                                label, low, high, kind = views.NUMBER_FIELDS[name]
                                numbers.append(gr.Number(form[name], label=label, precision=0 if kind is int
                                                         else None, elem_id=f"num-{name}", min_width=150))
                    with gr.Row():
                        start = gr.Button("▶ Start", variant="primary", elem_id="start-btn", scale=3)
                        stop = gr.Button("■ Stop", variant="stop", elem_id="stop-btn", scale=1)
                    train_status = gr.HTML(views.status_html(self.manager.snapshot()), elem_id="train-status",
                                           js_on_load=None)
                    notice = gr.HTML("", elem_id="notice", js_on_load=None)
                # ---------------------------------------------------------------------- Live
                with gr.Tab("Live", id="live", elem_id="tab-live"):
                    with gr.Row(equal_height=False):
                        live_status = gr.HTML(views.status_html(self.manager.snapshot()), elem_id="live-status",
                                              js_on_load=None, scale=5)
                        live_stop = gr.Button("■ Stop", variant="stop", elem_id="live-stop-btn", scale=0,
                                              min_width=110)
                    with gr.Row(equal_height=False):
                        trajectory = gr.Plot(label="Reward vs diversity", elem_id="trajectory-plot", scale=1,
                                             show_label=False)
                        gallery = gr.Gallery(label="Samples: base model vs latest (same evaluation seed)",
                                             show_label=False, elem_id="live-gallery", columns=2, rows=1, height=330,
                                             object_fit="contain", scale=1, allow_preview=True, interactive=False)
                    curves = gr.Plot(label="Per-epoch curves", elem_id="curves-plot", show_label=False)
                # ---------------------------------------------------------------------- Compare
                with gr.Tab("Compare", id="compare", elem_id="tab-compare") as compare_tab:
                    gr.Markdown("Sample two models with the **same seeds**: the base model or any checkpoint of "
                                "any run. Lines in the scatter join the two samples of one seed.")
                    with gr.Row():
                        source_a = gr.Dropdown([], label="A", elem_id="compare-a", scale=3, allow_custom_value=True)
                        source_b = gr.Dropdown([], label="B", elem_id="compare-b", scale=3, allow_custom_value=True)
                        compare_n = gr.Number(32, label="Samples", precision=0, min_width=100, scale=1)
                        compare_seed = gr.Number(0, label="First seed", precision=0, min_width=100, scale=1)
                        compare_reward = gr.Dropdown([(d.reward, d.reward)], value=d.reward, label="Reward",
                                                     scale=2)
                    with gr.Row():
                        compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn", scale=4)
                        compare_thumbs = gr.Checkbox(False, label="images in the scatter", scale=1,
                                                     elem_id="compare-thumbnails")
                    compare_note = gr.HTML("", js_on_load=None)
                    with gr.Row():
                        grid_a = gr.Image(label="A", type="pil", elem_id="grid-a", interactive=False, height=320)
                        grid_b = gr.Image(label="B", type="pil", elem_id="grid-b", interactive=False, height=320)
                    with gr.Row(equal_height=False):
                        metrics_table = gr.Dataframe(headers=["metric", "A", "B", "B − A"], label="Metrics",
                                                     elem_id="compare-metrics", interactive=False, scale=1,
                                                     column_widths=["46%", "18%", "18%", "18%"])
                        projection = gr.Plot(label="Embedding projection", elem_id="projection-plot", scale=1)
                # ---------------------------------------------------------------------- Runs
                with gr.Tab("Runs", id="runs", elem_id="tab-runs") as runs_tab:
                    refresh = gr.Button("↻ Refresh", size="sm", elem_id="runs-refresh")
                    runs_table = gr.Dataframe(headers=views.RUN_COLUMNS, label="Runs on disk, newest first (metrics: base model → last evaluation)",
                                              elem_id="runs-table", interactive=False, wrap=True,
                                              column_widths=["24%", "8%", "8%", "12%", "10%", "6%", "10%", "10%",
                                                             "7%", "5%"])
                    with gr.Row():
                        run_pick = gr.Dropdown([], label="Run", elem_id="run-pick", scale=3)
                        checkpoint_pick = gr.Dropdown([], label="Checkpoint", elem_id="checkpoint-pick", scale=2,
                                                      allow_custom_value=True)
                        sample_n = gr.Number(16, label="Samples", precision=0, min_width=100, scale=1)
                        sample_seed = gr.Number(0, label="Seed", precision=0, min_width=100, scale=1)
                        sample_btn = gr.Button("Sample", variant="primary", scale=1, elem_id="sample-btn")
                    with gr.Row(equal_height=False):
                        details = gr.JSON(label="Config and last metrics", elem_id="run-details")
                        sampled = gr.Image(label="Samples from the checkpoint", type="pil", interactive=False,
                                           elem_id="sampled-grid")
                # ---------------------------------------------------------------------- Results (hook)
                with gr.Tab("Results", id="results", elem_id="tab-results") as results_tab:
                    # HOOK: filled from docs/RESULTS.md and docs/results/*.png by the paper experiment.
                    results_text, results_figures = self.results()
                    results_md = gr.Markdown(results_text, elem_id="results-md")
                    results_gallery = gr.Gallery(results_figures, label="Figures", columns=2, height="auto",
                                                 interactive=False, elem_id="results-gallery")

            # ------------------------------------------------------------------------ events
            start.click(self.start, [preset, model, reward, method, window, *numbers], [notice, tabs],
                        api_name="start", concurrency_id="control", concurrency_limit=4)
            for button in (stop, live_stop):
                button.click(self.stop, None, notice, api_name="stop" if button is stop else None,
                             api_visibility="public" if button is stop else "private",
                             concurrency_id="control", concurrency_limit=4)
            preset.change(self.fill_preset, preset, [model, reward, method, window, note, *numbers],
                          show_progress="hidden", api_visibility="private")
            model.change(lambda m: views.model_info(m), model, model_info, show_progress="hidden",
                         api_visibility="private").then(
                self.strip, [model, numbers[NUMBER_NAMES.index("num_steps")]], window, show_progress="hidden",
                api_visibility="private", concurrency_id="sampling", concurrency_limit=1)
            reward.change(lambda r: views.reward_info(r), reward, reward_info, show_progress="hidden",
                          api_visibility="private")
            method.change(self.method_help, method, method_help, show_progress="hidden", api_visibility="private")
            steps_box = numbers[NUMBER_NAMES.index("num_steps")]
            epochs_box = numbers[NUMBER_NAMES.index("epochs")]
            steps_box.change(self.steps_changed, [steps_box, window], window, show_progress="hidden",
                             api_visibility="private").then(
                self.strip, [model, steps_box], window, show_progress="hidden", api_visibility="private",
                concurrency_id="sampling", concurrency_limit=1)
            for trigger in (method.change, window.change, steps_box.change, epochs_box.change):
                trigger(self.note, [method, window, steps_box, epochs_box], note, show_progress="hidden",
                        api_visibility="private")

            timer = gr.Timer(TICK_SECONDS)
            live_outputs = [live_status, train_status, trajectory, curves, gallery, seen]
            timer.tick(self.tick, seen, live_outputs, show_progress="hidden", concurrency_limit=None,
                       concurrency_id="tick", api_visibility="private", trigger_mode="always_last")
            gr.api(self.status_api, api_name="status")

            demo.load(self.tick, seen, live_outputs, show_progress="hidden", concurrency_limit=None,
                      concurrency_id="tick", api_visibility="private")
            demo.load(self.choices, [model, reward], [model, model_info, reward, reward_info],
                      show_progress="hidden", api_visibility="private").then(
                self.strip, [model, steps_box], window, show_progress="hidden", api_visibility="private",
                concurrency_id="sampling", concurrency_limit=1)

            compare_tab.select(self.sources, [source_a, source_b], [source_a, source_b], show_progress="hidden",
                               api_visibility="private")
            compare_tab.select(lambda r: gr.Dropdown(choices=views.reward_choices(), value=r), compare_reward,
                               compare_reward, show_progress="hidden", api_visibility="private")
            compare_btn.click(self.compare, [source_a, source_b, compare_n, compare_seed, compare_reward,
                                             compare_thumbs],
                              [grid_a, grid_b, metrics_table, projection, compare_note], api_name="compare",
                              concurrency_id="sampling", concurrency_limit=1)
            for trigger in (runs_tab.select, refresh.click):
                trigger(self.runs, None, [runs_table, run_pick], show_progress="hidden", api_visibility="private")
            run_pick.change(self.run_selected, run_pick, [details, checkpoint_pick], show_progress="hidden",
                            api_visibility="private")
            sample_btn.click(self.sample, [checkpoint_pick, sample_n, sample_seed], sampled, api_name="sample",
                             concurrency_id="sampling", concurrency_limit=1)
            results_tab.select(self.results, None, [results_md, results_gallery], show_progress="hidden",
                               api_visibility="private")
        return demo


def build_app(manager: JobManager | None = None, defaults: TrainConfig | None = None) -> gr.Blocks:
    """The app's Blocks (tests pass their own manager and small defaults)."""
    return Lab(manager, defaults).build()


def launch_kwargs(runs_dir: Path | None = None) -> dict:
    """Arguments every launch needs: no SSR, theme and CSS, and the run store served for the grids."""
    paths = [str(runs_dir or RUNS_DIR), str(DOCS_DIR / "results")]
    return {"ssr_mode": False, "theme": gr.themes.Default(primary_hue="indigo", secondary_hue="pink"),
            "css": APP_CSS, "allowed_paths": paths, "footer_links": ["api", "gradio"]}


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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    demo = build_app()
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                prevent_thread_lock=True, **launch_kwargs(global_manager().store.root))
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    demo.block_thread()


if __name__ == "__main__":
    main()
