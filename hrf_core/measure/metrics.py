"""What the reward costs: Vendi Score, Inception Score, class coverage/entropy and reward statistics.

- Vendi Score (Friedman & Dieng 2023): exp of the order-q Renyi entropy of the eigenvalues of K/n,
  K the cosine kernel (features L2-normalised; a zero vector counts as identical to other zero vectors
  and orthogonal to the rest). Computed by the vendi-score package (``score_dual`` when D <= n, else
  ``score_K``; ``score_X`` is not used because it ignores q in 0.0.3). Range 1 (all alike) .. n (all
  orthogonal); it is non-increasing in q. q < 0.5 is refused: it amplifies float-noise eigenvalues.
- Inception Score: exp(E_x KL(p(y|x) || p(y))) from class probabilities, the mean (and std) over
  ``splits`` disjoint chunks. Range 1 .. number of classes. With the digits classifier it measures
  confident and class-balanced digits; with Inception-v3 see :mod:`hrf_core.measure.features`.
- Class coverage: the fraction of the K classes that are the arg-max class of at least one sample.
- Class entropy: Shannon entropy in bits of the histogram of arg-max classes (0 .. log2 K; 3.32 for 10).

:func:`evaluate_samples` returns these under keys that name the metric, the embedding and the sample
count, e.g. ``vendi_pixel@64``, ``vendi_rbf@64`` (the calibrated measure),
``vendi_classifier@64``, ``is_classifier@64``, ``class_entropy@64``,
``class_coverage@64``, plus ``reward_mean`` and ``reward_std``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hrf_core.measure.features import ClassifierFeatures, FeatureExtractor, make_feature_extractor

VENDI_MIN_Q = 0.5
#: Features wider than this are not saved with the evaluation (e.g. pixels of a 256x256 RGB model).
MAX_SAVED_FEATURE_DIM = 4096


def _as_float64(x: Any, ndim: int, what: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim or arr.shape[0] == 0:
        raise ValueError(f"{what}: expected a non-empty {ndim}-D array, got shape {arr.shape}")
    return arr


def _vendi_order(q: float | str) -> float | str:
    if q == "inf" or (isinstance(q, (int, float)) and math.isinf(q) and q > 0):
        return "inf"
    if not isinstance(q, (int, float)) or not q >= VENDI_MIN_Q:
        raise ValueError(f"Vendi order q must be a number >= {VENDI_MIN_Q} or inf, got {q!r}")
    return float(q)


def vendi_score(features: torch.Tensor | np.ndarray, q: float | str = 1.0) -> float:
    """Vendi Score of features (N, D) with the cosine kernel, order ``q`` (1 = Shannon; ``inf`` allowed).

    Returns a float in [1, N]; NaN if any feature is non-finite.
    """
    from sklearn.preprocessing import normalize
    from vendi_score import vendi

    x = _as_float64(features, 2, "vendi_score features")
    order = _vendi_order(q)
    if not np.isfinite(x).all():
        return float("nan")
    zero = ~(np.abs(x).sum(axis=1) > 0)
    if zero.any():  # give zero vectors their own shared direction: k(0, 0) = 1, k(0, x) = 0
        x = np.concatenate([x, zero[:, None].astype(np.float64)], axis=1)
    x = normalize(x, axis=1)
    n, d = x.shape
    with warnings.catch_warnings():  # score_K touches the deprecated scipy.sparse.csr namespace
        warnings.simplefilter("ignore", DeprecationWarning)
        value = vendi.score_dual(x, q=order, normalize=False) if d <= n else vendi.score_K(x @ x.T, q=order)
    return float(value)


def embedding_vendi(embedding: str, features: torch.Tensor | np.ndarray, q: float | str = 1.0) -> float:
    """Vendi of one embedding's features: the calibrated RBF kernels for ``rbf`` (:mod:`hrf_core.measure.calibrated`)
    and ``hog`` (:mod:`hrf_core.measure.hog`), the cosine kernel (:func:`vendi_score`) for every other."""
    from hrf_core.measure import calibrated, hog

    kernels = {calibrated.NAME: calibrated.vendi_of_features, hog.NAME: hog.vendi_of_features}
    if embedding in kernels:
        return kernels[embedding](_as_float64(features, 2, f"{embedding} features"), _vendi_order(q))
    return vendi_score(features, q)


#: The image shape whose saved ``features.pixel`` (D = 256) an older evaluation's missing features are derived from.
PIXEL_SHAPE = (1, 16, 16)


def with_derived_features(arrays: dict) -> dict:
    """An evaluation's saved arrays plus the features of the pixel-derived embeddings it lacks (``features.hog``
    of an evaluation saved before that measure existed), computed from its ``features.pixel`` (flattened [0, 1]
    pixels of 1x16x16 digits, :class:`~hrf_core.measure.features.PixelFeatures`); other shapes are left as they are.
    ``arrays``: {name: numpy or torch array}; returns a new dict, numpy for what it adds."""
    from hrf_core.measure import hog

    pixels = arrays.get("features.pixel")
    key = f"features.{hog.NAME}"
    if key in arrays or pixels is None or pixels.shape[1] != int(np.prod(PIXEL_SHAPE)):
        return dict(arrays)
    images = (torch.tensor(_numpy(pixels), dtype=torch.float64) * 2 - 1).reshape(-1, *PIXEL_SHAPE)
    return {**arrays, key: hog.features(images).float().numpy()}


def inception_score(probs: torch.Tensor | np.ndarray, splits: int = 1) -> tuple[float, float]:
    """Inception Score of class probabilities (N, K): (mean, std) over ``splits`` chunks, in [1, K]."""
    from scipy.special import rel_entr

    p = _as_float64(probs, 2, "inception_score probs")
    if not np.isfinite(p).all():
        return float("nan"), float("nan")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("inception_score expects probabilities: non-negative rows that sum to 1")
    if not 1 <= splits <= p.shape[0]:
        raise ValueError(f"splits must be in 1..{p.shape[0]}, got {splits}")
    scores = [math.exp(rel_entr(part, part.mean(axis=0, keepdims=True)).sum(axis=1).mean())
              for part in np.array_split(p, splits)]
    return float(np.mean(scores)), float(np.std(scores))


def class_counts(labels: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """Histogram (num_classes,) of integer labels (N,) in 0..num_classes-1."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    y = y.astype(np.int64).ravel()
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    return np.bincount(y, minlength=num_classes)


