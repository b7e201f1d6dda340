"""The prepared GPU check: the paper's setting end to end, memory, throughput, bf16 drift and Stable Diffusion.

Made for a lent GPU machine without network (minutes of device time, at most 10 minutes a command): ``--budget``
seconds bound the whole command; the sections run in order of value, each planned from its expected cost (skipped
when it would not fit what is left, the Stable Diffusion epoch shrunk to fit), and each section's JSON is written
atomically the moment it ends (``<out stem>.<section>.json`` beside ``--out``, and ``--out`` itself rewritten with
everything so far), so a kill loses only the section in flight. A watchdog ends the process at the budget.

Sections (default order):

1. ``sd-hrf``, ``sd-ddpo`` (``sd`` names both): the Stable Diffusion 1.x architecture (859.5M-parameter UNet;
   random weights unless ``--sd-model`` names a local pipeline folder or a cached Hub id: nothing is downloaded) at
   512 px with LoRA rank 4 and bf16, ddpo-pytorch's settings (the ``sd-ddpo`` / ``sd-hrf`` presets: 50 DDIM steps,
   eta 1, guidance 5, sampling batch 8, 4 samples per training call, per-prompt advantages over @animals): one
   epoch timed without evaluation; samples per GPU-minute (against ddpo-pytorch's about 13), trained steps per
   sample, the UNet's model FLOP utilisation (counted UNet rows x FLOPs per row), the first update's ratio
   deviation, clip fraction and approx-KL, peak memory beside the memory estimate (hrf_core.rl.memory);
   ``--compile`` adds each again with the UNet under torch.compile (before and after in one run);
2. ``throughput``: trained (sample, step) rows per second of forward+backward calls of the CelebA-HQ 256 UNet
   (113.7M parameters, random weights) in fp32 and bf16, at batch 8 and the largest batch that fits, and the MFU
   (torch's FlopCounterMode; a backward counted as 2 forwards);
3. ``drift``: bf16 against fp32 on the embedded digits model, same seed: the first update's ratio deviation and
   the reward curve;
4. ``memory``: peak GPU memory of one epoch at the paper preset (10 samples, batch 5) in fp32, bf16, with
   gradient checkpointing, and both;
5. ``job``: a 2-epoch HRF run through the job manager (the app's path) with the aesthetic reward (CLIP ViT-L/14
   and MLP head, random weights where not cached), evaluated with Inception-v3 and CLIP embeddings.

Trainers are collected (``gc.collect()``, ``torch.cuda.empty_cache()``) between sections and methods.

    python bench/gpu_check.py --budget 540                    # on a GPU: everything that fits 9 minutes
    python bench/gpu_check.py --sections sd --budget 400      # the Stable Diffusion case alone
    python bench/gpu_check.py --device cpu --tiny --budget 30 # the same code paths on tiny models (the suite)

Prints a markdown table and writes the figures as JSON. Exit status: 0 done (sections skipped for the budget are
listed), 2 bad input (no GPU, missing weights), 3 stopped by the watchdog at the budget.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the budget counts from here (before torch and diffusers are imported)

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from diffusers import DDIMScheduler, UNet2DModel  # noqa: E402
from epoch import sync, time_call  # noqa: E402  (bench/epoch.py: the same timing in both benchmarks)

from hrf_core.models.registry import CELEBAHQ_UNET_CONFIG, load_base_model  # noqa: E402
from hrf_core.presets import PRESETS  # noqa: E402
from hrf_core.rl.policy import unet_eps  # noqa: E402

#: Dense peak throughput (TFLOP/s) by GPU name fragment: (fp32 on CUDA cores, bf16 on tensor cores).
PEAK_TFLOPS = {"H200": (67, 989), "H100": (67, 989), "A100": (19.5, 312), "L40S": (91.6, 362), "L4": (30.3, 121),
               "A10G": (31.2, 125), "A10": (31.2, 125), "T4": (8.1, 65)}
TINY_UNET = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                 norm_num_groups=8)


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def release(device: torch.device) -> None:
    """Free what the last trainer held: Python's reference cycles (a UNet's hooks), then the CUDA cache."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> None:
    release(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def make_model_folder(root: Path, tiny: bool) -> Path:
    """A diffusers folder with the CelebA-HQ 256 architecture (or a tiny RGB stand-in), random weights."""
    torch.manual_seed(0)
    unet = UNet2DModel(**(TINY_UNET if tiny else CELEBAHQ_UNET_CONFIG))
    unet.save_pretrained(root / "unet", safe_serialization=True)
    DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True, set_alpha_to_one=True,
                  steps_offset=1).save_pretrained(root / "scheduler")  # the CelebA-HQ config: zero-variance last step
    return root


