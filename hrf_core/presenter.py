"""Presenter mode: when ``HRF_PRESENTER_TOKEN`` is set, only the token's holder controls the shared job.

Start, Stop, Sample and Compare (everything that starts or ends work on the server) are refused
without the token; viewing, the live feed and ``/status`` stay open. Without the variable every
visitor has control, the right default for a laptop.
"""

from __future__ import annotations

import hmac
import os

ENV_VARIABLE = "HRF_PRESENTER_TOKEN"
REFUSAL = ("Refused: this app is in presenter mode. Enter the presenter token (top of the page) to start, stop, "
           "sample or compare; watching stays open to everyone.")


def token_required() -> bool:
    return bool(os.environ.get(ENV_VARIABLE, "").strip())


def allowed(token: str | None) -> bool:
    """Whether ``token`` may control the job (always, when no token is configured)."""
    expected = os.environ.get(ENV_VARIABLE, "").strip()
    if not expected:
        return True
    return hmac.compare_digest((token or "").strip().encode(), expected.encode())


def check(token: str | None) -> None:
    """Raise PermissionError with one clear line unless ``token`` may control the job."""
    if not allowed(token):
        raise PermissionError(REFUSAL)
