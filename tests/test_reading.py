"""The Reading of docs/RESULTS.md quotes only numbers its tables hold (hrf_core.study.reading)."""

from __future__ import annotations

import json
from pathlib import Path

from hrf_core.study.reading import report_sources, stale_numbers

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_interval_and_share_in_the_reading_is_in_the_tables():
    sources, extra = report_sources(DOCS / "results")
    assert len(sources) == 3 and extra  # frontier.json, locality.json and prompts.json; window-only.json's shares
    stale = stale_numbers((DOCS / "results" / "reading.md").read_text(), sources, extra)
    assert not stale, "stale numbers in docs/results/reading.md:\n" + "\n".join(stale)


def test_the_report_carries_the_reading_verbatim():
    reading = (DOCS / "results" / "reading.md").read_text().strip()
    assert reading in (DOCS / "RESULTS.md").read_text()


def test_the_prompts_reading_quotes_only_its_tables_and_is_in_the_report():
    """docs/results/prompts-reading.md (by hand) against prompts.json alone, the tables it sits under."""
    notes = (DOCS / "results" / "prompts-reading.md").read_text()
    stale = stale_numbers(notes, [json.loads((DOCS / "results" / "prompts.json").read_text())])
    assert not stale, "stale numbers in docs/results/prompts-reading.md:\n" + "\n".join(stale)
    assert notes.strip() in (DOCS / "results" / "prompts.md").read_text()
    assert notes.strip() in (DOCS / "RESULTS.md").read_text()


def test_a_stale_number_names_itself():
    frontier = {"groups": {"g": {"reference": {"final_gain": 2.0}, "arms": {
        "hrf": {"final": {"gain": {"mean": 1.0}}, "matched_reward": [
            {"delta_vs_ddpo": {"is_classifier": {"mean": 0.5, "ci": [0.123, 0.9]}}}]}}}}}
    text = "HRF reaches 50% of DDPO's gain, IS Δ +0.50 [+0.12, +0.90]; elsewhere +0.50 [+0.13, +0.90], 60% of DDPO's"
    stale = stale_numbers(text, [frontier])
    assert len(stale) == 2
    assert stale[0].startswith("+0.50 [+0.13, +0.90] (…HRF reaches 50% of DDPO's gain, IS Δ +0.50 [+0.12, +0.90]; "
                               "elsewhere")
    assert stale[1].startswith("60% of DDPO's")


def test_a_seed_count_the_table_does_not_hold_names_itself():
    """The prose may not claim more (or fewer) seeds than the summary it quotes was computed from."""
    frontier = {"groups": {"g": {"reference": {"final_gain": 2.0}, "arms": {"hrf": {
        "final": {"gain": {"mean": 1.0}},
        "matched_reward": [{"delta_vs_ddpo": {"is_classifier": {"mean": 1.95, "ci": [0.73, 2.94], "n": 2}}}]}}}}}
    assert not stale_numbers("IS Δ +1.95 [+0.73, +2.94] at 75% (2 seeds)", [frontier])
    stale = stale_numbers("above it at 75% (IS Δ +1.95 [+0.73, +2.94], 3 seeds)", [frontier])
    assert len(stale) == 1 and "the table has n = 2" in stale[0]
    assert len(stale_numbers("IS Δ +1.95 [+0.73, +2.94] at 75% (3 seeds)", [frontier])) == 1


def test_the_headline_rerun_quotes_only_its_tables_and_carries_its_reading():
    """docs/results/headline/ (the 5-seed rerun: frontier-digits and prompts-digits in one report): its reading
    quotes only its own tables, sits verbatim in its RESULTS.md, and docs/RESULTS.md points to it."""
    folder = DOCS / "results" / "headline"
    sources, extra = report_sources(folder / "results")
    assert len(sources) == 2  # frontier.json and prompts.json
    notes = (folder / "results" / "reading.md").read_text()
    stale = stale_numbers(notes, sources, extra)
    assert not stale, "stale numbers in docs/results/headline/results/reading.md:\n" + "\n".join(stale)
    assert notes.strip() in (folder / "RESULTS.md").read_text()
    assert "results/headline/RESULTS.md" in (DOCS / "RESULTS.md").read_text()
