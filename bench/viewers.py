"""What viewers cost the server: CPU per viewer (idle and during training), epoch slowdown, update delay.

    python bench/viewers.py                                   # 0, 5 and 100 viewers against this repo's app
    python bench/viewers.py --app-dir /path/to/other/checkout --viewers 0 4 8 --json out.json
    python bench/viewers.py --pause-pgid 1234                 # SIGSTOP that process group while measuring

Method. The app (``<app-dir>/app.py``) runs as a subprocess with its own temporary run store, one torch
thread (``HRF_TORCH_THREADS=1``, ``OMP_NUM_THREADS=1``) and no outside requests. Server CPU is
utime + stime of the app process (all its threads, ``/proc/<pid>/stat``) read at the start and end of a
window, divided by the window's wall time (a fraction of one core). Viewer CPU (this process, the
Playwright driver and chromium) is read the same way and reported beside it, since both share the CPUs.

1. Baseline: a 1-epoch warm-up run (not reported), an idle window with no viewer (the idle server
   figure), then a short DDPO run on the embedded ``digits16`` with no viewer.
2. For each N in ``--viewers``: open N viewers; after ``--settle`` seconds an idle window of
   ``--idle-seconds``; then, with the viewers still open, the same DDPO run (``--epochs-light`` epochs
   above ``--tabs-max`` viewers, if given). Idle cost per viewer-second = (server CPU/s with N viewers
   - CPU/s with none) / N. During training the window runs from the epoch-0 row (the base model's
   evaluation) to the last row, and the training thread runs in the server process too, so two figures:
   the process difference as issue #12 defines it, (CPU/s with N - CPU/s with none) / N, which falls
   (even below zero) when viewers slow the training thread down; and the same difference over every
   thread but the training thread (/proc/<pid>/task: of the threads started since /start, the one with
   the most CPU by the epoch-0 row; its share is the process total less every other thread's).
   Viewers up to ``--tabs-max`` are real headless chromium tabs (each in its own browser context),
   larger N use light async clients (below); ``--light-check`` adds light clients at the tab N's too.
   The run is started through the app's own ``/start`` API (gradio_client), its arguments built from
   ``view_api()`` by parameter name, label or position (a ``token`` parameter gets ``--token``).
   Each idle window also counts the viewers' HTTP requests (and SSE events) per viewer-second.
3. The baseline (idle window and run) once more at the end (``--no-repeat-baseline`` skips it);
   the epoch-time reference is the mean of both baselines.
4. ``/status`` latency: ``--status-clients`` async clients, each calling it every
   ``--status-interval`` seconds (0: back to back) for ``--status-seconds``, once idle and once during
   a run; the first 2 s are not counted. Raw HTTP as gradio_client does it: ``POST /gradio_api/call/status``
   then the event's SSE ``GET /gradio_api/call/status/{event_id}``; also ``POST /gradio_api/run/status``
   (one request, when the app allows it) and ``GET /live/state`` (the new app's JSON route) where they
   answer.

Epoch time: the rows' ``seconds`` of epochs >= 1 (``<HRF_RUNS_DIR>/<run>/metrics.jsonl``).
Update delay: for every viewer and every epoch k >= 1, the first time the viewer showed epoch >= k
(for the run being measured) minus the time the epoch's row was written: the row's ``logged_at``
when it has one, else the file's mtime when this script saw the row appear (polled every 50 ms).

Viewers:

* Tab: a chromium page on ``--viewer-url`` (default ``/?view=1``, the new app's read-only viewer page,
  recognised by an element ``#hrf-live``; without one, ``/`` plus a click on the "Live" tab). An
  in-page poller (100 ms) records when the shown epoch changes: ``window.hrfLive.lastEpoch`` (with the run id of its
  first panel's main run) when the page sets it, else the "epoch i/N" text and run id of ``#live-status``.
  Where the app has both kinds
  of page, both are measured (``--tab-kinds``).
* Light client, old app (no ``/live/state``): what a tab's browser does over HTTP, from a recording of
  one: ``GET /``, the session heartbeat SSE (``GET /gradio_api/heartbeat/<session>``), the page-load
  tick, then the ``gr.Timer`` tick every second: ``POST /gradio_api/queue/join`` with the tick's
  ``fn_index`` / ``trigger_id`` (from ``/config``), then ``GET /gradio_api/queue/data`` until
  ``close_stream`` (sse_v3); the next tick waits for the last (``trigger_mode="always_last"``).
  Not emulated: the page's other load events (model/reward choices, x0 strip: one-off per page
  open, before the measurement windows), static assets, and rendering.
* Light client, new app (``GET /live/state`` answers 200): ``GET /?view=1`` once, then one SSE
  connection to ``GET /live/stream`` (reconnecting after 1 s like EventSource); every row in a message
  (``full``: every run's rows; ``rows``: the appended ones, by run id) counts as received when the
  message arrives. Not emulated: the page's assets (live.js, plotly), grid images, rendering, and
  whatever else its scripts fetch: compare with tabs at the same N (``--light-check``).

Targets (issue #12) are printed beside the results; ``--json`` writes every figure (per-epoch seconds,
busiest threads of each idle window, delays, pauses). The machine may be shared: ``--pause-pgid``
sends SIGSTOP to a process group for each measured stretch (baseline; per N: idle, then training;
status) and SIGCONT after it, after ``--max-pause`` seconds at most (the row is then marked), on
errors, on Ctrl-C and SIGTERM, and from a watchdog process if this one dies. Between stretches the
group runs for ``--resume-gap`` seconds. The temporary run store is deleted at the end unless
``--keep-runs`` (or a failure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from explorer.server import free_port  # noqa: E402  (the one free-port helper of the tests and benches)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
QUIET_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL = 0.05  # seconds between reads of metrics.jsonl

TARGETS = {
    "idle_server": "idle server <= 1% of a core",
    "idle_viewer": "<= 1 ms server CPU per idle viewer-second (100 viewers < 10% of a core)",
    "epoch_100": "DDPO epoch with 100 viewers <= 15% slower than with none",
    "delay": "every viewer sees a new epoch within 2 s",
    "status": "/status p95 <= 100 ms with 50 clients",
}

# the run every measurement uses (by /start parameter name; numbers in views.NUMBER_FIELDS order)
NUMBER_ORDER = ("epochs", "samples_per_epoch", "batch_size", "siblings", "num_steps", "lr", "clip_range",
                "adv_clip", "seed", "eval_every", "eval_samples")
LABELS = {"preset": "preset", "base model": "model", "reward": "reward", "method": "method",
          "epochs": "epochs", "samples per epoch": "samples_per_epoch", "batch": "batch_size",
          "siblings per image (b)": "siblings", "ddim steps k": "num_steps", "learning rate": "lr",
          "ppo clip range": "clip_range", "advantage clip": "adv_clip", "seed": "seed",
          "evaluate every (epochs)": "eval_every", "evaluation samples": "eval_samples"}

STATUS_RE = re.compile(r"epoch\s*(?:<b>)?\s*(\d+)\s*/\s*(\d+)")
RUN_ID_RE = re.compile(r"<code>([^<]+)</code>")

TAB_RECORDER = """() => {
  if (window.__benchLog) return;
  window.__benchLog = [];
  let last = null;
  const read = () => {
    let epoch = null, run = null;
    const live = window.hrfLive;
    if (live && live.lastEpoch !== undefined && live.lastEpoch !== null) {
      epoch = Number(live.lastEpoch);
      const panel = live.panels && live.panels[0];
      const main = panel && panel.state && panel.state.runs && panel.state.runs[0];
      run = live.runId || live.run_id || (main && main.run_id) || null;
    } else {
      const box = document.querySelector('#live-status') || document.querySelector('#hrf-live');
      const m = box && box.textContent.match(/epoch\\s*(\\d+)\\s*\\/\\s*\\d+/);
      if (m) epoch = Number(m[1]);
      const code = box && box.querySelector('code');
      if (code) run = code.textContent.trim();
    }
    const key = run + '|' + epoch;
    if (epoch !== null && !Number.isNaN(epoch) && key !== last) {
      last = key;
      window.__benchLog.push([Date.now() / 1000, epoch, run]);
    }
  };
  read();
  setInterval(read, 100);
}"""

WATCHDOG = """
import os, signal, sys, time
parent, pgid = int(sys.argv[1]), int(sys.argv[2])
while os.path.exists(f"/proc/{parent}"):
    time.sleep(0.5)
