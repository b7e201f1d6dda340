"""The evaluation used everywhere (trainer, app, benchmarks, experiments): metrics of a sample set.

The embeddings depend on the images: 1x16x16 digits are measured on the digits classifier's
features (Vendi, Inception Score, class coverage and entropy), on pixels, and with the two calibrated measures
(Vendi with an RBF kernel on blurred pixels, :mod:`hrf_core.measure.calibrated`, which the plots lead with, and on
HOG descriptors, :mod:`hrf_core.measure.hog`, which judges runs trained with the diversity bonus).
Other (RGB) models are measured on learned embeddings whenever their weights are cached or can be
downloaded: Inception-v3
(Inception Score, and Vendi on its pool features) and CLIP ViT-L/14 (Vendi), as the paper measured
IS and Vendi; offline without them (:mod:`hrf_core.downloads` decides), on pixels, which is a weak proxy for
semantic diversity (pixel Vendi rose while the digits collapsed, docs/RESULTS.md) and is labelled as such: one line
(:func:`fallback_line`) in the run's log, on the page and in the run's config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from hrf_core.measure.metrics import evaluate_samples, prompt_metrics

#: The image shape the digits classifier reads: any model producing it gets classifier metrics.
DIGITS_SHAPE = (1, 16, 16)
#: Learned embeddings for RGB models, in the order they are tried.
RGB_EMBEDDINGS = ("inception", "clip")
#: Embeddings computed from the pixels alone: always available.
PIXEL_EMBEDDINGS = ("pixel", "rbf", "hog")
EMBEDDINGS = ("pixel", "classifier", "rbf", "hog", *RGB_EMBEDDINGS)
PIXEL_PROXY = "pixel Vendi: weak proxy"
#: What each learned embedding measures, for the fallback line.
LABELS = {"inception": "Inception-v3 (IS, Vendi)", "clip": "CLIP ViT-L/14 (Vendi)"}


def embedding_available(name: str) -> bool:
    """Whether ``name``'s weights are cached, or may be downloaded (not offline); builds nothing."""
    from hrf_core import downloads
    from hrf_core.measure.features import clip_checkpoint, inception_weights_file

    if name in (*PIXEL_EMBEDDINGS, "classifier"):
        return True
    if name == "inception" and inception_weights_file().is_file():
        return True
    if name == "clip" and clip_checkpoint() is not None:
        return True
    return not downloads.offline()  # not cached: available when it can be downloaded


def choose_embeddings(sample_shape: tuple[int, int, int], requested: Sequence[str] = ()) -> tuple[str, ...]:
    """The embeddings an evaluation of these samples uses: ``requested``, or (empty) the best available.

    Digits: pixel + classifier + rbf and hog (the two calibrated measures, :mod:`hrf_core.measure.calibrated`,
    :mod:`hrf_core.measure.hog`).
    RGB: pixel + Inception and CLIP where their weights can be had.
    """
    unknown = set(requested) - set(EMBEDDINGS)
    if unknown:
        raise ValueError(f"unknown evaluation embeddings {sorted(unknown)}: choose from {', '.join(EMBEDDINGS)}")
    if requested:
        return tuple(dict.fromkeys(["pixel", *requested]))
    if tuple(sample_shape) == DIGITS_SHAPE:
        return ("pixel", "classifier", "rbf", "hog")
    return ("pixel", *[name for name in RGB_EMBEDDINGS if embedding_available(name)])


def fallback_line(missing: Sequence[str]) -> str:
    """One line: the learned embeddings ``missing`` here and what the evaluation measures instead ("" for none)."""
    if not missing:
        return ""
    from hrf_core import downloads

    instead = "pixels, a weak proxy" if set(missing) >= set(RGB_EMBEDDINGS) else "the other embeddings"
    return (f"evaluation on {instead}: {' and '.join(LABELS[name] for name in missing)} weights not cached and this "
            f"machine is {downloads.reason() or 'offline'} (to fetch them: {downloads.GUIDE})")


def evaluation_plan(sample_shape: tuple[int, int, int], requested: Sequence[str] = (),
                    given: Sequence[str] = ()) -> tuple[tuple[str, ...], str]:
    """Before a run: (the embeddings its evaluation will use, the fallback line or ""); builds and downloads nothing.

    A ``requested`` embedding whose weights cannot be had (and whose extractor is not ``given``) is refused
    (:class:`hrf_core.downloads.Unavailable`); the default choice falls back to what is at hand, with the line that
    says so.
    """
    from hrf_core import downloads

    chosen = choose_embeddings(sample_shape, requested)
    if requested:
        for name in chosen:
            if name not in given and not embedding_available(name):
                raise downloads.Unavailable(f"evaluation embeddings {name!r}: {_missing_line(name)}")
        return chosen, ""
    if tuple(sample_shape) == DIGITS_SHAPE:
        return chosen, ""
    return chosen, fallback_line([name for name in RGB_EMBEDDINGS if name not in chosen])


def _missing_line(name: str) -> str:
    from hrf_core import downloads
    from hrf_core.measure.features import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, INCEPTION_FETCH, clip_weights

    if name == "clip":
        return downloads.missing(*clip_weights(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED))
    return downloads.missing("Inception-v3 weights", INCEPTION_FETCH)