def clip_model(tiny: bool):
    """CLIP ViT-L/14 with its cached weights when present, else the same architecture with random weights."""
    import open_clip

    from hrf_core.measure.features import clip_checkpoint, load_clip_model

    if not tiny and clip_checkpoint() is not None:
        return load_clip_model(), "ViT-L/14 (cached weights)"
    if tiny:
        cfg = Path(tempfile.mkdtemp()) / "hrf-gpu-check-tiny-clip.json"
        cfg.write_text(json.dumps({"embed_dim": 768, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64,
                                                                   "head_width": 64, "patch_size": 16},
                                   "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 64, "heads": 1,
                                                "layers": 1}}))
        open_clip.add_model_config(cfg)
        return open_clip.create_model("hrf-gpu-check-tiny-clip", pretrained=None).eval(), "tiny random CLIP"
    return open_clip.create_model("ViT-L-14", pretrained=None).eval(), "ViT-L/14 (random weights)"


def inception_extractor(device, tiny: bool):
    from torchvision.models import inception_v3

    from hrf_core.measure.features import InceptionFeatures, inception_weights_file

    if not tiny and inception_weights_file().is_file():
        return InceptionFeatures(device=device), "Inception-v3 (cached weights)"
    model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    return InceptionFeatures(device=device, model=model), "Inception-v3 (random weights)"


