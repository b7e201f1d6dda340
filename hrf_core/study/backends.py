"""Where an experiment's units run: a process pool on this machine, or a Ray cluster (:func:`open_backend`).

- ``pool``: ``jobs`` spawned processes (no state leaks from the parent), each with ``threads`` torch threads
  (default: the cores divided among the jobs) and, when GPUs are visible, one GPU (job slot i gets GPU
  i mod G, via ``CUDA_VISIBLE_DEVICES`` set before CUDA starts).
- ``ray``: each unit is a Ray task that declares its resources: ``threads`` CPUs (default 1) and ``gpus`` GPUs
  (a fraction shares one); Ray pins the GPU. Every ready unit is submitted and the cluster queues them (an
  autoscaler sees the whole queue); ``jobs`` caps the units in flight. The cluster is joined at ``address``,
  else ``$RAY_ADDRESS``, else the one ``ray start`` started on this machine; an unreachable address is one
  line (:class:`ValueError`) within seconds. Ray is an optional extra (``requirements-cluster.txt``).

Both run the same :func:`hrf_core.study.sweep.call` after :func:`~hrf_core.study.sweep.set_threads`, so a unit's
result does not depend on the backend. Units write the run store themselves, so on Ray the store must be a
folder every node mounts at the same path (``shared``: each task checks that it sees the driver's marker
there; see docs/ARCHITECTURE.md, "Sweeps beyond one machine").
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

from hrf_core.study.sweep import Outcome, Unit, call, default_threads, set_threads

BACKENDS = ("pool", "ray")
#: The install line of the optional Ray extra (printed when it is missing).
RAY_INSTALL = "pip install -r requirements-cluster.txt"
#: Seconds to wait for the cluster's address to answer before giving up.
CONNECT_TIMEOUT = 5.0
#: Variables of the driver's environment that Ray tasks get too (offline mode, caches, store limits, ...).
FORWARDED_PREFIXES = ("HF_", "HRF_", "TRANSFORMERS_", "DIFFUSERS_")


def backend_from_arguments(args, shared: Path):
    """:func:`open_backend` from the flags of :func:`hrf_core.commands.sitting.add_backend_arguments` (and
    ``--device``); ``shared``: the run store, which every Ray node must see."""
    if args.backend != "ray" and (args.address or args.gpus_per_unit is not None):
        raise ValueError("--address and --gpus-per-unit are for --backend ray")
    device = getattr(args, "device", "cpu")
    gpus = args.gpus_per_unit if args.gpus_per_unit is not None else float(device != "cpu")
    return open_backend(args.backend, jobs=args.jobs, threads=args.threads, address=args.address, gpus=gpus,
                        shared=shared)


@contextmanager
def open_backend(name: str, *, jobs: int | None = None, threads: int | None = None, address: str | None = None,
                 gpus: float = 0.0, shared: Path | None = None):
    """The backend ``name`` (:data:`BACKENDS`), closed when the block ends."""
    if name == "pool":
        backend = PoolBackend(jobs or 1, threads)
    elif name == "ray":
        backend = RayBackend(address, threads or 1, gpus, shared, jobs)
    else:
        raise ValueError(f"unknown backend {name!r}: choose from {', '.join(BACKENDS)}")
    try:
        yield backend
    finally:
        backend.close()


# ------------------------------------------------------------------------------------------------ pool
def _gpu_list() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        return []


def _init_worker(slots, threads: int, gpus: list[str]) -> None:
    """Runs first in each worker: take a job slot, pin a GPU and set the thread count before torch starts work."""
    slot = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    set_threads(threads)


class PoolBackend:
    """``jobs`` processes on this machine (see the module's docstring)."""

    name = "pool"

    def __init__(self, jobs: int = 1, threads: int | None = None):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.workers = self.capacity = jobs
        self.threads = threads or default_threads(jobs)
        self.nodes, self.cpus = 1, os.cpu_count() or 1
        context = multiprocessing.get_context("spawn")
        self._manager = context.Manager()
        slots = self._manager.Queue()
        for slot in range(jobs):
            slots.put(slot)
        self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                                         initargs=(slots, self.threads, _gpu_list()))

    def submit(self, unit: Unit):
        return self._pool.submit(call, unit.fn, unit.args)

    def wait(self, handles: list) -> list[tuple[object, Outcome]]:
        finished, _ = wait(handles, return_when=FIRST_COMPLETED)
        out = []
        for future in finished:
            try:
                out.append((future, future.result()))
            except Exception as error:  # noqa: BLE001 - a worker process died (BrokenProcessPool)
                out.append((future, (None, f"{type(error).__name__}: {error}", 0.0, "")))
        return out

    def close(self) -> None:
        self._pool.shutdown()
        self._manager.shutdown()


