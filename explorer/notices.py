"""How the page tells a person what happened: one toast and one notice line per failure, and a handler that
never crashes the page."""

from __future__ import annotations

import functools
import logging

import gradio as gr

from explorer.views import common

log = logging.getLogger("hrf_explorer")


def refusal(error: Exception) -> str:
    """The first line of ``error``'s message (its type when it has none)."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def shown(error: BaseException, prefix: str = "") -> str:
    """The one way the page shows a failure: a warning toast and an error notice (returned as HTML), on one line.

    A refusal (ValueError, PermissionError) is the user's to fix and shows its message; anything else is logged
    with its traceback (call this inside the ``except``) and shows its type too. The page never crashes.
    """
    if isinstance(error, (ValueError, PermissionError)):
        text = f"{prefix}{refusal(error)}"
    else:
        log.exception("handler failed")
        text = f"{prefix}{type(error).__name__}: {refusal(error)}"
    gr.Warning(text)
    return common.notice_html(text, "error")


def safe(fallback_outputs: int):
    """Turn any exception of a handler into a warning toast; outputs are left unchanged (never crash).

    A presenter-mode refusal is an error instead, so an API client gets it as an exception, not an empty result.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except PermissionError as error:
                raise gr.Error(refusal(error)) from None
            except Exception as error:  # noqa: BLE001 - a talk must go on
                shown(error, "" if isinstance(error, ValueError) else f"{fn.__name__} failed: ")
            skips = tuple(gr.skip() for _ in range(fallback_outputs))
            return skips[0] if fallback_outputs == 1 else skips

        return wrapper

    return decorate
