"""The Results tab: docs/RESULTS.md and its figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

from explorer.serving import figure_file, figure_files

#: Where the app serves a Results figure, relative to the page (so it works under any path prefix).
FIGURE_ROUTE = "live/results/"


def served_images(markdown: str, docs_dir: Path) -> str:
    """Point the Markdown's image links (``![a](results/x.png)``) at the app's figure route.

    The file on disk keeps its relative links, so it reads on GitHub too; in the app they become
    ``live/results/x.png``, relative to the page, which serves the figures of ``docs/results/`` and nothing
    else. Links to anything else are left out.
    """

    def served(match: re.Match) -> str:
        alt, target = match.group(1), match.group(2)
        if re.match(r"^https?:", target):
            return match.group(0)
        folder, _, name = target.partition("/")
        try:
            if folder != "results":
                raise ValueError(target)
            figure_file(docs_dir, name)
        except ValueError:
            return f"*{alt}: not generated yet*"
        return f"![{alt}]({FIGURE_ROUTE}{name})"

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", served, markdown)


def results_content(docs_dir: Path) -> tuple[str, list[tuple[str, str]]] | None:
    """``docs/RESULTS.md`` and the figures in ``docs/results/`` when they exist, else None.

    The experiment (``hrf_core.study.experiment``, frontier-digits) writes these; the Results
    tab shows whatever is there, its images served by the app.
    """
    results = docs_dir / "results"
    markdown_file = docs_dir / "RESULTS.md"
    if not results.is_dir() and not markdown_file.is_file():
        return None
    text = served_images(markdown_file.read_text(), docs_dir) if markdown_file.is_file() else ""
    # the headline figures (the frontier first); the grids are inline in the report
    pngs = sorted(figure_files(docs_dir), key=lambda p: (p.stem != "frontier", p.name))
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
