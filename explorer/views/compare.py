"""The Compare tab: sample sources (base models, checkpoints), grids, metrics and the joint projection."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorer.views.common import (
    _MODEL_LOCK,
    cached_evaluator,
    cached_model,
    parse_bounded,
    require_runnable,
)
from hrf_core.methods import color_of, run_label
from hrf_core.store.runs import RunStore, checkpoint_epoch


# ------------------------------------------------------------------------------------ sample sources
def source_choices(store: RunStore, models: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(label, value) of everything one can sample from: base models, then every checkpoint of every run.

    Values: ``base:<model>`` or ``ckpt:<run_id>:<checkpoint folder name>``.
    """
    seen: list[str] = []
    for name in models:
        if name not in seen:
            seen.append(name)
    runs = store.list()
    for run in runs:
        model = run.config.get("model")
        if model and model not in seen:
            seen.append(model)
    choices = [(f"{Path(m).name if '/' in m and Path(m).exists() else m} · base model", f"base:{m}") for m in seen]
    for run in runs:
        for checkpoint in reversed(run.checkpoints()):
            epoch = checkpoint_epoch(checkpoint)
            choices.append((f"{run.run_id} · epoch {epoch} · {run_label(run.config)}",
                            f"ckpt:{run.run_id}:{checkpoint.name}"))
    return choices



@dataclass(frozen=True)
class Source:
    """A resolved sample source: what to load, its base-model family, and a short label."""

    load: str  # registry name, Hub id or folder to load
    family: str  # the base model it descends from (decides the evaluation embeddings)
    label: str
    reward: str | None = None
    num_steps: int | None = None  # the K its run was trained with
    prompts: tuple[str, ...] = ()  # a prompted model's prompts: its run's, or (a base model) every one it knows
    guidance: float = 1.0
    method: str | None = None  # its run's method (its colour on every tab); None for a base model

    @property
    def color(self) -> str:
        """The colour of this source's caption: its run's method's, grey for a base model."""
        return color_of(self.method, BASE_COLOR) if self.method else BASE_COLOR

    def rows(self, n: int, prompts: tuple[str, ...] = ()) -> list[str] | None:
        """Each of ``n`` samples' prompt (``prompts`` in turn, default this source's); None when unconditional."""
        from hrf_core.rl.sampling import round_robin

        chosen = prompts or self.prompts
        return round_robin(chosen, n) if self.prompts and chosen else None


def resolve_source(store: RunStore, value: str) -> Source:
    """``base:<model>`` or ``ckpt:<run_id>:<epoch-NNNN>`` -> :class:`Source` (validated)."""
    if not value or not isinstance(value, str):
        raise ValueError("choose what to sample from")
    if value.startswith("base:"):
        model = value[len("base:"):]
        from hrf_core.models.registry import conditioner_of

        conditioner = conditioner_of(model) if model else None
        return Source(load=model, family=model, label=f"{Path(model).name} (base)",
                      prompts=conditioner.vocabulary if conditioner is not None else ())
    if value.startswith("ckpt:"):
        try:
            _, run_id, folder = value.split(":", 2)
        except ValueError:
            raise ValueError(f"bad checkpoint reference {value!r}") from None
        run = store.get(run_id)
        for checkpoint in run.checkpoints():
            if checkpoint.name == folder:
                epoch = checkpoint_epoch(folder)
                return Source(load=str(checkpoint), family=str(run.config.get("model", "")),
                              label=f"{run_label(run.config)} · epoch {epoch}", reward=run.config.get("reward"),
                              num_steps=run.config.get("num_steps"), prompts=tuple(run.config.get("prompts") or ()),
                              guidance=float(run.config.get("guidance", 1.0)), method=run.config.get("method"))
        raise ValueError(f"run {run_id} has no checkpoint {folder}")
    raise ValueError(f"unknown sample source {value!r}")


BASE_COLOR = "#4b5563"


def conditioning_mismatch(a: Source, b: Source) -> str:
    """One line when A and B cannot be compared sample for sample because one reads prompts and the other does not
    (e.g. ``digits16`` against a ``digits16-cond`` run); "" when they can."""
    if bool(a.prompts) == bool(b.prompts):
        return ""
    prompted, plain = (a, b) if a.prompts else (b, a)
    return (f"{plain.label} is unconditional and {prompted.label} reads prompts: their grids would not line up. "
            f"Compare sources of one base model, e.g. A = {prompted.family} (base).")


def follow(store: RunStore, value_b: str | None, value_a: str | None) -> tuple[str | None, str | None]:
    """What Compare shows once B is a run's checkpoint: (A, the reward). A becomes B's own base model unless it is
    already a source of that base model; the reward is B's run's. (None, None) when B is not a checkpoint."""
    if not value_b or not str(value_b).startswith("ckpt:"):
        return None, None
    try:
        b = resolve_source(store, value_b)
    except ValueError:
        return None, None
    a_family = None
    if value_a:
        try:
            a_family = resolve_source(store, value_a).family
        except ValueError:
            a_family = None
    a = value_a if a_family == b.family else f"base:{b.family}"
    return a, b.reward


