"""Epochs that keep a GPU busy (issue #38), measured on this CPU as ratios within one run, old and new alternated.

1. ``sources``: HRF's trajectory-of-interest images of an epoch, one rollout per sampling batch (before: batch /
   siblings images per UNet call) against ``Trainer._roll_images`` (``siblings`` batches' images per call), on the
   embedded digits16 (K = 40) with the SD presets' layout: 64 samples, batches of 8, 4 siblings (8 batches of 2
   images: 8 rollouts of 2 rows against 2 of 8). The images are the same bit for bit (tests/rl/test_trainer.py).
2. ``switch``: the LoRA base model's call (``AdapterDisabled``) with diffusers' ``disable_adapters`` /
   ``enable_adapters`` around it (before: two walks over every module) against the shared switch (one assignment
   each way): the switch alone on the SD 1.x UNet architecture (built on the meta device: 1,500 modules, 64 LoRA
   layers, no weights), and whole frozen calls of the tiny SD UNet.
3. ``training``: the update's forward+backward over an epoch's chunks, each sampling batch's (sample, step) pairs in
   calls of their own (before: ``PolicyUpdate._chunk_backward`` of one batch at a time makes exactly the old calls)
   against calls gathered across batches, both at most ``train_batch_size`` rows; on digits16 (K = 40) with HRF
   [20, 40) in the SD presets' layout (64 samples, batches of 8, 4 siblings; train batch 64, 4 updates: a chunk
   holds about 2 rows of each batch). The gradients agree to float64 rounding (tests/rl/test_update.py).

    python bench/busy.py [--repeats 5] [--only training] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hrf_core.models import lora  # noqa: E402
from hrf_core.presets import PRESETS  # noqa: E402
from hrf_core.rl.trainer import Trainer  # noqa: E402
from hrf_core.rl.update import UpdateDiagnostics  # noqa: E402
from hrf_core.store.runs import RunStore  # noqa: E402


@contextmanager
def walked_off(unet):
    """The adapter off as before issue #38: diffusers' two walks over every module."""
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


