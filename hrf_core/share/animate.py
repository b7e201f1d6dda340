"""Replay a run as an animated GIF: one frame per evaluated epoch.

Each frame: the base model's grid, that epoch's grid (same evaluation seeds) and the reward-vs-diversity
trajectory up to that epoch. ``python -m hrf_core animate RUN_DIR --out run.gif``.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from hrf_core.methods import color_of, run_label
from hrf_core.store.runs import Run

PANEL = 280  # pixels: the height of each panel


def _panel(path: Path, size: int) -> Image.Image:
    with Image.open(path) as image:
        grid = image.convert("L" if image.mode in ("L", "LA") else "RGB")
    grid.thumbnail((size, size), Image.NEAREST if grid.width < size else Image.LANCZOS)
    canvas = Image.new("RGB", (size, size), "white")
    canvas.paste(grid, ((size - grid.width) // 2, (size - grid.height) // 2))
    return canvas


def _trajectory(points: list[tuple[float, float, int]], upto: int, labels: tuple[str, str], size: int,
                limits: tuple[float, float, float, float], color: str = "#d62728") -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(size / 80, size / 80), dpi=80)
    xs, ys = [p[0] for p in points[:upto + 1]], [p[1] for p in points[:upto + 1]]
    ax.plot([p[0] for p in points], [p[1] for p in points], color="#cccccc", lw=1)
    ax.plot(xs, ys, "-o", color=color, ms=3, lw=1.5)
    ax.plot([points[0][0]], [points[0][1]], "*", color="#ffbf00", ms=12, markeredgecolor="#333")
    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(limits[2], limits[3])
    ax.set_xlabel(labels[0], fontsize=8)
    ax.set_ylabel(labels[1], fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"epoch {points[upto][2]}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB").resize((size, size))


def frames(run: Run, size: int = PANEL) -> list[Image.Image]:
    """One RGB frame per evaluated epoch that has a grid: base grid | epoch grid | trajectory so far."""
    from hrf_core.rewards.headline import metric_keys

    rows = [r for r in run.metrics() if isinstance(r.get("reward_mean"), (int, float))]
    keys = metric_keys(rows, run.config.get("reward"), run.config.get("diversity_weight") or 0.0)
    rows = [r for r in rows if isinstance(r.get(keys.diversity), (int, float))
            and run.grid_path(int(r["epoch"])).is_file()]
    if not rows:
        raise ValueError(f"run {run.run_id} has no evaluated epoch with a grid to animate")
    points = [(r[keys.diversity], r["reward_mean"], int(r["epoch"])) for r in rows]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    pad_x, pad_y = (max(xs) - min(xs)) * 0.1 or 0.1, (max(ys) - min(ys)) * 0.1 or 1e-3
    limits = (min(xs) - pad_x, max(xs) + pad_x, min(ys) - pad_y, max(ys) + pad_y)
    base = _panel(run.grid_path(points[0][2]), size)
    color = color_of(run.config.get("method", ""))  # the method's colour, as on every tab of the app
    out = []
    for i, (_, _, epoch) in enumerate(points):
        frame = Image.new("RGB", (3 * size + 20, size + 24), "white")
        frame.paste(base, (0, 24))
        frame.paste(_panel(run.grid_path(epoch), size), (size + 10, 24))
        frame.paste(_trajectory(points, i, (keys.diversity_label, f"reward ({run.config.get('reward', '')})"),
                                size, limits, color), (2 * size + 20, 24))
        draw = ImageDraw.Draw(frame)
        draw.text((4, 6), "base model", fill="black")
        label = run_label(run.config).replace("–", "-")  # PIL's built-in font has no en dash
        draw.text((size + 14, 6), f"{label} · epoch {epoch}", fill=color)
        out.append(frame)
    return out


def animate(run: Run, out: Path, seconds_per_frame: float = 0.6, size: int = PANEL) -> Path:
    """Write the run's replay GIF to ``out`` (atomically); returns ``out``."""
    from hrf_core.store.runs import atomic_path

    images = [f.convert("P", palette=Image.ADAPTIVE, colors=64) for f in frames(run, size)]
    durations = [int(seconds_per_frame * 1000)] * len(images)
    durations[-1] = 2500  # hold the last frame
    out = Path(out)
    with atomic_path(out) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0,
                       optimize=True)
    return out


class ReplayCache:
    """Replay GIFs kept in one folder for a server: one per run, rebuilt when its metrics change, at most ``keep``
    files (the oldest go first), made one at a time (a room full of clicks must not starve the training thread).
    """

    def __init__(self, folder: Path, keep: int = 32):
        import threading

        self.folder, self.keep = Path(folder), keep
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def gif(self, run: Run) -> bytes:
        """The run's replay GIF (ValueError when it has no evaluated epoch with a grid)."""
        metrics = run.metrics_path
        stamp = metrics.stat().st_mtime_ns if metrics.is_file() else 0
        target = self.folder / f"{run.run_id}@{stamp}.gif"  # '@' is in no run id: the run's own files only
        with self._lock:
            if not target.is_file():
                animate(run, target)
                for old in self.folder.glob(f"{run.run_id}@*.gif"):
                    if old != target:
                        old.unlink(missing_ok=True)
                files = sorted(self.folder.glob("*.gif"), key=lambda path: path.stat().st_mtime_ns)
                for old in files[:-self.keep]:
                    old.unlink(missing_ok=True)
            return target.read_bytes()  # under the lock: no other request removes it meanwhile