try:
    os.killpg(pgid, signal.SIGCONT)
except ProcessLookupError:
    pass
"""


# ----------------------------------------------------------------------------------------------- CPU
def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a live process; 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def parent_map() -> dict[int, int]:
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        parents[int(entry.name)] = int(text[text.rindex(")") + 2:].split()[1])
    return parents


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Per-thread CPU seconds of ``pid``: {tid: (thread name, seconds)}."""
    threads = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(f"/proc/{pid}/task"):
            try:
                text = Path(entry.path, "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text[text.rindex(")") + 2:].split()
            threads[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return threads


@dataclass
class CpuMark:
    """CPU seconds of the server and of the viewers' side (this process and its children) at one instant."""

    t: float
    server: float
    client: float


class CpuProbe:
    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def mark(self) -> CpuMark:
        parents = parent_map()
        server_side = descendants(self.server_pid, parents) | {self.server_pid}
        mine = {os.getpid()} | (descendants(os.getpid(), parents) - server_side)
        return CpuMark(time.time(), proc_cpu(self.server_pid), sum(proc_cpu(pid) for pid in mine))


def rate(a: CpuMark, b: CpuMark) -> dict[str, float]:
    """Server and client CPU between two marks, as fractions of one core."""
    wall = max(b.t - a.t, 1e-9)
    return {"wall_s": wall, "server": (b.server - a.server) / wall, "client": (b.client - a.client) / wall}


# ------------------------------------------------------------------------------------------ pausing
class PauseGuard:
    """SIGSTOP a process group for measured stretches; SIGCONT after each, whatever happens."""

    def __init__(self, pgid: int | None, max_seconds: float):
        self.pgid = pgid
        self.max_seconds = max_seconds
        self.watchdog: subprocess.Popen | None = None
        self.timer: threading.Timer | None = None
        self.log: list[dict] = []
        if pgid is None:
            return
        if pgid in (os.getpgid(0), 0, 1):
            raise SystemExit(f"--pause-pgid {pgid}: refusing to stop this script's own or a system process group")
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            raise SystemExit(f"--pause-pgid {pgid}: no such process group") from None
        self.watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(pgid)],
                                         start_new_session=True)

    def resume(self) -> None:
        if self.pgid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGCONT)

    @contextlib.contextmanager
    def stretch(self, name: str):
        """Pause the group for the ``with`` body; yields the stretch's log entry (``auto_resumed`` on overrun)."""
        if self.pgid is None:
            yield {"stretch": name}
            return
        started = time.time()
        entry = {"stretch": name, "auto_resumed": False}
        self.log.append(entry)

        def overrun():
            entry["auto_resumed"] = True
            print(f"[pause] {name}: over {self.max_seconds:.0f} s, resuming process group {self.pgid}", flush=True)
            self.resume()

        self.timer = threading.Timer(self.max_seconds, overrun)
        self.timer.daemon = True
        try:
            os.killpg(self.pgid, signal.SIGSTOP)
            self.timer.start()
            yield entry
        finally:
            self.timer.cancel()
            self.resume()
            entry["seconds"] = round(time.time() - started, 1)
            print(f"[pause] {name}: process group {self.pgid} stopped for {entry['seconds']} s, resumed", flush=True)

    def close(self) -> None:
        self.resume()
        if self.watchdog is not None and self.watchdog.poll() is None:
            self.watchdog.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.watchdog.wait(5)


