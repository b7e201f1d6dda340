"""An experiment's units and how a sitting runs them: train one arm (:func:`train_unit`), evaluate a hand-over
(:func:`handover_unit`), ``frontier-digits``'s units in run order (:func:`build_units`), and a sitting over a
backend that rewrites its progress file as each unit ends (:func:`run_experiment`, :func:`read_progress`).

Every unit holds its run's lock (:mod:`hrf_core.store.liveness`) while it decides and writes, is skipped once
"done" and continues an unfinished run from its checkpoint.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from hrf_core.config import TrainConfig
from hrf_core.methods import Handover
from hrf_core.store import liveness
from hrf_core.store.runs import Run, RunStore, checkpoint_epoch, is_run_folder, read_json, write_json
from hrf_core.study.arms import (
    HANDOVER_ARM,
    Settings,
    arm_config,
    arm_priority,
    arm_role,
    arms_of,
    handover_source,
    run_name,
)


def is_done(path: Path) -> bool:
    """Whether the run folder ``path`` holds a finished run (a unit cut off mid-run never says "done")."""
    run = Run(path)
    return run.status_path.is_file() and run.status.get("state") == "done"


def finished_runs(out: Path) -> list[Path]:
    """The store's finished runs: what the report reads (a unit cut off mid-run is left out, not half-read)."""
    return [p for p in sorted(out.iterdir()) if is_done(p)]


def report_settings(settings, finished: list[Path]):
    """``settings`` with the seeds the finished runs hold (a store filled seed by seed, one sitting each, is
    reported with all its seeds, not the last sitting's)."""
    from dataclasses import replace

    seeds = sorted({int(Run(p).config["seed"]) for p in finished})
    return replace(settings, seeds=seeds) if seeds else settings


@contextmanager
def claimed(path: Path):
    """Hold the unit's run lock (:mod:`hrf_core.store.liveness`) while it is decided and written, so two drivers
    never work on one unit: the second gets :class:`~hrf_core.store.liveness.RunBusy`. The folder is made first
    (empty: :meth:`RunStore.create` takes a folder whose lock this process holds)."""
    path.mkdir(parents=True, exist_ok=True)
    liveness.hold(path)
    try:
        yield
    finally:
        liveness.release(path)


def clear(path: Path) -> None:
    """Empty a claimed unit's folder of an unfinished run that cannot continue; its lock file stays (held)."""
    import shutil

    for item in path.iterdir():
        if item.name != liveness.LOCK_NAME:
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()


def train_unit(config: dict, root: str, name: str, report_to: tuple[str, ...] = ()) -> dict:
    """Train one arm to the end, under its run lock: a finished run is skipped, an unfinished one continues from
    its latest checkpoint before the last epoch (the same numbers as an uninterrupted run), else starts again."""
    from hrf_core.rl.launch import continue_run, start_run

    config = TrainConfig.from_dict(config)
    path = Path(root) / name
    with claimed(path):
        if is_run_folder(path):
            run = Run(path)
            if is_done(path):
                return {"run": name, "skipped": True}
            saved = [c for c in run.checkpoints() if checkpoint_epoch(c) < config.epochs]
            if saved:
                continue_run(run, checkpoint=saved[-1], report_to=report_to).train()
                return {"run": name, "resumed": checkpoint_epoch(saved[-1])}
        clear(path)
        start_run(config, RunStore(root), name, report_to=report_to).train()
    return {"run": name}


