"""Feature extractors: images in [-1, 1] (N, C, H, W) -> embeddings (N, D) for Vendi, IS and projections.

Registered names (see :func:`make_feature_extractor`):

- ``pixel`` (alias ``pixels``): the image mapped to [0, 1] by (x + 1) / 2 and flattened, D = C*H*W
  (the same scale as vendi-score's ``pixel_vendi_score``, which uses 0..255 pixels).
- ``classifier``: the digits classifier's penultimate embedding (D = its ``embed_dim``); its softmax
  probabilities (N, 10) feed the Inception Score. One forward gives both (:meth:`features_and_probs`).
- ``inception``: torchvision Inception-v3 (ImageNet weights ``IMAGENET1K_V1``) pool features (D = 2048)
  and its 1000-way softmax. Input: [0, 1], one channel repeated to three, resized to 299x299
  (bilinear, antialiased) and normalised with the weights' own ImageNet mean/std (torchvision's
  ``ImageClassification`` preset). The model is constructed with ``transform_input=True`` as torchvision
  does for these weights. The TF graph of the original IS has 1008 classes and other weights: absolute
  values are comparable between our runs only, not with published numbers.
- ``rbf``: the calibrated measure's features (:mod:`hrf_core.measure.calibrated`): per-image min-max pixels,
  lightly blurred, D = C*H*W; its Vendi uses an RBF kernel with a fixed bandwidth, not the cosine.
- ``hog``: the second calibrated measure's features (:mod:`hrf_core.measure.hog`): HOG descriptors of the
  min-max, blurred image (D = 144 on 1x16x16), unit length; RBF kernel with a fixed bandwidth too.
- ``clip``: open_clip image embedding (``ViT-L-14`` / ``openai`` by default, D = 768), L2-normalised.
  Preprocessing is open_clip's own eval transform for the model (size, interpolation, resize mode,
  mean/std from its preprocess config) applied to tensors; values are clamped to [0, 1] after the resize,
  as a PIL round trip would. Tags trained with QuickGELU (``openai``) get ``force_quick_gelu=True``.

Every extractor has ``name``, ``dim`` (None until known) and ``__call__(images) -> (N, D)`` float32 on
CPU, run under ``torch.inference_mode``; the classifier and Inception extractors add ``probs`` and
``features_and_probs``. Weights that are neither cached nor downloadable (offline: :mod:`hrf_core.downloads`)
raise :class:`hrf_core.downloads.Unavailable` (a ``ValueError``) at construction, at once, saying what is missing
and how to fetch it; a failed download does too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from hrf_core import downloads
from hrf_core.imaging import to_unit

DEFAULT_CLIP_MODEL = "ViT-L-14"
DEFAULT_CLIP_PRETRAINED = "openai"
INCEPTION_WEIGHTS = "IMAGENET1K_V1"
#: The command that caches the Inception-v3 weights under ``$TORCH_HOME`` (docs/OFFLINE.md).
INCEPTION_FETCH = "python -c \"import torchvision; torchvision.models.inception_v3(weights='IMAGENET1K_V1')\""


@runtime_checkable
class FeatureExtractor(Protocol):
    """Anything with a ``name`` that maps images (N, C, H, W) in [-1, 1] to features (N, D)."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def _infer(fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], images: torch.Tensor,
           batch_size: int) -> tuple[torch.Tensor, ...]:
    """Run ``fn`` over batches under inference_mode; concatenated outputs as normal (autograd-safe) tensors."""
    _check_images(images)
    with torch.inference_mode():
        parts = [fn(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)]
        outs = tuple(torch.cat(p) for p in zip(*parts, strict=True))
    return tuple(o.clone() for o in outs)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected images as a (N>0, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")


def _rgb(x: torch.Tensor) -> torch.Tensor:
    """(N, 1 or 3, H, W) -> (N, 3, H, W): one channel repeated."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    return x


# ---------------------------------------------------------------------------------------------- pixels
class PixelFeatures:
    """Flattened pixels in [0, 1]: (N, C, H, W) in [-1, 1] -> (N, C*H*W)."""

    name = "pixel"
    dim: int | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        return to_unit(images).flatten(1).cpu()


class CalibratedFeatures:
    """A calibrated measure's features: ``rbf`` (:func:`hrf_core.measure.calibrated.features`, (N, C, H, W) ->
    (N, C*H*W)) or ``hog`` (:func:`hrf_core.measure.hog.features`, D = 144 on 1x16x16)."""

    dim: int | None = None

    def __init__(self, measure: str = "rbf"):
        if measure not in ("rbf", "hog"):
            raise ValueError(f"unknown calibrated measure {measure!r}: rbf or hog")
        self.name = measure

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from hrf_core.measure import calibrated, hog

        _check_images(images)
        return (calibrated if self.name == "rbf" else hog).features(images).float()


# ------------------------------------------------------------------------------------------ classifier
class ClassifierFeatures:
    """The digits classifier's penultimate embedding, and its softmax probabilities for the IS.

    ``classifier`` needs ``features(x) -> (N, D)`` and ``forward(x) -> (N, K)`` on (N, 1, 16, 16) in
    [-1, 1]; if it also has ``head`` (logits = head(features), as ``DigitClassifier``) one forward serves
    both. None loads ``checkpoints/digits16-classifier`` (or ``path``) via ``hrf_core.models.digits``.
    """

    name = "classifier"

    def __init__(self, classifier: nn.Module | None = None, device: str | torch.device = "cpu",
                 path: str | Path | None = None, batch_size: int = 512) -> None:
        if classifier is None:
            from hrf_core.models.digits import load_digit_classifier

            try:
                classifier = load_digit_classifier(path, device=device) if path else load_digit_classifier(
                    device=device)
            except (ValueError, FileNotFoundError) as e:
                raise ValueError(f"{e} (create it with `python -m hrf_core pretrain`)") from e
        self.model = classifier.eval()
        self.device = _module_device(classifier)
        self.batch_size = batch_size
        self.dim: int | None = None

    def _one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, torch.float32)
        head = getattr(self.model, "head", None)
        feats = self.model.features(x)
        logits = head(feats) if isinstance(head, nn.Module) else self.model(x)
        return feats.float().cpu(), torch.softmax(logits.float(), dim=1).cpu()

    def features_and_probs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding (N, D) and class probabilities (N, K), float32 on CPU, from one forward."""
        feats, probs = _infer(self._one, images, self.batch_size)
        self.dim = feats.shape[1]
        return feats, probs

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_probs(images)[0]

    def probs(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, K), rows sum to 1."""
        return self.features_and_probs(images)[1]


def _module_device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ------------------------------------------------------------------------------------------- inception
def inception_weights_file(model_dir: str | Path | None = None) -> Path:
    """Where torchvision caches the Inception-v3 ImageNet weights (``$TORCH_HOME/hub/checkpoints``)."""
    from torchvision.models import Inception_V3_Weights

    url = Inception_V3_Weights[INCEPTION_WEIGHTS].url
    model_dir = Path(model_dir) if model_dir else Path(torch.hub.get_dir()) / "checkpoints"
    return model_dir / os.path.basename(url)


class InceptionFeatures:
    """Inception-v3 pool features (N, 2048) and ImageNet probabilities (N, 1000), one forward for both.

    ``model`` injects any module with an ``fc`` head whose input is the pooled 2048-d vector (tests);
    None builds torchvision's ``inception_v3`` with ``IMAGENET1K_V1`` from the torch hub cache, downloading
    it (~104 MB) when not offline.
    """

    name = "inception"
    dim = 2048

    def __init__(self, device: str | torch.device = "cpu", model: nn.Module | None = None,
                 model_dir: str | Path | None = None, batch_size: int = 32) -> None:
        from torchvision.models import Inception_V3_Weights, inception_v3

        weights = Inception_V3_Weights[INCEPTION_WEIGHTS]
        if model is None:
            cached = inception_weights_file(model_dir)
            state = None
            if not cached.is_file():  # torchvision's download ignores HF_HUB_OFFLINE: decided here
                with downloads.guarded(f"Inception-v3 weights ({os.path.basename(weights.url)}, ~104 MB, for "
                                       f"$TORCH_HOME/hub/checkpoints)", INCEPTION_FETCH):
                    state = weights.get_state_dict(progress=False, check_hash=True, model_dir=str(cached.parent))
            model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
            model.load_state_dict(state if state is not None else
                                  weights.get_state_dict(progress=False, check_hash=True, model_dir=str(cached.parent)))
        self.device = torch.device(device)
        self.fc: nn.Module = model.fc
        model.fc = nn.Identity()
        self.model = model.eval().to(self.device)
        self.fc = self.fc.eval().to(self.device)
        # torchvision's own eval preset for these weights, resizing the whole image to 299 (no crop).
        self.transform = weights.transforms(resize_size=299, crop_size=299)
        self.batch_size = batch_size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] (N, 1|3, H, W) -> normalised (N, 3, 299, 299) on the extractor's device."""
        return self.transform(_rgb(to_unit(images).to(self.device)))

    def _one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.model(self.preprocess(x))
        return pooled.float().cpu(), torch.softmax(self.fc(pooled).float(), dim=1).cpu()

    def features_and_probs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool features (N, 2048) and softmax (N, 1000), float32 on CPU, from one forward."""
        return _infer(self._one, images, self.batch_size)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_probs(images)[0]

    def probs(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_probs(images)[1]


# ------------------------------------------------------------------------------------------------ clip
def clip_checkpoint(model_name: str = DEFAULT_CLIP_MODEL, pretrained: str = DEFAULT_CLIP_PRETRAINED,
                    cache_dir: str | None = None) -> str | None:
    """Local path of open_clip's weights for ``model_name``/``pretrained`` if already cached, else None.

    Looks where open_clip would download them: the HF hub cache (``.safetensors`` first, then the named
    file) or, for URL-only tags, ``~/.cache/clip``. Makes no network request.
    """
    import open_clip
    from huggingface_hub import try_to_load_from_cache
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        raise ValueError(f"unknown open_clip weights {model_name!r}/{pretrained!r}: "
                         f"known tags {open_clip.list_pretrained_tags_by_model(model_name)}")
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])
        names = [filename] if filename else [HF_WEIGHTS_NAME]
        if names[0].endswith((".bin", ".pth")):
            names.insert(0, HF_SAFE_WEIGHTS_NAME if names[0] == HF_WEIGHTS_NAME else names[0][:-4] + ".safetensors")
        for name in names:
            hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    if cfg.get("url"):
        path = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if path.is_file():
            return str(path)
    return None


def clip_weights(model_name: str, pretrained: str) -> tuple[str, str]:
    """(what, command): open_clip's weights for ``model_name``/``pretrained`` and the command that caches them."""
    return (f"open_clip weights {model_name}/{pretrained}" + (" (~1.7 GB)" if model_name == "ViT-L-14" else ""),
            f"python -c \"import open_clip; open_clip.create_model('{model_name}', pretrained='{pretrained}')\"")


