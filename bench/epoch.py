"""Epoch time against its floor: DDPO and a 10-step HRF window, and the evaluation overhead.

floor = sum over UNet calls of the measured forward time at that call's batch size
      + trained (sample, step) rows x the forward+backward time per row of a full training call.
A ratio near 1 means the loop adds little beyond the UNet calls it must make.

    python bench/epoch.py                       # embedded digits16 on this CPU (32 samples, K = 40)
    python bench/epoch.py --celebahq --device cuda --samples 8 --batch 8   # CelebA-HQ 256 architecture, random weights
    python bench/epoch.py --report-to wandb --report-to trackio --report-to tensorboard  # + the trackers' cost
    python bench/epoch.py --guided 2        # digits16-cond prompted with 3,7,8 at guidance 2 (both branches
                                            # in one batched forward: the floor counts 2B rows per call)

With ``--report-to``, more DDPO epochs run while reporting each one (its row and an evaluation grid, the
worst case) to the trackers: their cost is the time of the report call against the epoch's (and, with
their background threads and processes included but noisier, the epoch time with against without).
wandb runs offline and the logs go to a temporary folder unless WANDB_MODE / WANDB_DIR / TRACKIO_DIR say otherwise.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import DDIMScheduler, UNet2DModel  # noqa: E402

from hrf_core.config import TrainConfig  # noqa: E402
from hrf_core.models.registry import CELEBAHQ_UNET_CONFIG, MODELS, load_base_model  # noqa: E402
from hrf_core.rl.trainer import Trainer  # noqa: E402
from hrf_core.store.runs import RunStore  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device, repeats: int) -> float:
    fn()
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - started) / repeats


def unet_call(base, x: torch.Tensor, t: torch.Tensor, guidance: float | None):
    """One UNet call as the trainer makes it: plain, or guided (both branches in one batched forward)."""
    if guidance is None:
        return base.unet(x, t).sample
    prompts = [base.conditioner.vocabulary[i % 3] for i in range(len(x))]
    return base.conditioner.condition(prompts, guidance).eps(base.unet, x, t)


def forward_time(base, batch: int, repeats: int, bf16: bool, guidance: float | None = None) -> float:
    x = torch.randn(batch, *base.sample_shape, device=base.device)
    t = torch.full((batch,), 500, device=base.device)

    def call():
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=bf16 and x.is_cuda):
            unet_call(base, x, t, guidance)
    return time_call(call, base.device, repeats)


def forward_backward_time(base, batch: int, repeats: int, bf16: bool, guidance: float | None = None) -> float:
    x = torch.randn(batch, *base.sample_shape, device=base.device)
    t = torch.full((batch,), 500, device=base.device)

    def call():
        with torch.autocast("cuda", torch.bfloat16, enabled=bf16 and x.is_cuda):
            out = unet_call(base, x, t, guidance)
        out.float().mean().backward()
    return time_call(call, base.device, repeats)


def count_host_syncs(fn) -> dict:
    """Run ``fn`` under torch's CUDA sync debug mode: {"total": n, "top": {"file:line": n, ...}}."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sites = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
    return {"total": sum(sites.values()), "top": dict(sites.most_common(6))}


def tracker_overhead(trainer, names: list[str], epoch_s: float, first_epoch: int, epochs: int, device) -> dict:
    """Report ``epochs`` more DDPO epochs (row + an evaluation grid each) to the trackers ``names``."""
    from hrf_core.rl.trainer import EpochReport
    from hrf_core.share.trackers import RunTrackers

    _, grid, _ = trainer.evaluate()
    trackers = RunTrackers(names, trainer.run)
    started = time.perf_counter()
    trackers(EpochReport(0, 1000, {"epoch": 0}, grid))  # opens the tracker runs (once per run)
    opened = time.perf_counter() - started
    calls, totals = [], []
    for epoch in range(first_epoch, first_epoch + epochs):
        started = time.perf_counter()
        row, _, _ = trainer._epoch(epoch)
        sync(device)
        epoch_time = time.perf_counter() - started
        trainer.run.save_grid(grid, epoch)  # as the trainer does before its callbacks, trackers or not
        before = time.perf_counter()
        trackers(EpochReport(epoch, 1000, row, grid))
        calls.append(time.perf_counter() - before)
        totals.append(epoch_time + calls[-1])
    started = time.perf_counter()
    trackers.close()
    closed = time.perf_counter() - started
    call, total = sum(calls) / len(calls), sum(totals) / len(totals)
    return {"trackers": names, "open_s": opened, "close_s": closed, "report_s": call, "epoch_with_s": total,
            "epoch_without_s": epoch_s, "report_over_epoch": call / epoch_s, "epoch_with_over_without": total / epoch_s}


