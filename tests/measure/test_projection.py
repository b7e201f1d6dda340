"""Joint 2D projection of base vs fine-tuned samples: order, seeds and the figure's hover data."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from hrf_core.measure.projection import image_data_uri, project_pair, projection_figure, projection_html


def ramp_features(n: int, offset: float) -> np.ndarray:
    """Sample i lies at i along axis 0 (the dominant direction); the set is shifted by ``offset`` on axis 1."""
    f = np.zeros((n, 5))
    f[:, 0] = np.arange(n) * 10.0
    f[:, 1] = offset
    return f


def test_projection_keeps_sample_order_and_seeds() -> None:
    seeds = [41, 7, 1000, 3, 12, 99]
    a, b = ramp_features(6, 0.0), ramp_features(6, 4.0)
    proj = project_pair(a, b, seeds_a=seeds, normalize=False)
    assert proj.seeds_a == tuple(seeds) and proj.seeds_b == tuple(seeds)  # same seeds by default
    assert proj.coords_a.shape == (6, 2) and proj.coords_b.shape == (6, 2)
    for coords in (proj.coords_a, proj.coords_b):
        steps = np.diff(coords[:, 0])
        assert (steps > 0).all() or (steps < 0).all()  # row i stays sample i
    # the sets are not swapped: set b is offset on the second axis
    assert abs(proj.coords_b[:, 1].mean() - proj.coords_a[:, 1].mean()) == pytest.approx(4.0)
    assert np.allclose(proj.coords_a[:, 0], proj.coords_b[:, 0])
    assert sum(proj.explained_variance_ratio) == pytest.approx(1.0)


def test_projection_is_fitted_jointly() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 8))
    b = a + 5.0 * np.eye(8)[0]
    joint = project_pair(a, b, normalize=False)
    alone = project_pair(a, a, normalize=False)
    assert not np.allclose(joint.coords_a, alone.coords_a)  # b's shift changed the axes seen by a


def test_projection_validates_inputs() -> None:
    with pytest.raises(ValueError, match="seeds"):
        project_pair(np.ones((3, 2)), np.ones((3, 2)), seeds_a=[1, 2])
    with pytest.raises(ValueError, match="dims"):
        project_pair(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="method"):
        project_pair(np.ones((3, 2)), np.ones((3, 2)), method="tsne")


def test_figure_carries_order_seeds_and_images() -> None:
    seeds = [8, 5, 70, 6]
    images_a = torch.linspace(-1, 1, 4).view(4, 1, 1, 1).expand(4, 1, 16, 16).contiguous()
    images_b = -images_a
    proj = project_pair(ramp_features(4, 0.0), ramp_features(4, 1.0), seeds_a=seeds, normalize=False)
    fig = projection_figure(proj, images_a, images_b, labels=("base", "tuned"), thumbnails=True)
    lines, base, tuned = fig.data
    assert lines.mode == "lines" and len(lines.x) == 12  # one segment per shared seed
    assert (base.name, tuned.name) == ("base", "tuned")
    assert np.allclose(base.x, proj.coords_a[:, 0]) and np.allclose(tuned.y, proj.coords_b[:, 1])
    assert [int(c[0]) for c in base.customdata] == seeds and [int(c[1]) for c in tuned.customdata] == [0, 1, 2, 3]
    for i, c in enumerate(base.customdata):
        uri = str(c[2])
        assert uri.startswith("data:image/png;base64,")
        png = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert png.size == (64, 64)
        assert png.getpixel((0, 0)) == round((images_a[i, 0, 0, 0].item() + 1) / 2 * 255)  # sample i's image
    assert len(fig.layout.images) == 8
    html = projection_html(fig, include_plotlyjs=False)
    assert "plotly_hover" in html and str(base.customdata[0][2]).replace("/", "\\u002f") in html


def test_image_data_uri_handles_rgb_and_large_images() -> None:
    uri = image_data_uri(torch.zeros(3, 256, 128), size=64)
    png = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert png.size == (32, 64) and png.mode == "RGB"
