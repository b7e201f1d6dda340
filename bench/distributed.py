"""Epoch time of one DDPO run in 1 process against the same run in N torchrun (gloo) processes on this CPU.

    python bench/distributed.py [--nproc 2] [--epochs 3] [--json out.json]

The same config and seed three ways: 1 process with all the cores as torch threads, 1 process with 1 thread,
and ``--nproc`` processes (``torchrun --standalone``) with cores / nproc threads each. Epoch time is the mean of
the rows' ``seconds`` less their evaluation, epochs >= 2 (the first epoch pays the warm-up). The figure is the
ratio of the N-process epoch to the 1-process one, measured in one run of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUIET = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def epoch_seconds(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["seconds"] - r.get("eval_seconds", 0.0) for r in rows if r.get("epoch", 0) >= 2 and "seconds" in r]


def run(out: Path, name: str, threads: int, nproc: int, epochs: int) -> list[float]:
    train = ["-m", "hrf_core", "train", "--preset", "digits-ddpo", "--epochs", str(epochs), "--eval-every", "1000",
             "--checkpoint-every", "1000", "--seed", "0", "--device", "cpu", "--out", str(out), "--name", name]
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                   *train]
    else:
        command = [sys.executable, *train]
    env = dict(os.environ, **QUIET, OMP_NUM_THREADS=str(threads))
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return epoch_seconds(out / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    out = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    arms = {f"1 process x {cores} threads": (cores, 1), "1 process x 1 thread": (1, 1),
            f"{args.nproc} processes x {max(1, cores // args.nproc)} threads":
                (max(1, cores // args.nproc), args.nproc)}
    result = {}
    for index, (label, (threads, nproc)) in enumerate(arms.items()):
        seconds = run(out, f"arm{index}", threads, nproc, args.epochs)
        result[label] = {"threads": threads, "processes": nproc, "epoch_seconds": seconds,
                         "mean": sum(seconds) / len(seconds)}
    base = result[next(iter(result))]["mean"]
    print("| layout | epoch s (mean of epochs >= 2) | vs 1 process, all cores |\n|---|---|---|")
    for label, entry in result.items():
        print(f"| {label} | {entry['mean']:.2f} | {entry['mean'] / base:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
