"""The locality profile's cost against plain sampling of the same number of UNet rows, in one run.

    python bench/locality.py                        # digits16 on this CPU: 64 trunks x 4 branches, K = 40
    python bench/locality.py --celebahq --device cuda --trunks 16 --batch 64   # CelebA-HQ 256 architecture

ratio = profile wall time / wall time of sampling ceil(rows / K) images from noise at the same batch size,
where rows = the profile's UNet rows (trunks x K + branches of every probe). A ratio near 1 means the
branching, rewards and bootstrap add little to the UNet calls the estimate must make.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.epoch import random_celebahq_folder  # noqa: E402
from hrf_core.models.registry import load_base_model  # noqa: E402
from hrf_core.rewards.registry import make_reward  # noqa: E402
from hrf_core.rl.sampling import sample_from  # noqa: E402
from hrf_core.study.locality import ProfileSettings, profile  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits16")
    parser.add_argument("--celebahq", action="store_true", help="random-weight CelebA-HQ 256 architecture")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--trunks", type=int, default=64)
    parser.add_argument("--branches", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=512, help="rows per UNet call (profile and plain sampling)")
    parser.add_argument("--rewards", nargs="+", default=None, help="default: the five digits tasks, or JPEG on RGB")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    model = str(random_celebahq_folder(Path(tempfile.mkdtemp()) / "celebahq")) if args.celebahq else args.model
    base = load_base_model(model, args.device)
    names = args.rewards or (["jpeg-compressibility", "jpeg-incompressibility", "ink", "symmetry", "digit:3"]
                             if base.sample_shape == (1, 16, 16) else ["jpeg-compressibility"])
    rewards = {name: make_reward(name, str(base.device)) for name in names}
    settings = ProfileSettings(trunks=args.trunks, branches=args.branches, num_steps=args.steps,
                               batch_size=args.batch).validate()
    sample_from(base, 4, 0, args.steps)  # warm-up
    sync = torch.cuda.synchronize if base.device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    out = profile(base, rewards, settings)
    sync()
    profile_seconds = time.perf_counter() - started
    rows = next(iter(out.values()))["unet_rows"]
    n = math.ceil(rows / args.steps)
    started = time.perf_counter()
    sample_from(base, n, 0, args.steps, batch_size=args.batch)
    sync()
    plain_seconds = time.perf_counter() - started
    result = {"model": "celebahq-256-architecture (random)" if args.celebahq else model, "device": str(base.device),
              "threads": torch.get_num_threads(), "trunks": args.trunks, "branches": args.branches, "K": args.steps,
              "probes": list(settings.probes), "rewards": names, "unet_rows": rows,
              "profile_seconds": round(profile_seconds, 2), "plain_sampling_seconds": round(plain_seconds, 2),
              "ratio": round(profile_seconds / plain_seconds, 3),
              "ms_per_row": round(1000 * plain_seconds / (n * args.steps), 3)}
    if base.device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
