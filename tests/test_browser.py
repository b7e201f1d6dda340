"""The launched app in headless Debian chromium: window, reward, Start, live plot and grids, Stop."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    import app
    from hrf_core.config import TrainConfig
    from hrf_core.jobs import JobManager
    from hrf_core.runs import RunStore

    root = tmp_path_factory.mktemp("browser-runs")
    digits = Path(app.REPO_ROOT / "checkpoints" / "digits16" / "unet" / "config.json").is_file()
    model = "digits16" if digits else str(tiny_model_dir)
    defaults = TrainConfig(model=model, method="hrf", window=(4, 10), num_steps=10, epochs=2,
                           samples_per_epoch=8, batch_size=8, siblings=4, eval_samples=16, train_batch_size=8,
                           updates_per_epoch=1, checkpoint_every=1)
    manager = JobManager(RunStore(root), torch_threads=1)
    demo = app.build_app(manager, defaults)
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, server_port=port, **app.launch_kwargs(root))
    yield f"http://127.0.0.1:{port}/", manager
    manager.stop()
    manager.wait(30)
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PLAYWRIGHT_BROWSERS_PATH", "0")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def test_window_reward_start_live_and_stop(served, browser):
    from playwright.sync_api import expect

    url, manager = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside = []
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
    page.goto(url)

    # the two-handle window: drag both ends, the label, the strip shading and the note follow
    lo, hi = page.locator("#window input.hw-lo"), page.locator("#window input.hw-hi")
    lo.fill("2")
    hi.fill("8")
    expect(page.locator("#window .hw-text")).to_have_text(re.compile(r"steps 2–7"))
    expect(page.locator("#window-note")).to_contain_text("HRF trains steps 2–7", timeout=10_000)
    expect(page.locator("#window .hw-strip img")).to_have_count(10, timeout=30_000)  # x0 previews, one per step
    expect(page.locator("#window .hw-strip img.in")).to_have_count(6)
    lo.fill("9")  # pushed against the end handle: never empty or inverted
    expect(page.locator("#window .hw-text")).to_have_text(re.compile(r"steps 7–7"))
    lo.fill("2")
    expect(page.locator("#window-note")).to_contain_text("HRF trains steps 2–7", timeout=10_000)

    # pick a reward (choices carry availability, loaded after the page is up)
    page.locator("#reward input").click()
    page.get_by_role("option", name="jpeg-incompressibility").click()
    expect(page.locator("#reward-info")).to_contain_text("JPEG size", timeout=10_000)

    # Start: the Live tab opens, the trajectory and the grids fill, the run finishes
    page.locator("#start-btn").click()
    expect(page.locator("#live-status")).to_be_visible(timeout=10_000)
    expect(page.locator("#live-status")).to_contain_text("Done", timeout=120_000)
    expect(page.locator("#trajectory-plot .scatterlayer .point")).not_to_have_count(0, timeout=10_000)
    expect(page.locator("#live-gallery img")).to_have_count(2, timeout=10_000)
    expect(page.locator("#curves-plot .scatterlayer .point")).not_to_have_count(0)
    run = manager.store.list()[0]
    assert tuple(run.config["window"]) == (2, 8) and run.config["reward"] == "jpeg-incompressibility"
    assert [r["epoch"] for r in run.metrics()] == [0, 1, 2]

    # a long run, stopped from the Live tab
    page.locator("#tab-train-button, button[role=tab]:has-text('Train')").first.click()
    page.locator("#advanced").get_by_text("Advanced settings").click()
    page.locator("#num-epochs input").fill("500")
    page.locator("#start-btn").click()
    expect(page.locator("#live-status")).to_contain_text(re.compile(r"epoch [1-9]\d*/500"), timeout=60_000)
    page.locator("#live-stop-btn").click()
    expect(page.locator("#live-status")).to_contain_text("Stopped", timeout=60_000)
    assert manager.store.list()[0].status["state"] == "stopped"
    assert outside == []  # no CDN, fonts or analytics requests
    page.close()
