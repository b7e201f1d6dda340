"""The Live tab: the panel ui/live.js draws from the live stream (no Gradio events but Stop)."""

from __future__ import annotations

import gradio as gr


class LiveTab:
    def __init__(self, lab):
        self.lab = lab

    def layout(self, c) -> None:
        with gr.Tab("Live", id="live", elem_id="tab-live"):
            with gr.Row(equal_height=False):
                gr.HTML("<div class='hrf-live-hint'>Share <code>?view=1</code> (this address plus "
                        "<code>?view=1</code>) for a read-only page of this tab.</div>")
                c.live_stop = gr.Button("■ Stop", variant="stop", elem_id="live-stop-btn", scale=0, min_width=110)
            gr.HTML("<div id='hrf-live' data-mode='live'></div>", elem_id="live-panel")

    def events(self, c, demo) -> None:
        c.live_stop.click(self.lab.guarded(self.lab.train.stop), c.token, c.notice, api_name="ui_stop",
                          api_visibility="private", concurrency_id="control", concurrency_limit=4)
