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

    The experiment (``python -m hrf_core experiment frontier-digits``: :mod:`hrf_core.study.report`) writes these;
    the Results tab shows whatever is there, its images served by the app.
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


#: How many of the report's findings the summary shows (its "Reading" section's numbered, bold-led points).
SUMMARY_POINTS = 4


def summary(markdown: str, points: int = SUMMARY_POINTS) -> str:
    """The answer in a few lines: the bold lead sentence of the report's first numbered findings ("**1. ...**"),
    and its "Best row" line; "" when the report has neither."""
    leads = re.findall(r"^\*\*(\d+)\.\s+(.+?)\*\*", markdown, flags=re.MULTILINE)
    lines = [f"{number}. {text.strip()}" for number, text in leads[:points]]
    best = re.search(r"^Best row: (.+)$", markdown, flags=re.MULTILINE)
    if best:  # a paragraph of its own, not a continuation of the last finding
        lines.append(f"\nBest method against early-stopped DDPO at matched reward: {best.group(1).strip()}")
    return "\n".join(lines)


def folded(markdown: str) -> tuple[str, list[str]]:
    """The report as (its introduction, each ``##`` section folded in a ``<details>`` whose summary is the section's
    title): the titles, read down the page, are its table of contents; the long tables stay shut until opened."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    intro, sections = parts[0], []
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        sections.append(f"<details><summary>{title.strip()}</summary>\n\n{body.strip()}\n\n</details>")
    return intro.strip(), sections


def headline_figure(docs_dir: Path) -> str | None:
    """The report's summary figure (``results/frontier.png``) as a path, when it exists."""
    try:
        return str(figure_file(docs_dir, "frontier.png"))
    except ValueError:
        return None
