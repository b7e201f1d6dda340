"""A real Ray cluster on this machine for the tests: a head node and worker nodes that join it by address.

Each node is its own ``ray start --block`` (its own temp dir, 1 CPU, a small object store), started in a
session of its own under ``timeout``, so every process of a node (raylet, agents, Ray workers) shares that
session id: a node is ended, or killed mid-unit, by the ids of exactly the processes it started (never
``ray stop``, which would end other people's clusters too).

Everything binds to 127.0.0.1, and joining takes the cluster's own token (:data:`ENV`). Ray on Linux turns a
node address of 127.0.0.1 into the machine's outward IP and then listens there;
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps 127.0.0.1, but Ray's CLI refuses to start a worker node under it
(a guard meant for macOS and Windows), so the nodes are started by :data:`NODE_MAIN`: the same ``ray
start`` with that guard lifted. Drivers get the same variable (:data:`ENV`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The environment of the nodes and of drivers that join them: a token of their own (so neither another local
#: user nor a token left in ~/.ray by another Ray user changes who may join).
ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
       "RAY_AUTH_TOKEN": secrets.token_hex(32)}
#: ``ray start`` for a node at 127.0.0.1 (see the module docstring); run as ``python -c NODE_MAIN start ...``.
NODE_MAIN = """
import sys, types
import ray._private.ray_constants as constants
import ray.scripts.scripts as scripts
scripts.ray_constants = types.SimpleNamespace(**{**vars(constants), "ENABLE_RAY_CLUSTER": True})
sys.exit(scripts.main())
"""
#: Seconds a node may take to start on a busy 2-core machine, and the most a node may live.
START_TIMEOUT, LIFETIME = 120, 1500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """The processes of session ``sid`` (a node started here: its leader's pid)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[3]) == sid:  # state, ppid, pgrp, session
            pids.append(int(entry.name))
    return pids


class Node:
    def __init__(self, process: subprocess.Popen, log: Path):
        self.process, self.log = process, log

    @property
    def pids(self) -> list[int]:
        return session_pids(self.process.pid)

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ray runtime started" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a Ray node did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL every process of the node, at once (a node that dies), and wait until they are gone."""
        for _ in range(3):  # a process may start while we kill: sweep again
            pids = self.pids
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while self.pids and time.monotonic() < deadline:
            time.sleep(0.1)


class LocalCluster:
    """A head node at 127.0.0.1:port (``address``) and worker nodes joined with ``ray start --address``."""

    def __init__(self, root: Path, cpus: int = 1):
        self.root, self.cpus = Path(root), cpus
        # Ray's socket paths (under --temp-dir) must stay under 108 characters: pytest's tmp paths grow with each
        # xdist worker's folder, so the nodes' temp dirs are short ones of their own, removed by close()
        self.short = Path(tempfile.mkdtemp(prefix="ray-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []
        self.head = self._start("head", ["--head", "--port", str(self.port), "--node-ip-address", "127.0.0.1",
                                         "--include-dashboard=false", "--dashboard-port", str(free_port()),
                                         "--ray-client-server-port", str(free_port())])

    def add_worker(self) -> Node:
        return self._start(f"worker{len(self.nodes)}", ["--address", self.address])

    def _start(self, name: str, args: list[str]) -> Node:
        temp = self.short / name
        temp.mkdir(parents=True)
        log = self.root / f"{name}.log"
        command = ["timeout", "-s", "KILL", str(LIFETIME), sys.executable, "-c", NODE_MAIN, "start", "--block",
                   *args, "--num-cpus", str(self.cpus), "--num-gpus", "0", "--object-store-memory", str(100 << 20),
                   "--temp-dir", str(temp), "--dashboard-agent-listen-port", str(free_port()),
                   "--metrics-export-port", str(free_port()), "--disable-usage-stats"]
        with open(log, "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, **ENV}, cwd=self.root)
        node = Node(process, log)
        self.nodes.append(node)
        node.wait_started()
        return node

    def close(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        shutil.rmtree(self.short, ignore_errors=True)
