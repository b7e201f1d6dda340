"""2D projection of two sample sets' embeddings (base vs fine-tuned, same seeds) and its plotly figure.

Both sets are fitted jointly (one PCA over the concatenation), so their coordinates share axes. Features are
L2-normalised first by default (the cosine geometry of the Vendi Score).
Row i of each set stays row i, with its seed, in coordinates, figure traces and hover data.

Images on hover: plotly's hover label renders text only. Each point therefore carries
``customdata = [seed, index, data_uri]`` (a small PNG as ``data:image/png;base64,...``): a front end
(e.g. a Gradio ``gr.HTML`` or any JS listening to ``plotly_hover``) shows ``customdata[2]``;
:func:`projection_html` writes a standalone page that does exactly that. ``thumbnails=True`` instead
draws every image at its point as a layout image, which any plotly renderer (``gr.Plot``) shows.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

METHODS = ("pca",)


@dataclass(frozen=True)
class Projection:
    """Jointly fitted 2D coordinates: ``coords_a`` (N, 2) and ``coords_b`` (M, 2), rows in input order."""

    coords_a: np.ndarray
    coords_b: np.ndarray
    seeds_a: tuple[int, ...]
    seeds_b: tuple[int, ...]
    method: str
    explained_variance_ratio: tuple[float, ...]  # per axis, fraction of the joint variance


def _features(x: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or not np.isfinite(arr).all():
        raise ValueError(f"{what}: expected finite features (N>0, D), got shape {arr.shape}")
    return arr


def _seeds(seeds: Sequence[int] | None, n: int, what: str) -> tuple[int, ...]:
    out = tuple(range(n)) if seeds is None else tuple(int(s) for s in seeds)
    if len(out) != n:
        raise ValueError(f"{what}: {len(out)} seeds for {n} samples")
    return out


def project_pair(
    feats_a: torch.Tensor | np.ndarray,
    feats_b: torch.Tensor | np.ndarray,
    method: str = "pca",
    seeds_a: Sequence[int] | None = None,
    seeds_b: Sequence[int] | None = None,
    *,
    normalize: bool = True,
    random_state: int = 0,
) -> Projection:
    """Project features (N, D) and (M, D) to 2D with one joint fit; keeps sample order and seeds.

    ``seeds_b`` defaults to ``seeds_a`` (same seeds for base and fine-tuned) when the counts match, else
    to 0..M-1. ``method``: ``pca`` (sklearn PCA; t-SNE was dropped as too slow on a CPU: bench/README.md, "Figures").
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dims differ: {a.shape[1]} vs {b.shape[1]}")
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}: expected one of {METHODS}")
    sa = _seeds(seeds_a, len(a), "seeds_a")
    sb = _seeds(seeds_b if seeds_b is not None else (sa if len(b) == len(a) else None), len(b), "seeds_b")
    x = np.concatenate([a, b])
    if normalize:
        from sklearn.preprocessing import normalize as l2

        x = l2(x, axis=1)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(2, x.shape[0], x.shape[1]), random_state=random_state).fit(x)
    coords = pca.transform(x)
    ratio = tuple(float(v) for v in np.nan_to_num(pca.explained_variance_ratio_))
    coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))  # fewer than 2 components: zero y
    return Projection(coords[: len(a)], coords[len(a):], sa, sb, method, ratio)


