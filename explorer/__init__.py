"""HRF Explorer, the app: a Gradio page and a small server over the library :mod:`hrf_core`.

- :mod:`explorer.server`: the entry point, the routes (live stream, grids, GIFs, status), the middleware and the
  session janitor; :mod:`explorer.page`: the page (:class:`~explorer.page.Lab`), one module per tab in
  :mod:`explorer.tabs`, each owning its layout, events and handlers; :mod:`explorer.api`: the scripting API;
- :mod:`explorer.jobs` (the one background job), :mod:`explorer.livefeed` (what viewers see),
  :mod:`explorer.serving` (what may be served from disk), :mod:`explorer.presenter` (presenter mode),
  :mod:`explorer.storage` (where runs are kept);
- :mod:`explorer.views`: what each tab shows, as plain Python (no gradio), tested directly.

The library never imports this package.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Gradio recomputes an analytics summary over up to 10,000 past events after every queued event by
# default; once per 1,000 events is plenty for an app that shows none of it.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
# Idle OpenMP threads sleep instead of spinning (a spinning training thread starves the UI on small CPUs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hrf_core import REPO_ROOT  # noqa: E402

#: The browser side (the live panel, the window widget, the page's CSS).
UI_DIR = REPO_ROOT / "ui"
#: The experiments' report and figures, shown in the Results tab.
DOCS_DIR = REPO_ROOT / "docs"
