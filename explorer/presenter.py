"""Presenter mode: when ``HRF_PRESENTER_TOKEN`` is set, only the token's holder controls the shared job.

Start, Stop, Continue, Sample and Compare (everything that starts or ends work on the server) are
refused without the token; viewing, the live feed and ``/status`` stay open. Without the variable every
visitor has control, the right default for a laptop.

Wrong tokens are rate-limited per client (:class:`Guard`): after :data:`MAX_FAILURES` wrong tokens
within :data:`WINDOW_SECONDS`, every control call from that client is refused for
:data:`LOCKOUT_SECONDS`, with a message that says so. A client that has not failed is never slowed
down. The web layer names the client of each call (:meth:`Guard.serving`); :func:`check` reads it.
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ENV_VARIABLE = "HRF_PRESENTER_TOKEN"
REFUSAL = ("Refused: this app is in presenter mode. Enter the presenter token (top of the page) to start, stop, "
           "continue, sample or compare; watching stays open to everyone.")
MAX_FAILURES = 5  # wrong tokens per client ...
WINDOW_SECONDS = 60.0  # ... within this long ...
LOCKOUT_SECONDS = 300.0  # ... refuse that client's control calls for this long
MAX_CLIENTS = 10_000  # clients remembered (oldest forgotten first)


def token_required() -> bool:
    return bool(os.environ.get(ENV_VARIABLE, "").strip())


def allowed(token: str | None) -> bool:
    """Whether ``token`` may control the job (always, when no token is configured); no rate limit."""
    expected = os.environ.get(ENV_VARIABLE, "").strip()
    if not expected:
        return True
    return hmac.compare_digest((token or "").strip().encode(), expected.encode())


@dataclass
class _Client:
    failures: list[float] = field(default_factory=list)  # times of recent wrong tokens
    locked_until: float = 0.0


class Guard:
    """Rate-limits wrong presenter tokens per client (thread-safe)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS,
                 lockout: float = LOCKOUT_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window, self.lockout, self.clock = max_failures, window, lockout, clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, token: str | None, client: str | None) -> None:
        """Raise PermissionError (one line) unless ``client`` may control the job with ``token``.

        ``client`` None (a direct call, not over the network) is never rate-limited.
        """
        if not token_required():
            return
        if client is None:
            if not allowed(token):
                raise PermissionError(REFUSAL)
            return
        with self._lock:
            now = self.clock()
            state = self._clients.get(client)
            if state is not None and state.locked_until > now:
                raise PermissionError(self._locked_message(state.locked_until - now))
            if allowed(token):
                self._clients.pop(client, None)
                return
            state = self._clients.pop(client, None) or _Client()
            self._clients[client] = state  # most recent last
            state.failures = [t for t in state.failures if now - t < self.window] + [now]
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
            if len(state.failures) >= self.max_failures:
                state.locked_until, state.failures = now + self.lockout, []
                log.warning("presenter token: %d wrong tries from %s within %.0f s; its control calls are refused "
                            "for %.0f s", self.max_failures, client, self.window, self.lockout)
                raise PermissionError(self._locked_message(self.lockout))
        raise PermissionError(REFUSAL)

    def _locked_message(self, seconds: float) -> str:
        return (f"Refused: too many wrong presenter tokens from your address; control is locked for it for "
                f"{max(1, round(seconds))} s more. Watching stays open.")

    @contextmanager
    def serving(self, client: str | None) -> Iterator[None]:
        """While a web request's handler runs: :func:`check` applies this guard to ``client``."""
        reset = _CURRENT.set((self, client))
        try:
            yield
        finally:
            _CURRENT.reset(reset)


_CURRENT: ContextVar[tuple[Guard, str | None] | None] = ContextVar("hrf_presenter_client", default=None)


def check(token: str | None) -> None:
    """Raise PermissionError with one clear line unless ``token`` may control the job.

    Inside :meth:`Guard.serving` the call counts against that client's wrong tokens.
    """
    current = _CURRENT.get()
    if current is None:
        if not allowed(token):
            raise PermissionError(REFUSAL)
        return
    guard, client = current
    guard.check(token, client)
