"""``python -m hrf_core measure ARRAY.npy [--labels LABELS.npy] [--model NAME]``: one JSON object, or one line and
exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hrf_core.cli import main
from hrf_core.measure import calibrated
from hrf_core.measure.calibration import heldout_digits


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    images, labels = heldout_digits()
    folder = tmp_path_factory.mktemp("measure")
    unit = ((images[:30] + 1) / 2).numpy().astype(np.float32)  # what `sample --array` writes
    np.save(folder / "x.npy", unit)
    np.save(folder / "y.npy", labels[:30].numpy())
    np.save(folder / "short.npy", labels[:7].numpy())
    np.save(folder / "rgb.npy", np.zeros((4, 3, 16, 16), np.float32))
    (folder / "junk.npy").write_bytes(b"not an array")
    return folder, images[:30]


def test_measure_prints_every_measure_and_the_primaries(files, capsys):
    folder, images = files
    assert main(["measure", str(folder / "x.npy"), "--labels", str(folder / "y.npy"), "--model", "digits16"]) == 0
    out = json.loads(capsys.readouterr().out)
    values = out["values"]
    assert out["primary_within_prompt"] == "vendi_rbf_within" and out["primary_across"] == "vendi_classifier"
    assert {"vendi_rbf", "vendi_rbf_within", "vendi_classifier", "vendi_classifier_within", "vendi_pixel",
            "is_classifier", "class_entropy"} <= set(values)
    assert values["vendi_rbf"] == pytest.approx(calibrated.vendi(images), rel=1e-5)
    assert main(["measure", str(folder / "x.npy")]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["primary_within_prompt"] is None and "vendi_rbf_within" not in alone["values"]
    assert alone["values"]["vendi_rbf"] == pytest.approx(values["vendi_rbf"])


@pytest.mark.parametrize("argv, words", [
    (["junk.npy"], "cannot read the array"),
    (["missing.npy"], "cannot read the array"),
    (["y.npy"], "expected floats of shape"),
    (["x.npy", "--labels", "short.npy"], "expected 30 integers"),
    (["rgb.npy", "--model", "digits16"], "but digits16 makes"),
])
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, words):
    folder, _ = files
    argv = [str(folder / a) if a.endswith(".npy") else a for a in argv]
    assert main(["measure", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
