"""The live feed's routes: the server-sent-events stream, the state, replays, grids, GIFs and the browser files.

What viewers see comes from one :class:`~explorer.livefeed.LiveFeed` per process, published once per change and
pushed to every open page over one server-sent-events stream each (``/live/stream``); the browser draws it
(``ui/live.js``). So a viewer costs the server nothing while nothing changes, and 100 viewers cost what one does.
Every address is relative to the page, so the app may be served under any path prefix.
"""

from __future__ import annotations

import asyncio
import atexit
import gzip
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from explorer import UI_DIR, serving
from explorer.views import live
from hrf_core.share.animate import ReplayCache

if TYPE_CHECKING:
    from explorer.page import Lab


class Fanout:
    """Wakes every open live stream when the feed publishes: one asyncio.Event per publish, shared by all."""

    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None

    def current(self) -> asyncio.Event:
        """The event the next publish sets (bound to the server's loop on first use)."""
        if self.event is None:
            self.loop = asyncio.get_running_loop()
            self.event = asyncio.Event()
        return self.event

    def notify(self) -> None:
        """Called from the feed's thread after a publish."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        old, self.event = self.event, asyncio.Event()
        if old is not None:
            old.set()



def _assets() -> dict[str, tuple[bytes, str]]:
    """The browser files the live panel needs: name -> (gzipped bytes, media type)."""
    import plotly

    files = {"live.js": (UI_DIR / "live.js", "text/javascript"), "live.css": (UI_DIR / "live.css", "text/css"),
             "plotly.min.js": (Path(plotly.__file__).parent / "package_data" / "plotly.min.js", "text/javascript")}
    return {name: (gzip.compress(path.read_bytes(), 6), media) for name, (path, media) in files.items()}


def add_live_routes(api: FastAPI, lab: Lab) -> None:
    """The live feed's routes: the SSE stream, the state, replays, grids, GIFs and the browser files."""
    feed, store, fanout = lab.feed, lab.store, Fanout()
    feed.add_listener(fanout.notify)
    assets = _assets()
    gif_dir = Path(tempfile.mkdtemp(prefix="hrf-gifs-"))
    atexit.register(shutil.rmtree, gif_dir, True)
    replays = ReplayCache(gif_dir)

    @api.get("/live/stream")
    async def stream(request: Request):
        async def events():
            event = fanout.current()
            version, full = feed.full()
            yield b"retry: 3000\ndata: " + full + b"\n\n"
            while True:
                try:
                    await asyncio.wait_for(event.wait(), timeout=15)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                event = fanout.current()
                messages = feed.since(version)
                if messages is None:
                    version, full = feed.full()
                    yield b"data: " + full + b"\n\n"
                else:
                    for version, message in messages:  # noqa: B007 - the loop variable is the cursor
                        yield b"data: " + message + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.get("/status")
    def status():
        """The job's status as plain JSON (the same as the ``/status`` API of gradio_client, without Gradio)."""
        return JSONResponse(lab.status_api(), headers={"Cache-Control": "no-cache"})

    @api.get("/live/state")
    def state(request: Request):
        version, full = feed.full()
        tag = f'"{version}"'
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers={"ETag": tag})
        return Response(full, media_type="application/json", headers={"ETag": tag, "Cache-Control": "no-cache"})

    @api.get("/live/run/{run_id}")
    def replay(run_id: str):
        try:
            store.get(run_id)
            return JSONResponse(live.live_state(lab.manager, run_id))
        except ValueError as error:
            raise HTTPException(404, str(error)) from None

    @api.get("/live/grid/{run_id}/{epoch}.png")
    def grid(run_id: str, epoch: int):
        try:
            path = serving.grid_file(store, run_id, epoch)  # a grid of the store, never anything else
        except ValueError as error:
            raise HTTPException(404, str(error)) from None
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    @api.get("/live/results/{name}")
    def figure(name: str):
        try:
            path = serving.figure_file(lab.docs_dir, name)
        except ValueError as error:
            raise HTTPException(404, str(error)) from None
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})

    @api.get("/live/animate/{run_id}.gif")
    def animate(run_id: str):
        try:
            run = store.get(run_id)
            serving.check_grids(run)
            body = replays.gif(run)
        except ValueError as error:
            raise HTTPException(404, str(error)) from None
        return Response(body, media_type="image/gif",
                        headers={"Content-Disposition": f'attachment; filename="{run_id}.gif"'})

    @api.get("/live/assets/{name}")
    def asset(name: str, request: Request):
        if name not in assets:
            raise HTTPException(404, f"no asset {name}")
        body, media = assets[name]
        headers = {"Cache-Control": "public, max-age=3600", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(body, media_type=media, headers={**headers, "Content-Encoding": "gzip"})
        return Response(gzip.decompress(body), media_type=media, headers=headers)


