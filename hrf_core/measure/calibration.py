"""The calibration suite a diversity measure must pass before a plot uses it (table in docs/METHOD.md).

It runs on the **held-out** real digits (``load_split("heldout")``, never the training digits the DDPM and the
classifier saw), 35-37 per class, 1x16x16 in [-1, 1].

Within a class (each class's digits on their own, the value averaged over the 10 classes):
- **collapse**: the set replaced by k = 8, 4, 2, 1 distinct digits of it (row i takes digit i mod k) plus
  Gaussian noise of sigma 0.02 (in [0, 1] units). The measure must fall at every halving of k by at least
  :data:`COLLAPSE_STEP` of its value on the full set.
- **edits that keep identity** (what a reward does while the digit stays the same digit): ``thicken`` (3x3 grey
  dilation: a max filter), ``noise`` (Gaussian, sigma 0.05 in [0, 1] units, clamped), ``contrast`` (u -> 0.5 +
  0.7 (u - 0.5)), ``gamma`` (u -> u^1.5), ``shift`` (one pixel right, background filled in). Each must move the
  measure by at most :data:`EDIT_TOLERANCE` of its value on the full set.
- **duplication**: the set repeated twice; it must not move by more than :data:`DUPLICATE_TOLERANCE` (relative).

Across classes (the whole held-out set, for an unconditional run's axis): **collapse** keeps only the first
k = 5, 2, 1 classes (the same number of images, drawn round-robin), with the same clear fall; **thicken** must not
raise it by more than :data:`EDIT_TOLERANCE`; the other edits and duplication as within a class.

:func:`suite` measures a callable ``images (N, 1, 16, 16) in [-1, 1] -> float`` and says which checks pass;
:func:`app_measures` are the measures the app shows; :func:`table` writes the Markdown rows of docs/METHOD.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

#: Each halving of k must lower the measure by at least this share of its value on the full set.
COLLAPSE_STEP = 0.10
#: An identity-keeping edit may move the measure by at most this share of its value on the full set.
EDIT_TOLERANCE = 0.05
#: Duplicating the set may move it by at most this share (float noise only).
DUPLICATE_TOLERANCE = 1e-6
WITHIN_COLLAPSE = (8, 4, 2, 1)
ACROSS_COLLAPSE = (5, 2, 1)
EDITS = ("thicken", "noise", "contrast", "gamma", "shift")

Measure = Callable[[torch.Tensor], float]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


def _signed(u: torch.Tensor) -> torch.Tensor:
    return u.clamp(0, 1) * 2 - 1


def edit(name: str, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One identity-keeping edit of images (N, C, H, W) in [-1, 1] (see the module's docstring)."""
    if name == "thicken":
        return F.max_pool2d(images, 3, stride=1, padding=1)
    if name == "noise":
        return _signed(_unit(images) + 0.05 * torch.randn(images.shape, generator=generator))
    if name == "contrast":
        return _signed(0.5 + 0.7 * (_unit(images) - 0.5))
    if name == "gamma":
        return _signed(_unit(images) ** 1.5)
    if name == "shift":
        return F.pad(images[..., :, :-1], (1, 0, 0, 0), value=-1.0)
    raise ValueError(f"unknown edit {name!r}: expected one of {', '.join(EDITS)}")