def clip_missing_message(model_name: str, pretrained: str) -> str:
    """One line: which open_clip weights are missing, why they cannot be downloaded, and how to fetch them."""
    return downloads.missing(*clip_weights(model_name, pretrained))


def load_clip_model(model_name: str = DEFAULT_CLIP_MODEL, pretrained: str = DEFAULT_CLIP_PRETRAINED,
                    device: str | torch.device = "cpu", cache_dir: str | None = None) -> nn.Module:
    """open_clip model in eval mode with its pretrained weights; fails at once if offline and uncached."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        raise ValueError(f"unknown open_clip weights {model_name!r}/{pretrained!r}")
    path = clip_checkpoint(model_name, pretrained, cache_dir)
    quick_gelu = bool(cfg.get("quick_gelu", False))
    if path is None:  # open_clip's own download (the Hub, or a URL that ignores HF_HUB_OFFLINE): decided here
        from open_clip.pretrained import download_pretrained

        with downloads.guarded(*clip_weights(model_name, pretrained)):
            path = download_pretrained(cfg, cache_dir=cache_dir)
    if not path:
        raise ValueError(f"open_clip has no weights file for {model_name!r}/{pretrained!r}")
    from open_clip.transform import PreprocessCfg

    # the cached file, loaded directly (no network), with the tag's preprocessing and activation
    pp = {k: v for k, v in cfg.items() if k in PreprocessCfg.__dataclass_fields__}
    model = open_clip.create_model(model_name, pretrained=path, device=device, force_quick_gelu=quick_gelu,
                                   force_preprocess_cfg=pp or None)
    return model.eval()


class ClipFeatures:
    """open_clip image embeddings, L2-normalised: (N, C, H, W) in [-1, 1] -> (N, embed_dim).

    ``model`` injects an already built open_clip model (tests use a tiny random one); otherwise the
    pretrained ``model_name``/``pretrained`` weights are loaded (see :func:`load_clip_model`).
    """

    name = "clip"

    def __init__(self, device: str | torch.device = "cpu", model: nn.Module | None = None,
                 model_name: str = DEFAULT_CLIP_MODEL, pretrained: str = DEFAULT_CLIP_PRETRAINED,
                 cache_dir: str | None = None, batch_size: int = 32) -> None:
        import open_clip
        from open_clip.transform import PreprocessCfg

        self.device = torch.device(device)
        if model is None:
            model = load_clip_model(model_name, pretrained, device=self.device, cache_dir=cache_dir)
        self.model = model.eval().to(self.device)
        pp = {**PreprocessCfg().__dict__, **open_clip.get_model_preprocess_cfg(self.model)}
        self.transform = open_clip.image_transform(
            pp["size"], is_train=False, mean=pp["mean"], std=pp["std"], interpolation=pp["interpolation"],
            resize_mode=pp["resize_mode"], fill_color=pp["fill_color"])
        self.batch_size = batch_size
        self.dim: int | None = None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] (N, 1|3, H, W) -> the model's normalised input (N, 3, S, S) on its device."""
        from torchvision.transforms import Normalize

        x = _rgb(to_unit(images).to(self.device))
        for t in self.transform.transforms:  # open_clip's eval transform; its to-tensor/RGB steps pass tensors
            x = t(x.clamp(0, 1)) if isinstance(t, Normalize) else t(x)
        return x

    def _one(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.model.encode_image(self.preprocess(x)).float()
        return torch.nn.functional.normalize(emb, dim=-1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings (N, embed_dim), float32 on the extractor's device."""
        (out,) = _infer(lambda x: (self._one(x),), images, self.batch_size)
        self.dim = out.shape[1]
        return out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images).cpu()


# -------------------------------------------------------------------------------------------- registry
EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {
    "pixel": lambda device="cpu", **kw: PixelFeatures(**kw),
    "rbf": lambda device="cpu", **kw: CalibratedFeatures("rbf", **kw),
    "hog": lambda device="cpu", **kw: CalibratedFeatures("hog", **kw),
    "classifier": ClassifierFeatures,
    "inception": InceptionFeatures,
    "clip": ClipFeatures,
}
ALIASES = {"pixels": "pixel"}


def make_feature_extractor(name: str, device: str | torch.device = "cpu", **kw: Any) -> FeatureExtractor:
    """Build the extractor registered as ``name`` (pixel, rbf, hog, classifier, inception, clip) on ``device``.

    Extra keywords go to its constructor (e.g. ``classifier=``, ``model=``, ``model_name=``).
    """
    key = ALIASES.get(name, name)
    if key not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r}: expected one of {sorted(EXTRACTORS)}")
    return EXTRACTORS[key](device=device, **kw)
