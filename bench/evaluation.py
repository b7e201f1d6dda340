"""What evaluation adds to training at the default ``eval_every``, from measured call times (no GPU needed).

- digits16 (the app's presets): one evaluation (64 samples, classifier embeddings) against one DDPO epoch.
- The CelebA-HQ 256 architecture at the paper preset (random weights): one evaluation = sampling
  ``eval_samples`` x K UNet forwards + Inception-v3 and CLIP ViT-L/14 embeddings (random weights; the
  real ones cost the same), against one epoch's floor (its forward rows + 3 x its trained rows, at the
  measured per-row forward time). On a CPU the UNet cost per row is flat in the batch size.

    python bench/evaluation.py [--json out.json]
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hrf_core.presets import PRESETS  # noqa: E402


def timed(fn, repeats: int = 1) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def digits(out: dict) -> None:
    from hrf_core.models.registry import load_base_model
    from hrf_core.rl.trainer import Trainer
    from hrf_core.store.runs import RunStore

    config = PRESETS["digits-ddpo"].replace(epochs=1, eval_every=1, device="cpu", checkpoint_every=100)
    run = RunStore(Path(tempfile.mkdtemp())).create(config.to_dict())
    trainer = Trainer(config, run, base=load_base_model("digits16", "cpu"))
    trainer.train()
    row = run.metrics()[1]
    epoch = row["seconds"] - row["eval_seconds"]
    out["digits16"] = {"eval_samples": config.eval_samples, "eval_seconds": row["eval_seconds"], "epoch_seconds": epoch,
                       "overhead_at_eval_every_10": row["eval_seconds"] / (10 * epoch)}


def celebahq(out: dict) -> None:
    import open_clip
    from diffusers import UNet2DModel
    from torchvision.models import inception_v3

    from hrf_core.measure.features import ClipFeatures, InceptionFeatures
    from hrf_core.models.registry import CELEBAHQ_UNET_CONFIG

    preset = PRESETS["paper-hrf-d"]
    torch.manual_seed(0)
    unet = UNet2DModel(**CELEBAHQ_UNET_CONFIG).eval()
    x, t = torch.randn(1, 3, 256, 256), torch.full((1,), 500)
    with torch.inference_mode():
        forward = timed(lambda: unet(x, t))
    images = torch.rand(preset.eval_samples, 3, 256, 256) * 2 - 1
    inception = InceptionFeatures(model=inception_v3(weights=None, aux_logits=True, init_weights=False,
                                                     transform_input=True))
    clip = ClipFeatures(model=open_clip.create_model("ViT-L-14", pretrained=None))
    embed = {"inception": timed(lambda: inception.features_and_probs(images)), "clip": timed(lambda: clip(images))}
    k, n = preset.num_steps, preset.samples_per_epoch
    trainable = k - 1  # the CelebA-HQ scheduler's last step has zero variance
    # DDPO's epoch is the most expensive of the paper presets: n x K sampled rows, n x (K - 1) trained rows
    epoch_rows = n * k + 3 * n * trainable
    evaluation_rows = preset.eval_samples * k
    epoch, sampling = epoch_rows * forward, evaluation_rows * forward
    embeddings = sum(embed.values())
    out["celebahq_paper_preset"] = {
        "forward_seconds_per_row": forward, "eval_samples": preset.eval_samples, "embedding_seconds": embed,
        "epoch_floor_seconds": epoch, "evaluation_sampling_seconds": sampling,
        "overhead_at_eval_every_10": (sampling + embeddings) / (10 * epoch),
        "embeddings_share_of_evaluation": embeddings / (sampling + embeddings)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    parser.add_argument("--skip-celebahq", action="store_true")
    args = parser.parse_args(argv)
    out: dict = {"threads": torch.get_num_threads()}
    digits(out)
    if not args.skip_celebahq:
        celebahq(out)
    d = out["digits16"]
    print(f"digits16: evaluation ({d['eval_samples']} samples) {d['eval_seconds']:.2f} s, DDPO epoch "
          f"{d['epoch_seconds']:.2f} s: {d['overhead_at_eval_every_10'] * 100:.1f}% at eval_every 10")
    if "celebahq_paper_preset" in out:
        c = out["celebahq_paper_preset"]
        print(f"CelebA-HQ 256 (paper preset): UNet forward {c['forward_seconds_per_row']:.2f} s per row; evaluation "
              f"({c['eval_samples']} samples) {c['evaluation_sampling_seconds']:.0f} s sampling + "
              f"{sum(c['embedding_seconds'].values()):.1f} s embeddings (Inception "
              f"{c['embedding_seconds']['inception']:.1f} s, CLIP ViT-L/14 {c['embedding_seconds']['clip']:.1f} s; "
              f"{c['embeddings_share_of_evaluation'] * 100:.1f}%"
              f" of the evaluation); DDPO epoch floor {c['epoch_floor_seconds']:.0f} s: "
              f"{c['overhead_at_eval_every_10'] * 100:.1f}% at eval_every 10")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
