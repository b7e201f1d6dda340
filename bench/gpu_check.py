"""The prepared GPU check: the paper's setting end to end, memory, throughput, bf16 drift and Stable Diffusion.

On the CelebA-HQ 256 architecture (113.7M parameters, random weights: the real ones need a download)
with the aesthetic reward on a CLIP ViT-L/14 and MLP head with random weights where the real ones are
not cached, it:

1. runs a 2-epoch HRF run through the job manager (the app's path), evaluated with the RGB embeddings
   (Inception-v3 and CLIP, random weights where not cached): seconds per epoch and evaluation;
2. measures peak GPU memory of one epoch at the paper preset (10 samples, batch 5, 5 trained rows per
   call) in fp32, bf16, with gradient checkpointing, and both;
3. measures trained (sample, step) rows per second of forward+backward calls in fp32 and bf16, at batch
   8 and at the largest batch that fits (with and without gradient checkpointing), and the model FLOP
   utilisation (MFU) from the UNet's FLOPs (torch's FlopCounterMode; a backward counted as 2 forwards);
4. measures bf16 drift on the embedded digits model: the importance ratio's deviation from 1 at the
   first update, and the reward curve over a few epochs against fp32 (same seed);
5. (``sd``) trains the Stable Diffusion 1.x architecture (859.5M-parameter UNet, random weights) at 512 px with
   LoRA rank 4 and bf16, ddpo-pytorch's settings (50 DDIM steps, eta 1, guidance 5, sampling batch 8, 4 samples
   per training call, 8 samples per optimiser step, per-prompt advantages over @animals): seconds per epoch of 64
   samples for DDPO and HRF [K/2, K), peak memory beside the memory estimate (hrf_core.rl.memory), and samples per
   GPU-minute against ddpo-pytorch's about 13 (target: at least 2x for DDPO on an H100-class GPU).

    python bench/gpu_check.py --out gpu_check.json            # on a GPU (about 15 minutes, 5 of them Stable Diffusion)
    python bench/gpu_check.py --device cpu --tiny             # the same code paths in seconds (CI)
    python bench/gpu_check.py --sections sd                   # the Stable Diffusion case alone

Prints a markdown table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

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


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
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
            model=str(folder), reward="jpeg-incompressibility", epochs=1, eval_every=100, device=str(device),
            clusters=((0, 20, 1),) if not tiny else ((0, 5, 1),), num_steps=40 if not tiny else 10, bf16=bf16,
            grad_checkpointing=checkpointing, checkpoint_every=100)
        store = RunStore(Path(tempfile.mkdtemp(prefix="gpu-check-mem-")))
        reset_peak(device)
        trainer = Trainer(config, store.create(config.to_dict()), base=load_base_model(str(folder), device),
                          reward_fn=reward)
        started = time.perf_counter()
        steps = trainer.steps()
        next(steps)  # the base evaluation (not measured: eval_every keeps later epochs free of it)
        reset_peak(device)
        started = time.perf_counter()
        next(steps)  # epoch 1
        sync(device)
        rows.append({"bf16": bf16, "grad_checkpointing": checkpointing, "epoch_seconds": time.perf_counter() - started,
                     "peak_gb": peak_memory_gb(device)})
        del trainer, steps
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
        rows = run.metrics()
        curves["bf16" if bf16 else "fp32"] = {
            "reward": [r["reward_mean"] for r in rows], "first_ratio_deviation":
            [r.get("first_ratio_deviation") for r in rows[1:]], "seconds": [r.get("seconds") for r in rows[1:]]}
    fp32, bf16 = curves["fp32"]["reward"], curves["bf16"]["reward"]
    out["bf16_drift"] = {**curves, "max_reward_difference": max(abs(a - b) for a, b in zip(fp32, bf16, strict=True)),
                         "fp32_reward_gain": fp32[-1] - fp32[0]}


#: ddpo-pytorch's throughput: 256 samples an epoch on 8 A100s in about 2.4 minutes, training included.
DDPO_PYTORCH_SAMPLES_PER_GPU_MINUTE = 256 / 8 / 2.4


def check_sd(device: torch.device, tiny: bool, out: dict) -> None:
    """Section 5: the SD 1.x architecture (random weights) at 512 px, LoRA rank 4, bf16: one epoch of 64 samples of
    DDPO and of HRF [K/2, K) each; seconds, peak memory, the memory estimate, samples per GPU-minute."""
    from hrf_core import settings
    from hrf_core.config import TrainConfig
    from hrf_core.models import latent
    from hrf_core.rl.memory import estimate
    from hrf_core.rl.trainer import Trainer
    from hrf_core.store.runs import RunStore

    started = time.perf_counter()
    configs = (latent.TINY_UNET_CONFIG, latent.TINY_VAE_CONFIG, latent.TINY_TEXT_CONFIG) if tiny else \
        (latent.SD1_UNET_CONFIG, latent.SD1_VAE_CONFIG, latent.SD1_TEXT_CONFIG)
    folder = latent.write_random_pipeline(Path(tempfile.mkdtemp(prefix="gpu-check-sd-")) / "sd", *configs)
    k, samples = (6, 4) if tiny else (50, 64)
    base = TrainConfig(model=str(folder), reward="jpeg-compressibility", prompts=settings.parse("prompts", "@animals"),
                       guidance=5.0,
                       num_steps=k, eta=1.0, samples_per_epoch=samples, batch_size=2 if tiny else 8,
                       train_batch_size=2 if tiny else 4, updates_per_epoch=samples // (2 if tiny else 8),
                       adv_scope="prompt", epochs=1, eval_every=100, eval_samples=4 if tiny else 8,
                       checkpoint_every=100, bf16=device.type == "cuda", device=str(device), lora_rank=4)
    # (bf16 on a GPU; a CPU's bf16 convolutions are too slow for the --tiny code-path check)
    rows = []
    for method, window in (("ddpo", (0, k)), ("hrf", (k // 2, k))):
        config = base.replace(method=method, window=window, siblings=2 if tiny else 4).validate()
        predicted = estimate(config, device).total_gb
        reset_peak(device)
        trainer = Trainer(config, RunStore(Path(tempfile.mkdtemp(prefix="gpu-check-sd-runs-"))).create(
            config.to_dict()))
        steps = trainer.steps()
        next(steps)  # the base model's evaluation (not timed)
        sync(device)
        epoch_started = time.perf_counter()
        next(steps)
        sync(device)
        seconds = time.perf_counter() - epoch_started
        row = trainer.run.metrics()[-1]
        rows.append({"method": method, "window": list(window), "epoch_seconds": seconds,
                     "sample_seconds": row.get("sample_seconds"), "update_seconds": row.get("update_seconds"),
                     "samples_per_gpu_minute": samples / seconds * 60,
                     "vs_ddpo_pytorch": samples / seconds * 60 / DDPO_PYTORCH_SAMPLES_PER_GPU_MINUTE,
                     "peak_gb": peak_memory_gb(device), "estimated_gb": predicted})
        del trainer, steps
    out["stable_diffusion"] = {"architecture": "tiny" if tiny else "SD 1.x (859.5M-parameter UNet), 512 px",
                               "precision": base.precision,
                               "samples_per_epoch": samples, "num_steps": k, "rows": rows,
                               "setup_seconds": time.perf_counter() - started - sum(r["epoch_seconds"] for r in rows)}


def table(out: dict) -> str:
    lines = [f"device: {out['device']}; total {out['seconds']:.0f} s", ""]
    job = out.get("job", {})
    if job:
        lines += [f"- 2-epoch HRF run (aesthetic, {job.get('reward_model')}, evaluated on "
                  f"{', '.join(job['embeddings'])}):"
                  f" {job['state']}, s/epoch {', '.join(f'{s:.2f}' for s in job['seconds_per_epoch'])} "
                  f"(evaluation {', '.join(f'{s:.2f}' for s in job['eval_seconds'] if s)} s)"]
    lines += ["", "| paper preset, one epoch | seconds | peak memory (GB) |", "|---|---|---|"]
    for r in out.get("memory_paper_preset", []):
        label = ("bf16" if r["bf16"] else "fp32") + (" + grad checkpointing" if r["grad_checkpointing"] else "")
        peak = f"{r['peak_gb']:.2f}" if r["peak_gb"] is not None else "n/a"
        lines.append(f"| {label} | {r['epoch_seconds']:.2f} | {peak} |")
    tp = out.get("throughput", {})
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
        lines += ["", f"Stable Diffusion ({sd['architecture']}, random weights), LoRA r=4, {sd['precision']}, "
                  f"K = {sd['num_steps']}, guidance 5, one epoch of {sd['samples_per_epoch']} samples:", "",
                  "| method | s/epoch (sampling + update) | samples per GPU-minute | x ddpo-pytorch (~13) | peak GB | "
                  "estimated GB |", "|---|---|---|---|---|---|"]
        for r in sd["rows"]:
            peak = f"{r['peak_gb']:.1f}" if r["peak_gb"] is not None else "n/a"
            lines.append(f"| {r['method']} {r['window'][0]}:{r['window'][1]} | {r['epoch_seconds']:.1f} "
                         f"({r['sample_seconds']:.1f} + {r['update_seconds']:.1f}) | {r['samples_per_gpu_minute']:.1f} "
                         f"| {r['vs_ddpo_pytorch']:.2f}x | {peak} | {r['estimated_gb']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny stand-in model: checks the code paths, not the GPU")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--drift-epochs", type=int, default=4)
    parser.add_argument("--sections", nargs="+", default=["job", "memory", "throughput", "drift", "sd"])
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here (use --device cpu --tiny to check the code paths)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    out: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                 "torch": torch.__version__, "tiny": args.tiny}
    folder = make_model_folder(Path(tempfile.mkdtemp(prefix="gpu-check-model-")), args.tiny)
    sections = {"job": lambda: check_job(folder, device, args.tiny, args.epochs, out),
                "memory": lambda: check_memory(folder, device, args.tiny, out),
                "throughput": lambda: check_throughput(folder, device, args.tiny, out),
                "drift": lambda: check_drift(device, args.tiny, args.drift_epochs, out),
                "sd": lambda: check_sd(device, args.tiny, out)}
    for name in args.sections:
        section_started = time.perf_counter()
        sections[name]()
        out.setdefault("section_seconds", {})[name] = time.perf_counter() - section_started
        out["seconds"] = time.perf_counter() - started
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))  # partial results as sections finish
    print(table(out))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
