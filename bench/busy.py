"""Epochs that keep a GPU busy (issue #38), measured on this CPU as ratios within one run, old and new alternated.

1. ``sources``: HRF's trajectory-of-interest images of an epoch, one rollout per sampling batch (before: batch /
   siblings images per UNet call) against ``Trainer._roll_images`` (``siblings`` batches' images per call), on the
   embedded digits16 (K = 40) with the SD presets' layout: 64 samples, batches of 8, 4 siblings (8 batches of 2
   images: 8 rollouts of 2 rows against 2 of 8). The images are the same bit for bit (tests/test_trainer.py).
2. ``switch``: the LoRA base model's call (``AdapterDisabled``) with diffusers' ``disable_adapters`` /
   ``enable_adapters`` around it (before: two walks over every module) against the shared switch (one assignment
   each way): the switch alone on the SD 1.x UNet architecture (built on the meta device: 1,500 modules, 64 LoRA
   layers, no weights), and whole frozen calls of the tiny SD UNet.

    python bench/busy.py [--repeats 5] [--json out.json]
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "sources": sources(args.repeats),
              "switch": switch(args.repeats)}
    s, w = result["sources"], result["switch"]
    print(f"HRF source images, {s['batches']} batches x {s['images_per_batch']} images, K = {s['num_steps']}: "
          f"per batch {s['old_s']:.3f} s, batched {s['new_s']:.3f} s: {s['old_over_new']:.2f}x")
    print(f"adapter off and on, SD 1.x UNet ({w['sd_modules']} modules): {w['sd_toggle_us']['old']:.0f} us walked, "
          f"{w['sd_toggle_us']['new']:.1f} us switched: {w['sd_toggle']['old_over_new']:.0f}x")
    f = w["tiny_frozen_call"]
    print(f"20 frozen calls of the tiny SD UNet (8 rows): walked {f['old_s']:.3f} s, switched {f['new_s']:.3f} s: "
          f"{f['old_over_new']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
