"""The LAION aesthetic reward end to end on a tiny random open_clip model and a random MLP, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hrf_core.downloads import Unavailable
from hrf_core.measure.features import ClipFeatures
from hrf_core.rewards import aesthetic
from hrf_core.rewards.aesthetic import (
    AestheticMLP,
    aesthetic_available,
    aesthetic_weights,
    load_aesthetic_mlp,
    make_aesthetic_reward,
)

TINY_CLIP = {  # a registered open_clip config: ViT with one block, 768-d embedding like ViT-L/14
    "embed_dim": 768,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 64, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    import open_clip

    cfg = tmp_path_factory.mktemp("open_clip") / "hrf-tiny-clip.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    return open_clip.create_model("hrf-tiny-clip", pretrained=None).eval()


@pytest.fixture()
def mlp_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return AestheticMLP().state_dict()


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HRF_CACHE_DIR", str(tmp_path / "hrf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("os.path.expanduser", lambda p: p.replace("~", str(tmp_path / "home")))
    return tmp_path


def fake_hub_file(hub: Path, repo_id: str, filename: str) -> Path:
    """Where huggingface_hub's cache keeps ``repo_id``/``filename`` at ``main`` (created, empty)."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("0" * 40)
    path = repo / "snapshots" / ("0" * 40) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def test_cached_clip_weights_load_offline_with_the_tags_settings(offline: Path, tiny_clip, monkeypatch) -> None:
    import open_clip
    from open_clip import pretrained
    from safetensors.torch import save_file

    from hrf_core.measure.features import clip_checkpoint, load_clip_model

    tag = {"hf_hub": "hrf/tiny-clip/", "quick_gelu": True, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    monkeypatch.setitem(pretrained._PRETRAINED, "hrf-tiny-clip", {"tiny": tag})
    assert clip_checkpoint("hrf-tiny-clip", "tiny") is None
    path = fake_hub_file(offline / "hub", "hrf/tiny-clip", "open_clip_model.safetensors")
    reference = open_clip.create_model("hrf-tiny-clip", pretrained=None, force_quick_gelu=True).eval()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    assert clip_checkpoint("hrf-tiny-clip", "tiny") == str(path)
    model = load_clip_model("hrf-tiny-clip", "tiny")  # offline: must not touch the network
    assert type(model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert tuple(open_clip.get_model_preprocess_cfg(model)["mean"]) == (0.5, 0.5, 0.5)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.encode_image(x), reference.encode_image(x), atol=1e-6)


def test_available_when_both_weights_are_cached(offline: Path) -> None:
    from hrf_core.measure.features import clip_checkpoint

    fake_hub_file(offline / "hub", "timm/vit_large_patch14_clip_224.openai", "open_clip_model.safetensors")
    assert clip_checkpoint() is not None
    assert not aesthetic_available()[0]  # the MLP is still missing
    fake_hub_file(offline / "hub", aesthetic.AESTHETIC_REPO, aesthetic.AESTHETIC_FILENAME)
    assert aesthetic_available() == (True, "")


def test_mlp_matches_the_original_checkpoint_layout() -> None:
    mlp = AestheticMLP()
    shapes = {k: tuple(v.shape) for k, v in mlp.state_dict().items()}
    assert shapes == {
        "layers.0.weight": (1024, 768), "layers.0.bias": (1024,),
        "layers.2.weight": (128, 1024), "layers.2.bias": (128,),
        "layers.4.weight": (64, 128), "layers.4.bias": (64,),
        "layers.6.weight": (16, 64), "layers.6.bias": (16,),
        "layers.7.weight": (1, 16), "layers.7.bias": (1,),
    }
    assert [m.p for m in mlp.layers if isinstance(m, torch.nn.Dropout)] == [0.2, 0.2, 0.1]
    assert all(isinstance(m, (torch.nn.Linear, torch.nn.Dropout)) for m in mlp.layers)  # no activations


def test_reward_end_to_end_offline(offline: Path, tiny_clip, mlp_state) -> None:
    reward = make_aesthetic_reward(clip_model=tiny_clip, mlp_state=mlp_state)
    seen: list[torch.Tensor] = []
    reward.mlp.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    torch.manual_seed(2)
    for images in (torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(2, 3, 48, 40) * 2 - 1):
        scores = reward(images)
        assert scores.shape == (len(images),) and scores.dtype == torch.float32
        assert torch.isfinite(scores).all() and not scores.requires_grad
        assert torch.allclose(seen[-1].norm(dim=-1), torch.ones(len(images)), atol=1e-5)  # L2-normalised
    # the same numbers by hand: open_clip preprocessing -> encode_image -> normalise -> MLP
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        x = ClipFeatures(model=tiny_clip).preprocess(images)
        emb = torch.nn.functional.normalize(tiny_clip.encode_image(x), dim=-1)
        mlp = AestheticMLP()
        mlp.load_state_dict(mlp_state)
        expected = mlp.eval()(emb)
    assert torch.allclose(reward(images), expected, atol=1e-5)
    assert x.shape == (4, 3, 32, 32)  # the tiny model's own input size, from its preprocess config
    assert reward(images).var() > 0  # different images, different scores


def test_clip_features_use_open_clip_preprocessing_and_are_normalised(tiny_clip) -> None:
    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    ext = ClipFeatures(model=tiny_clip)
    edges = -torch.ones(2, 1, 16, 16)
    edges[:, :, :, ::2] = 1.0  # stripes: bicubic upsampling overshoots [0, 1] unless clamped
    x = ext.preprocess(edges)
    mean, std = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1), torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)
    unit = x * std + mean
    assert x.shape == (2, 3, 32, 32) and unit.min() >= -1e-6 and unit.max() <= 1 + 1e-6
    assert unit.max() > 0.9 and unit.min() < 0.1
    emb = ext(torch.rand(3, 3, 16, 16) * 2 - 1)
    assert emb.shape == (3, 768) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_reward_is_usable_in_autograd_code(offline: Path, tiny_clip, mlp_state) -> None:
    r = make_aesthetic_reward(clip_model=tiny_clip, mlp_state=mlp_state)(torch.zeros(2, 3, 16, 16))
    w = torch.ones(2, requires_grad=True)
    (r * w).sum().backward()
    assert torch.equal(w.grad, r)