def collapse(images: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """The set as k distinct images (row i is image i mod k) plus Gaussian noise of sigma 0.02 in [0, 1] units."""
    rows = torch.arange(len(images)) % k
    return _signed(_unit(images[rows]) + 0.02 * torch.randn(images.shape, generator=generator))


def keep_classes(images: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """The same number of images drawn round-robin from the classes 0..k-1 only."""
    index = torch.cat([torch.nonzero(labels == c).flatten() for c in range(k)])
    return images[index[torch.arange(len(images)) % len(index)]]


@dataclass
class SuiteResult:
    """A measure's values on the suite's sets ({set: value}, ``full`` the untouched one) and its verdicts."""

    scope: str  # "within" (per class, averaged) or "across" (the whole held-out set)
    values: dict[str, float]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def _sets(scope: str, images: torch.Tensor, labels: torch.Tensor, seed: int) -> list[dict[str, torch.Tensor]]:
    """The suite's image sets: one dict {set name: images} per class (within) or one for the whole set (across)."""
    generator = torch.Generator().manual_seed(seed)
    groups = [images[labels == c] for c in labels.unique().tolist()] if scope == "within" else [images]
    out = []
    for x in groups:
        sets = {"full": x}
        if scope == "within":
            sets.update({f"k={k}": collapse(x, k, generator) for k in WITHIN_COLLAPSE})
        else:
            sets.update({f"classes={k}": keep_classes(x, labels, k) for k in ACROSS_COLLAPSE})
        sets.update({name: edit(name, x, generator) for name in EDITS})
        sets["duplicated"] = torch.cat([x, x])
        out.append(sets)
    return out


def heldout_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out digits (N, 1, 16, 16) in [-1, 1] and their labels: never the training split."""
    from hrf_core.models.digits import load_split

    return load_split("heldout")


def suite(measure: Measure, scope: str = "within", images: torch.Tensor | None = None,
          labels: torch.Tensor | None = None, seed: int = 0) -> SuiteResult:
    """Run the suite on ``measure`` (default data: the held-out digits) and check its rules."""
    if scope not in ("within", "across"):
        raise ValueError(f"scope must be 'within' or 'across', got {scope!r}")
    if images is None or labels is None:
        images, labels = heldout_digits()
    per_group = [{name: float(measure(x)) for name, x in sets.items()} for sets in _sets(scope, images, labels, seed)]
    values = {name: float(np.mean([g[name] for g in per_group])) for name in per_group[0]}
    full = values["full"]
    failures = []
    ladder = [f"k={k}" for k in WITHIN_COLLAPSE] if scope == "within" else [f"classes={k}" for k in ACROSS_COLLAPSE]
    previous = "full"
    for name in ladder:
        if not values[previous] - values[name] >= COLLAPSE_STEP * full:
            failures.append(f"{name} falls {(values[previous] - values[name]) / full:.0%} from {previous} "
                            f"(< {COLLAPSE_STEP:.0%})")
        previous = name
    for name in EDITS:
        change = values[name] - full
        if scope == "across" and name == "thicken":
            if change > EDIT_TOLERANCE * full:
                failures.append(f"thicken raises it {change / full:+.1%} (> {EDIT_TOLERANCE:.0%})")
        elif abs(change) > EDIT_TOLERANCE * full:
            failures.append(f"{name} moves it {change / full:+.1%} (> {EDIT_TOLERANCE:.0%})")
    if abs(values["duplicated"] - full) > DUPLICATE_TOLERANCE * abs(full):
        failures.append(f"duplication moves it by {values['duplicated'] - full:+.2e}")
    return SuiteResult(scope, values, failures)


def app_measures(scope: str = "within") -> dict[str, Measure]:
    """The diversity measures the app shows on digits, by metric name, as ``images -> float``."""
    from hrf_core.imaging import to_unit
    from hrf_core.measure import calibrated, hog
    from hrf_core.measure.features import ClassifierFeatures
    from hrf_core.measure.metrics import class_entropy, inception_score, vendi_score

    classifier = ClassifierFeatures()
    out: dict[str, Measure] = {
        f"vendi_{calibrated.NAME}": calibrated.vendi,
        f"vendi_{hog.NAME}": hog.vendi,
        "vendi_classifier": lambda x: vendi_score(classifier(x)),
        "vendi_pixel": lambda x: vendi_score(to_unit(x).flatten(1)),
    }
    if scope == "across":
        out["is_classifier"] = lambda x: inception_score(classifier.probs(x))[0]
        out["class_entropy"] = lambda x: class_entropy(classifier.probs(x).argmax(1), 10)
    return out


def table(results: dict[str, SuiteResult]) -> list[str]:
    """Markdown rows: each measure's value on every set of the suite, the verdict and the first failure."""
    first = next(iter(results.values()))
    names = list(first.values)
    lines = ["| measure | " + " | ".join(names) + " | passes |", "|---" * (len(names) + 2) + "|"]
    for measure, result in results.items():
        full = result.values["full"]
        cells = [f"{result.values['full']:.3f}"] + [
            f"{result.values[n]:.3f} ({(result.values[n] - full) / full:+.0%})" for n in names[1:]]
        verdict = "yes" if result.passed else "no: " + "; ".join(result.failures)
        lines.append(f"| {measure} | " + " | ".join(cells) + f" | {verdict} |")
    return lines
