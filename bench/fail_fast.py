"""How fast the refusals and the embedded model answer: the wall-clock budgets the tests used to assert.

The tests check *what* these paths do (the message, nothing started, no download); this script checks how
long they take, on an empty, offline cache, against a budget per path:

- ``cli-offline-model``: ``python -m hrf_core train --model google/ddpm-celebahq-256`` refused (exit 2), 1 s;
- ``offline-base-model``: ``load_base_model("google/ddpm-ema-celebahq-256")`` refused, 1 s;
- ``offline-aesthetic``: the aesthetic reward's availability and its two refusals, 1 s;
- ``offline-clip`` / ``offline-inception``: the feature extractors refused (their imports not timed), 1 s each;
- ``digits16-sampling``: 8 digits16 samples with 40 DDIM steps, 10 s.

    python bench/fail_fast.py [--json out.json]      # exit 1 when a path exceeds its budget
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# an empty, offline cache, set before huggingface_hub, torch or open_clip read the environment
_CACHE = Path(tempfile.mkdtemp(prefix="hrf-fail-fast-"))
os.environ.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(_CACHE / "hf"),
                  HF_HUB_CACHE=str(_CACHE / "hf" / "hub"), TORCH_HOME=str(_CACHE / "torch"),
                  HRF_CACHE_DIR=str(_CACHE / "hrf"), HOME=str(_CACHE / "home"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

#: name -> seconds allowed (the limits the tests asserted before they moved here)
BUDGETS = {"cli-offline-model": 1.0, "offline-base-model": 1.0, "offline-aesthetic": 1.0, "offline-clip": 1.0,
           "offline-inception": 1.0, "digits16-sampling": 10.0}


def _refused(fn, error: type[BaseException], needle: str) -> None:
    try:
        fn()
    except error as caught:
        if needle not in str(caught):
            raise AssertionError(f"refused without {needle!r}: {caught}") from None
        return
    raise AssertionError(f"not refused (expected {error.__name__} mentioning {needle!r})")


def cli_offline_model() -> None:
    from hrf_core.cli import main

    out = _CACHE / "runs"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["train", "--model", "google/ddpm-celebahq-256", "--out", str(out)])
    if code != 2 or "hf download" not in err.getvalue():
        raise AssertionError(f"exit {code}: {err.getvalue().strip()}")


def offline_base_model() -> None:
    from hrf_core.models.registry import load_base_model

    _refused(lambda: load_base_model("google/ddpm-ema-celebahq-256", "cpu"), ValueError, "hf download")


def offline_aesthetic() -> None:
    from hrf_core.rewards.aesthetic import aesthetic_available, load_aesthetic_mlp, make_aesthetic_reward

    ok, reason = aesthetic_available()
    if ok or "HF_HUB_OFFLINE" not in reason:
        raise AssertionError(f"aesthetic available offline with empty caches: {ok}, {reason!r}")
    _refused(make_aesthetic_reward, ValueError, "HF_HUB_OFFLINE")
    _refused(load_aesthetic_mlp, ValueError, "HF_HUB_OFFLINE")


def offline_extractor(name: str):
    def check() -> None:
        from hrf_core.measure.features import make_feature_extractor

        _refused(lambda: make_feature_extractor(name), ValueError, "HF_HUB_OFFLINE")

    return check


def digits16_sampling(state: dict):
    def check() -> None:
        state["images"] = sample_ddim(state["unet"], state["scheduler"], 8, steps=40, eta=1.0, seed=0, batch=8)

    from diffusers import DDIMScheduler, UNet2DModel

    from hrf_core import CHECKPOINTS_DIR
    from hrf_core.models.pretrain import sample_ddim

    folder = CHECKPOINTS_DIR / "digits16"
    state["unet"] = UNet2DModel.from_pretrained(str(folder / "unet"), use_safetensors=True).eval()
    state["scheduler"] = DDIMScheduler.from_pretrained(str(folder / "scheduler"))
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the timings here")
    args = parser.parse_args(argv)
    import open_clip  # noqa: F401 - import costs are not what is timed
    import torchvision  # noqa: F401

    checks = {"cli-offline-model": cli_offline_model, "offline-base-model": offline_base_model,
              "offline-aesthetic": offline_aesthetic, "offline-clip": offline_extractor("clip"),
              "offline-inception": offline_extractor("inception"), "digits16-sampling": digits16_sampling({})}
    results, over = {}, []
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'path':<20} {'seconds':>8} {'budget':>7}")
    try:
        for name, check in checks.items():
            started = time.perf_counter()
            check()
            seconds = time.perf_counter() - started
            results[name] = {"seconds": round(seconds, 4), "budget": BUDGETS[name]}
            flag = "" if seconds < BUDGETS[name] else "  OVER BUDGET"
            over += [name] if flag else []
            print(f"{name:<20} {seconds:>8.3f} {BUDGETS[name]:>7.1f}{flag}")
    finally:
        shutil.rmtree(_CACHE, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