# ------------------------------------------------------------------------------------------------- ray
def import_ray():
    """The ``ray`` module, or one line naming the install command."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"--backend ray needs Ray, an optional extra: {RAY_INSTALL}") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise ValueError (one line) unless something answers at ``address`` (``host:port`` or ``ray://host:port``);
    other forms (``auto``) are left to Ray."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise ValueError(f"cannot reach a Ray cluster at {address} ({error.strerror or error}): start its head with "
                         "`ray start --head --port PORT`, or fix --address / RAY_ADDRESS") from None


def _ray_call(fn, args: tuple, threads: int, marker: str | None) -> Outcome:
    """One unit in a Ray worker: check that the run store is the driver's, set the threads, run it."""
    if marker is not None and not Path(marker).is_file():
        where = f"{socket.gethostname()} pid {os.getpid()}"
        return (None, f"SharedStoreError: this node ({where}) does not see the run store {Path(marker).parent}: "
                "--out must be a folder every node mounts at the same path", 0.0, where)
    set_threads(threads)
    result, error, seconds, where = call(fn, args)
    import ray

    return result, error, seconds, f"{where} node {ray.get_runtime_context().get_node_id()[:8]}"


class RayBackend:
    """Units as Ray tasks on a cluster (see the module's docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None, threads: int = 1, gpus: float = 0.0, shared: Path | None = None,
                 jobs: int | None = None):
        from hrf_core import REPO_ROOT

        ray = import_ray()
        if threads < 1 or gpus < 0 or (jobs is not None and jobs < 1):
            raise ValueError("--threads and --jobs must be >= 1 and --gpus-per-unit >= 0")
        address = address or os.environ.get("RAY_ADDRESS") or "auto"
        check_reachable(address)
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}
        env.update(OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE",
                   PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False,
                     configure_logging=False)
        except Exception as error:  # noqa: BLE001 - ConnectionError, RuntimeError, ...: one line either way
            raise ValueError(f"cannot join the Ray cluster at {address}: {' '.join(str(error).split())[:300]}") \
                from None
        self._ray, self.threads, self.capacity = ray, threads, jobs
        resources = ray.cluster_resources()
        self.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        self.cpus = int(resources.get("CPU", 0))
        workers = self.cpus // threads
        if gpus:
            if resources.get("GPU", 0) < gpus:
                ray.shutdown()
                raise ValueError(f"the Ray cluster at {address} has {resources.get('GPU', 0):g} GPUs and each unit "
                                 f"asks for {gpus:g}: pass --gpus-per-unit 0 with --device cpu")
            workers = min(workers, int(resources["GPU"] // gpus))
        self.workers = max(1, min(workers, jobs or workers))
        self._marker = None
        if shared is not None:  # every task checks that it sees this file: the store is shared
            shared.mkdir(parents=True, exist_ok=True)
            self._marker = shared.resolve() / f".ray-driver-{secrets.token_hex(6)}"
            self._marker.write_text(f"{socket.gethostname()} pid {os.getpid()}\n")
        # Ray retries nothing: run_units records each failure and decides on the retry
        self._remote = ray.remote(_ray_call).options(num_cpus=threads, num_gpus=gpus, max_retries=0)

    def submit(self, unit: Unit):
        return self._remote.remote(unit.fn, unit.args, self.threads,
                                   str(self._marker) if self._marker is not None else None)

    def wait(self, handles: list) -> list[tuple[object, Outcome]]:
        ready, _ = self._ray.wait(handles, num_returns=1)
        out = []
        for ref in ready:
            try:
                out.append((ref, self._ray.get(ref)))
            except Exception as error:  # noqa: BLE001 - the worker or its node died (WorkerCrashedError, NodeDiedError)
                out.append((ref, (None, f"{type(error).__name__}: {' '.join(str(error).split())}", 0.0, "")))
        return out

    def close(self) -> None:
        if self._marker is not None:
            self._marker.unlink(missing_ok=True)
        self._ray.shutdown()
