"""Regenerate docs/screenshot.png from the real app: an HRF run, then a DDPO run driven from the UI.

    python scripts/screenshot.py [--out docs/screenshot.png] [--epochs 15]

Needs Debian chromium (`apt-get install -y chromium`) and Playwright's Python package
(requirements-test.txt). Runs go to a temporary run store; takes about 8 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "screenshot.png")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    import app
    from hrf_core.config import preset
    from hrf_core.jobs import JobManager, default_torch_threads
    from hrf_core.runs import RunStore

    root = Path(tempfile.mkdtemp(prefix="hrf-screenshot-"))
    manager = JobManager(RunStore(root), torch_threads=default_torch_threads())
    # an earlier HRF run, drawn faintly beside the live one
    manager.start(preset("digits-hrf-late", epochs=args.epochs))
    manager.wait()
    demo = app.build_app(manager)
    demo.queue(default_concurrency_limit=2)
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, server_port=port, **app.launch_kwargs(root))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#preset input").click()
            page.get_by_role("option", name="digits-ddpo").click()
            expect(page.locator("#window-note")).to_contain_text("DDPO", timeout=30_000)
            page.locator("#start-btn").click()
            done = re.compile(rf"Done[\s\S]*ddpo-jpeg-compressibility[\s\S]*{args.epochs}/{args.epochs}")
            expect(page.locator("#live-status")).to_contain_text(done, timeout=args.epochs * 120_000)
            expect(page.locator("#live-gallery img")).to_have_count(2, timeout=30_000)
            page.mouse.move(0, 0)  # no hover: plotly hides its mode bar
            page.wait_for_timeout(2_000)  # let the plots settle
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        manager.stop()
        manager.wait(30)
        demo.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