def test_wrong_weights_file_is_rejected_by_sha256(offline: Path, mlp_state) -> None:
    bad = offline / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(mlp_state, bad)
    with pytest.raises(ValueError, match="sha256"):
        aesthetic_weights(source=bad)
    assert not (offline / "hrf" / aesthetic.SAFETENSORS_NAME).exists()


def test_verified_pth_is_converted_to_safetensors_and_cached(offline: Path, mlp_state) -> None:
    src = offline / "weights.pth"
    torch.save(mlp_state, src)
    digest = aesthetic.file_sha256(src)
    path = aesthetic_weights(source=src, sha256=digest)
    assert path.suffix == ".safetensors" and path.parent == offline / "hrf"
    src.unlink()  # the cache alone serves later calls
    assert aesthetic_weights(sha256=digest) == path
    from safetensors.torch import load_file

    loaded = load_file(str(path))
    assert all(torch.equal(loaded[k], mlp_state[k]) for k in mlp_state)


def test_offline_without_weights_is_unavailable_and_refused(offline: Path) -> None:
    """No download attempted (how fast it fails: bench/fail_fast.py)."""
    ok, reason = aesthetic_available()
    assert not ok and "HF_HUB_OFFLINE" in reason and "aesthetic" in reason and "ViT-L-14" in reason
    with pytest.raises(Unavailable, match="HF_HUB_OFFLINE"):
        make_aesthetic_reward()
    with pytest.raises(Unavailable, match="HF_HUB_OFFLINE"):
        load_aesthetic_mlp()


def test_mismatched_mlp_state_is_refused(mlp_state) -> None:
    broken = dict(mlp_state)
    broken.pop("layers.7.bias")
    with pytest.raises(ValueError, match="mismatch"):
        load_aesthetic_mlp(state=broken)
