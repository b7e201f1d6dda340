"""Every download a run may make, decided before it starts: cached -> use; offline -> a labelled proxy or a refusal.

Whether the network is reachable is found out once per process (:func:`offline`), in this order:

1. ``--offline`` (:func:`set_offline`), the command line's explicit word;
2. ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set truthy, as the Hub's own libraries read it;
3. one ``HEAD`` request to the Hub's endpoint (``HF_ENDPOINT``, proxies from the environment honoured) that must
   answer within :data:`PROBE_SECONDS`; its answer is kept. A download that fails later with a network error
   (:func:`guarded`) marks the network unreachable too, so the next decision does not try again.

torchvision's and open_clip's own downloads ignore ``HF_HUB_OFFLINE``: each goes through :func:`guarded`, after the
caller has looked in its cache (no request is made for cached weights). Weights that are not cached while the network
is unreachable raise :class:`Unavailable` (a ``ValueError``, one line naming what to fetch and the command that
fetches it on a machine with network; see docs/OFFLINE.md). Whoever has a proxy (the evaluation: pixel Vendi instead
of Inception and CLIP) catches it and says so; whoever has none (a reward that needs its model) lets it through,
and the run is refused before its first epoch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: How long the one reachability probe may wait for the Hub (seconds).
PROBE_SECONDS = 2.0
#: Where to read how to fetch every model's weights ahead of time.
GUIDE = "docs/OFFLINE.md"

_TRUE = {"1", "ON", "YES", "TRUE"}
_state: dict[str, str | None] = {"reason": None}  # None: not found out yet; "": online; else why offline


class Unavailable(ValueError):
    """Weights that are neither cached nor downloadable here: one line, what to fetch and how."""


def set_offline(offline: bool | None, why: str = "--offline") -> None:
    """Decide the network's state explicitly (``True``: offline because ``why``; ``False``: online); ``None``
    forgets the decision, so the next :func:`offline` finds it out again (tests)."""
    _state["reason"] = None if offline is None else (f"offline ({why})" if offline else "")


def _env_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.strip().upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def probe(timeout: float = PROBE_SECONDS) -> str:
    """"" when the Hub's endpoint answers within ``timeout`` seconds (any HTTP status), else why not (one line).

    The request runs in a daemon thread joined for ``timeout``: a name lookup that hangs (urllib's timeout does not
    cover it) is given up on too.
    """
    import threading

    from huggingface_hub import constants

    endpoint = constants.ENDPOINT
    answer: list[str] = []
    thread = threading.Thread(target=lambda: answer.append(_head(endpoint, timeout)), name="hrf-network-probe",
                              daemon=True)
    thread.start()
    thread.join(timeout)
    return answer[0] if answer else f"{endpoint} did not answer within {timeout:g} s"


def _head(url: str, timeout: float) -> str:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:  # it answered
        return ""
    except Exception as error:  # noqa: BLE001 - DNS, refused, timeout, proxy: all mean "not reachable"
        why = getattr(error, "reason", None) or error  # urllib's URLError wraps the socket's error
        return f"{url} did not answer within {timeout:g} s: {' '.join(str(why).split())[:120]}"
    return ""


def offline() -> bool:
    """Whether downloads are out of reach here: ``--offline``, ``HF_HUB_OFFLINE``, else one short probe (kept)."""
    if _env_offline():
        return True
    if _state["reason"] is None:
        why = probe()
        _state["reason"] = f"offline ({why})" if why else ""
    return bool(_state["reason"])


def reason() -> str:
    """Why this machine counts as offline, in the user's terms ("" when online)."""
    if _state["reason"]:  # said (--offline) or found out
        return _state["reason"]
    if _env_offline():
        return "offline (HF_HUB_OFFLINE is set)"
    return (_state["reason"] or "") if offline() else ""


def missing(what: str, command: str) -> str:
    """One line: ``what`` is not cached, why it cannot be downloaded, and ``command`` that fetches it elsewhere."""
    return (f"{what} not cached here and this machine is {reason() or 'offline'}: on a machine with network run "
            f"`{command}` and copy the cache over (see {GUIDE})")


def require(what: str, command: str) -> None:
    """Raise :class:`Unavailable` for uncached weights when offline; return when they may be downloaded."""
    if offline():
        raise Unavailable(missing(what, command))


@contextmanager
def guarded(what: str, command: str) -> Iterator[None]:
    """Run a download (only that call: not what reads its file): any failure becomes :class:`Unavailable` (one
    line); a network failure also marks the network unreachable, so the next decision does not try again.

    Call it only for weights that are not cached, so a cached run never makes a request.
    """
    require(what, command)
    try:
        yield
    except Unavailable:
        raise
    except Exception as error:  # urllib, requests, httpx and the Hub's own errors: one line, never a traceback
        if not _is_network_error(error):
            raise Unavailable(f"could not download {what} ({one_line(error)}): fetch it with `{command}` "
                              f"(see {GUIDE})") from error
        set_offline(True, f"a download failed: {one_line(error)}")
        raise Unavailable(missing(what, command)) from error


def _is_network_error(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) comes from the network rather than from the files it brought."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        names = {cls.__name__ for cls in type(error).__mro__}
        if "HTTPError" in names:  # the server answered (a missing file, a refusal): the network works
            return False
        if isinstance(error, (ConnectionError, TimeoutError)) or names & {
                "URLError", "gaierror", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError",
                "ConnectTimeout", "ReadTimeout", "ProxyError", "SSLError", "RemoteDisconnected"}:
            return True
        error = error.__cause__ or error.__context__
    return False


def one_line(error: BaseException) -> str:
    """``error`` as one short line: its type and first line."""
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