def alternate(old, new, repeats: int) -> dict:
    """Seconds of ``old()`` and ``new()``, alternated ``repeats`` times after one warm-up each; medians and ratio."""
    old(), new()
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(repeats):
        for name, fn in (("old", old), ("new", new)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    o, n = statistics.median(times["old"]), statistics.median(times["new"])
    return {"old_s": o, "new_s": n, "old_over_new": o / n, "repeats": repeats}


def sources(repeats: int) -> dict:
    config = PRESETS["digits-hrf-late"].replace(samples_per_epoch=64, batch_size=8, siblings=4, device="cpu",
                                                eval_samples=8)
    trainer = Trainer(config, RunStore(Path(tempfile.mkdtemp(prefix="busy-"))).create(config.to_dict()))
    batches = list(range(config.batches_per_epoch))

    def old():
        trainer._images = {}
        for b in batches:
            trainer._roll_images(1, [b])

    def new():
        trainer._images = {}
        trainer._roll_images(1, batches)

    return {"model": "digits16", "num_steps": config.num_steps, "batches": len(batches),
            "images_per_batch": config.batch_size // config.siblings, **alternate(old, new, repeats)}


def switch(repeats: int) -> dict:
    from diffusers import UNet2DConditionModel

    from hrf_core.models.latent import SD1_UNET_CONFIG, TINY_UNET_CONFIG

    with torch.device("meta"):
        sd = UNet2DConditionModel(**SD1_UNET_CONFIG)
    lora.add_lora(sd, 4)
    frozen = lora.AdapterDisabled(sd)
    toggles = 100
    modules = sum(1 for _ in sd.modules())

    def old_toggle():
        for _ in range(toggles):
            with walked_off(sd):
                pass

    def new_toggle():
        for _ in range(toggles):
            with lora.adapter_disabled(frozen.unet):
                pass

    toggle = alternate(old_toggle, new_toggle, repeats)
    torch.manual_seed(0)
    tiny = lora.add_lora(UNet2DConditionModel(**TINY_UNET_CONFIG).eval(), 4)
    tiny_frozen = lora.AdapterDisabled(tiny)
    x, t, text = torch.randn(8, 4, 8, 8), torch.full((8,), 500), torch.randn(8, 16, 16)

    def old_call():
        with torch.no_grad():
            for _ in range(20):
                with walked_off(tiny):
                    tiny(x, t, encoder_hidden_states=text)

    def new_call():
        with torch.no_grad():
            for _ in range(20):
                tiny_frozen(x, t, encoder_hidden_states=text)

    return {"sd_modules": modules, "toggles": toggles,
            "sd_toggle_us": {"old": toggle["old_s"] / toggles * 1e6, "new": toggle["new_s"] / toggles * 1e6},
            "sd_toggle": toggle, "tiny_frozen_call": alternate(old_call, new_call, repeats)}


def training(repeats: int) -> dict:
    config = PRESETS["digits-hrf-late"].replace(samples_per_epoch=64, batch_size=8, siblings=4, device="cpu",
                                                eval_samples=8)
    trainer = Trainer(config, RunStore(Path(tempfile.mkdtemp(prefix="busy-"))).create(config.to_dict()))
    epoch, n = 1, config.batches_per_epoch
    starts = trainer._starts(epoch, n)
    trainer._roll_images(epoch, [b for b in range(n) if starts[b] > 0])
    batches = {b: trainer._sample_batch(epoch, b, starts[b]) for b in range(n)}
    trainer.update.assign_advantages(batches, trainer._gather_rewards(batches, n), starts)
    samples = [(b, i) for b in range(n) for i in range(config.batch_size)]  # as PolicyUpdate.run draws its chunks
    order = torch.randperm(len(samples), generator=trainer.epoch_generator(epoch, "order-0"))
    chunks = [[samples[i] for i in chunk.tolist()] for chunk in order.chunk(config.updates_per_epoch)]
    update, diagnostics = trainer.update, UpdateDiagnostics(trainer.device)
    calls: list[int] = []
    trainer.unet.register_forward_pre_hook(
        lambda module, args: calls.append(args[0].shape[0]) if torch.is_grad_enabled() else None)
    trainer.unet.train()

    def old():
        for chunk in chunks:
            trainer.optimizer.zero_grad(set_to_none=True)
            for b, batch in batches.items():
                update._chunk_backward({b: batch}, chunk, diagnostics, first=False)

    def new():
        for chunk in chunks:
            trainer.optimizer.zero_grad(set_to_none=True)
            update._chunk_backward(batches, chunk, diagnostics, first=False)

    counts = {}
    for name, fn in (("old", old), ("new", new)):
        calls.clear()
        fn()
        counts[name] = {"calls": len(calls), "rows": sum(calls), "largest": max(calls)}
    return {"model": "digits16", "num_steps": config.num_steps, "window": list(config.window), "starts": starts,
            "train_batch_size": config.train_batch_size, "chunks": len(chunks), "counts": counts,
            **alternate(old, new, repeats)}


SECTIONS = {"sources": sources, "switch": switch, "training": training}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=list(SECTIONS), action="append", help="run this section (repeatable)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name in args.only or SECTIONS:
        result[name] = SECTIONS[name](args.repeats)
    if "sources" in result:
        s = result["sources"]
        print(f"HRF source images, {s['batches']} batches x {s['images_per_batch']} images, K = {s['num_steps']}: "
              f"per batch {s['old_s']:.3f} s, batched {s['new_s']:.3f} s: {s['old_over_new']:.2f}x")
    if "switch" in result:
        w = result["switch"]
        print(f"adapter off and on, SD 1.x UNet ({w['sd_modules']} modules): {w['sd_toggle_us']['old']:.0f} us "
              f"walked, {w['sd_toggle_us']['new']:.1f} us switched: {w['sd_toggle']['old_over_new']:.0f}x")
        f = w["tiny_frozen_call"]
        print(f"20 frozen calls of the tiny SD UNet (8 rows): walked {f['old_s']:.3f} s, switched {f['new_s']:.3f} s: "
              f"{f['old_over_new']:.2f}x")
    if "training" in result:
        u = result["training"]
        o, n = u["counts"]["old"], u["counts"]["new"]
        print(f"training calls of an epoch ({u['chunks']} chunks, {o['rows']} rows): per batch {o['calls']} calls "
              f"{u['old_s']:.3f} s, gathered {n['calls']} calls {u['new_s']:.3f} s: {u['old_over_new']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