def check_job(folder: Path, device: torch.device, tiny: bool, epochs: int, out: dict) -> None:
    """Section 1: a 2-epoch HRF run with the aesthetic reward through the job manager, RGB evaluation."""
    from explorer.jobs import JobManager
    from hrf_core.measure.evaluation import Evaluator
    from hrf_core.measure.features import ClipFeatures
    from hrf_core.rewards.aesthetic import make_aesthetic_reward
    from hrf_core.rl.trainer import Trainer
    from hrf_core.store.runs import RunStore

    clip, clip_label = clip_model(tiny)
    reward = make_aesthetic_reward(device=device, clip_model=clip.to(device),
                                   mlp_state=None if not tiny and _aesthetic_cached() else _random_mlp_state())
    inception, inception_label = inception_extractor(device, tiny)
    extractors = {"inception": inception, "clip": ClipFeatures(device=device, model=clip)}

    def factory(config, run, callbacks, stop_event):
        base = load_base_model(str(folder), device)
        evaluator = Evaluator(base.sample_shape, device, ("inception", "clip"), extractors=extractors)
        return Trainer(config, run, callbacks=callbacks, stop_event=stop_event, base=base, reward_fn=reward,
                       evaluator=evaluator)

    k = 10 if tiny else 40
    config = PRESETS["paper-hrf-sliding"].replace(
        model=str(folder), reward="aesthetic", epochs=epochs, clusters=((0, k // 2, 1), (k // 2, k, epochs)),
        eval_every=1, device=str(device), num_steps=k)
    store = RunStore(Path(tempfile.mkdtemp(prefix="gpu-check-runs-")))
    manager = JobManager(store, trainer_factory=factory, preflight=None)
    started = time.perf_counter()
    manager.start(config)
    manager.wait()
    snap = manager.snapshot()
    rows = snap.rows
    trained = [r for r in rows if r.get("epoch", 0) >= 1]
    out["job"] = {"state": snap.state, "error": snap.error, "wall_seconds": time.perf_counter() - started,
                  "seconds_per_epoch": [r["seconds"] for r in trained],
                  "eval_seconds": [r.get("eval_seconds") for r in trained],
                  "embeddings": sorted(k for k in (rows[-1] if rows else {}) if k.startswith(("is_", "vendi_"))),
                  "reward_model": clip_label, "inception": inception_label}


def _aesthetic_cached() -> bool:
    from hrf_core.rewards.aesthetic import aesthetic_available

    return aesthetic_available()[0]


def _random_mlp_state() -> dict:
    from hrf_core.rewards.aesthetic import AestheticMLP

    torch.manual_seed(0)
    return AestheticMLP().state_dict()


def check_memory(folder: Path, device: torch.device, tiny: bool, out: dict) -> None:
    """Section 2: peak memory of one paper-preset epoch (sampling, update) per option combination."""
    from hrf_core.rewards.registry import make_reward
    from hrf_core.rl.trainer import Trainer
    from hrf_core.store.runs import RunStore

    reward = make_reward("jpeg-incompressibility")
    rows = []
    for bf16, checkpointing in ((False, False), (True, False), (False, True), (True, True)):
        config = PRESETS["paper-hrf-sliding"].replace(
            model=str(folder), reward="jpeg-incompressibility", epochs=2, eval_every=100, device=str(device),
            clusters=((0, 20, 1),) if not tiny else ((0, 5, 1),), num_steps=40 if not tiny else 10, bf16=bf16,
            grad_checkpointing=checkpointing, checkpoint_every=100)
        store = RunStore(Path(tempfile.mkdtemp(prefix="gpu-check-mem-")))
        reset_peak(device)
        trainer = Trainer(config, store.create(config.to_dict()), base=load_base_model(str(folder), device),
                          reward_fn=reward)
        started = time.perf_counter()
        steps = trainer.steps()
        next(steps)  # the base evaluation (not measured; 2 epochs and eval_every 100 keep epoch 1 free of one)
        reset_peak(device)
        started = time.perf_counter()
        next(steps)  # epoch 1
        sync(device)
        rows.append({"bf16": bf16, "grad_checkpointing": checkpointing, "epoch_seconds": time.perf_counter() - started,
                     "peak_gb": peak_memory_gb(device)})
        del trainer, steps
        release(device)
    out["memory_paper_preset"] = rows


def flops_per_forward_row(unet: UNet2DModel, shape: tuple[int, int, int], device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *shape, device=device)
    t = torch.full((1,), 500, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, t)
    return float(counter.get_total_flops())


def rows_per_second(unet: UNet2DModel, shape, batch: int, bf16: bool, device: torch.device, repeats: int) -> float:
    x = torch.randn(batch, *shape, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)

    def call():
        unet.zero_grad(set_to_none=True)
        unet_eps(unet, x, t, bf16).square().mean().backward()

    return batch / time_call(call, device, repeats)


def check_throughput(folder: Path, device: torch.device, tiny: bool, out: dict) -> None:
    """Section 3: trained rows per second and MFU, fp32 and bf16, batch 8 and the largest that fits."""
    base = load_base_model(str(folder), device)
    unet, shape = base.unet.train(), base.sample_shape
    flops = flops_per_forward_row(unet, shape, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    repeats = 1 if tiny else 3
    results = []
    batches = (2,) if tiny else (8, 16, 32, 64, 128, 256)
    for bf16 in (False, True):
        for checkpointing in (False, True):
            if checkpointing:
                unet.enable_gradient_checkpointing()
            else:
                unet.disable_gradient_checkpointing()
            for batch in batches:
                if batch > batches[0] and results and results[-1].get("oom"):
                    break
                reset_peak(device)
                try:
                    rate = rows_per_second(unet, shape, batch, bf16, device, repeats)
                except torch.cuda.OutOfMemoryError:
                    results.append({"bf16": bf16, "grad_checkpointing": checkpointing, "batch": batch, "oom": True})
                    unet.zero_grad(set_to_none=True)
                    torch.cuda.empty_cache()
                    break
                achieved = rate * 3 * flops / 1e12  # forward + backward ~ 3 forwards
                mfu = achieved / peak[1 if bf16 else 0] if peak else None
                results.append({"bf16": bf16, "grad_checkpointing": checkpointing, "batch": batch,
                                "rows_per_second": rate, "tflops": achieved, "mfu": mfu,
                                "peak_gb": peak_memory_gb(device)})
    unet.disable_gradient_checkpointing()
    fits = [r for r in results if not r.get("oom")]
    baseline = next((r["rows_per_second"] for r in fits if not r["bf16"] and not r["grad_checkpointing"]
                     and r["batch"] == batches[0]), None)
    best = max(fits, key=lambda r: r["rows_per_second"]) if fits else None
    out["throughput"] = {"device": name, "gflops_per_forward_row": flops / 1e9, "peak_tflops_fp32_bf16": peak,
                         "results": results, "best": best,
                         "best_over_fp32_batch_8": best["rows_per_second"] / baseline if best and baseline else None}


def check_drift(device: torch.device, tiny: bool, epochs: int, out: dict) -> None:
    """Section 4: bf16 against fp32 on the embedded digits model, same seed: first-update ratio and reward curve."""
    from hrf_core.rl.trainer import Trainer
    from hrf_core.store.runs import RunStore

    curves = {}
    for bf16 in (False, True):
        config = PRESETS["digits-ddpo"].replace(epochs=epochs, eval_every=1, device=str(device), bf16=bf16,
                                                 **(dict(num_steps=10, samples_per_epoch=8, batch_size=8,
                                                         eval_samples=16) if tiny else {}))
        run = RunStore(Path(tempfile.mkdtemp(prefix="gpu-check-drift-"))).create(config.to_dict())
        Trainer(config, run).train()
        release(device)
        rows = run.metrics()
        curves["bf16" if bf16 else "fp32"] = {
            "reward": [r["reward_mean"] for r in rows], "first_ratio_deviation":
            [r.get("first_ratio_deviation") for r in rows[1:]], "seconds": [r.get("seconds") for r in rows[1:]]}
    fp32, bf16 = curves["fp32"]["reward"], curves["bf16"]["reward"]
    out["bf16_drift"] = {**curves, "max_reward_difference": max(abs(a - b) for a, b in zip(fp32, bf16, strict=True)),
                         "fp32_reward_gain": fp32[-1] - fp32[0]}


#: ddpo-pytorch's throughput: 256 samples an epoch on 8 A100s in about 2.4 minutes, training included.
DDPO_PYTORCH_SAMPLES_PER_GPU_MINUTE = 256 / 8 / 2.4


#: The Stable Diffusion sections and the method each one times (``-compiled``: the UNet under torch.compile, the
#: sections ``--compile`` adds after the plain ones: before / after in one run).
SD_SECTIONS = {"sd-hrf": "hrf", "sd-ddpo": "ddpo", "sd-hrf-compiled": "hrf", "sd-ddpo-compiled": "ddpo"}
#: The sample counts the Stable Diffusion epoch may shrink to (ddpo-pytorch's 64 first) to fit the budget.
SD_SAMPLES = (64, 32, 16, 8)


class StableDiffusion:
    """The Stable Diffusion case shared by its sections: one pipeline folder (written once with random weights, or
    the local one ``--sd-model`` names) and the UNet's FLOPs per forward row."""

    def __init__(self, device: torch.device, tiny: bool, model: str | None):
        self.device, self.tiny, self.model = device, tiny, model
        self._folder: Path | None = None
        self._flops: float | None = None
        self.setup_seconds = 0.0

    @property
    def folder(self) -> Path:
        if self._folder is None:
            from hrf_core.models import latent

            started = time.perf_counter()
            if self.model:
                self._folder = sd_weights_folder(self.model)
            else:
                configs = (latent.TINY_UNET_CONFIG, latent.TINY_VAE_CONFIG, latent.TINY_TEXT_CONFIG) if self.tiny \
                    else (latent.SD1_UNET_CONFIG, latent.SD1_VAE_CONFIG, latent.SD1_TEXT_CONFIG)
                self._folder = latent.write_random_pipeline(Path(tempfile.mkdtemp(prefix="gpu-check-sd-")) / "sd",
                                                            *configs)
            self.setup_seconds += time.perf_counter() - started
        return self._folder

    @property
    def architecture(self) -> str:
        size = "tiny" if self.tiny else "SD 1.x (859.5M-parameter UNet), 512 px"
        return f"{size}, {'weights of ' + self.model if self.model else 'random weights'}"

    def config(self, method: str, samples: int):
        """The ``sd-ddpo`` / ``sd-hrf`` preset on this pipeline, ``samples`` per epoch, timed without evaluation
        (3 epochs, evaluation every 1000: the timed epoch 1, or 2 when compiled, is neither), bf16 on a GPU (a
        CPU's bf16 convolutions are too slow for the --tiny code-path check)."""
        preset = PRESETS[f"sd-{method}"]
        k = 6 if self.tiny else preset.num_steps
        small = dict(batch_size=2, train_batch_size=2, siblings=2, eval_samples=4) if self.tiny else {}
        window = (preset.window[0] * k // preset.num_steps, k)  # the preset's window, in this run's K steps
        return preset.replace(model=str(self.folder), num_steps=k, window=window, samples_per_epoch=samples,
                              updates_per_epoch=max(1, samples // (2 if self.tiny else 8)), epochs=3, eval_every=1000,
                              checkpoint_every=1000, bf16=self.device.type == "cuda", device=str(self.device),
                              **small).validate()

    def flops_per_row(self, unet, config) -> float:
        """FLOPs of one UNet forward row (one latent, one prompt's text states), counted once."""
        if self._flops is None:
            from torch.utils.flop_counter import FlopCounterMode

            from hrf_core.models.base import read_json_config

            tokens = read_json_config(self.folder / "text_encoder" / "config.json").get("max_position_embeddings", 77)
            size = unet.config.sample_size
            x = torch.randn(1, unet.config.in_channels, size, size, device=self.device)
            t = torch.full((1,), 500, device=self.device)
            text = torch.zeros(1, tokens, unet.config.cross_attention_dim, device=self.device)
            with torch.no_grad(), FlopCounterMode(display=False) as counter, \
                    torch.autocast(self.device.type, torch.bfloat16, enabled=config.bf16):
                unet(x, t, encoder_hidden_states=text)
            self._flops = float(counter.get_total_flops())
        return self._flops


def sd_weights_folder(model: str) -> Path:
    """The local pipeline folder of ``model`` (a folder, or a Hub id already cached); ValueError (one line naming
    what to bring) when its weights are not here. Never downloads."""
    from hrf_core.models import latent
    from hrf_core.models.families import TEXT_TO_IMAGE
    from hrf_core.models.registry import config_folder

    try:
        folder = config_folder(model, download=False)
    except ValueError:
        folder = None
    missing = latent.missing_weights(folder) if folder is not None else ["unet", "vae", "text_encoder", "tokenizer"]
    if missing:
        hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not Path(model).exists()
        repo = model if hub_id else "CompVis/stable-diffusion-v1-4"
        raise ValueError(f"no Stable Diffusion weights for {model!r} here (missing {', '.join(missing)}; nothing is "
                         f"downloaded): bring a diffusers pipeline folder with unet/, vae/, text_encoder/, "
                         f"tokenizer/ and scheduler/ in safetensors (`{TEXT_TO_IMAGE.download_command(repo)}` "
                         "on a machine with network) and pass --sd-model FOLDER, or leave --sd-model out for "
                         "random weights")
    return folder


def sd_seconds(sd: StableDiffusion, name: str, samples: int, speed: float) -> float:
    """The expected seconds of Stable Diffusion section ``name``: set-up, trainer, ``samples`` at the guessed seconds
    per sample times ``speed`` (measured / guessed of the first section run; 1 before); compiled: the compilation
    and an untimed epoch more."""
    setup = 0 if sd._folder is not None else SD_SETUP_SECONDS
    compiled = name.endswith("-compiled")
    epochs = 2 if compiled else 1
    return setup + SD_TRAINER_SECONDS + compiled * SD_COMPILE_SECONDS + \
        epochs * samples * SD_SECONDS_PER_SAMPLE[SD_SECTIONS[name]] * speed


def sd_samples(sd: StableDiffusion, name: str, seconds_left: float, speed: float) -> int | None:
    """The most samples of :data:`SD_SAMPLES` whose section fits ``seconds_left`` (--tiny: 4 samples in a few
    seconds); None: not even the fewest."""
    if sd.tiny:
        return 4 if seconds_left > SECTION_SECONDS["throughput"][1] * (1 + name.endswith("-compiled")) else None
    return next((n for n in SD_SAMPLES if sd_seconds(sd, name, n, speed) <= seconds_left), None)


def check_sd(sd: StableDiffusion, method: str, samples: int, out: dict, compiled: bool = False) -> None:
    """One Stable Diffusion section: one epoch of ``samples`` of ``method`` (no evaluation inside), its speed,
    update diagnostics, MFU, and peak memory beside the estimate; ``compiled``: the UNet under ``torch.compile``
    (``Module.compile``: the trainer's hooks and adapter switch stay on the same module), compiled by an untimed
    first epoch of the same size (its rows discarded) before the timed one."""
    from hrf_core.rl.compute import forward_equivalents
    from hrf_core.rl.memory import estimate
    from hrf_core.rl.trainer import Trainer
    from hrf_core.store.runs import RunStore

    device = sd.device
    config = sd.config(method, samples)
    predicted = estimate(config, device).total_gb
    reset_peak(device)
    started = time.perf_counter()
    trainer = Trainer(config, RunStore(Path(tempfile.mkdtemp(prefix="gpu-check-sd-runs-"))).create(config.to_dict()))
    flops = sd.flops_per_row(trainer.unet, config)
    if compiled:
        trainer.unet.compile()
        trainer._epoch(1)  # compiles sampling and training shapes (untimed)
    setup = time.perf_counter() - started
    sync(device)
    epoch_started = time.perf_counter()
    row, _, _ = trainer._epoch(2 if compiled else 1)  # the epoch alone: no base-model evaluation before, none inside
    sync(device)
    seconds = time.perf_counter() - epoch_started
    rows = {kind: row[f"rows_{kind}"] for kind in ("sampled", "trained", "reference")}
    achieved = forward_equivalents(rows) * flops / seconds / 1e12
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    result = {"method": method + ("+compile" if compiled else ""), "window": list(config.window), "samples": samples,
              "epoch_seconds": seconds,
              "trainer_setup_seconds": setup, "sample_seconds": row["sample_seconds"],
              "update_seconds": row["update_seconds"], "samples_per_gpu_minute": samples / seconds * 60,
              "vs_ddpo_pytorch": samples / seconds * 60 / DDPO_PYTORCH_SAMPLES_PER_GPU_MINUTE,
              "trained_steps_per_sample": row["trained_steps"] / samples, "unet_rows": rows,
              "gflops_per_forward_row": flops / 1e9, "tflops": achieved,
              "mfu": achieved / peak[1 if config.bf16 else 0] if peak else None,
              "first_ratio_deviation": row.get("first_ratio_deviation"), "clip_fraction": row.get("clip_fraction"),
              "approx_kl": row.get("approx_kl"), "peak_gb": peak_memory_gb(device), "estimated_gb": predicted}
    del trainer
    release(device)
    sd_out = out.setdefault("stable_diffusion", {"architecture": sd.architecture, "precision": config.precision,
                                                 "num_steps": config.num_steps, "guidance": config.guidance,
                                                 "lora_rank": config.lora_rank, "rows": []})
    sd_out["setup_seconds"] = sd.setup_seconds
    sd_out["rows"].append(result)


def table(out: dict) -> str:
    lines = [f"device: {out['device']}; total {out['seconds']:.0f} s", ""]
    job = out.get("job", {})
    if job:
        lines += [f"- 2-epoch HRF run (aesthetic, {job.get('reward_model')}, evaluated on "
                  f"{', '.join(job['embeddings'])}):"
                  f" {job['state']}, s/epoch {', '.join(f'{s:.2f}' for s in job['seconds_per_epoch'])} "
                  f"(evaluation {', '.join(f'{s:.2f}' for s in job['eval_seconds'] if s)} s)"]
    if out.get("memory_paper_preset"):
        lines += ["", "| paper preset, one epoch | seconds | peak memory (GB) |", "|---|---|---|"]
    for r in out.get("memory_paper_preset", []):
        label = ("bf16" if r["bf16"] else "fp32") + (" + grad checkpointing" if r["grad_checkpointing"] else "")
        peak = f"{r['peak_gb']:.2f}" if r["peak_gb"] is not None else "n/a"
        lines.append(f"| {label} | {r['epoch_seconds']:.2f} | {peak} |")
    tp = out.get("throughput", {})
    if tp:
        lines += ["", f"UNet: {tp.get('gflops_per_forward_row', 0):.1f} GFLOP per forward row; peak "
                  f"{tp.get('peak_tflops_fp32_bf16')} TFLOP/s (fp32, bf16)", "",
                  "| precision | grad ckpt | batch | trained rows/s | TFLOP/s | MFU | peak GB |",
                  "|---|---|---|---|---|---|---|"]
    for r in tp.get("results", []):
        if r.get("oom"):
            precision = "bf16" if r["bf16"] else "fp32"
            lines.append(f"| {precision} | {r['grad_checkpointing']} | {r['batch']} | OOM | | | |")
            continue
        mfu = f"{r['mfu'] * 100:.1f}%" if r["mfu"] is not None else "n/a"
        peak = f"{r['peak_gb']:.1f}" if r["peak_gb"] is not None else "n/a"
        lines.append(f"| {'bf16' if r['bf16'] else 'fp32'} | {r['grad_checkpointing']} | {r['batch']} | "
                     f"{r['rows_per_second']:.1f} | {r['tflops']:.1f} | {mfu} | {peak} |")
    if tp.get("best_over_fp32_batch_8"):
        lines.append(f"\nbest / fp32 at the smallest batch: {tp['best_over_fp32_batch_8']:.2f}x")
    drift = out.get("bf16_drift")
    if drift:
        lines += ["", f"bf16 drift (digits16 DDPO, same seed): first-update |ratio - 1| fp32 "
                  f"{max(drift['fp32']['first_ratio_deviation']):.2e}, "
                  f"bf16 {max(drift['bf16']['first_ratio_deviation']):.2e}; "
                  f"max reward difference over the curve {drift['max_reward_difference']:.4f} "
                  f"(fp32 gain {drift['fp32_reward_gain']:.4f})"]
    sd = out.get("stable_diffusion")
    if sd:
        lines += ["", f"Stable Diffusion ({sd['architecture']}), LoRA r={sd['lora_rank']}, {sd['precision']}, "
                  f"K = {sd['num_steps']}, guidance {sd['guidance']:g}, one epoch without evaluation:", "",
                  "| method | samples | s/epoch (sampling + update) | samples per GPU-minute | x ddpo-pytorch (~13) | "
                  "trained steps / sample | MFU | first-update \\|ratio - 1\\| | clip fraction | approx-KL | peak GB | "
                  "estimated GB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sd["rows"]:
            peak = f"{r['peak_gb']:.1f}" if r["peak_gb"] is not None else "n/a"
            mfu = f"{r['mfu'] * 100:.1f}%" if r["mfu"] is not None else "n/a"
            lines.append(f"| {r['method']} {r['window'][0]}:{r['window'][1]} | {r['samples']} | "
                         f"{r['epoch_seconds']:.1f} ({r['sample_seconds']:.1f} + {r['update_seconds']:.1f}) | "
                         f"{r['samples_per_gpu_minute']:.1f} | {r['vs_ddpo_pytorch']:.2f}x | "
                         f"{r['trained_steps_per_sample']:.1f} | {mfu} | {r['first_ratio_deviation']:.2e} | "
                         f"{r['clip_fraction']:.3f} | {r['approx_kl']:.2e} | {peak} | {r['estimated_gb']:.1f} |")
    for name, why in out.get("skipped", {}).items():
        lines.append(f"\nskipped {name}: {why}")
    return "\n".join(lines)


#: Each section's expected seconds (on an H100-class GPU at full size, on a 2-core CPU with --tiny): the planner's
#: guesses, set high. The Stable Diffusion sections are planned per sample instead (below) and re-planned from the
#: first one's measured speed.
SECTION_SECONDS = {"throughput": (150, 5), "drift": (60, 20), "memory": (120, 18), "job": (180, 18)}
SD_SECONDS_PER_SAMPLE = {"hrf": 3.0, "ddpo": 5.0}  # one epoch's sampling and update, per sample
SD_SETUP_SECONDS = 90  # writing the random-weight pipeline (3.4 GB of fp32 UNet) or reading real weights
SD_TRAINER_SECONDS = 30  # loading the pipeline into a trainer, LoRA, FLOP count
SD_COMPILE_SECONDS = 150  # torch.compile of the SD UNet's sampling and training graphs (a guess)
ORDER = ("sd-hrf", "sd-ddpo", "throughput", "drift", "memory", "job")
#: Seconds kept free before the budget for the last write, the table and the interpreter's exit.
MARGIN_SECONDS = 2.0


def elapsed() -> float:
    return time.monotonic() - STARTED


def write_atomic(path: Path, data: dict) -> None:
    """``data`` as JSON at ``path``, whole or not at all (a temporary file renamed onto it)."""
    from hrf_core.store.runs import write_json

    write_json(path, json.loads(json.dumps(data, default=str)))


def section_path(out: Path, name: str) -> Path:
    return out.with_name(f"{out.stem}.{name}.json")


def watchdog(budget: float, out: Path, state: dict) -> list[threading.Timer]:
    """Timers that stop the check at the budget, whatever section is running (what finished is on disk already):
    a KeyboardInterrupt in the main thread just before (main returns 3), then, should a long device call hold it
    off, the process ends (status 3)."""
    def interrupt():
        state["stopped"] = True
        import _thread

        _thread.interrupt_main()

    def stop():
        print(f"\nbudget of {budget:.0f} s reached during section {state.get('running')}: stopped; the finished "
              f"sections are in {out} and {section_path(out, '*')}", file=sys.stderr, flush=True)
        os._exit(3)

    timers = [threading.Timer(max(0.0, budget - MARGIN_SECONDS / 2 - elapsed()), interrupt),
              threading.Timer(max(0.0, budget - MARGIN_SECONDS / 4 - elapsed()), stop)]
    for timer in timers:
        timer.daemon = True
        timer.start()
    return timers


def run_section(name: str, folder: Path, device: torch.device, args, part: dict) -> None:
    """Run one of the sections on the CelebA-HQ architecture or the digits model, its figures into ``part``."""
    if name == "job":
        check_job(folder, device, args.tiny, args.epochs, part)
    elif name == "memory":
        check_memory(folder, device, args.tiny, part)
    elif name == "throughput":
        check_throughput(folder, device, args.tiny, part)
    else:
        check_drift(device, args.tiny, args.drift_epochs, part)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny stand-in models: checks the code paths, not the GPU")
    parser.add_argument("--budget", type=float, default=540.0,
                        help="seconds for the whole command, interpreter start included (default 540)")
    parser.add_argument("--epochs", type=int, default=2, help="the job section's epochs")
    parser.add_argument("--drift-epochs", type=int, default=4)
    parser.add_argument("--sections", nargs="+", default=list(ORDER),
                        help=f"in this order ({', '.join(ORDER)}; sd = sd-hrf sd-ddpo)")
    parser.add_argument("--sd-model", default=None,
                        help="Stable Diffusion weights: a local pipeline folder or a cached Hub id (default: random "
                             "weights of the SD 1.x architecture; nothing is downloaded)")
    parser.add_argument("--compile", action="store_true",
                        help="after each Stable Diffusion section, the same with the UNet under torch.compile")
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args(argv)
    names = [n for name in args.sections for n in (("sd-hrf", "sd-ddpo") if name == "sd" else [name])]
    if args.compile:
        names = [m for n in names for m in ((n, f"{n}-compiled") if n in ("sd-hrf", "sd-ddpo") else (n,))]
    unknown = [n for n in names if n not in ORDER and n not in SD_SECTIONS]
    if unknown:
        print(f"error: unknown section {unknown[0]!r}: choose from {', '.join(ORDER)} or sd", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here (use --device cpu --tiny to check the code paths)", file=sys.stderr)
        return 2
    sd = StableDiffusion(device, args.tiny, args.sd_model)
    if args.sd_model and any(n in SD_SECTIONS for n in names):
        try:
            sd_weights_folder(args.sd_model)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if device.type == "cuda":  # TF32 for the fp32 matmuls and convolutions (the trainer turns it on as well)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    out_path = Path(args.out)
    out: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                 "torch": torch.__version__, "tiny": args.tiny, "budget_seconds": args.budget, "skipped": {}}
    state: dict = {}
    timers = watchdog(args.budget, out_path, state)
    try:
        run_sections(names, args, device, sd, out, out_path, state)
    except KeyboardInterrupt:
        if not state.get("stopped"):
            raise
        print(f"\nbudget of {args.budget:.0f} s reached during section {state.get('running')}: stopped; the "
              f"finished sections are in {out_path} and {section_path(out_path, '*')}", file=sys.stderr, flush=True)
        print(table({**out, "seconds": elapsed()}))
        return 3
    finally:
        for timer in timers:
            timer.cancel()
    out["seconds"] = elapsed()
    write_atomic(out_path, out)
    print(table(out))
    print(f"\nwrote {out_path} and one {section_path(out_path, '<section>').name} per section "
          f"({out['seconds']:.0f} s of a {args.budget:.0f} s budget)")
    return 0


def run_sections(names: list[str], args, device: torch.device, sd: StableDiffusion, out: dict, out_path: Path,
                 state: dict) -> None:
    """Run the sections that fit what is left of the budget, in order; each one's JSON written as it ends."""
    folder = None
    speed = 1.0  # the first Stable Diffusion section's measured seconds per sample / the guess
    for name in names:
        left = args.budget - MARGIN_SECONDS - elapsed()
        if name in SD_SECTIONS:
            samples = sd_samples(sd, name, left, speed)
            need = None if samples is not None else sd_seconds(sd, name, SD_SAMPLES[-1], speed)
        else:
            samples, need = None, SECTION_SECONDS[name][1 if args.tiny else 0]
            need = need if need > left else None
        if need is not None:
            out["skipped"][name] = f"over budget: needs about {need:.0f} s, {max(left, 0):.0f} s left"
            continue
        if folder is None and name in ("throughput", "memory", "job"):
            folder = make_model_folder(Path(tempfile.mkdtemp(prefix="gpu-check-model-")), args.tiny)
        state["running"] = name
        part: dict = {}
        section_started = time.perf_counter()
        try:
            if name in SD_SECTIONS:
                check_sd(sd, SD_SECTIONS[name], samples, part, compiled=name.endswith("-compiled"))
                row = part["stable_diffusion"]["rows"][-1]
                if speed == 1.0 and not args.tiny and not name.endswith("-compiled"):
                    speed = row["epoch_seconds"] / samples / SD_SECONDS_PER_SAMPLE[SD_SECTIONS[name]]
                merged = out.setdefault("stable_diffusion", {**part["stable_diffusion"], "rows": []})
                merged["rows"].append(row)
                merged["setup_seconds"] = sd.setup_seconds
            else:
                run_section(name, folder, device, args, part)
                out.update(part)
        except (RuntimeError, ValueError) as error:  # e.g. out of memory: recorded, the next section runs
            part = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
            out.setdefault("errors", {})[name] = part["error"]
        release(device)
        seconds = time.perf_counter() - section_started
        out.setdefault("section_seconds", {})[name] = seconds
        out["seconds"] = elapsed()
        write_atomic(section_path(out_path, name), {"section": name, "device": out["device"], "seconds": seconds,
                                                    **part})
        write_atomic(out_path, out)  # everything so far
        state["running"] = None


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is written: end now, without a teardown of the models (seconds) past the budget
