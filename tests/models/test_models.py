"""The base-model registry: local folders, layouts, safetensors (pickle weights via a converted copy), clear offline
errors."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import make_scheduler, make_tiny_unet

from hrf_core.models.registry import availability, load_base_model, model_folder, resolve_device


def test_local_folder_loads_unet_and_ddim_scheduler(tiny_model_dir):
    base = load_base_model(str(tiny_model_dir), "cpu")
    assert base.sample_shape == (1, 8, 8) and not base.unet.training
    assert type(base.scheduler).__name__ == "DDIMScheduler"
    assert base.scheduler.config.set_alpha_to_one is False and base.scheduler.config.steps_offset == 1


def test_flat_layout_and_ddpm_scheduler_config(tmp_path):
    from diffusers import DDPMScheduler

    make_tiny_unet().save_pretrained(tmp_path, safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path)  # like google/ddpm-celebahq-256
    base = load_base_model(str(tmp_path), "cpu")
    assert type(base.scheduler).__name__ == "DDIMScheduler"
    assert base.scheduler.config.set_alpha_to_one is True  # DDIM default: last step has zero variance


def test_pickle_only_weights_load_through_a_cached_safetensors_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HRF_CACHE_DIR", str(tmp_path / "cache"))
    unet = make_tiny_unet()
    unet.save_pretrained(tmp_path / "model" / "unet", safe_serialization=False)
    make_scheduler().save_pretrained(tmp_path / "model" / "scheduler")
    base = load_base_model(str(tmp_path / "model"), "cpu")
    assert base.name == str(tmp_path / "model") and (tmp_path / "cache" / "converted") in base.folder.parents
    assert (base.folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in base.unet.state_dict().items())


def test_folder_without_unet_weights_is_refused(tmp_path):
    make_tiny_unet().save_pretrained(tmp_path / "unet", safe_serialization=True)
    make_scheduler().save_pretrained(tmp_path / "scheduler")
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match="has no UNet weights"):
        model_folder(str(tmp_path))


def test_unknown_and_offline_models_fail_fast_with_instructions(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        model_folder("nope")
    with pytest.raises(ValueError, match="not a diffusers model folder"):
        model_folder(str(tmp_path))
    with pytest.raises(ValueError, match="hf download google/ddpm-ema-celebahq-256"):  # how fast: bench/fail_fast.py
        load_base_model("google/ddpm-ema-celebahq-256", "cpu")
    ok, reason = availability("google/ddpm-celebahq-256")
    assert not ok and reason


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_checkpoint_folder_is_a_model(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "ckpt")
    assert load_base_model(str(tmp_path / "ckpt"), "cpu").folder == (tmp_path / "ckpt").resolve()


def test_x0_preview_is_one_batched_trajectory(tiny_model_dir):
    from hrf_core.rl.sampling import x0_preview

    base = load_base_model(str(tiny_model_dir), "cpu")
    calls = []
    base.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    previews = x0_preview(base, num_steps=10, seed=0, n=3)
    assert previews.shape == (10, 3, 1, 8, 8) and previews.abs().max() <= 1
    assert calls == [3] * 10  # one UNet call per step for all trajectories
    assert torch.equal(previews, x0_preview(base, num_steps=10, seed=0, n=3))
