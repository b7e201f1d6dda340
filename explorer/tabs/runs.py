"""The Runs tab: every run on disk, its replay, Continue, and samples of its checkpoints."""

from __future__ import annotations

import gradio as gr

from explorer import presenter
from explorer.jobs import MAX_MORE_EPOCHS
from explorer.notices import safe, shown
from explorer.views import common, compare, runs


class RunsTab:
    def __init__(self, lab):
        self.lab = lab
        self.manager = lab.manager
        self.store = lab.store

    @safe(2)
    def runs(self):
        table = runs.runs_table(self.store, snapshot_of=self.manager.snapshot)
        ids = [row[0] for row in table]
        return gr.Dataframe(value=table or [["–"] * len(runs.RUN_COLUMNS)], headers=runs.RUN_COLUMNS), \
            gr.Dropdown(choices=ids, value=ids[0] if ids else None)

    @safe(5)
    def run_selected(self, run_id):
        """A run picked: its details, checkpoints and Continue line; the previous run's samples cleared."""
        if not run_id:
            return {}, gr.Dropdown(choices=[], value=None), gr.skip(), "", None
        run = self.store.get(run_id)
        checkpoints = runs.checkpoint_choices(run)
        more, hint = runs.continue_hint(run, self.manager.snapshot(run_id))
        picked = checkpoints[0][1] if checkpoints else None
        return (runs.run_details(run), gr.Dropdown(choices=checkpoints, value=picked), more,
                common.notice_html(hint, "info"), None)

    def continue_run(self, run_id, more, token):
        """Continue a stopped, interrupted or finished run for ``more`` epochs (``python -m hrf_core resume``)."""
        try:
            presenter.check(token)
            at = self.manager.continue_run(run_id or "", more)
        except (ValueError, PermissionError) as error:
            return shown(error, "Not continued: "), gr.Tabs()
        snap = self.manager.snapshot()
        return (common.notice_html(f"Continuing {run_id} from epoch {at} to epoch {snap.epochs}.", "ok"),
                gr.Tabs(selected="live"))

    @safe(1)
    def sample(self, source, n, seed, token="", run_id=None):
        presenter.check(token)
        if not source:
            if run_id and self.store.get(run_id).is_example:
                raise ValueError("example runs ship without weights: regenerate them (with checkpoints in a "
                                 "run store) with python -m hrf_core examples, or train your own run")
            raise ValueError("this run has no checkpoint yet: checkpoints are saved every few epochs and at the end")
        return compare.sample_grid(self.store, source, n=n, seed=seed)

    def layout(self, c) -> None:
        with gr.Tab("Runs", id="runs", elem_id="tab-runs") as c.runs_tab:
            c.refresh = gr.Button("↻ Refresh", size="sm", elem_id="runs-refresh")
            c.runs_table = gr.Dataframe(headers=runs.RUN_COLUMNS, label="Runs on disk, newest first (metrics: "
                                        "base model → last evaluation)", elem_id="runs-table", interactive=False,
                                        wrap=True, column_widths=[f"{w}%" for w in runs.RUN_WIDTHS],
                                        datatype=runs.RUN_DATATYPES)
            c.run_pick = gr.Dropdown([], label="Run: replay it below (slider, ←/→) or sample a checkpoint",
                                     elem_id="run-pick", allow_custom_value=True)
            with gr.Row(equal_height=True):
                c.more_epochs = gr.Number(5, label="More epochs", precision=0, minimum=1, maximum=MAX_MORE_EPOCHS,
                                          elem_id="more-epochs", min_width=120, scale=1)
                # "▶" as Start's: Debian's chromium has no font with "⏵" (it showed an empty box)
                c.continue_btn = gr.Button("▶ Continue", elem_id="continue-btn", scale=1)
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

    def events(self, c, demo) -> None:
        quiet = dict(show_progress="hidden", api_visibility="private")
        guarded = self.lab.guarded
        for trigger in (c.runs_tab.select, c.refresh.click):
            trigger(self.runs, None, [c.runs_table, c.run_pick], **quiet)
        c.run_pick.change(self.run_selected, c.run_pick, [c.details, c.checkpoint_pick, c.more_epochs,
                                                          c.continue_note, c.sampled], **quiet)
        c.continue_btn.click(guarded(self.continue_run), [c.run_pick, c.more_epochs, c.token],
                             [c.continue_note, c.tabs], api_name="ui_continue", api_visibility="private",
                             concurrency_id="control", concurrency_limit=4)
        c.run_pick.change(None, c.run_pick, None, js="(runId) => window.hrfReplay && window.hrfReplay(runId)")
        c.sample_btn.click(guarded(self.sample), [c.checkpoint_pick, c.sample_n, c.sample_seed, c.token, c.run_pick],
                           c.sampled, api_name="ui_sample", api_visibility="private", concurrency_id="sampling",
                           concurrency_limit=1)