# ----------------------------------------------------------------------------------------- the app
def _die_with_parent() -> None:
    """In the child: get SIGTERM when this script dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class App:
    def __init__(self, app_dir: Path, python: str, port: int, runs_dir: Path, log_path: Path):
        self.app_dir, self.python, self.port, self.runs_dir, self.log_path = app_dir, python, port, runs_dir, log_path
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.log_file = None

    def start(self, timeout: float = 240) -> None:
        env = dict(os.environ, **QUIET_ENV, GRADIO_SERVER_PORT=str(self.port), GRADIO_SERVER_NAME="127.0.0.1",
                   HRF_RUNS_DIR=str(self.runs_dir), HRF_TORCH_THREADS="1", OMP_NUM_THREADS="1")
        self.log_file = open(self.log_path, "w")  # closed in stop()
        self.proc = subprocess.Popen([self.python, "app.py"], cwd=self.app_dir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with code {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/", timeout=5).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the app did not answer GET / within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log_file is not None:
            self.log_file.close()


@dataclass
class AppInfo:
    """What the benchmark needs to know about the running app (read from /config and view_api)."""

    new_app: bool  # GET /live/state answers 200
    api_prefix: str
    start_params: list[dict]
    stop_params: list[dict] | None
    tick: dict | None  # the old app's gr.Timer tick: fn_index, trigger_id, inputs, load_fn_index


def inspect_app(url: str) -> AppInfo:
    from gradio_client import Client

    new_app = httpx.get(url + "/live/state", timeout=10).status_code == 200
    config = httpx.get(url + "/config", timeout=10).json()
    client = Client(url, verbose=False)
    try:
        api = client.view_api(return_format="dict", print_info=False)
    finally:
        client.close()
    named = api["named_endpoints"]
    if "/start" not in named:
        raise RuntimeError("the app has no /start API endpoint")
    tick = None
    for dep in config.get("dependencies", []):
        timer = [t for t in dep.get("targets", []) if t and len(t) > 1 and t[1] == "tick"]
        if timer:
            tick = {"fn_index": dep["id"], "trigger_id": timer[0][0], "inputs": len(dep.get("inputs", [])),
                    "outputs": dep.get("outputs", []), "load_fn_index": None}
            break
    if tick is not None:
        for dep in config["dependencies"]:
            if any(t and len(t) > 1 and t[1] == "load" for t in dep.get("targets", [])) \
                    and dep.get("outputs") == tick["outputs"]:
                tick["load_fn_index"] = dep["id"]
    return AppInfo(new_app=new_app, api_prefix=config.get("api_prefix", "/gradio_api"),
                   start_params=named["/start"]["parameters"], stop_params=(named.get("/stop") or {}).get("parameters"),
                   tick=tick)


def api_kwargs(params: list[dict], wanted: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for a gradio_client call: ``wanted`` matched by parameter name, label or position
    (the k-th unnamed ``param_N`` is the k-th of :data:`NUMBER_ORDER`); the parameter's default otherwise."""
    kwargs, unnamed = {}, 0
    for i, p in enumerate(params):
        name = p.get("parameter_name") or f"param_{i}"
        label = str(p.get("label") or "").strip().lower()
        key = name if name in wanted else LABELS.get(label)
        if re.fullmatch(r"param(eter)?_\d+", name):  # the numeric fields (*numbers): k-th is NUMBER_ORDER[k]
            if key is None and unnamed < len(NUMBER_ORDER):
                key = NUMBER_ORDER[unnamed]
            unnamed += 1
        if key in wanted:
            value = wanted[key]
            choices = (p.get("type") or {}).get("enum")
            if key == "preset" and choices and value not in choices:
                value = "custom" if "custom" in choices else p.get("parameter_default")
            kwargs[name] = value
        elif p.get("parameter_has_default"):
            kwargs[name] = p.get("parameter_default")
        else:
            kwargs[name] = None
    return kwargs


# ------------------------------------------------------------------------------------------ viewers
def add_seen(log: list, epoch: Any, run: Any) -> None:
    with contextlib.suppress(TypeError, ValueError):
        log.append((time.time(), int(epoch), str(run) if run else None))


class TabViewer:
    """A chromium page on the viewer URL, with the in-page epoch recorder."""

    kind = "tab"

    def __init__(self, browser, url: str, click_live: bool):
        self.browser, self.url, self.click_live = browser, url, click_live
        self.context = self.page = None
        self.log: list[tuple[float, int, str | None]] = []
        self.requests = 0  # HTTP requests the page made (EventSource connections count once)

    def _count(self, _request) -> None:
        self.requests += 1

    async def open(self) -> None:
        self.context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = await self.context.new_page()
        self.page.on("request", self._count)
        await self.page.goto(self.url, wait_until="load", timeout=120_000)
        if self.click_live:
            await click_live_tab(self.page)
        await self.page.evaluate(TAB_RECORDER)

    async def collect(self) -> None:
        with contextlib.suppress(Exception):
            rows = await self.page.evaluate("window.__benchLog || []")
            self.log = [(float(t), int(e), r) for t, e, r in rows]

    async def close(self) -> None:
        if self.context is not None:
            with contextlib.suppress(Exception):
                await self.context.close()


async def click_live_tab(page) -> None:
    tab = page.get_by_role("tab", name="Live")
    try:
        await tab.first.click(timeout=60_000)
    except Exception:  # noqa: BLE001 - older markup: a plain button
        await page.locator("button", has_text="Live").first.click(timeout=30_000)
    await page.wait_for_selector("#live-status, #hrf-live", timeout=30_000)


def iter_sse(lines):
    """(event, data) pairs from an async iterator of SSE lines."""

    async def gen():
        event, data = "message", []
        async for line in lines:
            if line == "":
                if data:
                    yield event, "\n".join(data)
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            yield event, "\n".join(data)

    return gen()


class TickClient:
    """Light client for the old app: the HTTP a tab does (heartbeat, load tick, gr.Timer tick every 1 s)."""

    kind = "light"

    def __init__(self, url: str, page_path: str, prefix: str, tick: dict, period: float = 1.0):
        self.url, self.page_path, self.prefix, self.tick, self.period = url, page_path, prefix, tick, period
        self.session = secrets.token_hex(5)
        self.http: httpx.AsyncClient | None = None
        self.tasks: list[asyncio.Task] = []
        self.log: list[tuple[float, int, str | None]] = []
        self.errors = 0
        self.requests = 0

    async def open(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(60, read=120),
                                      limits=httpx.Limits(max_connections=6))
        (await self.http.get(self.page_path)).raise_for_status()
        self.tasks = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._ticks())]

    async def _heartbeat(self) -> None:
        while True:
            try:
                self.requests += 1
                async with self.http.stream("GET", f"{self.prefix}/heartbeat/{self.session}") as response:
                    async for _ in response.aiter_lines():
                        pass
            except httpx.HTTPError:
                self.errors += 1
            await asyncio.sleep(1)

    async def _event(self, fn_index: int, trigger_id: int | None, load: bool) -> None:
        body: dict[str, Any] = {"data": [None] * self.tick["inputs"]}
        if load:
            body["event_data"] = None
        body.update(fn_index=fn_index, trigger_id=trigger_id, session_hash=self.session)
        self.requests += 2  # the join and its data stream
        response = await self.http.post(f"{self.prefix}/queue/join?", json=body)
        response.raise_for_status()
        event_id = response.json().get("event_id")
        async with self.http.stream("GET", f"{self.prefix}/queue/data",
                                    params={"session_hash": self.session}) as stream:
            async for _, data in iter_sse(stream.aiter_lines()):
                message = json.loads(data)
                kind = message.get("msg")
                if kind == "process_completed" and message.get("event_id") == event_id:
                    self._outputs(((message.get("output") or {}).get("data")) or [])
                elif kind in ("close_stream", "unexpected_error"):
                    break

    def _outputs(self, outputs: list) -> None:
        for value in outputs[:2]:
            if isinstance(value, str):
                match = STATUS_RE.search(value)
                if match:
                    run = RUN_ID_RE.search(value)
                    add_seen(self.log, match.group(1), run.group(1) if run else None)
                    return

    async def _ticks(self) -> None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if self.tick.get("load_fn_index") is not None:
                await self._event(self.tick["load_fn_index"], 0, load=True)
        following = time.monotonic()
        while True:
            following += self.period
            try:
                await self._event(self.tick["fn_index"], self.tick["trigger_id"], load=False)
            except (httpx.HTTPError, ValueError):
                self.errors += 1
            # setInterval keeps its 1 s beat; a tick still running when the next is due delays it (always_last)
            now = time.monotonic()
            if now < following:
                await asyncio.sleep(following - now)
            else:
                following = now

    async def collect(self) -> None:
        pass

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()


