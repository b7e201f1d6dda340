"""The report's prose against its tables: every number the Reading quotes from a table must be in it.

``docs/results/reading.md`` is written by hand and pasted into ``docs/RESULTS.md``. When the experiment
is regenerated the tables change and the prose may not. :func:`stale_numbers` finds, in the prose,

- every interval quoted as ``value [low, high]`` (e.g. ``+1.64 [+0.45, +3.03]``): some summary in the
  sources (a frontier's ``{"mean", "ci"}``, or a locality profile's D with its interval) must have that
  value and 95% interval at the quoted precision;
- every such interval followed, in the same clause, by a seed count ``(N seeds)``: the summary must have
  been computed from N seeds (its ``n``), so the prose never claims more seeds than the table holds;
- every share quoted as ``N% of DDPO's ...`` or ``N% ± ...``: some arm's final reward gain must be
  N% of DDPO's (rounded to a whole percent);

and returns the ones no source holds, each with its context, so a stale number names itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

INTERVAL = re.compile(r"([+-]?\d+\.\d+) \[([+-]?\d+\.\d+), ([+-]?\d+\.\d+)\]")
#: an interval and the seed count quoted after it in the same clause ("+1.95 [+0.73, +2.94] at 75% (2 seeds)",
#: "..., 2 seeds", "(2/3 seeds)": 2 seeds of 3 reached it)
INTERVAL_SEEDS = re.compile(
    r"([+-]?\d+\.\d+) \[([+-]?\d+\.\d+), ([+-]?\d+\.\d+)\][^;\[\]()]{0,40}?(?:\(|, )(\d+)(?:/\d+)? seeds?\b")
SHARE = re.compile(r"(-?\d+)% (?:of DDPO's|±)")


def _summaries(node, out: list[tuple[float, float, float, int | None]]) -> None:
    if isinstance(node, dict):
        if "mean" in node and isinstance(node.get("ci"), (list, tuple)) and len(node["ci"]) == 2:
            n = node.get("n")
            out.append((float(node["mean"]), float(node["ci"][0]), float(node["ci"][1]),
                        int(n) if isinstance(n, int) else None))
        if "decided" in node and "decided_interval" in node:  # a locality profile (hrf_core.study.locality)
            out.extend((float(d), float(lo), float(hi), None)
                       for d, (lo, hi) in zip(node["decided"], node["decided_interval"], strict=True))
        for value in node.values():
            _summaries(value, out)
    elif isinstance(node, list):
        for value in node:
            _summaries(value, out)


def shares_of(frontier: dict) -> set[int]:
    """Every arm's final reward gain as a whole percentage of DDPO's, per task of a ``frontier.json``."""
    shares = set()
    for group in frontier.get("groups", {}).values():
        reference = group["reference"]["final_gain"]
        if not reference:
            continue
        for entry in group["arms"].values():  # an earlier sitting's arm: against that sitting's DDPO
            shares.add(round(100 * entry["final"]["gain"]["mean"] / entry.get("reference_final_gain", reference)))
    return shares


def window_only_shares(rows: list[dict]) -> set[int]:
    """Mean shares of DDPO's gain per (task, arm), sampled everywhere and window-only, in
    ``scripts/window_only.py``'s JSON (each row's first value is the share as a fraction)."""
    groups: dict[tuple, list[list[float]]] = {}
    for row in rows:
        for kind in ("everywhere", "window_only"):
            groups.setdefault((row["task"], row["arm"], kind), []).append(row[kind])
    return {round(100 * sum(v[0] for v in values) / len(values)) for values in groups.values()}


def report_sources(results: Path) -> tuple[list[dict], set[int]]:
    """What the Reading may quote, from a report's ``results/`` folder: ``frontier.json``, ``locality.json`` and
    ``prompts.json`` (their summaries and shares), and the shares of ``window-only.json``
    (:func:`window_only_shares`)."""
    names = ("frontier.json", "locality.json", "prompts.json")
    sources = [json.loads((results / name).read_text()) for name in names if (results / name).is_file()]
    window_only = results / "window-only.json"
    shares = window_only_shares(json.loads(window_only.read_text())) if window_only.is_file() else set()
    return sources, shares


def stale_numbers(text: str, sources: Iterable[dict], extra_shares: Iterable[int] = ()) -> list[str]:
    """Numbers of ``text`` that none of ``sources`` (``frontier.json`` results, or any JSON with
    ``{"mean", "ci"}`` summaries) holds at the quoted precision, each as "number (…context)".
    ``extra_shares``: more whole percentages a share may quote (e.g. :func:`window_only_shares`)."""
    sources = list(sources)
    summaries: list[tuple[float, float, float, int | None]] = []
    shares: set[int] = set(extra_shares)
    for source in sources:
        _summaries(source, summaries)
        shares |= shares_of(source)
    stale = []

    def holding(groups) -> list[tuple]:
        quoted = [float(v) for v in groups]
        digits = [len(v.split(".")[1]) for v in groups]
        return [summary for summary in summaries if all(abs(q - s) <= 0.5 * 10 ** -d + 1e-9
                                                         for q, s, d in zip(quoted, summary[:3], digits, strict=True))]

    for match in INTERVAL.finditer(text):
        if not holding(match.groups()):
            stale.append(f"{match.group(0)} (…{_context(text, match.start())})")
    for match in INTERVAL_SEEDS.finditer(text):
        found = holding(match.groups()[:3])
        counts = {summary[3] for summary in found if summary[3] is not None}
        if counts and int(match.group(4)) not in counts:
            stale.append(f"{match.group(0)}: the table has n = {', '.join(map(str, sorted(counts)))} "
                         f"(…{_context(text, match.start())})")
    for match in SHARE.finditer(text):
        if int(match.group(1)) not in shares:
            stale.append(f"{match.group(0)} (…{_context(text, match.start())})")
    return stale


def _context(text: str, at: int, width: int = 70) -> str:
    return " ".join(text[max(0, at - width):at].split())
