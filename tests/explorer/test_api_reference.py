"""docs/API.md's reference is generated from the settings table and the endpoints' signatures: it lists every
parameter ``/start`` takes, and it is up to date (``python scripts/api_reference.py`` rewrites it)."""

from __future__ import annotations

import re

from explorer import api
from hrf_core import REPO_ROOT, settings

DOC = REPO_ROOT / "docs" / "API.md"


def documented_start_parameters(text: str) -> set[str]:
    """The parameter names of the ``/start`` table's rows in docs/API.md."""
    table = text.split("### `/start` and `/duel`", 1)[1].split("###", 1)[0]
    return {name for row in re.findall(r"^\| (`[^|]+`) \|", table, flags=re.MULTILINE)
            for name in re.findall(r"`([^`]+)`", row)}


def test_the_api_reference_is_the_generated_one():
    text = DOC.read_text()
    assert text == api.with_reference(text), "docs/API.md is out of date: run python scripts/api_reference.py"


def test_every_start_parameter_and_api_setting_is_documented():
    documented = documented_start_parameters(DOC.read_text())
    assert set(api.form_signature().parameters) == documented
    assert {s.name for s in settings.on("api")} <= documented
    assert {"prompts", "guidance", "guidance_grad", "prompt_buffer", "prompt_min_count", "bf16", "fp16",
            "lora_rank"} <= documented  # the fields the README's old hand-written table missed


def test_the_readme_links_the_reference_and_starts_quickly():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "docs/API.md" in readme
    first = "\n".join(readme.splitlines()[:60])
    for step in ("## Quick start", "pip install -r requirements.txt", "bash scripts/test.sh", "Start", "Live",
                 "Compare"):
        assert step in first, step
