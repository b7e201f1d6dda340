"""Quality of the digits16 DDPM, scored by the digits16 classifier.

Samples 1,000 images (40 DDIM steps, eta 1.0, seed 0, batches of 250) and prints: classifier
Inception Score of the samples and of the real held-out digits, the fraction of samples with max
class probability > 0.9, the class histogram, and the median L2 distance (in [-1, 1] pixels, 16x16)
to the nearest training image for samples vs real held-out images (memorisation check).

Usage: python bench/digits_quality.py [--model checkpoints/digits16] [--classifier ...]
       [--n 1000] [--steps 40] [--eta 1.0] [--seed 0] [--json PATH] [--update-card]
Exit code 1 if a quality target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

from hrf_core.models.pretrain import CHECKPOINTS  # noqa: E402
from hrf_core.study.digits_quality import QUALITY_DEFAULTS, digits_quality, update_ddpm_quality  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Measure, print, optionally write JSON and the model card; returns 0 if every target is met."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=CHECKPOINTS / "digits16")
    ap.add_argument("--classifier", type=Path, default=CHECKPOINTS / "digits16-classifier")
    ap.add_argument("--n", type=int, default=QUALITY_DEFAULTS["n"])
    ap.add_argument("--steps", type=int, default=QUALITY_DEFAULTS["steps"])
    ap.add_argument("--eta", type=float, default=QUALITY_DEFAULTS["eta"])
    ap.add_argument("--seed", type=int, default=QUALITY_DEFAULTS["seed"])
    ap.add_argument("--batch", type=int, default=QUALITY_DEFAULTS["batch"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    ap.add_argument("--update-card", action="store_true",
                    help="write the numbers into the model's training.json + README.md")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    q = digits_quality(a.model, a.classifier, n=a.n, steps=a.steps, eta=a.eta, seed=a.seed, batch=a.batch)
    print(f"samples: {q['n_samples']} ({a.steps} DDIM steps, eta {a.eta}, seed {a.seed}), {q['sample_seconds']} s")
    print(f"Inception Score: samples {q['inception_score']:.3f}, real held-out {q['inception_score_real_heldout']:.3f}")
    print(f"confident fraction (max prob > 0.9): {q['confident_fraction']:.3f}")
    print("class histogram: " + " ".join(f"{i}:{h:.3f}" for i, h in enumerate(q["class_histogram"])))
    print(f"median L2 to nearest training image: samples {q['nn_train_l2_median_samples']:.3f}, "
          f"held-out {q['nn_train_l2_median_heldout']:.3f}")
    for k, ok in q["passes"].items():
        print(f"  {'PASS' if ok else 'FAIL'} {k}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(q, indent=2) + "\n")
    if a.update_card:
        update_ddpm_quality(a.model, q)
        print(f"updated {a.model / 'README.md'}")
    return 0 if all(q["passes"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