def rows_in(message: Any) -> list[tuple[Any, dict]]:
    """(run id, row) for every metric row a /live/stream message carries.

    The new app's messages (explorer.livefeed): ``{"kind": "full", "runs": [{"run_id", "rows": [...]}, ...]}``
    and ``{"kind": "rows", "append": {run_id: [rows]}}``; also a plain ``{"run_id", "rows": [...]}``.
    """
    if not isinstance(message, dict):
        return []
    found = [(message.get("run_id"), row) for row in message.get("rows") or [] if isinstance(row, dict)]
    for run in message.get("runs") or []:
        if isinstance(run, dict):
            found += [(run.get("run_id"), row) for row in run.get("rows") or [] if isinstance(row, dict)]
    append = message.get("append")
    if isinstance(append, dict):
        for run_id, rows in append.items():
            found += [(run_id, row) for row in rows or [] if isinstance(row, dict)]
    return found


class StreamClient:
    """Light client for the new app: GET the viewer page once, then hold the /live/stream SSE connection."""

    kind = "light"

    def __init__(self, url: str, page_path: str):
        self.url, self.page_path = url, page_path
        self.http: httpx.AsyncClient | None = None
        self.task: asyncio.Task | None = None
        self.log: list[tuple[float, int, str | None]] = []
        self.errors = 0
        self.events = 0
        self.requests = 0

    async def open(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(60, read=None))
        (await self.http.get(self.page_path)).raise_for_status()
        self.task = asyncio.create_task(self._stream())

    async def _stream(self) -> None:
        while True:
            try:
                self.requests += 1
                async with self.http.stream("GET", "/live/stream", headers={"Accept": "text/event-stream"}) as r:
                    r.raise_for_status()
                    async for _, data in iter_sse(r.aiter_lines()):
                        self.events += 1
                        with contextlib.suppress(ValueError):
                            for run, row in rows_in(json.loads(data)):
                                if "epoch" in row:
                                    add_seen(self.log, row["epoch"], row.get("run_id") or run)
            except httpx.HTTPError:
                self.errors += 1
            await asyncio.sleep(1)

    async def collect(self) -> None:
        pass

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()


