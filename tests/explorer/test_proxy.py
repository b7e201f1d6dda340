"""The app behind Debian's nginx at /hrf/ (docs/PROXY.md's block, prefix stripped, GRADIO_ROOT_PATH=/hrf), in headless
chromium: the Live tab draws a run; the viewer page updates over server-sent events through the proxy, unbuffered;
grids, the GIF and the Results figures download; gradio_client works through the proxy; nothing answers 4xx."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from test_deploy import as_nobody, scratch_for_nobody
from test_jobs import FakeTrainer

from explorer.server import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
CHROMIUM = "/usr/bin/chromium"
README = Path(__file__).resolve().parents[2] / "docs" / "PROXY.md"  # the README links it
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx)"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


def readme_location() -> str:
    """The nginx block of docs/PROXY.md (the one users copy)."""
    block = re.search(r"```nginx\n(.*?)```", README.read_text(), re.S)
    assert block, "docs/PROXY.md has no ```nginx block"
    return block.group(1)


class Nginx:
    """Debian's nginx with a config of its own in a temporary folder, unprivileged (as 'nobody' when run by root,
    in a folder 'nobody' can reach)."""

    def __init__(self, app_port: int):
        prefix = as_nobody()
        self.folder = (scratch_for_nobody(prefix, "hrf-nginx-") if prefix
                       else Path(tempfile.mkdtemp(prefix="hrf-nginx-")))
        self.port = free_port()
        location = readme_location().replace("127.0.0.1:7860", f"127.0.0.1:{app_port}")
        assert f"127.0.0.1:{app_port}" in location and "location /hrf/" in location
        # the same block without `proxy_buffering off`: the live stream's own X-Accel-Buffering header must do
        buffered = location.replace("location /hrf/", "location /hrf-buffered/").replace("proxy_buffering off;", "")
        temp = "\n".join(f"    {kind}_temp_path {self.folder}/{kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.folder / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {self.folder}/nginx.pid;
error_log {self.folder}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {self.folder}/access.log;
{temp}
    server {{
        listen 127.0.0.1:{self.port};
        {location}
        {buffered}
    }}
}}
""")
        if prefix:
            subprocess.run(["chown", "-R", "nobody:nogroup", str(self.folder)], check=True)
        self.process = subprocess.Popen([*(prefix or []), NGINX, "-p", str(self.folder), "-e",
                                         str(self.folder / "error.log"), "-c", str(self.folder / "nginx.conf")],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.process.stdout.read().decode()} {self.errors()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nginx did not start: {self.errors()}")

    def errors(self) -> str:
        path = self.folder / "error.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class Trainer(FakeTrainer):
    """test_jobs' FakeTrainer, with the diversity key the live view draws (vendi_pixel@N) in its rows."""

    def _log(self, epoch: int) -> None:
        append = self.run.append_metrics
        self.run.append_metrics = lambda row: append({**row, "vendi_pixel@8": row["vendi_pixel"]})
        try:
            super()._log(epoch)
        finally:
            del self.run.append_metrics


@pytest.fixture
def proxied(tmp_path, tiny_model_dir, monkeypatch):
    """The app (a fake trainer held by a gate) at GRADIO_ROOT_PATH=/hrf behind nginx: (public url, manager, gate)."""
    from PIL import Image
    from test_app import small_defaults

    from explorer import server
    from explorer.jobs import JobManager
    from hrf_core.store.runs import RunStore

    monkeypatch.setenv("GRADIO_ROOT_PATH", "/hrf")
    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    Image.new("RGB", (40, 30), "steelblue").save(docs / "results" / "frontier.png")
    Image.new("L", (16, 16), 90).save(docs / "results" / "grid-ink-ddpo-seed0.png")
    (docs / "RESULTS.md").write_text("# Results\n![frontier](results/frontier.png)\n"
                                     "![grid](results/grid-ink-ddpo-seed0.png)\n")
    gate = threading.Event()
    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=lambda config, run, callbacks, stop: Trainer(
        config, run, callbacks, stop, gate=gate), preflight=None)
    port = free_port()
    served = server.serve(manager, small_defaults(str(tiny_model_dir)), port=port, docs_dir=docs)
    nginx = Nginx(port)
    try:
        yield f"http://127.0.0.1:{nginx.port}/hrf/", manager, gate, small_defaults(str(tiny_model_dir))
    finally:
        gate.set()
        manager.wait(20)
        nginx.close()
        served.close()


