"""Regenerate the README's screenshots from the real app: a duel (HRF vs DDPO) on the visible reward ``ink``.

    python scripts/screenshot.py [--out docs/screenshot.png] [--tabs docs/screenshots] [--epochs 12]

A DDPO run on ``ink`` first (so the Live tab draws early-stopped DDPO's reference curve from a run on
disk), then the duel driven from the UI: the HRF preset, the reward ``ink``, the Duel button. The Live tab
is ``--out``; then the HRF run is picked on the Runs tab, which Compare follows (its base model against its
last checkpoint), and each tab is one PNG in ``--tabs`` (train, live, compare, runs, results). Needs Debian
chromium (`apt-get install -y chromium`) and Playwright's Python package (requirements-test.txt). Runs go to
a temporary run store; takes 10-15 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "screenshot.png")
    parser.add_argument("--tabs", type=Path,
                        default=Path(__file__).resolve().parent.parent / "docs" / "screenshots")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    from explorer import server
    from explorer.jobs import JobManager, default_torch_threads
    from explorer.server import free_port
    from hrf_core.presets import preset
    from hrf_core.store.runs import RunStore

    root = Path(tempfile.mkdtemp(prefix="hrf-screenshot-"))
    manager = JobManager(RunStore(root), torch_threads=default_torch_threads())
    # an earlier DDPO run with another seed: the reference curve the duel is judged against
    manager.start(preset("digits-ddpo", reward="ink", epochs=args.epochs, seed=1))
    manager.wait()
    served = server.serve(manager, port=free_port())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(served.url)
            args.tabs.mkdir(parents=True, exist_ok=True)
            page.locator("#preset input").click()
            page.get_by_role("option", name="digits-hrf-late").click()
            page.locator("#reward input").click()
            page.get_by_role("option", name="ink").click()
            expect(page.locator("#reward-info")).to_contain_text("stroke mass", timeout=30_000)
            page.locator("#num-epochs input").fill(str(args.epochs))
            page.locator("#num-epochs input").press("Tab")
            expect(page.locator("#window .hw-strip img")).to_have_count(40, timeout=120_000)
            page.wait_for_timeout(2_000)
            page.screenshot(path=str(args.tabs / "train.png"))
            page.locator("#duel-btn").click()
            status = page.locator("#hrf-live .hl-status")
            expect(status).to_contain_text("Running", timeout=60_000)
            expect(status).to_contain_text(re.compile(rf"Done[\s\S]*{args.epochs}/{args.epochs}"),
                                           timeout=args.epochs * 240_000)
            expect(page.locator("#hrf-live .hl-grids img")).to_have_count(3, timeout=30_000)
            page.mouse.move(0, 0)  # no hover: plotly hides its mode bar
            page.wait_for_timeout(2_000)  # let the plots settle
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            page.screenshot(path=str(args.tabs / "live.png"), full_page=True)
            tab = lambda name: page.locator(f"button[role=tab]:has-text('{name}')").first.click()  # noqa: E731
            hrf = next(run.run_id for run in manager.store.list() if run.config["method"] == "hrf")
            tab("Runs")
            page.locator("#run-pick input").click()
            page.get_by_role("option", name=hrf).click()
            expect(page.locator("#hrf-replay .hl-grids img")).not_to_have_count(0, timeout=30_000)
            page.wait_for_timeout(2_000)
            page.screenshot(path=str(args.tabs / "runs.png"), full_page=True)
            tab("Compare")  # it follows the picked run: its base model as A, its last checkpoint as B
            expect(page.locator("#compare-b input")).to_have_value(re.compile(re.escape(hrf)), timeout=10_000)
            page.wait_for_timeout(1_000)
            page.locator("#compare-btn").click()
            expect(page.locator("#grid-b img")).to_have_count(1, timeout=300_000)
            page.wait_for_timeout(3_000)
            page.mouse.move(0, 0)
            page.screenshot(path=str(args.tabs / "compare.png"), full_page=True)
            tab("Results")
            page.wait_for_timeout(3_000)
            page.screenshot(path=str(args.tabs / "results.png"))
            browser.close()
    finally:
        manager.stop()
        manager.wait(30)
        served.close()
    print(f"wrote {args.out} and {args.tabs}/*.png")


if __name__ == "__main__":
    main()
