"""The diversity bonus's cost per epoch (issue #37): epochs with ``diversity_weight`` > 0 against plain ones.

Two runs of the same config, one with the bonus, advance their epochs in turn (alternated, one sitting, so the
machine's load falls on both alike); an epoch's time is its sampling plus its update (the evaluation left out).
The bonus itself (the kernel's features and the leave-one-out Vendi scores of every sampling batch) is also timed
alone, and (``--pixel-sizes``) on one batch of random RGB images of those sizes, the pixel kernel a CelebA-HQ or
Stable Diffusion run would use. Prints one line per measurement and writes ``--json``.

    python bench/diversity.py                      # digits16 on this CPU: DDPO and HRF [30,40), K = 40
    python bench/diversity.py --epochs 6 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hrf_core.config import TrainConfig  # noqa: E402
from hrf_core.methods import DDPO, HRF  # noqa: E402
from hrf_core.rl.trainer import Trainer  # noqa: E402
from hrf_core.store.runs import RunStore  # noqa: E402


def timed_bonus(trainer: Trainer, spent: list[float]) -> None:
    """Record the seconds of each of the trainer's diversity-bonus calls in ``spent``."""
    bonus = trainer.update.diversity_bonus

    def wrapped(*args, **kwargs):
        started = time.perf_counter()
        out = bonus(*args, **kwargs)
        spent.append(time.perf_counter() - started)
        return out
    trainer.update.diversity_bonus = wrapped


def measure(config: TrainConfig, weight: float, epochs: int, root: Path) -> dict:
    """Alternate a plain and a bonus run over ``epochs`` timed epochs (after one warm-up epoch each)."""
    trainers, times, spent = {}, {"plain": [], "bonus": []}, []
    for name, w in (("plain", 0.0), ("bonus", weight)):
        c = config.replace(diversity_weight=w, epochs=epochs + 1)
        trainers[name] = Trainer(c, RunStore(root / name).create(c.to_dict()))
    timed_bonus(trainers["bonus"], spent)
    steps = {name: trainer.steps() for name, trainer in trainers.items()}
    for name in steps:
        next(steps[name])  # epoch 0: the base model's evaluation
    for epoch in range(1, epochs + 2):
        for name in (("plain", "bonus") if epoch % 2 else ("bonus", "plain")):
            before = len(spent)
            next(steps[name])
            row = trainers[name].run.metrics()[-1]
            if epoch > 1:  # the first epoch warms up
                times[name].append(row["sample_seconds"] + row["update_seconds"])
                if name == "bonus":
                    times.setdefault("bonus_alone", []).append(sum(spent[before:]))
    plain, bonus = statistics.median(times["plain"]), statistics.median(times["bonus"])
    ratios = [b / p for p, b in zip(times["plain"], times["bonus"], strict=True)]
    return {"plain_s": plain, "bonus_s": bonus, "ratio_median": statistics.median(ratios),
            "ratios": ratios, "bonus_alone_s": statistics.median(times["bonus_alone"]),
            "bonus_alone_share": statistics.median(times["bonus_alone"]) / plain, "epochs": epochs}


def pixel_bonus_seconds(size: int, batch: int, repeats: int = 3) -> float:
    """Seconds of the bonus on one unconditional batch of ``batch`` random 3 x size x size images (pixel kernel)."""
    from hrf_core.measure.diversity import group_bonus

    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    groups = torch.zeros(batch, dtype=torch.long)
    group_bonus(images, groups)
    started = time.perf_counter()
    for _ in range(repeats):
        group_bonus(images, groups)
    return (time.perf_counter() - started) / repeats


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits16")
    parser.add_argument("--reward", default="jpeg-incompressibility")
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per run (after one warm-up)")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--siblings", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--pixel-sizes", type=int, nargs="*", default=[256, 512],
                        help="also time the bonus alone on a batch of random RGB images of these sizes")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    k = args.steps
    base = TrainConfig(model=args.model, reward=args.reward, num_steps=k, samples_per_epoch=args.samples,
                       batch_size=args.batch, siblings=args.siblings, eval_every=1000, eval_samples=16, device="cpu",
                       checkpoint_every=1000)
    arms = {DDPO.name: base.replace(method=DDPO.name, window=(0, k)),
            f"{HRF.name}[30,40)/image": base.replace(method=HRF.name, window=(k * 3 // 4, k), adv_scope="image")}
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, config in arms.items():
            results[name] = measure(config.validate(), args.weight, args.epochs, Path(folder) / name.replace("/", "-"))
            r = results[name]
            print(f"{name}: plain {r['plain_s']:.2f} s, with the bonus {r['bonus_s']:.2f} s per epoch: ratio "
                  f"{r['ratio_median']:.3f} (per pair {', '.join(f'{x:.3f}' for x in r['ratios'])}); the bonus alone "
                  f"{r['bonus_alone_s'] * 1000:.0f} ms ({r['bonus_alone_share'] * 100:.1f}% of a plain epoch)",
                  flush=True)
    for size in args.pixel_sizes:
        seconds = pixel_bonus_seconds(size, args.batch)
        results[f"pixels_{size}"] = seconds
        print(f"the bonus alone on {args.batch} RGB {size}x{size} images (pixel kernel): {seconds * 1000:.0f} ms "
              "a batch", flush=True)
    results["settings"] = {**vars(args), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