def handover_unit(source: str, root: str, name: str, every: int, arm: str = HANDOVER_ARM) -> dict:
    """Evaluate hand-over sampling from the final checkpoint of DDPO run ``source`` for S = K, K - every, ..., 0.

    Writes a derived run (method ``handover``) whose rows are ordered from S = K (the base model) to
    S = 0 (the DDPO checkpoint), so its reward gain grows along the rows like a training run's. Under its run
    lock; "done" only once every row is written; refused while ``source`` is unfinished.
    """
    from hrf_core.imaging import image_grid
    from hrf_core.measure.evaluation import Evaluator
    from hrf_core.models.registry import load_base_model
    from hrf_core.rewards.registry import make_reward
    from hrf_core.rl.sampling import round_robin, sample_from, sample_grid

    ddpo = Run(Path(root) / source)
    path = Path(root) / name
    with claimed(path):
        if is_done(path):
            return {"run": name, "skipped": True}
        if not is_done(ddpo.path):
            raise ValueError(f"hand-over {name} needs its DDPO run {source} finished first")
        config = dict(ddpo.config)
        k = int(config["num_steps"])
        checkpoint = ddpo.checkpoints()[-1]
        rows = ddpo.metrics()
        trained = next(r for r in reversed(rows) if r.get("epoch") == checkpoint_epoch(checkpoint))
        config["extra"] = {**config.get("extra", {}), "arm": arm, "source_run": source,
                           "source_checkpoint": checkpoint.name}
        config["method"] = Handover.name
        clear(path)
        run = RunStore(root).create(config, name=name)
        tuned, base = load_base_model(str(checkpoint), "cpu"), load_base_model(config["model"], "cpu")
        reward_fn = make_reward(config["reward"])
        evaluator = Evaluator(base.image_shape)
        prompts = round_robin(config["prompts"], config["eval_samples"]) if config.get("prompts") else None
        for order, handover in enumerate(range(k, -1, -every) if k % every == 0 else [*range(k, 0, -every), 0]):
            images = sample_from(tuned, config["eval_samples"], config["eval_seed"], k, config["eval_eta"],
                                 early=base, handover=handover, prompts=prompts,
                                 guidance=config.get("guidance", 1.0))
            arrays: dict = {}
            metrics = evaluator(images, reward_fn(images, prompts).float().cpu(), arrays=arrays, prompts=prompts)
            run.append_metrics({"epoch": order, "order": order, "handover": handover,
                                "compute": trained["compute"], **metrics})
            run.save_grid(sample_grid(images, prompts) if prompts else image_grid(images[:64], scale=2), order)
            run.save_eval(arrays, order)
        run.set_status("done", k, k, "finished")
    return {"run": name}


def arm_units(pairs, seeds, root: Path, every: int, config_of, report_to: tuple[str, ...] = ()) -> list:
    """The units of the (task, arm) ``pairs`` in their order, each over ``seeds``: a hand-over arm evaluates the
    final checkpoint of its trained arm's run (same task and seed; S every ``every`` steps) and waits for it; any
    other arm trains ``config_of(task, arm, seed)`` (a :class:`TrainConfig`)."""
    from hrf_core.study.sweep import Unit

    units = []
    for task, arm in pairs:
        for seed in seeds:
            name = run_name(task, arm, seed)
            source = handover_source(arm)
            if source is not None:
                trained = run_name(task, source, seed)
                units.append(Unit(name, handover_unit, (trained, str(root), name, every, arm), after=(trained,)))
            else:
                config = config_of(task, arm, seed).to_dict()
                units.append(Unit(name, train_unit, (config, str(root), name, report_to)))
    return units


def build_units(settings: Settings, root: Path, device: str = "cpu", report_to: tuple[str, ...] = ()):
    """``frontier-digits``' units, arm by arm in :data:`~hrf_core.study.arms.RUN_ORDER` (``settings.arms`` only,
    when given)."""
    pairs = sorted(((task, arm) for task in settings.tasks for arm in arms_of(task, settings)
                    if not settings.arms or arm in settings.arms or arm_role(arm, settings) in settings.arms),
                   key=lambda pair: arm_priority(pair[1], settings))  # stable: tasks keep their order within an arm
    return arm_units(pairs, settings.seeds, root, settings.handover_every,
                     lambda task, arm, seed: arm_config(task, arm, seed, settings, device), report_to)


def progress_name(shard: tuple[int, int] | None = None) -> str:
    """The progress file of a sitting: ``progress.json``, or one per shard (``progress-shard-1-of-4.json``), so
    shards that share a store never rewrite each other's."""
    return "progress.json" if shard is None else f"progress-shard-{shard[0]}-of-{shard[1]}.json"


