"""Replay export: one GIF frame per evaluated epoch, small enough for slides."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from hrf_core.commands.animate import main as cli_main
from hrf_core.share.animate import frames
from hrf_core.store.runs import Run
from hrf_core.study.examples import EXAMPLES_DIR


@pytest.fixture
def example_run(tmp_path):
    source = EXAMPLES_DIR / "example-2-ddpo-ink"
    shutil.copytree(source, tmp_path / source.name)
    return Run(tmp_path / source.name)


def test_one_frame_per_evaluated_epoch_under_5_mb(example_run, tmp_path, capsys):
    out = tmp_path / "run.gif"
    assert cli_main([str(example_run.path), "--out", str(out)]) == 0
    evaluated = [r for r in example_run.metrics() if "reward_mean" in r]
    with Image.open(out) as gif:
        assert gif.n_frames == len(evaluated) == 13  # base model + 12 epochs
        assert gif.size[0] > 3 * gif.size[1] / 2  # three panels side by side
    assert out.stat().st_size < 5e6 * len(evaluated) / 15  # the budget: 5 MB for 15 epochs
    assert "wrote" in capsys.readouterr().out


def test_bad_requests_are_one_line(example_run, tmp_path):
    with pytest.raises(ValueError, match="must be a .gif"):
        cli_main([str(example_run.path), "--out", str(tmp_path / "x.png")])
    for grid in (example_run.path / "grids").glob("*.png"):
        grid.unlink()
    with pytest.raises(ValueError, match="no evaluated epoch with a grid"):
        frames(example_run)


def test_the_servers_replay_folder_stays_bounded(tmp_path):
    """One GIF per run (rebuilt when its metrics change, the old one removed), at most ``keep`` in all."""
    from hrf_core.share.animate import ReplayCache

    runs = []
    for name in ("a", "a-1", "b"):  # "a-1" starts like "a": each run's files are its own
        source = EXAMPLES_DIR / "example-2-ddpo-ink"
        shutil.copytree(source, tmp_path / "runs" / name, ignore=shutil.ignore_patterns("epoch-000[3-9].png",
                                                                                     "epoch-001*.png"))
        runs.append(Run(tmp_path / "runs" / name))
    cache = ReplayCache(tmp_path / "gifs", keep=2)
    first = cache.gif(runs[0])
    assert first[:6] == b"GIF89a" and cache.gif(runs[0]) == first  # cached
    cache.gif(runs[1])
    metrics = runs[0].path / "metrics.jsonl"
    metrics.write_text(metrics.read_text())  # the run logged again: a new replay replaces the old one
    cache.gif(runs[0])
    assert sorted(p.name.split("@")[0] for p in (tmp_path / "gifs").iterdir()) == ["a", "a-1"]
    cache.gif(runs[2])
    assert len(list((tmp_path / "gifs").iterdir())) == 2  # the oldest went