def class_entropy(labels: torch.Tensor | np.ndarray, num_classes: int) -> float:
    """Entropy in bits of the label histogram: 0 (one class) .. log2(num_classes) (uniform)."""
    counts = class_counts(labels, num_classes)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


def class_coverage(labels: torch.Tensor | np.ndarray, num_classes: int) -> float:
    """Fraction of the ``num_classes`` classes that occur at least once among the labels (N,)."""
    return float((class_counts(labels, num_classes) > 0).mean())


def metric_key(metric: str, embedding: str | None, n: int, q: float | str = 1.0) -> str:
    """The key :func:`evaluate_samples` uses, e.g. ``vendi_pixel@64``, ``vendi_q2_clip@64``, ``is_classifier@64``."""
    order = _vendi_order(q) if metric == "vendi" else 1.0
    tag = "" if order == 1.0 else f"_q{order if order == 'inf' else f'{order:g}'}"
    return f"{metric}{tag}{'_' + embedding if embedding else ''}@{n}"


def evaluate_samples(
    images: torch.Tensor,
    rewards: torch.Tensor | np.ndarray | None = None,
    *,
    embeddings: Sequence[str | FeatureExtractor] | None = None,
    classifier: torch.nn.Module | ClassifierFeatures | None = None,
    vendi_orders: Sequence[float | str] = (1.0,),
    is_splits: int = 1,
    device: str | torch.device = "cpu",
    arrays: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """All diversity metrics of one sample set (N, C, H, W) in [-1, 1], plus reward mean/std.

    ``embeddings``: names for :func:`~hrf_core.measure.features.make_feature_extractor` or prebuilt extractors
    (build Inception/CLIP once and pass them in). None means ``("pixel",)`` plus ``"classifier"`` when
    ``classifier`` is given. ``"classifier"`` uses ``classifier`` (a module with ``features``/``forward``
    or a :class:`ClassifierFeatures`), loading the default digits classifier if it is None. Each extractor
    runs once; one with ``features_and_probs`` also gives ``is_<name>@N``, and the classifier gives
    ``class_entropy@N`` (bits) and ``class_coverage@N`` (fraction). Rewards (N,) give ``reward_mean`` and
    ``reward_std`` (population std, ddof 0).

    ``arrays``: when a dict is given, it receives the per-sample data the metrics came from, to recompute
    them later (:mod:`hrf_core.study.frontier`): ``features.<embedding>`` (N, D) for D <= 4096,
    ``probs.<embedding>`` (N, K) and ``rewards`` (N,), float32 on CPU.
    """
    n = int(images.shape[0])
    if embeddings is None:
        embeddings = ("pixel", "classifier") if classifier is not None else ("pixel",)
    out: dict[str, float] = {}
    for spec in embeddings:
        if spec == "classifier":
            ext: Any = classifier if isinstance(classifier, ClassifierFeatures) else ClassifierFeatures(
                classifier, device=device)
        elif isinstance(spec, str):
            ext = make_feature_extractor(spec, device=device)
        else:
            ext = spec
        name = ext.name
        probs = None
        if hasattr(ext, "features_and_probs"):
            feats, probs = ext.features_and_probs(images)
        else:
            feats = ext(images)
        if arrays is not None:
            if feats.shape[1] <= MAX_SAVED_FEATURE_DIM:
                arrays[f"features.{name}"] = feats.detach().float().cpu()
            if probs is not None:
                arrays[f"probs.{name}"] = probs.detach().float().cpu()
        for q in vendi_orders:
            out[metric_key("vendi", name, n, q)] = embedding_vendi(name, feats, q)
        if probs is not None:
            out[metric_key("is", name, n)] = inception_score(probs, splits=is_splits)[0]
            if name == "classifier":
                labels, k = probs.argmax(dim=1), probs.shape[1]
                out[metric_key("class_entropy", None, n)] = class_entropy(labels, k)
                out[metric_key("class_coverage", None, n)] = class_coverage(labels, k)
    if rewards is not None:
        r = _as_float64(rewards, 1, "rewards")
        out["reward_mean"], out["reward_std"] = float(r.mean()), float(r.std())
        if arrays is not None:
            arrays["rewards"] = torch.as_tensor(r, dtype=torch.float32)
    return out


#: The suffix of a metric computed within each prompt's samples and averaged over the prompts.
WITHIN = "_within"


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A saved array as numpy, whether it was loaded as a tensor or as numpy."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


#: The suffix of a within-prompt metric computed only among the samples that are their prompt's digit.
ON_PROMPT = "_on_prompt"


def within_prompt(name: str, arrays: dict, index: np.ndarray | None = None, on_prompt: bool = False) -> float:
    """Metric ``name`` (``vendi_<embedding>`` or ``is_<embedding>``) within each prompt's samples, averaged over the
    prompts: what shows collapse *within* a prompt (every "3" the same 3), which the across-prompt value hides.

    ``arrays``: an evaluation's saved arrays with ``prompt_index`` (N,) and ``features.<embedding>`` or
    ``probs.<embedding>``; ``index``: the samples to use (e.g. the first n), default all. ``on_prompt``: only
    the samples the digits classifier puts in the class their prompt names (``probs.classifier``, ``prompt_class``),
    so that a sample drawn as another digit cannot add to its prompt's diversity. A prompt with fewer than 2 of them
    is left out; NaN when none is left or the arrays lack the metric.
    """
    kind, _, embedding = name.partition("_")
    source = arrays.get(f"{'features' if kind == 'vendi' else 'probs'}.{embedding}")
    groups = arrays.get("prompt_index")
    if source is None or groups is None or kind not in ("vendi", "is"):
        return math.nan
    source, groups = _numpy(source), _numpy(groups)
    if on_prompt:
        probs, classes = arrays.get("probs.classifier"), arrays.get("prompt_class")
        if probs is None or classes is None:
            return math.nan
        keep = _numpy(probs).argmax(axis=1) == _numpy(classes)[groups]
        index = np.flatnonzero(keep) if index is None else np.asarray(index)[keep[np.asarray(index)]]
    if index is not None:
        source, groups = source[index], groups[index]
    values = []
    for group in np.unique(groups):
        rows = source[groups == group]
        if len(rows) >= 2:
            values.append(embedding_vendi(embedding, rows) if kind == "vendi" else inception_score(rows)[0])
    return float(np.mean(values)) if values else math.nan


def prompt_classes(prompts: Sequence[str], classes: int) -> np.ndarray | None:
    """The class each prompt names, (P,) int64, when every prompt is a class index of the digits classifier ("0" ..
    "9": the class-conditional digits model's prompts); None otherwise (text prompts name no class)."""
    names, known = list(prompts), [str(c) for c in range(classes)]
    if not names or not all(p in known for p in names):
        return None
    return np.array([known.index(p) for p in names], dtype=np.int64)


def prompt_alignment(arrays: dict, index: np.ndarray | None = None) -> float:
    """The digits classifier's mean probability of the digit each sample's prompt names (the ``alignment`` reward's
    value, read as a measure): how far a prompted run's samples stay the digit they were asked for, beside its
    within-prompt diversity (a sample that leaves its prompt for another digit adds to that prompt's diversity).

    ``arrays``: ``probs.classifier`` (N, K), ``prompt_index`` (N,) and ``prompt_class`` (P,), the class of each
    prompt index; ``index``: the samples to use, default all. NaN when the arrays lack any of them."""
    probs, groups, classes = (arrays.get(k) for k in ("probs.classifier", "prompt_index", "prompt_class"))
    if probs is None or groups is None or classes is None:
        return math.nan
    probs, groups, classes = _numpy(probs), _numpy(groups), _numpy(classes)
    if index is not None:
        probs, groups = probs[index], groups[index]
    return float(probs[np.arange(len(groups)), classes[groups]].mean())


def prompt_metrics(arrays: dict, prompts: Sequence[str], n: int) -> dict:
    """The within-prompt metrics of an evaluation (``vendi_<embedding>_within@N``, ``is_<embedding>_within@N``, and
    ``prompt_alignment@N`` where the prompts name the classifier's classes) and each prompt's own (``per_prompt``:
    {prompt: {reward_mean, vendi_<embedding>, is_<embedding>}}); records the samples' prompts in ``arrays`` as
    ``prompt_index`` (indices into the prompts in first-seen order) and, for class prompts, ``prompt_class``."""
    names = list(dict.fromkeys(prompts))
    arrays["prompt_index"] = torch.tensor([names.index(p) for p in prompts], dtype=torch.long)
    metric_names = [f"vendi_{key.split('.', 1)[1]}" for key in arrays if key.startswith("features.")]
    metric_names += [f"is_{key.split('.', 1)[1]}" for key in arrays if key.startswith("probs.")]
    out: dict = {f"{name}{WITHIN}@{n}": within_prompt(name, arrays) for name in metric_names}
    probs = arrays.get("probs.classifier")
    classes = prompt_classes(names, probs.shape[1]) if probs is not None else None
    if classes is not None:
        arrays["prompt_class"] = torch.from_numpy(classes)
        out[f"prompt_alignment@{n}"] = prompt_alignment(arrays)
    group = arrays["prompt_index"].numpy()
    per_prompt = {}
    for i, prompt in enumerate(names):
        rows = np.flatnonzero(group == i)
        entry = {"samples": int(len(rows))}
        if "rewards" in arrays:
            entry["reward_mean"] = float(arrays["rewards"][rows].mean())
        single = {"prompt_index": torch.zeros(len(rows), dtype=torch.long),
                  **{k: v[rows] for k, v in arrays.items() if k.startswith(("features.", "probs."))}}
        entry.update({name: within_prompt(name, single) for name in metric_names})
        per_prompt[prompt] = entry
    out["per_prompt"] = per_prompt
    return out