def run_experiment(settings, out: Path, backend, device: str = "cpu", report_to: tuple[str, ...] = (),
                   shard: tuple[int, int] | None = None, build=None) -> dict:
    """Run every unit (of ``shard`` i/N only, when given) on ``backend`` (:mod:`hrf_core.study.backends`),
    skipping finished ones; rewrites the sitting's progress file as each ends and prints each with an ETA.
    ``settings``: any experiment's settings dataclass; ``build(settings, out, device, report_to)``: its units, each
    named after the run folder it writes (default this experiment's).

    The progress file records the backend, its workers, threads, nodes and CPUs, and the wall time (earlier
    sittings' included); each unit its seconds, attempts and errors, where it ran, and its result.
    """
    from hrf_core.study.sweep import run_units
    from hrf_core.study.sweep import shard as shard_of

    out.mkdir(parents=True, exist_ok=True)
    progress_file = out / progress_name(shard)
    progress = read_json(progress_file, {}) or {}
    progress.setdefault("units", {})
    progress["settings"] = asdict(settings)
    progress.update(backend=backend.name, workers=backend.workers, threads=backend.threads, nodes=backend.nodes,
                    cpus=backend.cpus, shard=list(shard) if shard else None)
    progress.pop("jobs", None)  # written by earlier versions: now "workers"
    # earlier sittings count up to their last finished unit; this one adds its own time as units finish
    previous_wall = progress.get("wall_seconds", 0.0)
    progress.pop("previous_wall", None)  # written by earlier versions: it only repeated wall_seconds
    started = time.time()

    units = (build or build_units)(settings, out, device, report_to)
    if shard is not None:
        units = shard_of(units, *shard)
    finished = {u.name for u in units if is_done(out / u.name)}
    for name in finished:  # skipped here, not sent to a worker
        progress["units"][name] = {"seconds": 0.0, "error": None, "result": {"run": name, "skipped": True},
                                   "attempts": 0, "finished": started}
    units = [u for u in units if u.name not in finished]
    for unit in units:
        unit.after = tuple(d for d in unit.after if d not in finished)
    count = {"done": 0}
    print(f"{len(units)} units to run ({len(finished)} finished already) on the {backend.name} backend: "
          f"{backend.workers} at once, {backend.threads} thread(s) each"
          + (f", shard {shard[0]}/{shard[1]}" if shard else ""), flush=True)

    def on_retry(unit) -> None:
        print(f"[{time.time() - started:7.0f}s] {unit.name}: failed on {unit.where or '?'}, trying again\n"
              f"{unit.error}", flush=True)

    def on_done(unit) -> None:
        progress["units"][unit.name] = {"seconds": unit.seconds, "error": unit.error, "result": unit.result,
                                        "attempts": unit.attempts, "errors": unit.errors, "where": unit.where,
                                        "finished": time.time()}
        elapsed = time.time() - started
        progress["wall_seconds"] = previous_wall + elapsed
        write_json(progress_file, progress)
        count["done"] += 1
        left = len(units) - count["done"]
        eta = f", ETA {elapsed / count['done'] * left / 60:.1f} min" if left else ""
        state = "failed" if unit.error else "done"
        print(f"[{elapsed:7.0f}s] {count['done']}/{len(units)} {unit.name}: {state} in {unit.seconds:.0f}s"
              + (f" on {unit.where}" if unit.where else "") + eta
              + (f"\n{unit.error}" if unit.error else ""), flush=True)

    run_units(units, backend, on_done=on_done, on_retry=on_retry)
    progress["wall_seconds"] = previous_wall + time.time() - started
    write_json(progress_file, progress)
    return progress


def read_progress(out: Path) -> dict:
    """Every sitting's progress file in ``out`` (shards too) as one: the settings, the units (the latest record
    of each) and ``sittings``, one per file (backend, workers, threads, nodes, CPUs, shard, wall seconds)."""
    merged: dict = {"units": {}, "sittings": []}
    for file in sorted(out.glob("progress*.json")):
        data = read_json(file, {}) or {}
        if data.get("settings"):
            if "settings" in merged and merged["settings"] != data["settings"]:
                print(f"warning: {file.name} was run with other settings than the first progress file")
            merged.setdefault("settings", data["settings"])
        for name, unit in data.get("units", {}).items():
            if unit.get("finished", 0) >= merged["units"].get(name, {}).get("finished", 0):
                merged["units"][name] = unit
        merged["sittings"].append({"file": file.name, "backend": data.get("backend", "pool"),
                                   "workers": data.get("workers", data.get("jobs")), "threads": data.get("threads"),
                                   "nodes": data.get("nodes", 1), "cpus": data.get("cpus"), "shard": data.get("shard"),
                                   "wall_seconds": data.get("wall_seconds", 0.0)})
    return merged