# ------------------------------------------------------------------------------------- measurements
def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass
class Bench:
    """The viewer benchmark's measurements over one served app (about 390 lines: one method per measured
    scenario, each sharing the app, the CPU probe and the results, as the README's table reads them)."""

    args: argparse.Namespace
    app: App
    info: AppInfo
    probe: CpuProbe
    guard: PauseGuard
    results: dict = field(default_factory=dict)

    # -- idle ----------------------------------------------------------------------------------------
    async def quiesce(self, limit: float = 60, threshold: float = 0.05) -> None:
        """Wait (at most ``limit`` s) until the server's CPU over 2 s is under ``threshold`` of a core or steady
        (within 2 points of the 2 s before: the old app never goes under 5%)."""
        deadline, before = time.time() + limit, None
        while time.time() < deadline:
            a = self.probe.mark()
            await asyncio.sleep(2)
            now = rate(a, self.probe.mark())["server"]
            if now < threshold or (before is not None and abs(now - before) < 0.02):
                return
            before = now

    async def idle_window(self, viewers: list = ()) -> dict:
        def counts():
            return (sum(getattr(v, "requests", 0) for v in viewers), sum(getattr(v, "events", 0) for v in viewers))

        a, threads_a, counts_a = self.probe.mark(), thread_cpu(self.app.proc.pid), counts()
        await asyncio.sleep(self.args.idle_seconds)
        b, threads_b, counts_b = self.probe.mark(), thread_cpu(self.app.proc.pid), counts()
        result = rate(a, b)
        if viewers:
            result["requests_per_viewer_s"] = (counts_b[0] - counts_a[0]) / len(viewers) / result["wall_s"]
            result["events_per_viewer_s"] = (counts_b[1] - counts_a[1]) / len(viewers) / result["wall_s"]
        busy = []
        for tid, (name, seconds) in threads_b.items():
            used = seconds - threads_a.get(tid, (name, 0.0))[1]
            if used > 0:
                busy.append({"tid": tid, "name": name, "ms_per_s": round(1000 * used / result["wall_s"], 2)})
        result["threads"] = sorted(busy, key=lambda t: -t["ms_per_s"])[:8]
        return result

    # -- training ------------------------------------------------------------------------------------
    def start_kwargs(self, epochs: int) -> dict:
        a = self.args
        wanted = {"preset": "digits-ddpo", "model": "digits16", "reward": "jpeg-compressibility", "method": "ddpo",
                  "window": f"0:{a.num_steps}", "epochs": epochs, "samples_per_epoch": a.samples,
                  "batch_size": a.batch, "siblings": 4, "num_steps": a.num_steps, "lr": 3e-4, "clip_range": 1e-4,
                  "adv_clip": 5.0, "seed": 0, "eval_every": 1, "eval_samples": a.eval_samples, "token": a.token}
        return api_kwargs(self.info.start_params, wanted)

    def _call(self, api_name: str, kwargs: dict) -> Any:
        from gradio_client import Client

        client = Client(self.app.url, verbose=False)
        try:
            return client.predict(api_name=api_name, **kwargs)
        finally:
            client.close()

    async def start_run(self, epochs: int) -> tuple[Path, float]:
        before = {p.name for p in self.app.runs_dir.iterdir()}
        started = time.time()
        result = await asyncio.to_thread(self._call, "/start", self.start_kwargs(epochs))
        deadline = time.time() + 60
        while time.time() < deadline:
            new = [p for p in self.app.runs_dir.iterdir() if p.name not in before and (p / "config.json").exists()]
            if new:
                return new[0], started
            await asyncio.sleep(0.1)
        raise RuntimeError(f"/start made no run: {str(result)[:300]}")

    async def stop_run(self) -> None:
        if self.info.stop_params is not None:
            await asyncio.to_thread(self._call, "/stop", api_kwargs(self.info.stop_params, {"token": self.args.token}))

    async def watch_run(self, run_dir: Path, epochs: int, timeout: float) -> tuple[list[dict], list[float], list]:
        """Poll metrics.jsonl until the run ends: rows, when each was written, CPU marks (process, threads)."""
        path, rows, written, marks = run_dir / "metrics.jsonl", [], [], []
        deadline = time.time() + timeout
        while time.time() < deadline:
            with contextlib.suppress(FileNotFoundError):
                lines = path.read_text().splitlines()
                mtime = path.stat().st_mtime
                if len(lines) > len(rows):
                    mark = (self.probe.mark(), thread_cpu(self.app.proc.pid))
                    for line in lines[len(rows):]:
                        row = json.loads(line)
                        rows.append(row)
                        written.append(float(row.get("logged_at") or mtime))
                        marks.append(mark)
            state = ""
            with contextlib.suppress(FileNotFoundError, ValueError):
                state = json.loads((run_dir / "status.json").read_text()).get("state", "")
            if state in ("done", "stopped", "failed") or len(rows) > epochs:
                if state == "failed":
                    raise RuntimeError(f"run {run_dir.name} failed: see {self.app.log_path}")
                if len(rows) > epochs:
                    return rows, written, marks
            await asyncio.sleep(POLL)
        raise RuntimeError(f"run {run_dir.name} did not finish within {timeout:.0f} s")

    async def training_run(self, viewers: list, epochs: int) -> dict:
        threads_before = set(thread_cpu(self.app.proc.pid))
        run_dir, started = await self.start_run(epochs)
        rows, written, marks = await self.watch_run(run_dir, epochs, timeout=self.args.run_timeout)
        (first, threads_a), (last, threads_b) = marks[0], marks[-1]
        result = rate(first, last)  # from the base model's row (training starts) to the last row
        # The training thread: of the threads started since /start, the one that had used the most CPU by the
        # epoch-0 row (it loaded the model and evaluated it). It may have ended by the last mark, so its share
        # is the process's CPU less every other thread's (the process total keeps the CPU of ended threads).
        new = {tid: seconds for tid, (_, seconds) in threads_a.items() if tid not in threads_before}
        trainer = max(new, key=new.get) if new else None
        others = sum(seconds - threads_a.get(tid, ("", 0.0))[1] for tid, (_, seconds) in threads_b.items()
                     if tid != trainer)
        trained = sum(1 for r in rows if r.get("epoch", 0) >= 1)
        training = (last.server - first.server) - others
        result.update(train_thread=training / result["wall_s"], other_threads=others / result["wall_s"],
                      train_thread_cpu_per_epoch_s=training / max(1, trained))
        result.update(run_id=run_dir.name, epoch_seconds=[round(r["seconds"], 3) for r in rows
                                                          if r.get("epoch", 0) >= 1 and "seconds" in r],
                      logged_at_field=all("logged_at" in r for r in rows))
        result["epoch_mean_s"] = sum(result["epoch_seconds"]) / max(1, len(result["epoch_seconds"]))
        if viewers:
            result["delays"] = await self.delays(viewers, rows, written, run_dir.name, started)
        return result

    async def delays(self, viewers, rows, written, run_id, started) -> dict:
        targets = [(int(r["epoch"]), t) for r, t in zip(rows, written, strict=True) if int(r.get("epoch", 0)) >= 1]
        last_epoch = max(e for e, _ in targets)
        deadline = time.time() + self.args.delay_wait
        while True:  # give every viewer time to show the last epoch
            await asyncio.gather(*(v.collect() for v in viewers))
            if time.time() > deadline or all(any(e >= last_epoch and t >= written[-1] - 0.002 for t, e, _ in v.log)
                                              for v in viewers):
                break
            await asyncio.sleep(0.25)
        values, missed = [], 0
        for viewer in viewers:
            log = [(t, e) for t, e, r in viewer.log if t >= started and (r is None or r == run_id)]
            for epoch, logged in targets:
                seen = [t for t, e in log if e >= epoch and t >= logged - 0.002]
                if seen:
                    values.append(max(0.0, min(seen) - logged))
                else:
                    missed += 1
        return {"n": len(values), "missed": missed, "p50": percentile(values, 50), "p95": percentile(values, 95),
                "max": max(values) if values else None}

    # -- viewers -------------------------------------------------------------------------------------
    async def open_viewers(self, kind: str, n: int, browser) -> list:
        a = self.args
        if kind == "light":
            if self.info.new_app:
                viewers = [StreamClient(self.app.url, a.viewer_url) for _ in range(n)]
            else:
                viewers = [TickClient(self.app.url, "/", self.info.api_prefix, self.info.tick) for _ in range(n)]
        else:
            path, click = ("/", True) if kind == "tab-full" else (a.viewer_url, False)
            viewers = [TabViewer(browser, self.app.url + path, click) for _ in range(n)]
        try:
            for viewer in viewers:  # one at a time, as visitors arrive
                await viewer.open()
        except BaseException:
            await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
            raise
        return viewers

    async def detect_tab_kinds(self, browser) -> list[str]:
        """tab-view: the viewer URL shows #hrf-live; tab-full: "/" plus the Live tab (always there)."""
        if self.args.tab_kinds:
            return self.args.tab_kinds
        if not self.info.new_app:
            return ["tab-full"]
        context = await browser.new_context()
        try:
            page = await context.new_page()
            await page.goto(self.app.url + self.args.viewer_url, wait_until="load", timeout=120_000)
            await page.wait_for_selector("#hrf-live", timeout=30_000)
            return ["tab-view", "tab-full"]
        except Exception:  # noqa: BLE001 - no viewer page: the full page only
            return ["tab-full"]
        finally:
            await context.close()

    # -- /status -------------------------------------------------------------------------------------
    async def status_modes(self) -> list[str]:
        modes = ["call"]
        async with httpx.AsyncClient(base_url=self.app.url, timeout=30) as http:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = await http.post(f"{self.info.api_prefix}/run/status", json={"data": []})
                if r.status_code == 200 and "data" in r.json():
                    modes.append("run")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/live/state")).status_code == 200:
                    modes.append("live-state")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = await http.get("/status")
                if r.status_code == 200 and "state" in r.json():
                    modes.append("get-status")
        return modes

    async def status_load(self, mode: str, clients: int, seconds: float, interval: float) -> dict:
        prefix = self.info.api_prefix
        latencies: list[float] = []
        errors = 0
        begin = time.monotonic()
        counted_from, deadline = begin + 2.0, begin + 2.0 + seconds

        async def one(http: httpx.AsyncClient) -> None:
            if mode == "call":
                r = await http.post(f"{prefix}/call/status", json={"data": []})
                r.raise_for_status()
                event_id = r.json()["event_id"]
                async with http.stream("GET", f"{prefix}/call/status/{event_id}") as stream:
                    async for event, _ in iter_sse(stream.aiter_lines()):
                        if event == "complete":
                            return
                        if event == "error":
                            raise ValueError("error event")
                raise ValueError("stream ended without a result")
            if mode == "run":
                r = await http.post(f"{prefix}/run/status", json={"data": []})
            elif mode == "get-status":
                r = await http.get("/status")
            else:
                r = await http.get("/live/state")
            r.raise_for_status()
            r.json()

        async def client(index: int) -> None:
            nonlocal errors
            async with httpx.AsyncClient(base_url=self.app.url, timeout=30) as http:
                if interval:
                    await asyncio.sleep(interval * index / clients)  # spread the clients over one period
                while time.monotonic() < deadline:
                    t0 = time.monotonic()
                    try:
                        await one(http)
                        if t0 >= counted_from:
                            latencies.append(time.monotonic() - t0)
                    except (httpx.HTTPError, ValueError, KeyError):
                        errors += 1
                    if interval:
                        await asyncio.sleep(max(0.0, t0 + interval - time.monotonic()))

        a = self.probe.mark()
        await asyncio.gather(*(client(i) for i in range(clients)))
        cpu = rate(a, self.probe.mark())
        return {"mode": mode, "clients": clients, "interval_s": interval, "calls": len(latencies),
                "calls_per_s": len(latencies) / seconds, "errors": errors,
                "p50_ms": 1000 * (percentile(latencies, 50) or math.nan),
                "p95_ms": 1000 * (percentile(latencies, 95) or math.nan),
                "max_ms": 1000 * max(latencies) if latencies else math.nan,
                "server_cpu": cpu["server"], "client_cpu": cpu["client"]}

    async def wait_epoch0(self, run_dir: Path, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if (run_dir / "metrics.jsonl").read_text().strip():
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError("the status run made no epoch-0 row")

    async def wait_ended(self, run_dir: Path, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if json.loads((run_dir / "status.json").read_text()).get("state") in ("done", "stopped", "failed"):
                    return
            await asyncio.sleep(0.2)

    # -- the whole benchmark -------------------------------------------------------------------------
    async def run(self) -> dict:
        a, r = self.args, self.results
        r["phases"] = []
        with self.guard.stretch("baseline"):
            await self.quiesce()
            if a.warmup:
                print("warm-up run (1 epoch, not reported)", flush=True)
                await self.training_run([], 1)
            await self.quiesce()
            print(f"idle window, no viewer ({a.idle_seconds:.0f} s)", flush=True)
            r["idle0"] = [await self.idle_window()]
            print(f"training, no viewer ({a.epochs} epochs)", flush=True)
            r["train0"] = [await self.training_run([], a.epochs)]
        print(f"  idle {100 * r['idle0'][0]['server']:.2f}% of a core; "
              f"epoch {r['train0'][0]['epoch_mean_s']:.2f} s", flush=True)

        browser_cm = pw = None
        try:
            phases: list[tuple[str, int]] = []
            tab_kinds: list[str] = []
            if any(0 < n <= a.tabs_max for n in a.viewers):
                from playwright.async_api import async_playwright

                browser_cm = async_playwright()
                pw = await browser_cm.__aenter__()
                probe_browser = await pw.chromium.launch(executable_path=a.chromium, args=CHROMIUM_ARGS)
                tab_kinds = await self.detect_tab_kinds(probe_browser)
                await probe_browser.close()
            for n in a.viewers:
                if n <= 0:
                    continue
                if n <= a.tabs_max:
                    phases += [(kind, n) for kind in tab_kinds]
                    if a.light_check and (self.info.new_app or self.info.tick):
                        phases.append(("light", n))
                elif self.info.new_app or self.info.tick:
                    phases.append(("light", n))
                else:
                    print(f"skipping N={n}: no light client for this app", flush=True)
            for kind, n in phases:
                await asyncio.sleep(a.resume_gap)  # let a paused process group run between stretches
                try:
                    r["phases"].append(await self.phase(kind, n, pw))
                except Exception as error:  # noqa: BLE001 - one failed phase must not lose the others
                    print(f"{kind} x{n} failed: {type(error).__name__}: {error}", flush=True)
                    failure = {"kind": kind, "n": n, "error": f"{type(error).__name__}: {error}"}
                    r.setdefault("failed", []).append(failure)
        finally:
            if browser_cm is not None:
                await browser_cm.__aexit__(None, None, None)

        if a.repeat_baseline:
            await asyncio.sleep(a.resume_gap)
            with self.guard.stretch("baseline again"):
                await self.quiesce()
                print(f"idle window, no viewer, again ({a.idle_seconds:.0f} s)", flush=True)
                r["idle0"].append(await self.idle_window())
                print(f"training, no viewer, again ({a.epochs} epochs)", flush=True)
                r["train0"].append(await self.training_run([], a.epochs))

        if a.status_clients > 0:
            await asyncio.sleep(a.resume_gap)
            r["status"] = []
            with self.guard.stretch("status"):
                await self.quiesce()
                modes = await self.status_modes()
                for mode in modes:
                    print(f"/status load: {mode}, {a.status_clients} clients, idle", flush=True)
                    entry = await self.status_load(mode, a.status_clients, a.status_seconds, a.status_interval)
                    r["status"].append({"condition": "idle", **entry})
                    await self.quiesce(limit=20)
                if a.status_training:
                    run_dir, _ = await self.start_run(1000)
                    try:
                        await self.wait_epoch0(run_dir)
                        for mode in modes:
                            print(f"/status load: {mode}, {a.status_clients} clients, during training", flush=True)
                            entry = await self.status_load(mode, a.status_clients, a.status_seconds,
                                                           a.status_interval)
                            r["status"].append({"condition": "training", **entry})
                    finally:
                        await self.stop_run()
                        await self.wait_ended(run_dir)
        return r

    async def phase(self, kind: str, n: int, pw) -> dict:
        """N viewers: open them and measure idle (one paused stretch), then a run with them (another)."""
        a = self.args
        epochs = a.epochs if n <= a.tabs_max or a.epochs_light is None else a.epochs_light
        browser = None
        viewers: list = []
        try:
            with self.guard.stretch(f"{kind} x{n} idle") as pause_idle:
                if kind.startswith("tab"):
                    browser = await pw.chromium.launch(executable_path=a.chromium, args=CHROMIUM_ARGS)
                print(f"{kind} x{n}: opening", flush=True)
                opened = time.time()
                viewers = await self.open_viewers(kind, n, browser)
                open_s = time.time() - opened
                await asyncio.sleep(a.settle)
                print(f"{kind} x{n}: idle window ({a.idle_seconds:.0f} s)", flush=True)
                idle = await self.idle_window(viewers)
            await asyncio.sleep(a.resume_gap if self.guard.pgid is not None else 0)
            with self.guard.stretch(f"{kind} x{n} training") as pause_train:
                await asyncio.sleep(a.settle if self.guard.pgid is not None else 0)
                print(f"{kind} x{n}: training ({epochs} epochs)", flush=True)
                train = await self.training_run(viewers, epochs)
            errors = sum(getattr(v, "errors", 0) for v in viewers)
        finally:
            await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
            if browser is not None:
                with contextlib.suppress(Exception):
                    await browser.close()
        await asyncio.sleep(2)
        overrun = [e["stretch"] for e in (pause_idle, pause_train) if e.get("auto_resumed")]
        result = {"kind": kind, "n": n, "epochs": epochs, "open_s": round(open_s, 1), "idle": idle, "train": train,
                  "client_errors": errors, "pause_overrun": overrun}
        d = train.get("delays") or {}
        print(f"  idle {100 * idle['server']:.2f}% of a core, epoch {train['epoch_mean_s']:.2f} s, "
              f"delay max {d.get('max')}", flush=True)
        return result


# ------------------------------------------------------------------------------------------ report
def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summarise(r: dict) -> dict:
    """Per-viewer figures from the raw windows (added to the results in place) and the target checks."""
    idle0 = mean([w["server"] for w in r["idle0"]])
    train0 = mean([w["server"] for w in r["train0"]])
    other0 = mean([w["other_threads"] for w in r["train0"]])
    epoch0 = mean([w["epoch_mean_s"] for w in r["train0"]])
    r["summary"] = {"idle0_server": idle0, "train0_server": train0, "train0_other_threads": other0, "epoch0_s": epoch0}
    for p in r["phases"]:
        n = p["n"]
        p["idle_ms_per_viewer_s"] = 1000 * (p["idle"]["server"] - idle0) / n
        # as issue #12 defines it: falls (even below 0) when viewers slow the training thread down
        p["train_ms_per_viewer_s"] = 1000 * (p["train"]["server"] - train0) / n
        # every thread but the training thread: the web server's own work
        p["train_other_ms_per_viewer_s"] = 1000 * (p["train"]["other_threads"] - other0) / n
        p["epoch_slowdown"] = p["train"]["epoch_mean_s"] / epoch0 - 1
    checks = [(TARGETS["idle_server"], f"{100 * idle0:.2f}% of a core", idle0 <= 0.01)]
    for p in r["phases"]:
        checks.append((TARGETS["idle_viewer"], f"{p['idle_ms_per_viewer_s']:.2f} ms ({p['kind']} x{p['n']})",
                       p["idle_ms_per_viewer_s"] <= 1.0))
    hundred = [p for p in r["phases"] if p["n"] >= 100]
    for p in hundred:
        checks.append((TARGETS["epoch_100"], f"{100 * p['epoch_slowdown']:+.1f}% ({p['kind']} x{p['n']})",
                       p["epoch_slowdown"] <= 0.15))
    if not hundred:
        checks.append((TARGETS["epoch_100"], "not measured (no N >= 100)", None))
    for p in r["phases"]:
        d = p["train"].get("delays") or {}
        if d.get("max") is not None:
            checks.append((TARGETS["delay"], f"max {d['max']:.2f} s, {d['missed']} missed ({p['kind']} x{p['n']})",
                           d["max"] <= 2.0 and d["missed"] == 0))
    for e in r.get("status", []):
        checks.append((TARGETS["status"], f"p95 {fmt(e['p95_ms'], '.0f')} ms ({e['mode']}, {e['condition']}, "
                       f"{e['clients']} clients)", e["p95_ms"] <= 100))
    r["checks"] = [{"target": t, "measured": m, "ok": ok} for t, m, ok in checks]
    return r


def fmt(value: Any, spec: str = ".2f", none: str = "–") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return none
    return format(value, spec)


def pct(value: float | None, digits: int = 1) -> str:
    return fmt(None if value is None else 100 * value, f".{digits}f")


def markdown(r: dict) -> str:
    s = r["summary"]
    baselines = list(zip(r["idle0"], r["train0"], strict=False))
    lines = ["Idle (no run going; the last run's results on screen):", "",
             "| viewers | kind | server CPU (% core) | ms server CPU / viewer-s | requests (SSE events) / viewer-s "
             "| viewer-side CPU (% core) |", "|---|---|---|---|---|---|"]
    for w, _ in baselines:
        lines.append(f"| 0 | – | {pct(w['server'], 2)} | – | – | {pct(w['client'])} |")
    for p in r["phases"]:
        i = p["idle"]
        lines.append(f"| {p['n']} | {p['kind']} | {pct(i['server'], 2)} | {p['idle_ms_per_viewer_s']:.2f} "
                     f"| {fmt(i.get('requests_per_viewer_s'))} ({fmt(i.get('events_per_viewer_s'))}) "
                     f"| {pct(i['client'])} |")
    args = r["meta"]["args"]
    light = f"; {args['epochs_light']} above {args['tabs_max']} viewers" if args.get("epochs_light") else ""
    lines += ["", f"During a DDPO run ({args['epochs']} epochs{light}; CPU from the epoch-0 row to the last):",
              "", "| viewers | kind | epoch s (mean) | vs 0 viewers | server CPU (% core): all / training thread / "
              "other threads | ms server CPU / viewer-s: process Δ / other threads Δ | delay p50 / p95 / max (s) "
              "| viewer-side CPU (% core) |", "|---|---|---|---|---|---|---|---|"]
    for _, t in baselines:
        lines.append(f"| 0 | – | {t['epoch_mean_s']:.2f} | – | {pct(t['server'])} / {pct(t['train_thread'])} / "
                     f"{pct(t['other_threads'])} | – | – | {pct(t['client'])} |")
    for p in r["phases"]:
        t = p["train"]
        d = t.get("delays") or {}
        delay = f"{fmt(d.get('p50'))} / {fmt(d.get('p95'))} / {fmt(d.get('max'))}"
        if d.get("missed"):
            delay += f" ({d['missed']} missed)"
        flag = " (!)" if p.get("pause_overrun") else ""
        lines.append(f"| {p['n']} | {p['kind']}{flag} | {t['epoch_mean_s']:.2f} | {100 * p['epoch_slowdown']:+.1f}% "
                     f"| {pct(t['server'])} / {pct(t['train_thread'])} / {pct(t['other_threads'])} "
                     f"| {p['train_ms_per_viewer_s']:.2f} / {p['train_other_ms_per_viewer_s']:.2f} | {delay} "
                     f"| {pct(t['client'])} |")
    lines += ["", f"Baseline (mean of {len(baselines)}): idle server {pct(s['idle0_server'], 2)}% of a core; "
              f"during training {pct(s['train0_server'])}% ({pct(s['train0_other_threads'])}% outside the training "
              f"thread); epoch {s['epoch0_s']:.2f} s."]
    if r.get("status"):
        lines += ["", "| /status | condition | clients | every (s) | calls/s | p50 ms | p95 ms | max ms | errors "
                  "| server CPU (% core) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for e in r["status"]:
            lines.append(f"| {e['mode']} | {e['condition']} | {e['clients']} | {e['interval_s']:g} "
                         f"| {e['calls_per_s']:.1f} | {fmt(e['p50_ms'], '.1f')} | {fmt(e['p95_ms'], '.1f')} "
                         f"| {fmt(e['max_ms'], '.1f')} | {e['errors']} | {pct(e['server_cpu'])} |")
    if any(p.get("pause_overrun") for p in r["phases"]):
        lines.append("\n(!) a paused stretch ran past --max-pause: the paused group ran during part of it.")
    for f in r.get("failed", []):
        lines.append(f"\nNot measured: {f['kind']} x{f['n']}: {f['error']}")
    lines += ["", "| target (issue #12) | measured | met |", "|---|---|---|"]
    for c in r["checks"]:
        lines.append(f"| {c['target']} | {c['measured']} | {'–' if c['ok'] is None else 'yes' if c['ok'] else 'NO'} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app-dir", type=Path, default=REPO_ROOT, help="directory holding app.py (default: this repo)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the app")
    parser.add_argument("--port", type=int, default=0, help="app port (default: a free one)")
    parser.add_argument("--viewers", type=int, nargs="+", default=[0, 5, 100], help="numbers of viewers")
    parser.add_argument("--tabs-max", type=int, default=8, help="chromium tabs up to this N, light clients above")
    parser.add_argument("--light-check", action="store_true",
                        help="also measure light clients at the N that use tabs (checks the emulation)")
    parser.add_argument("--tab-kinds", nargs="+", choices=["tab-view", "tab-full"],
                        help="tab pages to measure (default: every kind the app has)")
    parser.add_argument("--viewer-url", default="/?view=1", help="the viewer page (path)")
    parser.add_argument("--idle-seconds", type=float, default=30, help="length of each idle window")
    parser.add_argument("--settle", type=float, default=10, help="seconds between opening viewers and measuring")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each measured DDPO run")
    parser.add_argument("--epochs-light", type=int,
                        help="epochs of the runs with more than --tabs-max viewers (default: --epochs)")
    parser.add_argument("--samples", type=int, default=32, help="samples per epoch")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=40, help="DDIM steps K")
    parser.add_argument("--eval-samples", type=int, default=64)
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the 1-epoch warm-up run")
    parser.add_argument("--no-repeat-baseline", dest="repeat_baseline", action="store_false",
                        help="measure the no-viewer baseline once, not before and after")
    parser.add_argument("--run-timeout", type=float, default=900, help="seconds a measured run may take")
    parser.add_argument("--delay-wait", type=float, default=10,
                        help="seconds to wait after a run for viewers to show its last epoch")
    parser.add_argument("--status-clients", type=int, default=50, help="/status clients (0: skip)")
    parser.add_argument("--status-seconds", type=float, default=20)
    parser.add_argument("--status-interval", type=float, default=1.0,
                        help="seconds between one client's calls (0: back to back)")
    parser.add_argument("--no-status-training", dest="status_training", action="store_false",
                        help="measure /status only idle, not during a run too")
    parser.add_argument("--token", default="", help="presenter token for /start and /stop where the app wants one")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--pause-pgid", type=int, help="process group to SIGSTOP during measured stretches")
    parser.add_argument("--max-pause", type=float, default=540, help="longest paused stretch (s)")
    parser.add_argument("--resume-gap", type=float, default=5, help="seconds between paused stretches")
    parser.add_argument("--keep-runs", action="store_true",
                        help="keep the temporary run store and the app's log (kept anyway after a failure)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if not (args.app_dir / "app.py").is_file():
        parser.error(f"--app-dir {args.app_dir}: no app.py there")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.update(QUIET_ENV)

    def terminate(signum, frame):  # SIGTERM unwinds like Ctrl-C, so every finally (SIGCONT) runs
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    guard = PauseGuard(args.pause_pgid, args.max_pause)
    work = Path(tempfile.mkdtemp(prefix="hrf-bench-viewers-"))
    runs_dir = work / "runs"
    runs_dir.mkdir()
    app = App(args.app_dir.resolve(), args.python, args.port or free_port(), runs_dir, work / "app.log")
    started, finished = time.time(), False
    try:
        print(f"starting {app.app_dir}/app.py on {app.url} (log {app.log_path})", flush=True)
        app.start()
        info = inspect_app(app.url)
        print(f"app: {'new (/live/state)' if info.new_app else 'old (gr.Timer tick)'}; /start takes "
              f"{[p.get('parameter_name') for p in info.start_params]}", flush=True)
        bench = Bench(args, app, info, CpuProbe(app.proc.pid), guard)
        results = asyncio.run(bench.run())
        finished = True
    finally:
        guard.close()
        app.stop()
        if finished and not args.keep_runs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"runs and the app's log kept in {work}", flush=True)
    results = summarise(results)
    results["meta"] = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "app_dir": str(app.app_dir),
                       "new_app": info.new_app, "cpus": os.cpu_count(), "started": time.strftime(
                           "%Y-%m-%d %H:%M:%S", time.localtime(started)), "minutes": (time.time() - started) / 60,
                       "start_kwargs": bench.start_kwargs(args.epochs), "pauses": guard.log,
                       "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    table = markdown(results)
    print()
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
