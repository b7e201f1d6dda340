"""HRF Explorer's server: the page (:mod:`explorer.page`) mounted on FastAPI with the live routes
(:mod:`explorer.routes`), the read-only viewer page, the session janitor and the entry point.

``python app.py`` (or ``python -m explorer.server``) serves on http://127.0.0.1:7860 (``GRADIO_SERVER_NAME`` /
``GRADIO_SERVER_PORT`` override the address; ``HRF_RUNS_DIR`` the run store (default ``runs/``, or
``/data/runs`` on a Space with persistent storage: :mod:`explorer.storage`); ``GRADIO_ROOT_PATH`` a path
prefix; ``HRF_PRESENTER_TOKEN`` turns on presenter mode; ``HRF_EXTRA_REWARDS`` registers the operator's own
rewards). One global :class:`~explorer.jobs.JobManager` runs one fine-tuning job at a time in a background
thread. ``/?view=1`` is a read-only page of the Live tab alone, without Gradio, for a slide.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import gradio as gr
from fastapi import FastAPI

from explorer import DOCS_DIR, UI_DIR, serving
from explorer.jobs import JobManager
from explorer.page import APP_CSS, RUNS_DIR, STORAGE, Lab
from explorer.routes import add_live_routes
from explorer.sessions import HeartbeatWatch, SessionJanitor
from hrf_core import CHECKPOINTS_DIR
from hrf_core.config import TrainConfig

log = logging.getLogger("hrf_explorer")

#: Gradio's queue polls for work every 1 ms when idle (10 ms for progress), a busy idle server. 100 / 200 ms
#: add no visible latency to a button (a click starts up to 0.1 s later) and keep the idle server nearly idle
#: (bench/README.md, "Figures"). ``HRF_QUEUE_SLEEP`` sets the queue's interval (the progress loop's is twice
#: it); the benchmark sets Gradio's own 0.001 to measure the difference.
QUEUE_SLEEP_SECONDS = float(os.environ.get("HRF_QUEUE_SLEEP", "0.1"))
PROGRESS_SLEEP_SECONDS = 2 * QUEUE_SLEEP_SECONDS
# relative to the page: the app may be served under any path prefix (a reverse proxy, GRADIO_ROOT_PATH)
HEAD = ('<link rel="stylesheet" href="live/assets/live.css">'
        '<script src="live/assets/plotly.min.js" defer></script>'
        '<script src="live/assets/live.js" defer></script>')


class ViewerPage:
    """ASGI middleware: ``/?view=1`` answers with the read-only live page (no Gradio), everything else passes.

    ``prefix`` (the app's root path, e.g. ``/hrf``): a request for ``/hrf/...`` is served as ``/...``, for a
    proxy that forwards the prefix instead of stripping it (nginx ``proxy_pass`` without a URI part).
    Gradio's page names no icon, so a browser would ask the server's root for ``/favicon.ico`` (outside the
    prefix: a 404 behind a proxy); the page gets a relative icon link in its ``<head>``.
    """

    ICON = b'<link rel="icon" href="favicon.ico">'

    def __init__(self, app, html: bytes, prefix: str = ""):
        self.app, self.html, self.prefix = app, html, prefix.rstrip("/")

    async def __call__(self, scope, receive, send):
        if self.prefix and scope["type"] in ("http", "websocket"):
            path = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                scope = {**scope, "path": path[len(self.prefix):] or "/",
                         "raw_path": (path[len(self.prefix):] or "/").encode()}
        if scope["type"] != "http" or scope["path"] != "/":
            await self.app(scope, receive, send)
            return
        if parse_qs(scope.get("query_string", b"").decode()).get("view") == ["1"]:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-cache")]})
            await send({"type": "http.response.body", "body": self.html})
            return
        start: dict | None = None

        async def with_icon(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message  # held until the body shows whether it is the page
                return
            if start is not None:
                body = message.get("body", b"")
                if message["type"] == "http.response.body" and not message.get("more_body") and \
                        body.count(b"<head>") == 1:
                    body = body.replace(b"<head>", b"<head>" + self.ICON)
                    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                    start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
                    message = {**message, "body": body}
                await send(start)
                start = None
            await send(message)

        await self.app(scope, receive, with_icon)



def tune_queue(demo: gr.Blocks) -> None:
    """Let Gradio's idle queue loops sleep longer (see :data:`QUEUE_SLEEP_SECONDS`)."""
    queue = getattr(demo, "_queue", None)
    if queue is not None:
        queue.sleep_when_free = QUEUE_SLEEP_SECONDS
        queue.progress_update_sleep_when_free = PROGRESS_SLEEP_SECONDS


def create_server(lab: Lab, root_path: str | None = None) -> FastAPI:
    """The whole app: the live routes and the viewer page, with the Gradio Blocks mounted at ``/``.

    ``root_path`` (default ``GRADIO_ROOT_PATH``): the path prefix under which a reverse proxy serves the app.
    Gradio's file route may serve the Results figures only: grids go through :func:`add_live_routes`, and
    nothing of the run store (checkpoints, optimiser state, configs) is reachable through Gradio.
    """
    root_path = os.environ.get("GRADIO_ROOT_PATH", "") if root_path is None else root_path
    demo = lab.build()
    demo.queue(default_concurrency_limit=2)
    tune_queue(demo)
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_live_routes(api, lab)
    janitor = SessionJanitor(demo)
    api.add_middleware(HeartbeatWatch, janitor=janitor)  # inside ViewerPage: it sees paths without the prefix
    prefix = urlsplit(root_path).path if "://" in root_path else root_path
    api.add_middleware(ViewerPage, html=(UI_DIR / "viewer.html").read_bytes(), prefix=prefix)
    figures = [str(p) for p in serving.figure_files(lab.docs_dir)]
    blocked = [str(p.resolve()) for p in (lab.store.root, CHECKPOINTS_DIR)]
    gr.mount_gradio_app(api, demo, path="/", ssr_mode=False, allowed_paths=figures, blocked_paths=blocked,
                        root_path=root_path or None, footer_links=["api", "gradio"],
                        theme=gr.themes.Default(primary_hue="indigo", secondary_hue="pink"), css=APP_CSS,
                        head=HEAD)
    api.state.demo, api.state.lab, api.state.sessions = demo, lab, janitor
    lab.feed.start()
    janitor.start()
    return api


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (tests, benchmarks and scripts serve the app on one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A server running in a background thread (tests and scripts): ``.url``, ``.close()``."""

    def __init__(self, api: FastAPI, host: str, port: int):
        import uvicorn

        self.api = api
        self.server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="warning",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()

        deadline = time.time() + 60
        while not self.server.started and self.thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        self.url = f"http://{host}:{port}/"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.api.state.lab.feed.stop()


def serve(manager: JobManager | None = None, defaults: TrainConfig | None = None, host: str = "127.0.0.1",
          port: int = 7860, docs_dir: Path = DOCS_DIR, root_path: str | None = None) -> Served:
    """Build and serve the app in a background thread (tests pass their own manager and small defaults)."""
    lab = Lab(manager, defaults, docs_dir=docs_dir)
    return Served(create_server(lab, root_path=root_path), host, port)


def warm_up() -> None:
    """Import the heavy modules in the background so the first Start and preview are quick."""
    try:
        import hrf_core.measure.evaluation  # noqa: F401
        import hrf_core.models.registry  # noqa: F401
        import hrf_core.rewards.registry  # noqa: F401
        import hrf_core.rl.sampling  # noqa: F401
        import hrf_core.rl.trainer  # noqa: F401
    except Exception:  # noqa: BLE001 - only a speed-up
        log.exception("warm-up import failed")


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX`` would) unless the environment already does.

    Every thread that allocates (the training thread, uvicorn's and Gradio's workers, GIF exports) may get an
    arena of its own that keeps freed memory: the soak (``bench/soak.py``) grew the server's RSS far more with
    one arena per thread than with two (bench/README.md, "Figures").
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to cap
        pass


def main() -> None:
    import uvicorn

    from hrf_core.rewards.registry import register_from_env

    limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registered = register_from_env()
    if registered:
        log.info("rewards registered from HRF_EXTRA_REWARDS: %s", ", ".join(registered))
    log.info("runs are stored in %s%s", RUNS_DIR, f" ({STORAGE.note})" if STORAGE.note else "")
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    api = create_server(Lab())
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    print(f"HRF Explorer on http://{host}:{port} (read-only live view: http://{host}:{port}/?view=1)", flush=True)
    uvicorn.run(api, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
