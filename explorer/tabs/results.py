"""The Results tab: the answer first (a few lines and the summary figure at page width), then docs/RESULTS.md with
each section folded under its title (the titles read as a table of contents), then every figure."""

from __future__ import annotations

import gradio as gr

from explorer.views import results


class ResultsTab:
    def __init__(self, lab):
        self.lab = lab

    def results(self):
        """(the answer in a few lines, the summary figure or None, the folded report, the figures)."""
        content = results.results_content(self.lab.docs_dir)
        if content is None:
            return ("", None, "*No results yet.* The experiments (`python -m hrf_core experiment frontier-digits`) "
                    "write `docs/RESULTS.md` and `docs/results/`; they appear here once generated.", [])
        text, figures = content
        if not text:
            return "", None, "*docs/results/ exists but has no summary yet.*", figures
        answer = results.summary(text)
        intro, sections = results.folded(text)
        title, _, rest = intro.partition("\n")
        lead = f"{title}\n\n**The answer, in short:**\n\n{answer}" if answer else title
        contents = "\n\n### Contents: open a section to read it\n\n" + "\n\n".join(sections) if sections else ""
        report = rest.strip() + contents
        return lead, results.headline_figure(self.lab.docs_dir), report, figures

    def layout(self, c) -> None:
        with gr.Tab("Results", id="results", elem_id="tab-results") as c.results_tab:
            lead, figure, report, figures = self.results()
            c.results_summary = gr.Markdown(lead, elem_id="results-summary")
            c.results_figure = gr.Image(figure, show_label=False, interactive=False, elem_id="results-figure",
                                        visible=figure is not None, buttons=["fullscreen", "download"])
            c.results_md = gr.Markdown(report, elem_id="results-md")
            c.results_gallery = gr.Gallery(figures, label="Figures", columns=2, height="auto",
                                           interactive=False, elem_id="results-gallery")

    def refresh(self):
        lead, figure, report, figures = self.results()
        return lead, gr.Image(figure, visible=figure is not None), report, figures

    def events(self, c, demo) -> None:
        c.results_tab.select(self.refresh, None, [c.results_summary, c.results_figure, c.results_md,
                                                  c.results_gallery], show_progress="hidden", api_visibility="private")
