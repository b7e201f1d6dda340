"""Reward registry: each reward is a factory returning ``fn(images) -> (N,) float tensor``.

Images are [-1, 1] tensors of shape (N, C, H, W). Rewards run without gradient. Every reward is called as
``reward(images, prompts=None)``: a prompted reward (``RewardSpec.prompted``, e.g. ``alignment``) reads each
image's prompt and refuses to run without them; the others ignore the prompts (a prompted run scores each
sample the same way).

- JPEG (in)compressibility and the LAION aesthetic score: the paper's tasks.
- ``clip-alignment``: a text-to-image run's prompt alignment, the open_clip cosine similarity of each image and its
  prompt (:mod:`hrf_core.rewards.clip_alignment`).
- Visible rewards for the embedded digits model, chosen to show the hierarchy: ``ink`` and
  ``symmetry`` can be raised by the late (detail) steps without changing the digit; ``digit:<d>``
  needs the early steps, where the class is decided.
- Bring your own: a function ``f(images) -> (N,)`` named by ``path/to/file.py:function`` or
  ``module:function``, registered by the command line (``--reward``) or by the server operator
  (``HRF_EXTRA_REWARDS``); the browser can only choose among registered names, never name code.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from hrf_core.imaging import to_pil, to_uint8

RewardFn = Callable[..., torch.Tensor]  # (images (N, C, H, W) in [-1, 1], prompts (N,) or None) -> (N,)


def jpeg_size_kb(images: torch.Tensor, quality: int = 95) -> torch.Tensor:
    """JPEG file size in kB (bytes / 1000) of each image, as DDPO defines it.

    Images are mapped from [-1, 1] to 0..255 with (x + 1) / 2 (rounded), then saved by Pillow at
    ``quality`` 95: one-channel images as mode L (greyscale JPEG), three-channel images as RGB.
    Returns a float32 tensor (N,) on the images' device.
    """
    sizes = []
    for array in to_uint8(images):
        buffer = io.BytesIO()
        to_pil(array).save(buffer, format="JPEG", quality=quality)
        sizes.append(buffer.tell() / 1000)
    return torch.tensor(sizes, dtype=torch.float32, device=images.device)


def make_jpeg_compressibility(device: str = "cpu") -> RewardFn:
    """Reward = minus the JPEG size in kB: higher for more compressible images."""
    return lambda images: -jpeg_size_kb(images)


def make_jpeg_incompressibility(device: str = "cpu") -> RewardFn:
    """Reward = the JPEG size in kB: higher for less compressible images."""
    return jpeg_size_kb


def ink(images: torch.Tensor) -> torch.Tensor:
    """Stroke mass: the mean brightness in [0, 1] over pixels and channels; thicker or longer strokes score higher."""
    return ((images.float() + 1) / 2).clamp(0, 1).mean(dim=(1, 2, 3))


def symmetry(images: torch.Tensor) -> torch.Tensor:
    """Left-right mirror symmetry: minus the mean |x - mirror(x)| in [0, 1] units (0 = perfectly symmetric)."""
    unit = ((images.float() + 1) / 2).clamp(0, 1)
    return -(unit - unit.flip(-1)).abs().mean(dim=(1, 2, 3)) + 0.0  # + 0.0: no -0.0 for a symmetric image


def make_ink(device: str = "cpu") -> RewardFn:
    return ink


def make_symmetry(device: str = "cpu") -> RewardFn:
    return symmetry


def make_digit(digit: int, device: str = "cpu") -> RewardFn:
    """Reward = log p(digit | x) under the shipped digits classifier (1x16x16 images only)."""
    from hrf_core.models.digits import IMAGE_SIZE, load_digit_classifier

    classifier = load_digit_classifier(device=device)

    def reward(images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"digit:{digit} needs 1x{IMAGE_SIZE}x{IMAGE_SIZE} images (the embedded digits model), "
                             f"got {tuple(images.shape[1:])}")
        with torch.inference_mode():
            logits = classifier(images.to(device, torch.float32))
            return torch.log_softmax(logits.float(), dim=1)[:, digit].clone()

    return reward


def make_alignment(device: str = "cpu") -> RewardFn:
    """Reward = p(prompted digit | x) under the digits classifier, in [0, 1]: how far each sample is the digit it
    was prompted with (the analogue of DDPO's prompt alignment, for the class-conditional digits model)."""
    from hrf_core.measure.metrics import prompt_classes
    from hrf_core.models.digits import IMAGE_SIZE, NUM_CLASSES, load_digit_classifier

    classifier = load_digit_classifier(device=device)

    def reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        if tuple(images.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"alignment needs 1x{IMAGE_SIZE}x{IMAGE_SIZE} images (the digits models), got "
                             f"{tuple(images.shape[1:])}")
        classes = prompt_classes(prompts, NUM_CLASSES)  # the prompts the prompt-alignment measure reads too
        if classes is None:
            raise ValueError("alignment scores digit prompts (0-9): a class-conditional digits model's prompts")
        digits = torch.from_numpy(classes).to(device)
        with torch.inference_mode():
            probs = torch.softmax(classifier(images.to(device, torch.float32)).float(), dim=1)
            return probs.gather(1, digits[:, None])[:, 0].clone()

    return reward


def make_aesthetic(device: str = "cpu") -> RewardFn:
    """LAION improved-aesthetic-predictor score on CLIP ViT-L/14 embeddings (see :mod:`hrf_core.rewards.aesthetic`)."""
    from hrf_core.rewards.aesthetic import make_aesthetic_reward

    return make_aesthetic_reward(device=device)


def make_clip_alignment(device: str = "cpu") -> RewardFn:
    """Cosine similarity of each image's and its prompt's CLIP ViT-L/14 embeddings."""
    from hrf_core.rewards.clip_alignment import make_clip_alignment as make

    return make(device=device)


def _clip_alignment_available() -> tuple[bool, str]:
    from hrf_core.rewards.clip_alignment import clip_alignment_available

    return clip_alignment_available()


def _always_available() -> tuple[bool, str]:
    return True, ""


def _aesthetic_available() -> tuple[bool, str]:
    from hrf_core.rewards.aesthetic import aesthetic_available

    return aesthetic_available()


#: How close to its maximum (in the reward's units) a base model's mean reward counts as saturated.
SATURATION_MARGIN = 0.02


@dataclass(frozen=True)
class RewardSpec:
    """A registered reward: its factory, a one-line description and an availability check."""

    name: str
    factory: Callable[..., RewardFn]
    description: str
    available: Callable[[], tuple[bool, str]] = _always_available
    prompted: bool = False  # it reads each image's prompt: only a prompted run can use it
    #: the measure embedding whose network it reads ("classifier", "clip"): never the diversity axis of its runs
    reads: str | None = None
    maximum: float | None = None  # the highest score it can give (None: unbounded), for the saturation check

    def saturated(self, base_reward: float, margin: float = SATURATION_MARGIN) -> bool:
        """Whether a base model scoring ``base_reward`` (its mean) is within ``margin`` of this reward's maximum:
        fine-tuning has next to nothing left to gain."""
        return self.maximum is not None and self.maximum - float(base_reward) < margin


def _digits_available() -> tuple[bool, str]:
    from hrf_core.models.digits import CLASSIFIER_DIR

    ok = (CLASSIFIER_DIR / "model.safetensors").is_file()
    return ok, "" if ok else f"missing {CLASSIFIER_DIR}: run `python -m hrf_core pretrain digits16`"


def _digit_spec(digit: int) -> RewardSpec:
    return RewardSpec(f"digit:{digit}", lambda device="cpu": make_digit(digit, device),
                      f"log-probability of the digit {digit} under the digits classifier (digits16 only; "
                      "needs the early steps that decide the class)", _digits_available, reads="classifier",
                      maximum=0.0)


REWARDS: dict[str, RewardSpec] = {
    spec.name: spec
    for spec in (
        RewardSpec("jpeg-compressibility", make_jpeg_compressibility, "minus JPEG size (kB, quality 95)"),
        RewardSpec("jpeg-incompressibility", make_jpeg_incompressibility, "JPEG size (kB, quality 95)"),
        RewardSpec("ink", make_ink, "stroke mass: mean brightness in [0, 1]; thicker strokes score higher, "
                   "late steps can add it without changing the digit", maximum=1.0),
        RewardSpec("symmetry", make_symmetry, "left-right symmetry: minus the mean |x - mirror(x)| "
                   "(0 = symmetric); late steps can even out strokes", maximum=0.0),
        *(_digit_spec(d) for d in range(10)),
        RewardSpec("alignment", make_alignment, "prompt alignment: the digits classifier's probability of the "
                   "prompted digit (a prompted run of the class-conditional digits16-cond)", _digits_available,
                   prompted=True, reads="classifier", maximum=1.0),
        RewardSpec(
            "aesthetic", make_aesthetic, "LAION aesthetic predictor on CLIP ViT-L/14", _aesthetic_available,
            reads="clip"),
        RewardSpec("clip-alignment", make_clip_alignment, "prompt alignment of a text-to-image run: the cosine "
                   "similarity of each image's and its prompt's CLIP ViT-L/14 embeddings", _clip_alignment_available,
                   prompted=True, reads="clip"),
    )
}


def embedding_read_by(reward: str) -> str | None:
    """The measure embedding whose network ``reward`` reads (e.g. "classifier"), None for others and unknown names."""
    spec = REWARDS.get(reward)
    return spec.reads if spec is not None else None


def make_reward(name: str, device: str = "cpu") -> RewardFn:
    """Build the registered reward ``name``; raises ValueError for an unknown name (never imports code)."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; choose one of: {', '.join(REWARDS)}")
    spec = REWARDS[name]
    return checked(spec.factory(device=device), name, spec.prompted)


#: The rewards that ship; custom ones may not take these names.
BUILT_IN = frozenset(REWARDS)


# -- bring your own reward ----------------------------------------------------------------------------
REFERENCE = re.compile(r"^(?P<target>[^:]+?)(?::(?P<function>[A-Za-z_][A-Za-z0-9_]*))$")
ENV_VARIABLE = "HRF_EXTRA_REWARDS"


def takes_prompts(fn: Callable) -> bool:
    """Whether a reward function has a ``prompts`` parameter (a custom reward may)."""
    import inspect

    try:
        return "prompts" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def checked(fn: Callable, name: str, prompted: bool = False) -> RewardFn:
    """``fn`` as ``reward(images, prompts=None)``, its output checked: a float tensor of shape (N,) for N images, all
    finite (else ValueError). ``prompted``: ``fn`` takes ``(images, prompts)`` and prompts are required."""

    def reward(images: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        if prompted and prompts is None:
            raise ValueError(f"reward {name} reads each image's prompt: it needs a prompted run (a conditional "
                             "model with prompts)")
        if prompts is not None and len(prompts) != images.shape[0]:
            raise ValueError(f"reward {name}: {len(prompts)} prompts for {images.shape[0]} images")
        out = fn(images, list(prompts)) if prompted else fn(images)
        try:
            values = torch.as_tensor(out, dtype=torch.float32, device=images.device)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"reward {name} returned {type(out).__name__}, not numbers: it must return (N,) "
                             "floats") from None
        n = images.shape[0]
        if tuple(values.shape) != (n,):
            raise ValueError(f"reward {name} returned shape {tuple(values.shape)} for {n} images: it must return "
                             f"({n},) floats, one per image")
        if not torch.isfinite(values).all():
            raise ValueError(f"reward {name} returned NaN or inf for {int((~torch.isfinite(values)).sum())} of {n} "
                             "images")
        return values

    return reward


def load_function(reference: str) -> Callable:
    """The function named by ``path/to/file.py:function`` or ``package.module:function`` (ValueError if not)."""
    match = REFERENCE.match(reference.strip())
    if not match:
        raise ValueError(f"reward reference {reference!r} must look like path/to/file.py:function or "
                         "module:function")
    target, function = match["target"], match["function"]
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"reward file {target} does not exist")
        module_name = f"hrf_user_reward_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as error:  # noqa: BLE001 - user code: report, never crash
            sys.modules.pop(module_name, None)
            raise ValueError(f"could not load reward file {target}: {type(error).__name__}: {error}") from None
    else:
        try:
            module = importlib.import_module(target)
        except Exception as error:  # noqa: BLE001
            raise ValueError(f"could not import reward module {target!r}: {type(error).__name__}: {error}") from None
    fn = getattr(module, function, None)
    if fn is None:
        raise ValueError(f"{target} has no function {function!r}")
    if not callable(fn):
        raise ValueError(f"{target}:{function} is not callable")
    return fn


def register_reference(reference: str, name: str | None = None) -> str:
    """Register the function ``reference`` names as a reward (under ``name``, default the reference); its name.

    Called by the command line for ``--reward path.py:fn`` and by :func:`register_from_env`; never with
    text a browser sent.
    """
    name = (name or reference).strip()
    if name in BUILT_IN:
        raise ValueError(f"reward name {name!r} is taken by a built-in reward")
    fn = load_function(reference)
    summary = (fn.__doc__ or "").strip().splitlines()
    description = f"custom: {summary[0] if summary else reference}"
    REWARDS[name] = RewardSpec(name, lambda device="cpu": fn, description, prompted=takes_prompts(fn))
    return name


def is_reference(text: str) -> bool:
    """Whether ``text`` looks like a code reference rather than a registered name."""
    return text not in REWARDS and bool(REFERENCE.match(text.strip())) and not text.startswith("digit:")


def register_from_env(environ: dict | None = None) -> list[str]:
    """Register the operator's rewards from ``HRF_EXTRA_REWARDS``: ``name=path.py:fn, module:fn, ...``."""
    text = (environ if environ is not None else os.environ).get(ENV_VARIABLE, "")
    names = []
    for entry in filter(None, (e.strip() for e in re.split(r"[,;\n]", text))):
        name, _, reference = entry.rpartition("=") if "=" in entry else ("", "", entry)
        names.append(register_reference(reference.strip(), name.strip() or None))
    return names
