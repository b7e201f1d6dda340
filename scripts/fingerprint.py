"""A behaviour fingerprint: tiny runs of every method and the answers of the page, the API and the CLI.

    python scripts/fingerprint.py record OUT.json     # before a change
    python scripts/fingerprint.py compare OLD.json    # after it: every difference, exit 1 if any
    python scripts/fingerprint.py record OUT.json --only runs --flags="--train-batch-size 1"
                                                      # the runs with these training flags added (compare alike)

Runs (the embedded digits16, K = 8, 2 epochs of 8 samples, one torch thread): DDPO, HRF, HRF sliding,
HRF-D, window-only HRF, DDPO + KL, HRF with a fixed start, base start images and window-scaled clips, a
duel through the job manager, and a resume. Each run's metric rows (wall-clock fields left out), config,
status, and the sha256 of every file it wrote (weights, optimiser and trainer state, grids, evaluation
arrays). Answers: the config (or the one-line refusal) that the page's form, the scripting API and the
command line give for the same inputs, good and bad. A refactor that changes no behaviour changes nothing
here. A few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VOLATILE = ("seconds", "logged_at", "updated")
TINY = ["--steps", "8", "--epochs", "2", "--samples", "8", "--batch-size", "4", "--siblings", "2",
        "--eval-every", "1", "--eval-samples", "8", "--checkpoint-every", "1", "--updates", "2", "--seed", "0",
        "--device", "cpu", "--model", "digits16"]
RUNS = {
    "ddpo": ["--method", "ddpo", "--reward", "jpeg-compressibility"],
    "hrf": ["--method", "hrf", "--window", "4:8", "--reward", "ink"],
    "sliding": ["--method", "hrf-sliding", "--cluster", "0:4x1", "--cluster", "4:8x1", "--reward", "ink"],
    "hrfd": ["--method", "hrf-d", "--reward", "jpeg-compressibility"],
    "window-only": ["--method", "hrf", "--window", "4:8", "--outside", "base", "--adv-scope", "image",
                    "--reward", "symmetry"],
    "kl": ["--method", "ddpo", "--kl-coef", "0.1", "--reward", "digit:3"],
    "fixed": ["--method", "hrf", "--window", "2:8", "--start-mode", "fixed", "--window-scaled-clip",
              "--start-source", "base", "--adv-scope", "batch", "--reward", "jpeg-incompressibility"],
}


def volatile(key: str) -> bool:
    return key in VOLATILE or key.endswith("_seconds")


def clean(value, ids: dict[str, str]):
    """``value`` without wall-clock fields, with generated run ids replaced by stable names."""
    if isinstance(value, dict):
        return {k: clean(v, ids) for k, v in sorted(value.items()) if not volatile(k)}
    if isinstance(value, list):
        return [clean(v, ids) for v in value]
    if isinstance(value, str):
        for run_id, name in ids.items():
            value = value.replace(run_id, name)
    return value


def run_record(path: Path, ids: dict[str, str]) -> dict:
    files = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in ("train.lock",)):
        rel = str(file.relative_to(path))
        if rel in ("config.json", "metrics.jsonl", "status.json"):
            continue
        data = file.read_bytes()
        if file.suffix == ".json":  # a diffusers config names the folder it was loaded from: not behaviour
            config = json.loads(data)
            config.pop("_name_or_path", None)
            data = json.dumps(config, sort_keys=True).encode()
        files[rel] = hashlib.sha256(data).hexdigest()
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"config": clean(json.loads((path / "config.json").read_text()), ids),
            "status": clean(json.loads((path / "status.json").read_text()), ids),
            "metrics": clean(rows, ids), "files": files}


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, "-m", "hrf_core", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1800)


def record_runs(store: Path) -> dict:
    out = {}
    for name, args in RUNS.items():
        done = cli("train", *TINY, *args, "--out", str(store), "--name", name)
        if done.returncode:
            raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
        out[name] = run_record(store / name, {})
        print(f"recorded {name}", file=sys.stderr)
    done = cli("resume", str(store / "hrf"), "--epochs", "3")
    if done.returncode:
        raise RuntimeError(f"resume: {done.stderr[-2000:]}")
    out["hrf-resumed"] = run_record(store / "hrf", {})
    out.update(record_duel(store / "duel"))
    return out


def record_duel(store: Path) -> dict:
    """A duel through the job manager (HRF [4,8) against its DDPO partner), one torch thread."""
    import torch

    torch.set_num_threads(1)
    adapter = Adapters()
    manager = adapter.manager(store)
    config = adapter.config_from_cli([*TINY, "--method", "hrf", "--window", "4:8", "--reward", "ink"])
    first, second = manager.start_duel(config, adapter.duel_partner(config))
    manager.wait()
    ids = {first: "duel-a", second: "duel-b"}
    return {"duel-a": run_record(store / first, ids), "duel-b": run_record(store / second, ids)}


class Adapters:
    """Where each surface lives (the one part of this script a redesign may have to update)."""

    def manager(self, store: Path, fake: bool = False):
        from explorer.jobs import JobManager
        from hrf_core.store.runs import RunStore

        if fake:
            return JobManager(RunStore(store), trainer_factory=_FakeTrainer)
        return JobManager(RunStore(store), torch_threads=1)

    def config_from_cli(self, argv: list[str]):
        from hrf_core.cli import build_parser
        from hrf_core.commands.train import config_from_args

        return config_from_args(build_parser().parse_args(["train", *argv]))

    def duel_partner(self, config):
        from explorer.views.train import duel_partner

        return duel_partner(config)

    def page_start(self, manager, form: dict):
        """The page's Start handler with the form's values; returns the notice text."""
        from explorer.page import Lab

        lab = Lab(manager, storage_note="")
        values = {key: value for key, value in form.items() if key != "preset"}
        notice, _ = lab.train.start("", form.get("preset", "custom"), values)
        return notice

    def api_start(self, manager, values: dict):
        from explorer.api import ScriptingApi
        from hrf_core.presets import PRESETS

        return ScriptingApi(manager, PRESETS["digits-hrf-late"].replace()).start(**values)


class _FakeTrainer:
    """A trainer that ends at once: the answers need the config, not the training."""

    phase = "done"

    def __init__(self, config, run, callbacks, stop_event):
        self.run = run

    def train(self):
        self.run.set_status("done", 0, 0, "fake")
        return "done"

    def steps(self):
        self.run.set_status("done", 0, 0, "fake")
        return "done"
        yield


FORM = dict(model="digits16", reward="ink", method="hrf", window="20:40", start_mode="uniform", adv_scope="epoch",
            outside_window="tuned", epochs=3, samples_per_epoch=8, batch_size=4, siblings=2, num_steps=40, lr=3e-4,
            clip_range=1e-4, adv_clip=5.0, seed=0, eval_every=1, eval_samples=8, kl_coef=0.0)
PAGE_CASES = {
    "good-hrf": {},
    "good-ddpo": dict(method="ddpo"),
    "good-sliding": dict(method="hrf-sliding", window="10:40", epochs=4),
    "good-hrfd": dict(method="hrf-d"),
    "good-window-only": dict(outside_window="base", adv_scope="image"),
    "good-ddpo-outside-base": dict(method="ddpo", outside_window="base"),
    "good-fixed": dict(start_mode="fixed", window="5:40"),
    "bad-method": dict(method="nope"),
    "bad-window-empty": dict(window="20:20"),
    "bad-window-inverted": dict(window="30:20"),
    "bad-window-out": dict(window="20:41"),
    "bad-window-text": dict(window="abc"),
    "bad-lr": dict(lr="x"),
    "bad-lr-range": dict(lr=5.0),
    "bad-epochs-float": dict(epochs=1.5),
    "bad-batch": dict(batch_size=3),
    "bad-siblings": dict(siblings=3),
    "bad-batch-big": dict(batch_size=16),
    "bad-model": dict(model="no/such-model"),
    "bad-reward": dict(reward="nope"),
    "bad-scope": dict(adv_scope="weird"),
    "bad-image-ddpo": dict(method="ddpo", adv_scope="image"),
    "bad-empty-epochs": dict(epochs=""),
    "bad-steps": dict(num_steps=1),
}
API_CASES = {
    "good-default": {},
    "good-hrf": dict(method="hrf", window="10:40", epochs=2, samples_per_epoch=8, batch_size=4, siblings=2),
    "good-ends": dict(window_start=25, epochs=2, samples_per_epoch=8, batch_size=4, siblings=2),
    "good-preset": dict(preset="digits-ddpo", epochs=2, samples_per_epoch=8, batch_size=4, siblings=2),
    "good-sliding": dict(method="hrf-sliding", window="0:40", epochs=4, samples_per_epoch=8, batch_size=4,
                         siblings=2),
    "bad-method": dict(method="nope"),
    "bad-preset": dict(preset="nope"),
    "bad-window": dict(window="20:20"),
    "bad-window-both": dict(window="20:40", window_start=10),
    "bad-ends": dict(window_start="x"),
    "bad-lr": dict(lr=5.0),
    "bad-batch": dict(batch_size=5),
    "bad-model": dict(model="nope"),
    "bad-reward": dict(reward="nope"),
    "bad-scope": dict(adv_scope="weird"),
    "bad-outside": dict(outside_window="weird"),
    "bad-kl": dict(kl_coef=-1),
    "bad-token": dict(token="x"),
}
CLI_CASES = {
    "good-default": [],
    "good-preset": ["--preset", "digits-hrf-d", "--epochs", "3"],
    "good-sliding": ["--method", "hrf-sliding", "--cluster", "0:20x2", "--cluster", "20:40x3", "--epochs", "5"],
    "good-window-only": ["--method", "hrf", "--window", "30:40", "--outside", "base", "--adv-scope", "image"],
    "good-flags": ["--lr", "1e-4", "--kl-coef", "0.5", "--bf16", "--grad-checkpointing", "--window-scaled-clip",
                   "--start-source", "base", "--updates", "3", "--eval-every", "2", "--eval-samples", "16",
                   "--checkpoint-every", "2", "--clip-range", "2e-4", "--adv-clip", "2.5", "--siblings", "2"],
    "bad-method": ["--method", "nope"],
    "bad-window": ["--window", "40:20"],
    "bad-window-text": ["--window", "a:b"],
    "bad-cluster": ["--cluster", "0:20"],
    "bad-batch": ["--batch-size", "5"],
    "bad-eta": ["--steps", "1"],
    "bad-outside-ddpo": ["--method", "ddpo", "--outside", "base"],
    "bad-image-ddpo": ["--method", "ddpo", "--adv-scope", "image"],
    "bad-epochs": ["--epochs", "0"],
    "bad-preset": ["--preset", "nope"],
    "bad-lr": ["--lr", "2"],
}


def record_answers(scratch: Path) -> dict:
    import shutil

    adapter = Adapters()
    page, api, commands = {}, {}, {}
    for name, change in PAGE_CASES.items():
        store = scratch / f"page-{name}"
        manager = adapter.manager(store, fake=True)
        notice = adapter.page_start(manager, {**FORM, **change})
        manager.wait()
        runs = sorted(store.glob("*/config.json")) if store.is_dir() else []
        page[name] = {"notice": clean_notice(notice), "configs": [json.loads(p.read_text()) for p in runs]}
        shutil.rmtree(store, ignore_errors=True)
    os.environ.pop("HRF_PRESENTER_TOKEN", None)
    for name, values in API_CASES.items():
        store = scratch / f"api-{name}"
        manager = adapter.manager(store, fake=True)
        if name == "bad-token":
            os.environ["HRF_PRESENTER_TOKEN"] = "secret"
        try:
            result = adapter.api_start(manager, values)
            manager.wait()
            api[name] = {"config": result["config"]}
        except (ValueError, PermissionError) as error:
            api[name] = {"error": f"{type(error).__name__}: {error}"}
        finally:
            os.environ.pop("HRF_PRESENTER_TOKEN", None)
        shutil.rmtree(store, ignore_errors=True)
    for name, argv in CLI_CASES.items():
        if name.startswith("good"):
            commands[name] = {"config": adapter.config_from_cli(argv).to_dict()}
        else:
            done = cli("train", *argv, "--out", str(scratch / "cli"), "--epochs", "1") if "--epochs" not in argv \
                else cli("train", *argv, "--out", str(scratch / "cli"))
            commands[name] = {"rc": done.returncode, "stderr": done.stderr.strip().splitlines()[-1:]}
    return {"page": page, "api": api, "cli": commands}


def clean_notice(notice: str) -> str:
    import re

    return re.sub(r"\d{8}-\d{6}-[A-Za-z0-9._-]+", "RUN", str(notice))


def diff(old, new, path="") -> list[str]:
    if type(old) is not type(new):
        return [f"{path}: {old!r} -> {new!r}"]
    if isinstance(old, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            if key not in old:
                out.append(f"{path}/{key}: added {new[key]!r}"[:300])
            elif key not in new:
                out.append(f"{path}/{key}: removed"[:300])
            else:
                out += diff(old[key], new[key], f"{path}/{key}")
        return out
    if isinstance(old, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} items -> {len(new)}"]
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in diff(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"[:300]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "compare"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--only", choices=("runs", "answers"), help="record or compare one part")
    parser.add_argument("--flags", default="", help="training flags added to every run's (one string)")
    args = parser.parse_args()
    TINY.extend(shlex.split(args.flags))
    with tempfile.TemporaryDirectory(prefix="hrf-fingerprint-") as scratch:
        scratch = Path(scratch)
        now = {}
        if args.only in (None, "answers"):
            now["answers"] = record_answers(scratch)
        if args.only in (None, "runs"):
            now["runs"] = record_runs(scratch / "store")
    now = json.loads(json.dumps(now))  # tuples as the file holds them (lists)
    if args.action == "record":
        args.file.write_text(json.dumps(now, indent=1, sort_keys=True))
        print(f"wrote {args.file}")
        return 0
    old = json.loads(args.file.read_text())
    differences = diff({k: old.get(k) for k in now}, now)
    for line in differences:
        print(line)
    print(f"{len(differences)} differences" if differences else "identical")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
