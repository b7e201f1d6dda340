"""Deployment: the served app killed with -9 mid-epoch and continued from the page's API (every epoch logged
once, the weights of an uninterrupted run); where runs go on a Space; a Space as a non-root user with a
read-only repository writes nothing into it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from explorer.api import start_params
from explorer.server import free_port
from explorer.storage import runs_location
from hrf_core import REPO_ROOT
from hrf_core.config import TrainConfig
from hrf_core.store.runs import RunStore

SECRET = "podium-41c7"


def small_config(model: str) -> TrainConfig:
    return TrainConfig(model=model, method="hrf", window=(4, 10), num_steps=10, epochs=7, samples_per_epoch=8,
                       batch_size=8, siblings=4, eval_samples=16, train_batch_size=8, updates_per_epoch=1,
                       eval_every=3)


def app_env(env: dict) -> dict:
    """This process's environment without the app's own settings, offline, one torch thread, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HRF_", "GRADIO_", "SPACE_"))}
    return {**base, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "HRF_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}


class App:
    """``python app.py`` in a subprocess (its own process: it can be killed with -9)."""

    def __init__(self, env: dict, user: list[str] | None = None, cwd: Path = REPO_ROOT, repo: Path = REPO_ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="hrf-app-", suffix=".log", delete=False)
        env = app_env({"GRADIO_SERVER_PORT": str(self.port), "GRADIO_SERVER_NAME": "127.0.0.1", **env})
        self.process = subprocess.Popen([*(user or []), sys.executable, str(repo / "app.py")], env=env, cwd=cwd,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        import httpx

        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "status", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"the app did not start:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def status(self) -> dict:
        import httpx

        return httpx.get(self.url + "status", timeout=10).json()

    def wait_for(self, state: str, run_id: str, seconds: float = 180) -> dict:
        deadline = time.time() + seconds
        while time.time() < deadline:
            status = self.status()
            if (status["state"], status["run_id"]) == (state, run_id):
                return status
            time.sleep(0.1)
        raise AssertionError(f"not {state} after {seconds} s: {self.status()}\n{self.output()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        Path(self.log.name).unlink(missing_ok=True)


def tensors(checkpoint: Path) -> dict:
    return load_file(next((checkpoint / "unet").glob("*.safetensors")))


@pytest.mark.slow
def test_kill_9_mid_epoch_then_continue_from_the_app(tmp_path, tiny_model_dir):
    """The served app is killed (-9) in epoch 6 of 7; restarted, it says "interrupted at epoch k" at once;
    Continue (the API of the Runs tab's button, token-guarded) trains on from epoch 5's checkpoint: every epoch
    is logged once, and the weights equal an uninterrupted run's."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    env = {"HRF_RUNS_DIR": str(tmp_path / "runs"), "HRF_PRESENTER_TOKEN": SECRET}
    config = small_config(str(tiny_model_dir))
    served = App(env)
    try:
        notice = Client(served.url, verbose=False).predict(**start_params(config, SECRET), api_name="/start")["message"]
        assert "Started" in notice, served.output()
        run = RunStore(tmp_path / "runs").list()[0]
        deadline = time.time() + 180
        while not (run.checkpoint_dir(5).is_dir() and run.status.get("message") == "epoch 6/7") \
                and time.time() < deadline:  # (a loaded machine may show the checkpoint before the status)
            time.sleep(0.002)
        served.kill()  # mid-epoch 6: the trainer starts it as soon as epoch 5's checkpoint is in place
    finally:
        served.close()
    status = run.status
    assert (status["state"], status["message"]) == ("running", "epoch 6/7"), status  # nothing cleaned up
    original = run.config

    served = App(env)  # the app again, on the same store
    try:
        status = served.status()
        assert status["state"] == "interrupted" and status["status"] in ("interrupted at epoch 5",
                                                                           "interrupted at epoch 6"), status
        client = Client(served.url, verbose=False)
        with pytest.raises(AppError, match="presenter mode"):
            client.predict(run_id=run.run_id, more_epochs=2, token="", api_name="/continue")
        assert served.status()["state"] == "interrupted"
        notice = client.predict(run_id=run.run_id, more_epochs=2, token=SECRET, api_name="/continue")["message"]
        assert f"Continuing {run.run_id} from epoch 5 to epoch 7" in notice, (notice, served.output())
        assert served.wait_for("done", run.run_id)["epoch"] == 7
    finally:
        served.close()

    assert [r["epoch"] for r in run.metrics()] == list(range(8))  # every epoch logged exactly once
    reference = RunStore(tmp_path / "reference").create(original, name="uninterrupted")
    from hrf_core.rl.trainer import Trainer

    Trainer(TrainConfig.from_dict(original), reference).train()
    drop = {"seconds", "sample_seconds", "update_seconds", "eval_seconds", "logged_at"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in run.metrics()] == \
        [{k: v for k, v in r.items() if k not in drop} for r in reference.metrics()]
    a, b = tensors(run.checkpoint_dir(7)), tensors(reference.checkpoint_dir(7))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------- Spaces
def test_where_runs_go(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    assert runs_location({"HRF_RUNS_DIR": "/x/runs", "SPACE_ID": "a/b"}).path == Path("/x/runs")
    on_space = runs_location({"SPACE_ID": "a/b", "HRF_DATA_DIR": str(data)}, repo_root=tmp_path / "repo")
    assert on_space.path == data / "runs" and on_space.persistent and "persistent storage" in on_space.note
    bare = runs_location({"SPACE_ID": "a/b", "HRF_DATA_DIR": str(tmp_path / "none")}, repo_root=tmp_path / "repo")
    assert bare.path == tmp_path / "repo" / "runs" and not bare.persistent and "lost when it restarts" in bare.note
    local = runs_location({}, repo_root=tmp_path / "repo")
    assert (local.path, local.note) == (tmp_path / "repo" / "runs", "")


def snapshot(folder: Path) -> dict:
    """Every file and folder below ``folder`` (without following links) with its size and modification time."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            stat = path.lstat()
            out[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return out


def as_nobody() -> list[str] | None:
    """A command prefix that runs as the unprivileged user ``nobody``, or None where that is impossible."""
    if os.geteuid() != 0:
        return None
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    return None


def nobody_can(prefix: list[str], *command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, **kwargs)


def scratch_for_nobody(prefix: list[str], name: str = "hrf-space-") -> Path:
    """A new folder of root's (mode 755) that 'nobody' can reach: under TMPDIR, or /tmp, or /var/tmp."""
    for base in dict.fromkeys((tempfile.gettempdir(), "/tmp", "/var/tmp")):
        if Path(base).is_dir() and nobody_can(prefix, "test", "-x", base).returncode == 0:
            folder = Path(tempfile.mkdtemp(prefix=name, dir=base))
            folder.chmod(0o755)
            return folder
    pytest.skip("no temporary folder that 'nobody' can reach (TMPDIR, /tmp, /var/tmp)")


def read_only_copy_of_the_repository(target: Path) -> None:
    """The files git would commit (tracked, and untracked unless ignored) copied into ``target``: root's,
    readable by everyone, writable by no one else; symlinks stay links. Without git: the tree less .git, .venv,
    runs and caches."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True) if shutil.which("git") else None
    if listed is not None and listed.returncode == 0:
        names = sorted({name for name in listed.stdout.decode().split("\0") if name})
    else:
        names = []
        for root, dirs, files in os.walk(REPO_ROOT):
            dirs[:] = [d for d in dirs if d not in (".git", ".venv", "runs", "__pycache__", ".pytest_cache",
                                                    ".ruff_cache")]
            names += [str(Path(root, name).relative_to(REPO_ROOT)) for name in files]
    target.mkdir(mode=0o755)
    for name in names:
        source, copy = REPO_ROOT / name, target / name
        if not (source.is_symlink() or source.is_file()):  # deleted, or a folder (a submodule)
            continue
        for folder in reversed(copy.relative_to(target).parents[:-1]):
            (target / folder).mkdir(exist_ok=True)
            (target / folder).chmod(0o755)
        shutil.copy2(source, copy, follow_symlinks=False)
        if not copy.is_symlink():
            copy.chmod(0o755 if source.stat().st_mode & 0o100 else 0o644)
    target.chmod(0o755)


IMPORTS = "import gradio, importlib.util as u; assert all(u.find_spec(m) for m in ('torch', 'diffusers', 'open_clip'))"


def nobody_with_this_python(prefix: list[str], env: dict, cwd: Path) -> list[str]:
    """``prefix``, if 'nobody' can run this interpreter and import the app's packages with it; else (a venv or
    interpreter in a private folder, such as a clone under ``mktemp -d`` or root's home) ``prefix`` that also
    grants CAP_DAC_READ_SEARCH: 'nobody' may then read any file, and still write only where 'nobody' may."""
    tried = nobody_can(prefix, sys.executable, "-c", IMPORTS, env=env, cwd=cwd)
    if tried.returncode == 0:
        return prefix
    if prefix[0] != "setpriv":
        pytest.skip(f"'nobody' cannot run {sys.executable} with its packages, and runuser cannot lend it "
                    f"the right to read them: {tried.stderr.strip()[-300:]}")
    reading = [*prefix, "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    granted = nobody_can(reading, sys.executable, "-c", IMPORTS, env=env, cwd=cwd)
    assert granted.returncode == 0, f"'nobody' cannot run {sys.executable}, even allowed to read every file:\n" \
                                    f"{tried.stderr[-1000:]}\n{granted.stderr[-1000:]}"
    return reading


@pytest.mark.slow
@pytest.mark.skipif(as_nobody() is None, reason="needs root and setpriv or runuser to run the app as 'nobody'")
def test_a_space_as_nobody_writes_nothing_into_the_repository(tiny_model_dir):
    """SPACE_ID set, persistent storage at the (injected) /data: runs go to /data/runs and the page says so once;
    the shipped examples are served; a run trains; the repository (a copy of the checkout, read-only for 'nobody',
    wherever the checkout lies) is unchanged."""
    import httpx
    from gradio_client import Client

    prefix = as_nobody()
    scratch = scratch_for_nobody(prefix)
    try:
        repo = scratch / "repo"
        read_only_copy_of_the_repository(repo)
        for name in ("data", "home", "tmp"):
            (scratch / name).mkdir()
        shutil.copytree(tiny_model_dir, scratch / "model")
        for name in ("data", "home", "tmp", "model"):
            subprocess.run(["chown", "-R", "nobody:nogroup", str(scratch / name)], check=True)
        env = {"SPACE_ID": "someone/hrf-explorer", "HRF_DATA_DIR": str(scratch / "data"), "HOME": str(scratch / "home"),
               "TMPDIR": str(scratch / "tmp"), "GRADIO_TEMP_DIR": str(scratch / "tmp" / "gradio"),
               "HF_HOME": str(scratch / "home" / "hf"), "MPLCONFIGDIR": str(scratch / "home" / "mpl")}
        user = nobody_with_this_python(prefix, app_env(env), scratch / "home")
        assert nobody_can(user, "test", "-r", str(repo / "app.py")).returncode == 0
        assert nobody_can(user, "test", "-w", str(repo)).returncode != 0  # the repository is read-only for it
        before = snapshot(repo)
        served = App(env, user=user, cwd=scratch / "home", repo=repo)
        try:
            config = httpx.get(served.url + "config", timeout=30).text
            note = f"persistent storage ({scratch / 'data' / 'runs'})"
            assert config.count(note) == 1, served.output()  # the page says so, once
            state = httpx.get(served.url + "live/state", timeout=30).json()
            assert state["runs"] and all(r["example"] for r in state["runs"])  # the shipped examples
            grid = httpx.get(served.url + state["runs"][0]["rows"][-1]["grid"], timeout=30)
            gif = httpx.get(served.url + state["runs"][0]["animate"], timeout=120)
            assert grid.status_code == 200 and gif.status_code == 200 and gif.content[:6] == b"GIF89a"
            model = str(scratch / "model")
            notice = Client(served.url, verbose=False).predict(
                **start_params(small_config(model).replace(epochs=2)), api_name="/start")["message"]
            assert "Started" in notice, served.output()
            runs = [p for p in (scratch / "data" / "runs").iterdir() if (p / "config.json").is_file()]
            assert served.wait_for("done", runs[0].name)["epoch"] == 2
            assert len(runs) == 1 and [json.loads(line)["epoch"] for line in
                                       (runs[0] / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
            assert "Traceback" not in served.output(), served.output()
        finally:
            served.close()
        assert snapshot(repo) == before  # nothing written into the repository
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