def pil_text(text: str) -> str:
    """``text`` in the characters PIL's built-in font draws (an en dash in "HRF 20–39" drew as a box)."""
    return text.replace("–", "-").replace("—", "-").replace("…", "...")


def captioned(grid, caption: str, color: str, row_labels: list[str] | None = None):
    """``grid`` (PIL) with its caption above it in ``color`` and, for a prompted model, each row's prompt on its
    left: what a projector shows. Text scales with the grid, so two grids of one size read at one scale."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(14, grid.width // 36)
    font = ImageFont.load_default(size=size)
    labels = [label if len(label) <= 14 else label[:13] + "…" for label in (row_labels or [])]
    left = (max(int(font.getlength(pil_text(label))) for label in labels) + size // 2) if labels else 0
    top = int(size * 1.6)
    out = Image.new("RGB", (grid.width + left, grid.height + top), "white")
    out.paste(grid.convert("RGB"), (left, top))
    draw = ImageDraw.Draw(out)
    draw.text((left, size // 4), pil_text(caption), fill=color, font=font)
    if labels:
        step = grid.height / len(labels)
        for i, label in enumerate(labels):
            width = font.getlength(pil_text(label))
            draw.text((left - size // 4 - width, top + step * (i + 0.5)), pil_text(label), fill="#111", font=font,
                      anchor="lm")
    return out


def prompt_grid(images, prompts: list[str] | None, columns: int = 8):
    """A grid of samples ``columns`` wide, each prompt's samples on rows of their own (the last one padded
    blank): (PIL grid, each row's prompt, or None for an unconditional model)."""
    import torch

    from hrf_core.imaging import image_grid

    scale = max(1, 128 // images.shape[-1])
    if not prompts:
        return image_grid(images, nrow=min(columns, len(images)), scale=scale), None
    blank = torch.ones_like(images[:1])
    tiles, labels = [], []
    for prompt in dict.fromkeys(prompts):
        rows = [j for j, p in enumerate(prompts) if p == prompt]
        for start in range(0, len(rows), columns):
            chunk = rows[start:start + columns]
            tiles.append(images[chunk])
            tiles.extend([blank] * (columns - len(chunk)))
            labels.append(prompt)
    width = min(columns, max(prompts.count(p) for p in set(prompts)))
    if width < columns:  # fewer samples per prompt than a row: one short row each, no blanks
        tiles, labels = [], list(dict.fromkeys(prompts))
        for prompt in labels:
            tiles.append(images[[j for j, p in enumerate(prompts) if p == prompt]])
    return image_grid(torch.cat(tiles), nrow=width, scale=scale), labels


def sample_grid(store: RunStore, value: str, n: int = 16, seed: int = 0, num_steps: int | None = None):
    """A grid (PIL) of ``n`` samples from a base model or checkpoint with a fixed seed (K: its run's)."""
    from hrf_core.rl.sampling import sample_from

    n = int(parse_bounded("Samples", n, 1, 256))
    seed = int(parse_bounded("Seed", seed, 0, 2**31 - 1))
    source = resolve_source(store, value)
    require_runnable(source.family)
    num_steps = int(num_steps or source.num_steps or 40)
    with _MODEL_LOCK:
        base = cached_model(source.load)
        prompts = source.rows(n)
        images = sample_from(base, n, seed, num_steps=num_steps, prompts=prompts, guidance=source.guidance).cpu()
    grid, rows = prompt_grid(images, prompts)
    return captioned(grid, source.label, source.color, rows)



@dataclass
class Comparison:
    grid_a: Any
    grid_b: Any
    label_a: str
    label_b: str
    table: list[list[Any]]
    figure: Any
    metrics_a: dict = field(default_factory=dict)  # the evaluator's metrics, by key (reward_mean, vendi_...@n, ...)
    metrics_b: dict = field(default_factory=dict)
    reward: str = ""
    num_steps: int = 0


METRIC_NAMES = {
    "reward_mean": "reward (mean)", "reward_std": "reward (std)", "vendi_pixel": "Vendi (pixels)",
}


def _metric_name(key: str) -> str:
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    name, _, n = key.partition("@")
    within = name.endswith("_within")
    name = name.removesuffix("_within")
    pretty = {"vendi_rbf": "Vendi (RBF on blurred pixels; calibrated)",
              "vendi_classifier": "Vendi (classifier)", "vendi_pixel": "Vendi (pixels; weak proxy)",
              "is_classifier": "Inception Score (classifier)", "class_entropy": "class entropy (bits)",
              "class_coverage": "class coverage", "is_inception": "Inception Score (Inception-v3)",
              "vendi_inception": "Vendi (Inception-v3 features)", "vendi_clip": "Vendi (CLIP ViT-L/14 features)"
              }.get(name, name)
    if within and name == "vendi_classifier":
        return f"{pretty} within prompt · uncalibrated (thicker strokes raise it)"
    return f"{pretty} within prompt" if within else pretty


def compare(store: RunStore, value_a: str, value_b: str, n: int = 32, seed: int = 0, reward: str | None = None,
            num_steps: int | None = None, thumbnails: bool = False, handover: int = 0) -> Comparison:
    """Same-seed samples of two sources side by side, their metrics, and a joint 2D projection.

    Both are sampled with the same seeds and K (default: the K their runs were trained with, else 40).
    ``handover`` = S > 0: B (a checkpoint) samples steps < S with its base model, the rest with itself
    (S = K gives the base model's samples exactly).
    """

    from hrf_core.measure.projection import project_pair, projection_figure
    from hrf_core.rewards.headline import metric_keys
    from hrf_core.rewards.registry import REWARDS, make_reward
    from hrf_core.rl.sampling import sample_from

    n = int(parse_bounded("Samples", n, 4, 256))
    seed = int(parse_bounded("Seed", seed, 0, 2**31 - 1))
    a, b = resolve_source(store, value_a), resolve_source(store, value_b)
    if mismatch := conditioning_mismatch(a, b):
        raise ValueError(mismatch)
    num_steps = int(num_steps or b.num_steps or a.num_steps or 40)
    require_runnable(a.family)
    require_runnable(b.family)
    reward = reward or a.reward or b.reward or "jpeg-compressibility"
    if reward not in REWARDS:
        raise ValueError(f"unknown reward {reward!r}")
    ok, why = REWARDS[reward].available()
    if not ok:
        raise ValueError(f"reward {reward} is unavailable: {why}")
    handover = int(parse_bounded("Hand-over step", handover, 0, num_steps))
    if handover and b.load == b.family:
        raise ValueError("hand-over needs a checkpoint as B: its base model samples the steps before S")
    with _MODEL_LOCK:
        model_a, model_b = cached_model(a.load), cached_model(b.load)
        if model_a.sample_shape != model_b.sample_shape:
            raise ValueError("these two produce different image sizes: compare checkpoints of the same base model")
        early = cached_model(b.family) if handover else None
        common = b.prompts if a.prompts and b.prompts else ()  # both prompted: B's prompts for both
        prompts_a, prompts_b = a.rows(n, common), b.rows(n, common)
        images_a = sample_from(model_a, n, seed, num_steps=num_steps, prompts=prompts_a, guidance=a.guidance).cpu()
        images_b = sample_from(model_b, n, seed, num_steps=num_steps, early=early, handover=handover,
                               prompts=prompts_b, guidance=b.guidance).cpu()
    if REWARDS[reward].prompted and not (prompts_a and prompts_b):
        raise ValueError(f"reward {reward} reads each sample's prompt: compare two prompted models")
    reward_fn = make_reward(reward, device="cpu")
    evaluator = cached_evaluator(model_a.image_shape)
    metrics_a = evaluator(images_a, reward_fn(images_a, prompts_a).float().cpu(), prompts=prompts_a)
    metrics_b = evaluator(images_b, reward_fn(images_b, prompts_b).float().cpu(), prompts=prompts_b)
    keys = [k for k in metrics_a if k in metrics_b and k not in ("eval_samples", "vendi_pixel", "per_prompt")]
    lead = metric_keys([metrics_a], reward).diversity  # the calibrated measure first, as on the Live plot
    order = sorted(keys, key=lambda k: (not k.startswith("reward"), k != lead, k))
    table = [[_metric_name(k), round(float(metrics_a[k]), 4), round(float(metrics_b[k]), 4),
              f"{float(metrics_b[k]) - float(metrics_a[k]):+.4f}"] for k in order]
    extractor, space = evaluator.projection_embedding()
    projection = project_pair(extractor(images_a), extractor(images_b), seeds_a=range(seed, seed + n))
    figure = projection_figure(projection, images_a, images_b, labels=(f"A · {a.label}", f"B · {b.label}"),
                               thumbnails=thumbnails and n <= 64,
                               thumb_size=32, title=f"Same seeds, joint PCA of {space}")
    if a.color != b.color:  # each side in its method's colour (a base model grey), as on every tab
        for side, label in ((a, f"A · {a.label}"), (b, f"B · {b.label}")):
            figure.update_traces(marker_color=side.color, selector={"name": label})
    figure.update_layout(height=460, margin={"l": 50, "r": 20, "t": 90, "b": 50},  # the mode bar clears the title
                         title={"x": 0.01, "xanchor": "left", "y": 0.97})
    label_b = f"{b.label} · hand-over at step {handover}" if handover else b.label
    grid_a, rows_a = prompt_grid(images_a, prompts_a)
    grid_b, rows_b = prompt_grid(images_b, prompts_b)
    grid_a = captioned(grid_a, f"A · {a.label}", a.color, rows_a)
    grid_b = captioned(grid_b, f"B · {label_b}", b.color, rows_b)
    return Comparison(grid_a, grid_b, a.label, label_b, table, figure, dict(metrics_a), dict(metrics_b), reward,
                      num_steps)