def random_celebahq_folder(root: Path) -> Path:
    """The google/ddpm-celebahq-256 architecture with random weights (no download)."""
    torch.manual_seed(0)
    UNet2DModel(**CELEBAHQ_UNET_CONFIG).save_pretrained(root / "unet", safe_serialization=True)
    DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(root / "scheduler")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits16")
    parser.add_argument("--celebahq", action="store_true", help="random-weight CelebA-HQ 256 architecture")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32, help="sampling batch")
    parser.add_argument("--train-batch", type=int, default=64, help="(sample, step) rows per training call")
    parser.add_argument("--siblings", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per method (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--report-to", action="append", default=[], help="also measure this tracker's cost (repeat)")
    parser.add_argument("--tracked-epochs", type=int, default=4, help="DDPO epochs reported to the trackers")
    parser.add_argument("--guided", type=float, metavar="SCALE",
                        help="the prompted digits16-cond (prompts 3,7,8) with classifier-free guidance SCALE")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="hrf-bench-"))
    if args.report_to:
        from hrf_core.share.trackers import require

        require(args.report_to)
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(tmp))
        os.environ.setdefault("TRACKIO_DIR", str(tmp / "trackio"))
        os.environ.setdefault("HRF_TRACKER_PROJECT", "hrf-bench")
    model = str(random_celebahq_folder(tmp / "celebahq")) if args.celebahq else \
        "digits16-cond" if args.guided is not None else args.model
    if not args.celebahq and model in MODELS and not Path(MODELS[model].location).is_dir():
        raise SystemExit(f"{model} is not built yet")
    base = load_base_model(model, args.device)
    device = base.device
    k, n, b, tb = args.steps, args.samples, args.batch, args.train_batch
    results: dict = {"device": str(device), "model": "celebahq-256-architecture (random)" if args.celebahq else model,
                     "params_M": sum(p.numel() for p in base.unet.parameters()) / 1e6, "samples": n, "K": k,
                     "batch": b, "train_batch": tb, "threads": torch.get_num_threads(), "bf16": args.bf16,
                     "guidance": args.guided}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name()

    images_per_batch = b // args.siblings
    fwd = {size: forward_time(base, size, args.repeats, args.bf16, args.guided) for size in {b, images_per_batch}}
    fwd_bwd = forward_backward_time(base, tb, args.repeats, args.bf16, args.guided)
    base.unet.zero_grad(set_to_none=True)
    results["forward_s"] = {str(size): v for size, v in fwd.items()}
    results["forward_backward_s"] = fwd_bwd

    def config_for(method: str, window: tuple[int, int]) -> TrainConfig:
        return TrainConfig(model=model, method=method, window=window, start_mode="fixed", num_steps=k, epochs=1000,
                           samples_per_epoch=n, batch_size=b, siblings=args.siblings, train_batch_size=tb,
                           updates_per_epoch=4, eval_every=1000, device=str(device),
                           bf16=args.bf16, eval_samples=64 if not args.celebahq else 8,
                           **(dict(prompts=("3", "7", "8"), guidance=args.guided) if args.guided is not None else {}))

    n_batches = n // b
    arms = {"ddpo": ("ddpo", (0, k)), "hrf_10_steps": ("hrf", (k - 10, k))}
    for name, (method, window) in arms.items():
        config = config_for(method, window)
        trainer = Trainer(config, RunStore(tmp / "runs").create(config.to_dict()), base=base)
        trainable = sum(trainer.trainable[window[0]:window[1]])
        trainer._epoch(1)  # warm-up
        sync(device)
        started = time.perf_counter()
        for epoch in range(2, 2 + args.epochs):
            trainer._epoch(epoch)
        sync(device)
        seconds = (time.perf_counter() - started) / args.epochs
        start = window[0]
        sampling = n_batches * ((k - start) * fwd[b] + (k * fwd[images_per_batch] if start > 0 else 0.0))
        training = n_batches * trainable * b * fwd_bwd / tb  # rows x (forward+backward per row at full calls)
        floor = sampling + training
        results[name] = {"epoch_s": seconds, "floor_s": floor, "ratio": seconds / floor,
                         "nfe_rows": n_batches * ((k - start) * b + (k * images_per_batch if start > 0 else 0)),
                         "trained_steps": n_batches * trainable}
        if device.type == "cuda":  # one more epoch, counting the points where the host waits for the GPU
            results[name]["host_syncs"] = count_host_syncs(functools.partial(trainer._epoch, 2 + args.epochs))
        if name == "ddpo":
            eval_started = time.perf_counter()
            trainer.evaluate()
            sync(device)
            eval_s = time.perf_counter() - eval_started
            results["eval_s"] = eval_s
            results["eval_over_ddpo_epoch"] = eval_s / seconds
            if device.type == "cuda":
                results["eval_host_syncs"] = count_host_syncs(trainer.evaluate)
            if args.report_to:
                first = 3 + args.epochs if device.type == "cuda" else 2 + args.epochs
                cost = results["tracker_overhead"] = tracker_overhead(trainer, args.report_to, seconds, first,
                                                                      args.tracked_epochs, device)
                print(f"trackers {', '.join(args.report_to)}: report {cost['report_s'] * 1000:.1f} ms = "
                      f"{100 * cost['report_over_epoch']:.2f}% of a DDPO epoch; epoch with them "
                      f"{cost['epoch_with_s']:.2f} s vs {seconds:.2f} s without "
                      f"({100 * (cost['epoch_with_over_without'] - 1):+.1f}%); open {cost['open_s']:.2f} s, "
                      f"close {cost['close_s']:.2f} s once per run", flush=True)
        print(f"{name:14s} epoch {seconds:7.2f} s   floor {floor:7.2f} s   ratio {seconds / floor:5.3f}", flush=True)
        del trainer
    print(f"evaluation ({config_for('ddpo', (0, k)).eval_samples} samples, K={k}): {results['eval_s']:.2f} s = "
          f"{100 * results['eval_over_ddpo_epoch']:.0f}% of a DDPO epoch")
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
