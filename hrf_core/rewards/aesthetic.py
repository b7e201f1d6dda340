"""The LAION aesthetic reward: CLIP ViT-L/14 image embedding -> improved-aesthetic-predictor MLP.

Pipeline (as the predictor was trained): the open_clip ``ViT-L-14``/``openai`` image embedding of the
image (:class:`hrf_core.measure.features.ClipFeatures`, open_clip's own preprocessing), L2-normalised, into the
MLP 768 -> 1024 -> 128 -> 64 -> 16 -> 1 (Dropout 0.2, 0.2, 0.1 between the first four Linear layers, no
activations). The score is roughly 1..10 (higher = more aesthetic).

Weights: ``sac+logos+ava1-l14-linearMSE.pth`` (3,714,759 bytes, sha256 ``21dd590f...d511bff0f1e0``) are
fetched from the Hugging Face Hub on first use (``AESTHETIC_REPO``; never committed), verified against
that sha256, loaded with ``torch.load(weights_only=True)`` and cached as safetensors in
``$HRF_CACHE_DIR`` (default ``~/.cache/hrf-explorer``). Offline (:mod:`hrf_core.downloads`) and uncached:
:class:`hrf_core.downloads.Unavailable` at once; :func:`aesthetic_available` says so without raising.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from hrf_core import downloads
from hrf_core.measure.features import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    ClipFeatures,
    clip_checkpoint,
    clip_missing_message,
)
from hrf_core.models.weights import file_sha256

AESTHETIC_FILENAME = "sac+logos+ava1-l14-linearMSE.pth"
AESTHETIC_BYTES = 3_714_759
AESTHETIC_SHA256 = "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0"
#: A Hub mirror of the file from github.com/christophschuhmann/improved-aesthetic-predictor.
AESTHETIC_REPO = "camenduru/improved-aesthetic-predictor"
SAFETENSORS_NAME = "laion-aesthetic-sac+logos+ava1-l14-linearMSE.safetensors"


class AestheticMLP(nn.Module):
    """The improved-aesthetic-predictor head: (N, 768) normalised CLIP embeddings -> (N,) scores.

    Layer names match the original checkpoint: ``layers.{0,2,4,6,7}.{weight,bias}``.
    """

    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings).squeeze(-1)


def cache_dir() -> Path:
    """Where converted weights live: ``$HRF_CACHE_DIR`` or ``~/.cache/hrf-explorer``."""
    return Path(os.environ.get("HRF_CACHE_DIR") or Path.home() / ".cache" / "hrf-explorer")


def check_mlp_state(state: dict[str, torch.Tensor]) -> int:
    """Validate an MLP state dict's keys and shapes; returns its input size (the embedding dim)."""
    if not isinstance(state, dict) or "layers.0.weight" not in state:
        raise ValueError("not an aesthetic MLP state dict: no 'layers.0.weight'")
    dim = int(state["layers.0.weight"].shape[1])
    expected = {k: tuple(v.shape) for k, v in AestheticMLP(dim).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        raise ValueError(f"aesthetic MLP state dict mismatch: expected {expected}, got {got}")
    return dim


def load_verified_pth(path: str | Path, sha256: str = AESTHETIC_SHA256) -> dict[str, torch.Tensor]:
    """The original torch-pickle checkpoint, only after its sha256 matches (then ``weights_only=True``)."""
    digest = file_sha256(path)
    if digest != sha256:
        raise ValueError(f"{path} has sha256 {digest}, expected {sha256}: it is not {AESTHETIC_FILENAME} "
                         f"({AESTHETIC_BYTES:,} bytes); delete it and fetch the file again")
    state = torch.load(path, map_location="cpu", weights_only=True)
    check_mlp_state(state)
    return state


def _hub_pth(repo_id: str, filename: str) -> Path:
    """The checkpoint from the HF cache, or downloaded; :class:`~hrf_core.downloads.Unavailable` at once when offline
    and missing, or when the download fails."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename)
    if isinstance(hit, str) and os.path.isfile(hit):
        return Path(hit)
    with downloads.guarded(*_aesthetic_weights(repo_id, filename)):
        return Path(hf_hub_download(repo_id, filename))


def _aesthetic_weights(repo_id: str = AESTHETIC_REPO, filename: str = AESTHETIC_FILENAME) -> tuple[str, str]:
    """(what, command): the MLP's weights and the command that caches them."""
    return (f"LAION aesthetic MLP weights ({filename} from {repo_id}, sha256 {AESTHETIC_SHA256[:12]}...)",
            "python -c \"from hrf_core.rewards.aesthetic import aesthetic_weights; aesthetic_weights()\"")


def aesthetic_missing_message(repo_id: str = AESTHETIC_REPO, filename: str = AESTHETIC_FILENAME) -> str:
    return downloads.missing(*_aesthetic_weights(repo_id, filename))


def aesthetic_weights(cache: str | Path | None = None, source: str | Path | None = None,
                      sha256: str = AESTHETIC_SHA256, repo_id: str = AESTHETIC_REPO,
                      filename: str = AESTHETIC_FILENAME) -> Path:
    """Path of the verified MLP weights as safetensors, converting ``source`` (or the Hub file) once.

    ``source``: a local ``.pth`` to verify and convert instead of the Hub copy.
    """
    from safetensors.torch import save_file

    target = Path(cache or cache_dir()) / SAFETENSORS_NAME
    if target.is_file() and source is None and _safetensors_sha(target) == sha256:
        return target
    state = load_verified_pth(Path(source) if source else _hub_pth(repo_id, filename), sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
              metadata={"source": filename, "source_sha256": sha256})
    os.replace(tmp, target)
    return target


def _safetensors_sha(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("source_sha256")
    except Exception:
        return None


def load_aesthetic_mlp(device: str | torch.device = "cpu", state: dict[str, torch.Tensor] | None = None,
                       cache: str | Path | None = None) -> AestheticMLP:
    """The MLP in eval mode: from ``state`` (tests) or the verified cached weights."""
    if state is None:
        from safetensors.torch import load_file

        state = load_file(str(aesthetic_weights(cache)))
    mlp = AestheticMLP(check_mlp_state(state))
    mlp.load_state_dict(state)
    return mlp.to(device).eval()


def aesthetic_available(cache: str | Path | None = None) -> tuple[bool, str]:
    """(usable, reason): False with the reason when offline and the MLP or CLIP weights are not cached.

    Never raises and makes no network request; True may still need a download on first use.
    """
    try:
        from huggingface_hub import try_to_load_from_cache

        target = Path(cache or cache_dir()) / SAFETENSORS_NAME
        mlp_ok = target.is_file() or isinstance(try_to_load_from_cache(AESTHETIC_REPO, AESTHETIC_FILENAME), str)
        clip_ok = clip_checkpoint(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED) is not None
    except Exception as e:  # e.g. a broken install
        return False, f"aesthetic reward unavailable: {e}"
    if mlp_ok and clip_ok:
        return True, ""
    if downloads.offline():
        missing = ([] if mlp_ok else [aesthetic_missing_message()]) + (
            [] if clip_ok else [clip_missing_message(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)])
        return False, "; ".join(missing)
    return True, "weights will be downloaded on first use (CLIP ViT-L/14 ~1.7 GB, MLP 3.7 MB)"


class AestheticReward:
    """``reward(images)`` -> (N,) float32 aesthetic scores on the images' device; images (N, C, H, W) in [-1, 1]."""

    def __init__(self, clip: ClipFeatures, mlp: AestheticMLP) -> None:
        self.clip, self.mlp = clip, mlp

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            emb = torch.nn.functional.normalize(self.clip.embed(images).float(), dim=-1)
            scores = self.mlp(emb.to(next(self.mlp.parameters()).device))
        return scores.to(images.device, torch.float32).clone()  # a normal tensor, usable in autograd code


def make_aesthetic_reward(device: str | torch.device = "cpu", clip_model: nn.Module | None = None,
                          mlp_state: dict[str, torch.Tensor] | None = None, *,
                          cache: str | Path | None = None, batch_size: int = 32) -> AestheticReward:
    """The aesthetic reward on ``device``. ``clip_model`` (an open_clip model) and ``mlp_state`` (an MLP
    state dict) replace the pretrained components, e.g. tiny random ones for offline tests."""
    mlp = load_aesthetic_mlp(device, mlp_state, cache)  # the MLP first: its check is cheaper
    clip = ClipFeatures(device=device, model=clip_model, batch_size=batch_size)
    return AestheticReward(clip, mlp)
