"""The Results tab: docs/RESULTS.md and its figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

#: Where the app serves a file it is allowed to serve (Gradio's file route).
FILE_ROUTE = "/gradio_api/file="


def served_images(markdown: str, docs_dir: Path) -> str:
    """Point the Markdown's relative image links (``![a](results/x.png)``) at the app's file route.

    The file on disk keeps its relative links, so it reads on GitHub too; in the app a relative link
    resolves against the page's address (``/results/x.png``), which nothing serves.
    """

    def absolute(match: re.Match) -> str:
        alt, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:|^/", target):
            return match.group(0)
        path = (docs_dir / target).resolve()
        return f"![{alt}]({FILE_ROUTE}{path})" if path.is_file() else f"*{alt}: not generated yet*"

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", absolute, markdown)


def results_content(docs_dir: Path) -> tuple[str, list[tuple[str, str]]] | None:
    """``docs/RESULTS.md`` and the figures in ``docs/results/`` when they exist, else None.

    The experiment (``hrf_core.experiment``, frontier-digits) writes these; the Results
    tab shows whatever is there, its images served by the app.
    """
    results = docs_dir / "results"
    markdown_file = docs_dir / "RESULTS.md"
    if not results.is_dir() and not markdown_file.is_file():
        return None
    text = served_images(markdown_file.read_text(), docs_dir) if markdown_file.is_file() else ""
    # the headline figures (the frontier first); the grids are inline in the report
    pngs = sorted(results.glob("*.png"), key=lambda p: (p.stem != "frontier", p.name)) if results.is_dir() else []
    figures = [(str(p), p.stem.replace("_", " ").replace("-", " ")) for p in pngs if not p.stem.startswith("grid-")]
    if not text:
        summaries = sorted(results.glob("*.json")) if results.is_dir() else []
        if summaries:
            try:
                data = json.loads(summaries[0].read_text())
                text = f"```json\n{json.dumps(data, indent=2)[:6000]}\n```"
            except (OSError, json.JSONDecodeError):
                text = ""
    return text, figures