def first_event(url: str, seconds: float) -> tuple[float, dict, object]:
    """Open the live stream at ``url``; (seconds to its first message, the message, the open stream)."""
    import httpx

    client = httpx.Client(timeout=httpx.Timeout(seconds, read=seconds))
    started = time.time()
    response = client.send(client.build_request("GET", url), stream=True)
    assert response.status_code == 200  # (nginx consumes the X-Accel-Buffering header itself)
    lines = response.iter_lines()
    for line in lines:
        if line.startswith("data: "):
            return time.time() - started, json.loads(line[6:]), (client, response, lines)
    raise AssertionError("the stream ended without a message")


def test_the_app_behind_nginx_at_a_path_prefix(proxied):
    import httpx
    from gradio_client import Client
    from playwright.sync_api import expect, sync_playwright

    from explorer.api import start_params

    url, manager, gate, defaults = proxied
    assert httpx.get(url.replace("/hrf/", "/live/assets/live.js")).status_code == 404  # only the prefix reaches the app

    # gradio_client through the proxy: Start (a fake trainer, held at epoch 1 by the gate) and the status
    client = Client(url, verbose=False)
    notice = client.predict(**start_params(defaults.replace(window=(5, 10))), api_name="/start")["message"]
    assert "Started" in notice
    assert client.predict(api_name="/status")["state"] in ("starting", "running")

    # the live stream through both locations: the first message at once, the next as soon as an epoch ends
    streams = {}
    for location in ("hrf", "hrf-buffered"):
        seconds, message, stream = first_event(url.replace("/hrf/", f"/{location}/") + "live/stream", 10)
        assert seconds < 3 and message["kind"] == "full", (location, seconds)
        streams[location] = stream

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            pages = []
            for address in (url, url + "?view=1"):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
                page.on("console",
                        lambda m, a=address: problems.append(f"console {m.type}: {m.text} {m.location} on {a}")
                        if m.type == "error" else None)
                page.on("request", lambda r: problems.append(f"outside request {r.url}")
                        if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
                page.goto(address)
                pages.append(page)
            page, viewer = pages
            page.locator("button[role=tab]:has-text('Live')").first.click()
            for each in pages:
                expect(each.locator("#hrf-live .hl-status")).to_contain_text("Running", timeout=30_000)
            gate.set()  # the epochs run; both pages follow over the live stream, without reloading
            for each in pages:
                expect(each.locator("#hrf-live .hl-status")).to_contain_text("Done", timeout=30_000)
                expect(each.locator("#trajectory-plot .scatterlayer .point")).not_to_have_count(0, timeout=10_000)
                expect(each.locator("#hrf-live .hl-grids img")).to_have_count(2, timeout=10_000)
                each.wait_for_function("[...document.querySelectorAll('#hrf-live .hl-grids img')]"
                                       ".every(i => i.complete && i.naturalWidth > 0)", timeout=10_000)
            for location, (stream_client, response, lines) in streams.items():  # the same, read by a script
                states = []
                for line in lines:  # a buffering proxy would hold them: the read would time out
                    if line.startswith("data: "):
                        states.append(json.loads(line[6:])["status"]["state"])
                        if states[-1] == "done":
                            break
                response.close()
                stream_client.close()
                assert states and states[-1] == "done", (location, states)

            # the grids and the GIF, at the addresses the page built
            sources = viewer.eval_on_selector_all("#hrf-live .hl-grids img", "els => els.map(e => e.src)")
            gif = viewer.eval_on_selector("#hrf-live a.hl-gif", "a => a.href")
            assert all(s.startswith(url + "live/grid/") for s in sources) and gif.startswith(url + "live/animate/")
            for source in sources:
                response = httpx.get(source)
                assert response.status_code == 200 and response.headers["content-type"] == "image/png"
            response = httpx.get(gif, timeout=60)
            assert response.status_code == 200 and response.content[:6] == b"GIF89a"

            # the Results tab: the report's figures and the gallery load through the proxy
            page.locator("button[role=tab]:has-text('Results')").first.click()
            expect(page.locator("#results-md img")).to_have_count(2, timeout=10_000)
            page.wait_for_function("[...document.querySelectorAll('#results-md img, #results-gallery img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)", timeout=20_000)
            assert page.locator("#results-gallery img").count() >= 1
        finally:
            browser.close()
    assert problems == [], problems
