"""The experiment on a real Ray cluster on this machine (a head node and a worker node joined by address): the
same store as ``--jobs 1`` bit for bit; a worker node killed mid-unit leaves nothing the report counts and the
retry finishes the unit exactly; an unreachable address is one line.

Ray is an optional extra (``requirements-cluster.txt``); ``.ci/run`` installs it, ``scripts/test.sh`` alone skips
these tests where it is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import small_experiment

pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-cluster.txt "
                                  "(.ci/run installs it)")

from ray_cluster import ENV, LocalCluster, free_port  # noqa: E402

from hrf_core.store.runs import Run  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node and one worker node, 1 CPU each, ended by their processes' ids."""
    local = LocalCluster(tmp_path_factory.mktemp("ray"))
    try:
        local.add_worker()
        yield local
    finally:
        local.close()


def progress_of(root: Path) -> dict:
    return json.loads((root / "runs" / "progress.json").read_text())


def test_ray_cluster_gives_the_serial_results(cluster, serial_experiment, tiny_model_dir, tmp_path):
    result = small_experiment.run(*small_experiment.args(tiny_model_dir, tmp_path), "--backend", "ray",
                                  "--address", cluster.address, env=ENV)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    small_experiment.assert_same_runs(tmp_path / "runs", serial_experiment / "runs")
    progress = progress_of(tmp_path)
    assert (progress["backend"], progress["nodes"], progress["workers"], progress["threads"]) == ("ray", 2, 2, 1)
    first_wave = [progress["units"][f"jpeg-compressibility-ddpo-seed{s}"]["where"] for s in (0, 1)]
    assert len({where.split(" node ")[1] for where in first_wave}) == 2  # one unit on each node
    assert "on a Ray cluster of 2 node(s) with 2 CPUs, 2 units at once of 1 thread(s)" in \
        (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "ETA" in result.stdout and "4/4 jpeg-compressibility-handover-seed" in result.stdout
    assert not list((tmp_path / "runs").glob(".ray-driver-*"))  # the driver's shared-store marker is gone
    # finished units are skipped, not sent to the cluster
    again = small_experiment.run(*small_experiment.args(tiny_model_dir, tmp_path), "--backend", "ray", "--address",
                                 cluster.address, env=ENV)
    assert again.returncode == 0 and "0 units to run (4 finished already)" in again.stdout


def test_unreachable_address_is_one_line(tiny_model_dir, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = small_experiment.run(*small_experiment.args(tiny_model_dir, tmp_path), "--backend", "ray", "--address",
                                  address, env=ENV, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot reach a Ray cluster at {address}")


def running_on(node, store: Path) -> Path | None:
    """A run of ``store`` trained right now by a process of ``node``, past its first checkpoint."""
    pids = set(node.pids)
    for folder in store.glob("*-seed*"):
        try:
            status = json.loads((folder / "status.json").read_text())
            holder = int((folder / "train.lock").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if status.get("state") == "running" and holder in pids and Run(folder).checkpoints():  # not a ``.tmp`` one
            return folder
    return None


def test_worker_node_killed_mid_unit(cluster, tiny_model_dir, tmp_path):
    """The unit is cut off on the worker node: the report leaves it out; the driver's retry (on the head node)
    continues it from its checkpoint to the numbers of an uninterrupted run."""
    from hrf_core.store import liveness
    from hrf_core.study.units import finished_runs, train_unit

    worker = cluster.nodes[1]
    argv = small_experiment.args(tiny_model_dir, tmp_path, epochs=10)  # checkpoints at 5 and 10: time to cut in
    driver = subprocess.Popen(small_experiment.command(*argv, "--backend", "ray", "--address", cluster.address),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **ENV})
    try:
        deadline = time.monotonic() + 300
        victim = None
        while victim is None and driver.poll() is None and time.monotonic() < deadline:
            victim = running_on(worker, tmp_path / "runs")
            time.sleep(0.02)
        assert victim is not None, "no unit was seen mid-run on the worker node"
        os.kill(driver.pid, signal.SIGSTOP)  # the driver waits while the store is looked at: no retry yet
        try:
            worker.kill()
            assert json.loads((victim / "status.json").read_text())["state"] == "running"  # cut off mid-unit ...
            assert liveness.holder(victim) is None  # ... by a process that is gone
            assert victim not in finished_runs(tmp_path / "runs")  # what the report reads
        finally:
            os.kill(driver.pid, signal.SIGCONT)
        log = driver.communicate(timeout=400)[0]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, log[-4000:]
    unit = progress_of(tmp_path)["units"][victim.name]
    assert unit["error"] is None and unit["attempts"] == 2, unit
    assert "NodeDiedError" in unit["errors"][0] or "WorkerCrashedError" in unit["errors"][0], unit["errors"]
    assert unit["result"].get("resumed") == 5, unit  # continued from its checkpoint, on the head node
    assert f"{victim.name}: failed on" in log and "trying again" in log
    reference = tmp_path / "reference"  # the same unit, never interrupted, in this process
    config = json.loads((victim / "config.json").read_text())
    train_unit(config, str(reference), victim.name)
    small_experiment.assert_same_runs(tmp_path / "runs", reference, [victim.name])
    assert len(finished_runs(tmp_path / "runs")) == 4
