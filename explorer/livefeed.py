"""The live feed: what viewers see, published once per change, whatever the number of viewers.

One watcher thread per process reads a cheap change key (``key()``, e.g. the job manager's
:meth:`~explorer.jobs.JobManager.live_key`) a few times a second. Only when it changes does it build
the viewers' state (``build()``, a JSON-ready dict) and publish a message with a new version:

- ``full``: the whole state (first message for every viewer, or when the runs shown change);
- ``rows``: only the metric rows appended since the previous version, plus the new status;
- ``status``: only the status (a phase or ETA change).

Each message is serialised once; a viewer that is at version v receives the messages after v (or
one ``full`` if it fell too far behind). Listeners (e.g. the web server's fan-out) are called from the
watcher thread after each publish. Viewers therefore cost the server nothing while nothing changes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)


class LiveFeed:
    """Versioned messages of a state built by ``build()`` whenever ``key()`` changes."""

    def __init__(self, build: Callable[[], dict], key: Callable[[], Hashable], interval: float = 0.25,
                 history: int = 64):
        self.build = build
        self.key = key
        self.interval = interval
        self.version = 0
        self.state: dict = {}
        self._full = b""
        self._messages: deque[tuple[int, bytes]] = deque(maxlen=history)
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._last_key: Hashable = object()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.builds = 0  # how many times the state was built (a benchmark reads it)

    # -- publishing ---------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Rebuild and publish if the key changed; True when a new version was published."""
        key = self.key()
        if key == self._last_key:
            return False
        state = self.build()
        self.builds += 1
        self._last_key = key
        return self.publish(state)

    def publish(self, state: dict) -> bool:
        """Publish ``state`` as the next version (no-op when identical); True when published."""
        with self._lock:
            if state == self.state:
                return False
            kind, body = diff(self.state, state)
            self.version += 1
            self.state = state
            self._full = encode({"kind": "full", "version": self.version, **state})
            self._messages.append((self.version, encode({"kind": kind, "version": self.version, **body})))
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:  # noqa: BLE001 - one broken listener must not stop the feed
                log.exception("live feed listener failed")
        return True

    # -- reading ------------------------------------------------------------------------------------
    def full(self) -> tuple[int, bytes]:
        """(version, the ``full`` message of the current state)."""
        with self._lock:
            return self.version, self._full

    def since(self, version: int) -> list[tuple[int, bytes]] | None:
        """The messages after ``version`` in order; None when they are no longer kept (send :meth:`full`)."""
        with self._lock:
            if version >= self.version:
                return []
            if not self._messages or self._messages[0][0] > version + 1:
                return None
            return [(v, m) for v, m in self._messages if v > version]

    def add_listener(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    # -- the watcher --------------------------------------------------------------------------------
    def start(self) -> LiveFeed:
        """Publish the current state, then watch for changes in a daemon thread."""
        if self._thread is None:
            self.refresh()
            self._thread = threading.Thread(target=self._watch, name="live-feed", daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether the watcher thread keeps the state current (else callers must not trust a version)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the feed must outlive a bad read (e.g. a run being deleted)
                log.exception("live feed refresh failed")


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False, default=str).encode()


def diff(old: dict, new: dict) -> tuple[str, dict]:
    """The smallest message that takes a viewer from ``old`` to ``new``: (kind, body)."""
    if not old or {k: v for k, v in old.items() if k not in ("status", "runs")} != \
            {k: v for k, v in new.items() if k not in ("status", "runs")}:
        return "full", new
    old_runs, new_runs = old.get("runs", []), new.get("runs", [])
    if [r.get("run_id") for r in old_runs] != [r.get("run_id") for r in new_runs]:
        return "full", new
    appended = {}
    for before, after in zip(old_runs, new_runs, strict=True):
        rows_before, rows_after = before.get("rows", []), after.get("rows", [])
        if rows_after[:len(rows_before)] != rows_before or \
                {k: v for k, v in before.items() if k != "rows"} != {k: v for k, v in after.items() if k != "rows"}:
            return "full", new
        if len(rows_after) > len(rows_before):
            appended[after["run_id"]] = rows_after[len(rows_before):]
    if appended:
        return "rows", {"status": new.get("status"), "append": appended}
    return "status", {"status": new.get("status")}
