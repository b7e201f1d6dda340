"""Shared fixtures: offline environment and a tiny random diffusers model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import DDIMScheduler, UNet2DModel  # noqa: E402

torch.set_num_threads(1)  # tiny models gain nothing from more; robust when the CPU is shared

# tests/ mirrors the library's folders (tests/rl/, tests/explorer/ for the app, ...) and its modules import helpers
# from one another by bare name (``from test_jobs import fake_factory``): every folder of tests/ is on the path, so
# a test file's basename is unique across them.
sys.path += [str(folder) for folder in sorted(Path(__file__).resolve().parent.iterdir())
             if folder.is_dir() and not folder.name.startswith(("_", ".")) and str(folder) not in sys.path]


def make_tiny_unet(seed: int = 0, channels: int = 1, size: int = 8, num_class_embeds: int | None = None) -> UNet2DModel:
    """A ~20k-parameter UNet2DModel with random weights (a stand-in for any diffusers UNet); with
    ``num_class_embeds``, a class-conditional one."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, num_class_embeds=num_class_embeds,
    ).eval()


def make_scheduler(set_alpha_to_one: bool = False) -> DDIMScheduler:
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                         set_alpha_to_one=set_alpha_to_one, steps_offset=1)


def model_folder(folder, unet: UNet2DModel):
    """``folder`` as a local diffusers model folder (unet/ + scheduler/) holding ``unet``."""
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    make_scheduler().save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A local diffusers folder (unet/ + scheduler/) holding a tiny random model."""
    return model_folder(tmp_path_factory.mktemp("tiny-model"), make_tiny_unet())


@pytest.fixture(scope="session")
def tiny_clip_model(tmp_path_factory):
    """A registered one-block open_clip ViT with a 768-d embedding (like ViT-L/14), random weights."""
    import json

    import open_clip

    cfg = tmp_path_factory.mktemp("open_clip") / "hrf-tiny-clip-eval.json"
    cfg.write_text(json.dumps({
        "embed_dim": 768,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 64, "heads": 1, "layers": 1}}))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    return open_clip.create_model("hrf-tiny-clip-eval", pretrained=None).eval()


@pytest.fixture(scope="session")
def tiny_rgb_model_dir(tmp_path_factory):
    """A local diffusers folder holding a tiny random RGB model (3 x 8 x 8)."""
    return model_folder(tmp_path_factory.mktemp("tiny-rgb-model"), make_tiny_unet(channels=3))


def make_tiny_cond_unet(seed: int = 0, classes: int = 3) -> UNet2DModel:
    """A tiny class-conditional UNet2DModel: ``classes`` classes plus the null class (random weights, the class
    embedding scaled up so the classes matter)."""
    unet = make_tiny_unet(seed, num_class_embeds=classes + 1)
    with torch.no_grad():
        unet.class_embedding.weight.mul_(3.0)
    return unet


@pytest.fixture(scope="session")
def tiny_cond_model_dir(tmp_path_factory):
    """A local diffusers folder holding a tiny class-conditional model: prompts "0", "1", "2"; null class 3."""
    return model_folder(tmp_path_factory.mktemp("tiny-cond-model"), make_tiny_cond_unet())


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A tiny random Stable Diffusion pipeline folder: UNet2DConditionModel, AutoencoderKL, CLIPTextModel, a CLIP
    tokenizer written from a small vocabulary and merges file, DDIM with set_alpha_to_one=False."""
    from hrf_core.models.latent import write_random_pipeline

    return write_random_pipeline(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def serial_experiment(tiny_model_dir, tmp_path_factory):
    """The 4-unit experiment of ``tests/small_experiment.py`` run with ``--jobs 1``: its folder (runs/, docs/)."""
    from small_experiment import args

    from hrf_core.commands.experiment import main as cli_main

    root = tmp_path_factory.mktemp("serial-experiment")
    assert cli_main([*args(tiny_model_dir, root), "--jobs", "1"]) == 0
    return root


#: Debian's chromium, which the browser tests drive through Playwright (never a downloaded browser)
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    """One headless Debian chromium per test module (tests/explorer/test_browser*.py)."""
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PLAYWRIGHT_BROWSERS_PATH", "0")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield browser
        browser.close()