class Evaluator:
    """Callable ``(images [-1,1] (N,C,H,W), rewards (N,)) -> dict`` of named metrics.

    ``embeddings``: names from :data:`EMBEDDINGS` (default: :func:`choose_embeddings`). 1x16x16
    samples (the embedded digits model and its checkpoints) are measured on the digits classifier:
    Vendi on its features, IS, class coverage/entropy. ``extractors`` injects prebuilt extractors by
    name (e.g. random-weight Inception/CLIP for benchmarks); the others are built once, here. A default (not
    requested) learned embedding whose weights cannot be had after all (a failed download) is left out, and
    ``fallback`` is the one line that says so (see :func:`evaluation_plan`).
    """

    def __init__(self, sample_shape: tuple[int, int, int], device: torch.device | str = "cpu",
                 embeddings: Sequence[str] = (), extractors: dict | None = None):
        from hrf_core import downloads
        from hrf_core.measure.features import make_feature_extractor

        self.device = torch.device(device)
        self.classifier = None
        chosen, self.fallback = evaluation_plan(sample_shape, embeddings, tuple(extractors or ()))
        self._extractors: dict = {}
        lost = []
        for name in chosen:
            if extractors and name in extractors:
                self._extractors[name] = extractors[name]
            elif name == "classifier":
                from hrf_core.models.digits import load_digit_classifier

                self.classifier = load_digit_classifier(device=self.device)
            elif name != "pixel":
                try:
                    self._extractors[name] = make_feature_extractor(name, device=self.device)
                except downloads.Unavailable:
                    if embeddings:  # asked for by name: no proxy stands in
                        raise
                    lost.append(name)
        self.embeddings = tuple(name for name in chosen if name not in lost)
        if lost:
            self.fallback = fallback_line([name for name in RGB_EMBEDDINGS if name not in self.embeddings])

    def projection_embedding(self):
        """(extractor, label) of the most semantic embedding here, for the Compare tab's joint projection."""
        from hrf_core.measure.features import ClassifierFeatures, PixelFeatures

        if self.classifier is not None:
            return ClassifierFeatures(self.classifier), "digit-classifier features"
        for name, label in (("clip", "CLIP features"), ("inception", "Inception features")):
            if name in self._extractors:
                return self._extractors[name], label
        return PixelFeatures(), "pixels (weak proxy)"

    @property
    def note(self) -> str:
        """``"pixel Vendi: weak proxy"`` when no learned embedding measures these samples, else empty."""
        return PIXEL_PROXY if self.embeddings == ("pixel",) else ""

    def __call__(self, images: torch.Tensor, rewards: torch.Tensor, arrays: dict | None = None,
                 prompts: Sequence[str] | None = None) -> dict:
        """Named metrics; ``arrays`` (a dict) receives the per-sample features, probabilities and rewards.

        ``prompts`` (each sample's, a prompted run): also the within-prompt metrics (``*_within@N``: each prompt's
        samples on their own, averaged over the prompts) and each prompt's own (``per_prompt``); the arrays keep
        each sample's prompt (``prompt_index``).
        """
        specs = [self._extractors.get(name, name) for name in self.embeddings]
        kept = arrays if arrays is not None else {}
        metrics = evaluate_samples(images, rewards, embeddings=specs, classifier=self.classifier, arrays=kept,
                                   device=self.device)
        n = images.shape[0]
        metrics["eval_samples"] = n
        metrics["vendi_pixel"] = metrics[f"vendi_pixel@{n}"]  # the run store's headline key
        if prompts:
            metrics.update(prompt_metrics(kept, prompts, n))
        return metrics


def load_sample_array(path: str | Path, labels: str | Path | None = None) -> tuple[torch.Tensor, list[str] | None]:
    """A ``sample --array`` file as images (n, C, H, W) in [-1, 1], and the labels file as n prompt strings;
    ValueError with one line for anything else (no pickles)."""
    import numpy as np

    def read(file, what):
        try:
            return np.load(Path(file), allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"cannot read {what} {file}: {' '.join(str(e).split()) or type(e).__name__}") from None

    array = read(path, "the array")
    if array.ndim != 4 or array.shape[0] < 2 or array.dtype.kind != "f":
        raise ValueError(f"{path}: expected floats of shape (n >= 2, C, H, W), got {array.dtype} {array.shape}")
    if not np.isfinite(array).all() or array.min() < -1e-3 or array.max() > 1 + 1e-3:
        raise ValueError(f"{path}: expected values in [0, 1] (what `sample --array` writes)")
    images = torch.from_numpy(np.clip(array.astype(np.float32), 0, 1)) * 2 - 1
    if labels is None:
        return images, None
    rows = read(labels, "the labels")
    if rows.ndim != 1 or rows.shape[0] != array.shape[0] or rows.dtype.kind not in "iu":
        raise ValueError(f"{labels}: expected {array.shape[0]} integers (one per row of {path}), got "
                         f"{rows.dtype} {rows.shape}")
    return images, [str(int(v)) for v in rows]


def measure_files(path: str | Path, labels: str | Path | None = None, model: str | None = None) -> dict:
    """``python -m hrf_core measure``: every diversity measure the app shows of a sample array, by name (the
    within-prompt ones averaged over the labels), and the names of the ones the Live plot uses."""
    from hrf_core.measure.headline import choose

    images, prompts = load_sample_array(path, labels)
    if model is not None:
        from hrf_core.models.registry import config_folder, image_shape_of

        shape = tuple(image_shape_of(config_folder(model)))  # from its configs: no weights loaded
        if tuple(images.shape[1:]) != shape:
            raise ValueError(f"{path}: images of shape {tuple(images.shape[1:])}, but {model} makes {shape}")
    metrics = Evaluator(tuple(images.shape[1:]))(images, torch.zeros(images.shape[0]), prompts=prompts)
    n = images.shape[0]
    values = {k.split("@", 1)[0]: float(v) for k, v in metrics.items() if k.endswith(f"@{n}")}
    across = choose([{k: v for k, v in metrics.items() if "_within@" not in k}])
    within = choose([metrics]) if prompts else None
    return {"samples": n, "values": values,
            "primary_within_prompt": within.diversity.split("@", 1)[0] if within else None,
            "primary_across": across.diversity.split("@", 1)[0]}
