"""Shipped files (checkpoints/, docs/) are read-only to experiments and tools: an experiment writes the app's
reference curves only when asked, and never replaces a wider reference or profile with a narrower one."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from hrf_core import REPO_ROOT
from hrf_core.study import locality
from hrf_core.study.reference import merge_shipped, shipped


def snapshot() -> tuple[str, dict]:
    """``git status --porcelain checkpoints docs`` and every file's sha256 there."""
    status = subprocess.run(["git", "status", "--porcelain", "checkpoints", "docs"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout
    files = {str(p.relative_to(REPO_ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
             for folder in ("checkpoints", "docs") for p in sorted((REPO_ROOT / folder).rglob("*")) if p.is_file()}
    return status, files


def test_a_small_experiment_with_out_and_docs_elsewhere_leaves_shipped_files_alone(tiny_model_dir, tmp_path):
    from small_experiment import args

    from hrf_core.commands.experiment import main as cli_main

    argv = args(tiny_model_dir, tmp_path, epochs=2)
    argv = argv[:argv.index("--reference")]  # the default: the reference goes nowhere
    argv[argv.index("--seeds") + 1:argv.index("--tasks")] = ["0"]
    argv[argv.index("--arms") + 1:argv.index("--threads")] = ["ddpo"]
    before = snapshot()
    assert cli_main([*argv, "--jobs", "1"]) == 0
    assert (tmp_path / "docs" / "RESULTS.md").is_file()
    assert snapshot() == before


def curve(seed, sizes, epochs=3):
    return {"seed": seed, "epochs": list(range(epochs)),
            "samples": {str(n): {"gain": [0.0] * epochs, "vendi_rbf": [1.0] * epochs} for n in sizes}}


def test_a_narrower_reference_never_replaces_a_wider_one(tmp_path):
    old = {"experiment": "wide", "rewards": {
        "ink": {"model": "digits16", "curves": [curve(s, (64, 256)) for s in (0, 1, 2)]},
        "symmetry": {"model": "digits16", "curves": [curve(0, (64,))]}}}
    new = {"experiment": "small", "rewards": {
        "ink": {"model": "digits16", "curves": [curve(0, (64, 8), epochs=2)]},
        "jpeg-compressibility": {"model": "digits16", "curves": [curve(0, (64,))]}}}
    merged = merge_shipped(old, new)
    assert set(merged["rewards"]) == {"ink", "symmetry", "jpeg-compressibility"}
    ink = {c["seed"]: c for c in merged["rewards"]["ink"]["curves"]}
    assert sorted(ink) == [0, 1, 2]
    assert all(set(c["samples"]) >= {"64", "256"} for c in ink.values())
    assert ink[0]["samples"]["64"] == old["rewards"]["ink"]["curves"][0]["samples"]["64"]  # 3 seeds beat 1
    assert "8" in ink[0]["samples"]  # a size the wide file lacked joins it
    (tmp_path / "ddpo_reference.json").write_text(json.dumps(merged))
    assert len(shipped(tmp_path, "ink", 64).seeds) == 3


def test_a_locality_profile_is_never_replaced_by_a_narrower_one(tmp_path, monkeypatch):
    folder = tmp_path / "digits16"
    folder.mkdir()
    wide = {"reward": "ink", "settings": {"trunks": 256}}
    (folder / locality.SHIPPED_FILE).write_text(json.dumps({"model": "digits16", "rewards": {
        "ink": wide, "symmetry": {"reward": "symmetry", "settings": {"trunks": 256}}}}))
    monkeypatch.setattr(locality, "CHECKPOINTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="refusing to replace it with a 16-trunk one"):
        locality.write_shipped("digits16", {"ink": {"reward": "ink", "settings": {"trunks": 16}}})
    locality.write_shipped("digits16", {"jpeg-compressibility": {"reward": "jpeg", "settings": {"trunks": 16}}})
    data = json.loads((folder / locality.SHIPPED_FILE).read_text())
    assert set(data["rewards"]) == {"ink", "symmetry", "jpeg-compressibility"} and data["rewards"]["ink"] == wide
    with pytest.raises(ValueError, match="embedded model"):
        locality.write_shipped("../elsewhere", {})
