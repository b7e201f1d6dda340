"""Forget Gradio's per-session state once no page can use it any more (a long-lived server's memory)."""

from __future__ import annotations

import logging
import os
import re
import threading
import time

import gradio as gr

log = logging.getLogger("hrf_explorer")

#: Seconds a Gradio session is kept after its last event once no page (heartbeat) holds it open; see
#: :class:`SessionJanitor`. ``HRF_SESSION_GRACE`` sets it.
SESSION_GRACE_SECONDS = float(os.environ.get("HRF_SESSION_GRACE", "300"))


class SessionJanitor:
    """Forget Gradio's per-session state once no page can use it any more.

    Gradio keeps a ``SessionState`` for every session (each page and each ``gradio_client.Client``), with its
    own copy of every component's config (about 0.8 MB for this app), and forgets one only past 10,000
    sessions: the soak (``bench/soak.py``), one client per duel, grew the server steadily (bench/README.md). A session
    is forgotten when no heartbeat connection holds it (the page or client that opened it is gone, counted by
    :class:`HeartbeatWatch`) and its last event is ``grace`` seconds old. A page that comes back later gets a
    fresh session, as after Gradio's own capacity eviction.
    """

    def __init__(self, demo: gr.Blocks, grace: float = SESSION_GRACE_SECONDS):
        self.demo, self.grace = demo, grace
        self.open_pages: dict[str, int] = {}  # session hash -> open heartbeat connections

    def prune(self, now: float | None = None) -> int:
        """Forget every session that no heartbeat holds and that has been idle ``grace`` s; returns how many."""
        import datetime

        holder = getattr(self.demo, "state_holder", None)
        if holder is None:
            return 0
        now_dt = datetime.datetime.fromtimestamp(time.time() if now is None else now)
        forgotten = 0
        for session in list(holder.session_data):
            last = holder.time_last_used.get(session)
            if self.open_pages.get(session) or (last is not None and (now_dt - last).total_seconds() < self.grace):
                continue
            holder.delete_state(session)  # gr.State values: their delete callbacks
            with holder.lock:
                holder.session_data.pop(session, None)
                holder.time_last_used.pop(session, None)
            forgotten += 1
        return forgotten

    def start(self, every: float = 60.0) -> None:
        def loop() -> None:
            while True:
                time.sleep(every)
                try:
                    self.prune()
                except Exception:  # noqa: BLE001 - housekeeping must never take the server down
                    log.exception("could not prune Gradio sessions")

        threading.Thread(target=loop, name="session-janitor", daemon=True).start()


class HeartbeatWatch:
    """ASGI middleware: counts the open heartbeat connections per Gradio session for :class:`SessionJanitor`."""

    HEARTBEAT = re.compile(r"/gradio_api/heartbeat/([^/]+)$")

    def __init__(self, app, janitor: SessionJanitor):
        self.app, self.janitor = app, janitor

    async def __call__(self, scope, receive, send):
        match = self.HEARTBEAT.search(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        pages, session = self.janitor.open_pages, match[1]
        pages[session] = pages.get(session, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            pages[session] -= 1
            if pages[session] <= 0:
                del pages[session]
