"""The Results tab: docs/RESULTS.md and its figures."""

from __future__ import annotations

import gradio as gr

from explorer.views import results


class ResultsTab:
    def __init__(self, lab):
        self.lab = lab

    def results(self):
        content = results.results_content(self.lab.docs_dir)
        if content is None:
            return ("*No results yet.* The experiments (`python -m hrf_core experiment frontier-digits`) write "
                    "`docs/RESULTS.md` and `docs/results/`; they appear here once generated.", [])
        text, figures = content
        return text or "*docs/results/ exists but has no summary yet.*", figures

    def layout(self, c) -> None:
        with gr.Tab("Results", id="results", elem_id="tab-results") as c.results_tab:
            results_text, results_figures = self.results()
            c.results_md = gr.Markdown(results_text, elem_id="results-md")
            c.results_gallery = gr.Gallery(results_figures, label="Figures", columns=2, height="auto",
                                           interactive=False, elem_id="results-gallery")

    def events(self, c, demo) -> None:
        c.results_tab.select(self.results, None, [c.results_md, c.results_gallery], show_progress="hidden",
                             api_visibility="private")