def image_data_uri(image: torch.Tensor, size: int = 64) -> str:
    """One image (C, H, W) in [-1, 1] as a PNG data URI, resized (nearest) so its longer side is ``size``."""
    from PIL import Image

    from hrf_core.imaging import to_pil, to_uint8

    pil = to_pil(to_uint8(image.unsqueeze(0))[0])
    scale = size / max(pil.size)
    pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))),
                     Image.NEAREST if scale >= 1 else Image.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def projection_figure(
    proj: Projection,
    images_a: torch.Tensor | None = None,
    images_b: torch.Tensor | None = None,
    labels: tuple[str, str] = ("base", "fine-tuned"),
    *,
    connect: bool = True,
    thumbnails: bool = False,
    thumb_size: int = 64,
    title: str | None = None,
) -> Any:
    """Scatter of both sets (one trace each, points in sample order) -> ``plotly.graph_objects.Figure``.

    customdata per point: ``[seed, index, data_uri]`` (the URI is "" without images). ``connect`` draws a
    faint segment between the two points of each shared seed: how far fine-tuning moved that sample.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if connect:
        where_b = {s: i for i, s in enumerate(proj.seeds_b)}
        xs: list[float | None] = []
        ys: list[float | None] = []
        for i, s in enumerate(proj.seeds_a):
            if s in where_b:
                (x0, y0), (x1, y1) = proj.coords_a[i], proj.coords_b[where_b[s]]
                xs += [float(x0), float(x1), None]
                ys += [float(y0), float(y1), None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "rgba(128,128,128,0.35)", "width": 1},
                                 hoverinfo="skip", showlegend=False, name="same seed"))
    sets = ((proj.coords_a, proj.seeds_a, images_a, labels[0], "#1f77b4", "circle"),
            (proj.coords_b, proj.seeds_b, images_b, labels[1], "#d62728", "diamond"))
    for coords, seeds, images, label, color, symbol in sets:
        if images is not None and len(images) != len(coords):
            raise ValueError(f"{label}: {len(images)} images for {len(coords)} points")
        uris = [image_data_uri(img, thumb_size) for img in images] if images is not None else [""] * len(coords)
        fig.add_trace(go.Scatter(
            x=coords[:, 0], y=coords[:, 1], mode="markers", name=label,
            marker={"color": color, "symbol": symbol, "size": 8, "line": {"width": 0.5, "color": "white"}},
            customdata=[[s, i, u] for i, (s, u) in enumerate(zip(seeds, uris, strict=True))],
            hovertemplate=f"{label}<br>seed %{{customdata[0]}} (sample %{{customdata[1]}})<extra></extra>",
        ))
        if thumbnails and images is not None:
            span = np.ptp(np.concatenate([proj.coords_a, proj.coords_b]), axis=0).max() or 1.0
            for (x, y), u in zip(coords, uris, strict=True):
                fig.add_layout_image(source=u, x=float(x), y=float(y), xref="x", yref="y", sizex=span / 20,
                                     sizey=span / 20, xanchor="center", yanchor="middle", layer="above")
    ev = proj.explained_variance_ratio
    fig.update_layout(
        title=title, template="plotly_white", hovermode="closest", legend={"orientation": "h", "y": 1.08},
        xaxis_title="PC1" + (f" ({ev[0]:.0%} of variance)" if ev else ""),
        yaxis_title="PC2" + (f" ({ev[1]:.0%})" if len(ev) > 1 else ""),
    )
    return fig


#: JS for ``Figure.to_html(post_script=...)``: shows the hovered point's ``customdata[2]`` image.
HOVER_IMAGE_JS = """
var gd = document.getElementById('{plot_id}');
var tip = document.createElement('img');
tip.style.cssText = 'position:fixed;pointer-events:none;display:none;width:96px;height:96px;' +
  'image-rendering:pixelated;border:1px solid #888;background:#fff;z-index:1000';
document.body.appendChild(tip);
gd.on('plotly_hover', function (ev) {
  var p = ev.points[0], cd = p && p.customdata;
  if (!cd || !cd[2]) { return; }
  tip.src = cd[2];
  tip.style.left = (ev.event.clientX + 16) + 'px';
  tip.style.top = (ev.event.clientY + 16) + 'px';
  tip.style.display = 'block';
});
gd.on('plotly_unhover', function () { tip.style.display = 'none'; });
"""


def projection_html(fig: Any, include_plotlyjs: bool | str = True) -> str:
    """A standalone HTML page of ``fig`` that shows each point's image next to the cursor on hover."""
    return fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True, post_script=HOVER_IMAGE_JS)
