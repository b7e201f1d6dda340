"""A soak: back-to-back duels for a long time with viewers and /status pollers; what grows, what fails.

    python bench/soak.py                                      # 30 minutes, 50 light viewers, 12 /status pollers
    python bench/soak.py --minutes 3 --viewers 20 --pollers 6 --json soak.json   # a quick run

Method. The app (``app.py``) runs as a subprocess with its own temporary run store and temporary directory
(``TMPDIR``: its replay GIFs go there), one torch thread. First a baseline duel with nobody watching (the
idle server's epoch time). Then ``--viewers`` light viewers (``bench/viewers.py``'s: the viewer page once,
then one ``/live/stream`` connection each) and ``--pollers`` clients calling ``GET /status`` every second
stay connected while duels (DDPO against HRF on the digits model, small settings) run back to back until
``--minutes`` have passed; after every epoch one client asks for the running duel's replay GIF, as a
presenter clicking "GIF" would. Finished duels older than the last two are deleted from the store (their
checkpoints would fill the disk), as an operator tidying up would.

Reported: the server's RSS (``/proc/<pid>/status`` VmRSS) after the first loaded duel and at the end (the
growth), the temporary GIF folder's size and file count, errors (viewer streams that broke, /status calls
that failed or answered non-200, GIF requests that failed, duels that did not end "done"), and the mean
epoch time under load against the baseline's. Targets (issue #24): RSS growth < 50 MB, zero errors,
temporary files bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from viewers import QUIET_ENV, REPO_ROOT, App, StreamClient, free_port  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))

TARGET_RSS_MB = 50.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) below ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


class Soak:
    def __init__(self, args: argparse.Namespace, app: App, tmp: Path):
        self.args, self.app, self.tmp = args, app, tmp
        self.errors: dict[str, int] = {"status": 0, "gif": 0, "runs": 0}
        self.status_latency: list[float] = []
        self.epochs: list[float] = []
        self.duels = 0
        self.gifs = 0
        self.rss: list[tuple[float, float]] = []
        self.finished: list[list[Path]] = []

    # -- the duels ------------------------------------------------------------------------------------
    def duel_args(self) -> dict:
        """The /duel parameters of a small digits duel (HRF on the late half against DDPO)."""
        from explorer.api import start_params
        from hrf_core.presets import PRESETS

        a = self.args
        config = PRESETS["digits-hrf-late"].replace(
            reward="jpeg-compressibility", epochs=a.epochs, samples_per_epoch=a.samples, batch_size=a.batch,
            num_steps=a.num_steps, window=(a.num_steps // 2, a.num_steps), eval_every=1, eval_samples=a.eval_samples)
        return start_params(config, a.token)

    def _duel(self, args: dict) -> None:
        from gradio_client import Client

        client = Client(self.app.url, verbose=False)
        try:
            started = client.predict(**args, api_name="/duel")
        finally:
            client.close()
        if "Started" not in str(started.get("message", "")):
            raise RuntimeError(f"/duel did not start: {started}")

    async def duel(self, args: dict, http: httpx.AsyncClient | None) -> list[float]:
        """One duel to its end: the epoch seconds of both halves; with ``http``, a GIF request per new epoch."""
        runs_dir = self.app.runs_dir
        before = {p.name for p in runs_dir.iterdir()}
        await asyncio.to_thread(self._duel, args)
        deadline = time.time() + self.args.run_timeout
        runs: list[Path] = []
        while len(runs) < 2 and time.time() < deadline:
            runs = [p for p in runs_dir.iterdir() if p.name not in before and (p / "config.json").exists()]
            await asyncio.sleep(0.1)
        seen = 0
        while time.time() < deadline:
            states = []
            for run in runs:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    states.append(json.loads((run / "status.json").read_text()).get("state"))
            rows = sum(len((r / "metrics.jsonl").read_text().splitlines()) for r in runs
                       if (r / "metrics.jsonl").exists())
            if http is not None and rows > seen:
                seen = rows
                try:
                    response = await http.get(f"/live/animate/{runs[0].name}.gif", timeout=120)
                    self.gifs += 1
                    if response.status_code != 200 and not (response.status_code == 404 and rows < 2):
                        self.errors["gif"] += 1
                except httpx.HTTPError:
                    self.errors["gif"] += 1
            if len(states) == 2 and all(s in ("done", "stopped", "failed") for s in states):
                break
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError("a duel did not end within --run-timeout")
        if states != ["done", "done"]:
            self.errors["runs"] += 1
        seconds = []
        for run in runs:
            for line in (run / "metrics.jsonl").read_text().splitlines():
                row = json.loads(line)
                if row.get("epoch", 0) >= 1 and isinstance(row.get("seconds"), (int, float)):
                    seconds.append(row["seconds"])
        self.duels += 1
        self.finished.append(runs)
        while len(self.finished) > 2:  # tidy the store: its checkpoints would fill the disk in 30 minutes
            for run in self.finished.pop(0):
                shutil.rmtree(run, ignore_errors=True)
        return seconds

    # -- the load -------------------------------------------------------------------------------------
    async def poller(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.app.url, timeout=30) as http:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    response = await http.get("/status")
                    self.status_latency.append(time.perf_counter() - started)
                    if response.status_code != 200 or "state" not in response.json():
                        self.errors["status"] += 1
                except (httpx.HTTPError, ValueError):
                    self.errors["status"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)

    async def sample_rss(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.rss.append((time.time(), rss_mb(self.app.proc.pid)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=5.0)

    async def run(self) -> dict:
        args = self.duel_args()
        baseline = await self.duel(args, None)
        rss_idle = rss_mb(self.app.proc.pid)
        viewers = [StreamClient(self.app.url, "/?view=1") for _ in range(self.args.viewers)]
        for viewer in viewers:
            await viewer.open()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(self.poller(stop)) for _ in range(self.args.pollers)]
        tasks.append(asyncio.create_task(self.sample_rss(stop)))
        deadline = time.time() + 60 * self.args.minutes
        rss_first = None
        async with httpx.AsyncClient(base_url=self.app.url) as http:
            try:
                while time.time() < deadline:
                    self.epochs += await self.duel(args, http)
                    if rss_first is None:
                        rss_first = rss_mb(self.app.proc.pid)  # after the first loaded duel: warmed up
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                for viewer in viewers:
                    await viewer.close()
        rss_end = rss_mb(self.app.proc.pid)
        gif_dirs = list(self.tmp.glob("hrf-gifs-*"))
        gif_bytes, gif_files = folder_size(gif_dirs[0]) if gif_dirs else (0, 0)
        self.errors["viewers"] = sum(v.errors for v in viewers)
        mean = lambda values: sum(values) / len(values) if values else float("nan")  # noqa: E731
        latencies = sorted(self.status_latency)
        return {
            "minutes": self.args.minutes, "viewers": self.args.viewers, "pollers": self.args.pollers,
            "duels": self.duels, "gif_requests": self.gifs, "viewer_events": sum(v.events for v in viewers),
            "status_calls": len(latencies),
            "status_p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))] if latencies else None,
            "rss_mb": {"after_baseline": rss_idle, "after_first_loaded_duel": rss_first, "end": rss_end,
                       "growth": rss_end - (rss_first or rss_end), "max": max(r for _, r in self.rss)},
            "gif_folder": {"bytes": gif_bytes, "files": gif_files},
            "errors": self.errors, "epoch_seconds": {"idle_server": mean(baseline), "under_load": mean(self.epochs),
                                                     "ratio": mean(self.epochs) / mean(baseline)},
            "rss_samples": self.rss,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30, help="how long duels run back to back (default 30)")
    parser.add_argument("--viewers", type=int, default=50, help="light viewers on /live/stream (default 50)")
    parser.add_argument("--pollers", type=int, default=12, help="clients polling GET /status every second")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each half of a duel")
    parser.add_argument("--samples", type=int, default=16, help="samples per epoch")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=20, help="DDIM steps K")
    parser.add_argument("--eval-samples", type=int, default=16)
    parser.add_argument("--run-timeout", type=float, default=900, help="seconds one duel may take")
    parser.add_argument("--token", default="", help="presenter token, where the app wants one")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the app")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.viewers < 0 or args.pollers < 0:
        parser.error("--minutes must be > 0, --viewers and --pollers >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(QUIET_ENV)
    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt))
    work = Path(tempfile.mkdtemp(prefix="hrf-soak-"))
    (work / "runs").mkdir()
    (work / "tmp").mkdir()
    app = App(REPO_ROOT, args.python, free_port(), work / "runs", work / "app.log")
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(work / "tmp")  # the app's temporary folder (its GIFs), measured at the end
    try:
        app.start()
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
    try:
        result = asyncio.run(Soak(args, app, work / "tmp").run())
    finally:
        app.stop()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    rss, gif, errors, epochs = result["rss_mb"], result["gif_folder"], result["errors"], result["epoch_seconds"]
    print(f"{result['minutes']} min, {result['viewers']} viewers, {result['pollers']} /status pollers: "
          f"{result['duels']} duels, {result['gif_requests']} GIF requests, {result['status_calls']} /status calls "
          + (f"(p95 {result['status_p95_ms']:.0f} ms)" if result["status_p95_ms"] is not None else "")
          + f", {result['viewer_events']} viewer events")
    print(f"server RSS: {rss['after_first_loaded_duel']:.0f} MB after the first loaded duel -> {rss['end']:.0f} MB "
          f"at the end (growth {rss['growth']:+.1f} MB; target < {TARGET_RSS_MB:.0f}); max {rss['max']:.0f} MB")
    print(f"temporary GIF folder: {gif['files']} files, {gif['bytes'] / 1e6:.2f} MB")
    print(f"errors: {errors}")
    print(f"epoch time: {epochs['idle_server']:.2f} s idle server, {epochs['under_load']:.2f} s under load "
          f"(x{epochs['ratio']:.2f})")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if not any(errors.values()) and rss["growth"] < TARGET_RSS_MB else 1


if __name__ == "__main__":
    sys.exit(main())
