"""``frontier-digits``: every method at matched reward and compute against DDPO's own trajectory.

``python -m hrf_core experiment frontier-digits [--seeds 0 1 2] [--jobs 2 | --backend ray] [--shard i/N]
[--report-only]``

Arms (all on the embedded digits model, the same samples per epoch, epochs and evaluations):

- ``ddpo``: every step from pure noise; its evaluated epochs are the early-stopping frontier;
- ``ddpo+kl<c>``: DDPO with the KL penalty to the frozen base model (DPOK), coefficient c;
- ``hrf[20,40)`` / ``hrf[30,40)``: HRF windows, start ~ U per batch;
- ``hrf-d``: the dynamic start finder;
- ``random-start`` (ablation): re-noised starts with s ~ U{0..K-1}, all later steps trained;
- ``renoise-fixed`` (ablation): re-noised starts at the fixed step K/2, no sliding;
- ``hrf-sliding``: the paper's schedule: the window [0, K/2) for the first half of the epochs, then
  [K/2, K);
- ``<hrf arm>/image`` (ablation, on ``--ablation-tasks``): each HRF window and HRF-D again, with
  advantages standardised over each re-noised image's siblings (``adv_scope="image"``, what the
  paper's code gets from batch = B = 5) instead of over the epoch;
- ``<hrf arm>/wo`` (window-only, on ``--window-only-tasks``): the steps before the window sample with
  the frozen base model, in training and evaluation alike (``outside_window="base"``): HRF [20,40) and
  [30,40) with per-image advantages, the window the task's locality profile suggests
  (:func:`hrf_core.measure.locality.suggest_window`), and [20,40) with a KL penalty of 0.1 (``+kl0.1``);
- ``handover``: no training: the base model for steps < S and the final DDPO checkpoint for steps
  >= S, for S from K down to 0, evaluated like an epoch (a whole frontier from one DDPO run);
- ``<arm>+div<w>`` (each w of ``--diversity-weights``, none by default): the diversity bonus of weight w in the
  advantage (docs/METHOD.md, "The diversity bonus"): ``ddpo+div<w>``, window-only ``hrf[30,40)/image/wo+div<w>``
  and ``handover+div<w>``, the hand-over to the final checkpoint of ``ddpo+div<w>``.

The JPEG tasks run every arm; the visible rewards (``ink``, ``digit:3``, ``symmetry``) the DDPO, HRF
and hand-over arms. Units run on a backend (:mod:`hrf_core.study.backends`: ``--jobs`` processes here, or
``--backend ray`` on a Ray cluster), or one shard at a time (``--shard i/N``, a SLURM job array), and are
resumable: a finished run is skipped, an unfinished one continues from its checkpoint, a failed unit is tried
once more. ``progress.json`` (one per shard) is rewritten as each unit ends; ``docs/RESULTS.md`` and its figures
are generated from the runs at the end (or with ``--report-only`` at any time, which merges the shards).
"""

from __future__ import annotations

import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hrf_core.config import TrainConfig
from hrf_core.methods import DDPO, HRF, HRFD, Handover, HRFSliding
from hrf_core.store import liveness
from hrf_core.store.runs import Run, RunStore, checkpoint_epoch, is_run_folder, read_json, write_json

NAME = "frontier-digits"
#: The experiment's arms are named after the methods they run (:mod:`hrf_core.methods`).
DDPO_ARM, HRFD_ARM, SLIDING_ARM, HANDOVER_ARM = DDPO.name, HRFD.name, HRFSliding.name, Handover.name


def window_arm(start: int, end: int) -> str:
    """The HRF arm on the window [start, end) (in the experiment's 40-step units): ``hrf[20,40)``."""
    return f"{HRF.name}[{start},{end})"


WINDOW_ARM = re.compile(re.escape(HRF.name) + r"\[(\d+),(\d+)\)")
JPEG_TASKS = ("jpeg-compressibility", "jpeg-incompressibility")
VISIBLE_TASKS = ("ink", "digit:3", "symmetry")
VISIBLE_ARMS = (DDPO_ARM, window_arm(20, 40), window_arm(30, 40), HANDOVER_ARM)
#: The arms repeated with per-image advantages on the ablation tasks (see docs/METHOD.md, "The update").
ABLATION_BASES = (window_arm(20, 40), window_arm(30, 40), HRFD_ARM)
#: The KL coefficients swept (nats per pixel per trained step; see docs/METHOD.md for DPOK's units).
KL_COEFS = (0.1, 1.0)
#: The report's metrics: the classifier's pass the calibration suite across classes (docs/METHOD.md); the calibrated
#: vendi_rbf reads no network and stands in where the reward reads the classifier (:func:`standing_metric`).
HEADLINE = ("is_classifier", "vendi_rbf", "vendi_classifier", "class_entropy")


def standing_metric(reward: str) -> str:
    """The metric a task's standing is read on: the classifier's IS, unless the reward reads the classifier
    (``digit:N``), where it is the calibrated ``vendi_rbf``: never measure with the network a reward reads."""
    from hrf_core.rewards.registry import embedding_read_by

    return "vendi_rbf" if embedding_read_by(reward) == "classifier" else "is_classifier"
#: The order units run in, arm by arm over every task and seed: the comparisons that matter most first,
#: so a cut-off experiment leaves whole arms (arms not listed run last); the window the locality profile
#: suggests runs right after the first window-only arm, since it is the window the app recommends.
RUN_ORDER = (DDPO_ARM, window_arm(20, 40), window_arm(30, 40), HRFD_ARM, HANDOVER_ARM,
             f"{window_arm(20, 40)}/image/wo", "suggested/wo", f"{window_arm(30, 40)}/image/wo",
             f"{window_arm(20, 40)}/image/wo+kl0.1", "renoise-fixed", "random-start", f"{window_arm(20, 40)}/image",
             f"{HRFD_ARM}/image", f"{window_arm(30, 40)}/image", f"{DDPO_ARM}+kl0.1", f"{DDPO_ARM}+kl1")
#: Window-only arms (every task of ``window_only_tasks``), besides the locality profile's suggested window.
WINDOW_ONLY_ARMS = (f"{window_arm(20, 40)}/image/wo", f"{window_arm(30, 40)}/image/wo",
                    f"{window_arm(20, 40)}/image/wo+kl0.1")


@dataclass
class Settings:
    """The experiment's shared settings (every arm, every task)."""

    #: a headline claim needs at least 5 seeds (hrf_core.measure.frontier.MIN_HEADLINE_SEEDS)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    tasks: list[str] = field(default_factory=lambda: [*JPEG_TASKS, *VISIBLE_TASKS])
    epochs: int = 24
    eval_every: int = 3
    eval_samples: int = 128
    samples: int = 32
    batch_size: int = 16
    siblings: int = 4
    steps: int = 40
    lr: float = 3e-4
    kl_coefs: list[float] = field(default_factory=lambda: list(KL_COEFS))
    #: the diversity bonus's weights: each adds the arms of :func:`diversity_arms` on every task (none by default)
    diversity_weights: list[float] = field(default_factory=list)
    handover_every: int = 5
    model: str = "digits16"
    ablation_tasks: list[str] = field(default_factory=lambda: [*JPEG_TASKS, *VISIBLE_TASKS])
    window_only_tasks: list[str] = field(default_factory=lambda: [*JPEG_TASKS, *VISIBLE_TASKS])
    #: task -> the window start its base-model locality profile suggests (filled from the shipped profiles)
    suggested: dict[str, int] = field(default_factory=dict)
    #: run only these arms ("suggested/wo" for each task's suggested window); empty: every arm
    arms: list[str] = field(default_factory=list)


def full_arms(settings: Settings) -> list[str]:
    return [DDPO_ARM, *(f"{DDPO_ARM}+kl{c:g}" for c in settings.kl_coefs), window_arm(20, 40), window_arm(30, 40),
            HRFD_ARM, "random-start", "renoise-fixed", HANDOVER_ARM, SLIDING_ARM]


def diversity_arms(weight: float) -> list[str]:
    """The arms of one diversity weight: DDPO, window-only HRF [30,40) and the hand-over of the DDPO run."""
    return [f"{arm}+div{weight:g}" for arm in (DDPO_ARM, f"{window_arm(30, 40)}/image/wo", HANDOVER_ARM)]


def arms_of(task: str, settings: Settings) -> list[str]:
    arms = full_arms(settings) if task in JPEG_TASKS else list(VISIBLE_ARMS)
    arms += [arm for weight in settings.diversity_weights for arm in diversity_arms(weight)]
    ablation = [f"{arm}/image" for arm in arms if arm in ABLATION_BASES] if task in settings.ablation_tasks else []
    window_only: list[str] = []
    if task in settings.window_only_tasks:
        window_only = list(WINDOW_ONLY_ARMS)
        start = settings.suggested.get(task)
        if start is not None and start > 0:
            window_only.insert(2, suggested_arm(start, settings.steps))
    return arms + ablation + list(dict.fromkeys(a for a in window_only if a not in arms + ablation))


def arm_method(arm: str) -> str:
    """The method an arm trains (or, for the hand-over, derives): the longest registered method name it starts
    with; the HRF variants named by their start rule (``renoise-fixed``, ``random-start``, ``suggested``) are HRF."""
    from hrf_core.methods import METHODS

    return next((name for name in sorted(METHODS, key=len, reverse=True) if arm.startswith(name)), HRF.name)


def arm_colors(arms: list[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per arm for the report's figures, from its method's colour (the page's, :mod:`hrf_core.methods`):
    the first arm of a method takes the method's colour, later ones a darker or lighter shade of it, so every
    figure reads DDPO red, HRF blue, hand-over orange as the page does. An ``/image`` arm shares its base arm's."""
    from matplotlib.colors import to_rgb

    from hrf_core.methods import color_of

    blends = (0.0, -0.35, 0.4, -0.6, 0.65, -0.15, 0.2)  # < 0 towards black, > 0 towards white
    seen: dict[str, int] = {}
    colors: dict[str, tuple[float, float, float]] = {}
    for arm in dict.fromkeys(a.removesuffix("/image") for a in arms):
        method = arm_method(arm)
        k = seen.get(method, 0)
        seen[method] = k + 1
        base, f = to_rgb(color_of(method)), blends[k % len(blends)]
        colors[arm] = tuple(c * (1 + f) if f < 0 else c + (1 - c) * f for c in base)
    return {arm: colors[arm.removesuffix("/image")] for arm in arms}


def suggested_arm(start: int, k: int) -> str:
    """The window-only arm at the suggested window [start, K) (in the experiment's 40-step units)."""
    return f"{window_arm(start * 40 // k, 40)}/image/wo"


def arm_role(arm: str, settings: Settings) -> str:
    """An arm's name in :data:`RUN_ORDER` and ``--arms``: ``suggested/wo`` for a suggested-window arm."""
    suggested = {suggested_arm(s, settings.steps) for s in settings.suggested.values()}
    return "suggested/wo" if arm in suggested and arm not in RUN_ORDER else arm


def arm_priority(arm: str, settings: Settings) -> int:
    """Where an arm runs in :data:`RUN_ORDER` (unlisted arms last)."""
    role = arm_role(arm, settings)
    return RUN_ORDER.index(role) if role in RUN_ORDER else len(RUN_ORDER)


def arm_overrides(arm: str, k: int, epochs: int = 2) -> dict:
    """The TrainConfig fields that make an arm (``handover`` trains nothing).

    Suffixes, outermost first: ``+div<w>`` the diversity bonus of weight w and ``+kl<c>`` the KL penalty c (in
    either order), ``/wo`` window-only sampling, ``/image`` per-image advantages (e.g.
    ``hrf[20,40)/image/wo+kl0.1``, ``ddpo+div0.5``).
    """
    for suffix, field_name in (("kl", "kl_coef"), ("div", "diversity_weight")):
        coefficient = re.fullmatch(rf"(.+)\+{suffix}([0-9.eE+-]+)", arm)
        if coefficient:
            return {**arm_overrides(coefficient[1], k, epochs), field_name: float(coefficient[2])}
    if arm.endswith("/wo"):
        return {**arm_overrides(arm[: -len("/wo")], k, epochs), "outside_window": "base"}
    if arm.endswith("/image"):
        return {**arm_overrides(arm[: -len("/image")], k, epochs), "adv_scope": "image"}
    if arm == DDPO_ARM:
        return dict(method=DDPO.name, window=(0, k))
    window = WINDOW_ARM.fullmatch(arm)
    if window:
        return dict(method=HRF.name, window=(int(window[1]) * k // 40, int(window[2]) * k // 40))
    half = max(1, epochs // 2)
    return {HRFD_ARM: dict(method=HRFD.name), "random-start": dict(method=HRF.name, window=(0, k)),
            "renoise-fixed": dict(method=HRF.name, window=(k // 2, k), start_mode="fixed"),
            SLIDING_ARM: dict(method=HRFSliding.name, clusters=((0, k // 2, half), (k // 2, k, max(1, epochs - half))))
            }[arm]


def handover_source(arm: str) -> str | None:
    """The trained arm whose final checkpoint a hand-over arm hands over to (``handover``: ``ddpo``;
    ``handover+div0.5``: ``ddpo+div0.5``), or None for an arm that trains."""
    if arm == HANDOVER_ARM or arm.startswith(HANDOVER_ARM + "+"):
        return DDPO_ARM + arm[len(HANDOVER_ARM):]
    return None


def run_name(task: str, arm: str, seed: int) -> str:
    """A run-store id: ``jpeg-compressibility-hrf-20-40-seed0``."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{task}-{arm}").strip("-")
    return f"{slug}-seed{seed}"


def arm_config(task: str, arm: str, seed: int, settings: Settings, device: str = "cpu") -> TrainConfig:
    s = settings
    return TrainConfig(
        model=s.model, reward=task, seed=seed, epochs=s.epochs, num_steps=s.steps, samples_per_epoch=s.samples,
        batch_size=s.batch_size, siblings=s.siblings, lr=s.lr, eval_every=s.eval_every,
        eval_samples=s.eval_samples, checkpoint_every=max(1, s.epochs // 2), device=device,
        extra={"experiment": NAME, "arm": arm, "task": task}, **arm_overrides(arm, s.steps, s.epochs)).validate()


# ------------------------------------------------------------------------------------------------ units
def is_done(path: Path) -> bool:
    """Whether the run folder ``path`` holds a finished run (a unit cut off mid-run never says "done")."""
    run = Run(path)
    return run.status_path.is_file() and run.status.get("state") == "done"


def finished_runs(out: Path) -> list[Path]:
    """The store's finished runs: what the report reads (a unit cut off mid-run is left out, not half-read)."""
    return [p for p in sorted(out.iterdir()) if is_done(p)]


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


def build_units(settings: Settings, root: Path, device: str = "cpu", report_to: tuple[str, ...] = ()):
    from hrf_core.study.sweep import Unit

    pairs = sorted(((task, arm) for task in settings.tasks for arm in arms_of(task, settings)
                    if not settings.arms or arm in settings.arms or arm_role(arm, settings) in settings.arms),
                   key=lambda pair: arm_priority(pair[1], settings))  # stable: tasks keep their order within an arm
    units = []
    for task, arm in pairs:
        for seed in settings.seeds:
            name = run_name(task, arm, seed)
            source = handover_source(arm)
            if source is not None:
                units.append(Unit(name, handover_unit, (run_name(task, source, seed), str(root), name,
                                                        settings.handover_every, arm),
                                  after=(run_name(task, source, seed),)))
            else:
                config = arm_config(task, arm, seed, settings, device).to_dict()
                units.append(Unit(name, train_unit, (config, str(root), name, report_to)))
    return units


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


def execution_note(sittings: list[dict]) -> str:
    """What ran the experiment, for the report: wall time, backend, workers and threads of each sitting."""
    parts = []
    for s in sittings:
        if s["backend"] == "ray":
            where = (f"a Ray cluster of {s['nodes']} node(s) with {s['cpus']} CPUs, {s['workers']} units at once "
                     f"of {s['threads']} thread(s)")
        else:
            machine = f"one {s['cpus']}-core machine" if s.get("cpus") else "one machine"
            where = f"{machine}, {s['workers']} process(es) of {s['threads']} thread(s)"
        shard = f"shard {s['shard'][0]}/{s['shard'][1]}: " if s.get("shard") else ""
        wall = s["wall_seconds"]
        parts.append(f"{shard}{f'{wall / 3600:.1f} h' if wall >= 3600 else f'{wall / 60:.0f} min'} on {where}")
    return "wall time " + ("; ".join(parts) if parts else "unknown")


# ---------------------------------------------------------------------------------------------- report
def reference_curves(result: dict, root: Path, prefix_n: tuple[int, ...] = (64,)) -> dict:
    """DDPO's evaluated points per reward and seed (the app's reference curve), also recomputed on the
    first n samples of each evaluation for the app's smaller evaluation sets."""
    import numpy as np

    from hrf_core.measure.frontier import load_trajectory, metric_from_arrays

    out: dict = {}
    for group in result["groups"].values():
        curves = []
        for run_id in group["arms"].get(DDPO_ARM, {}).get("runs", []):
            trajectory = load_trajectory(Run(root / run_id))
            if trajectory is None:
                continue
            points = {str(trajectory.eval_samples): {"gain": trajectory.gains.tolist(),
                                                     **{k: v.tolist() for k, v in trajectory.metrics.items()
                                                        if k in HEADLINE}}}
            for n in prefix_n:
                if n >= trajectory.eval_samples:
                    continue
                index = np.arange(n)
                arrays = [trajectory.arrays(i) for i in range(len(trajectory.epochs))]
                if any(a is None for a in arrays):
                    continue
                rewards = [metric_from_arrays("reward_mean", a, index) for a in arrays]
                points[str(n)] = {"gain": [r - rewards[0] for r in rewards],
                                  **{k: [metric_from_arrays(k, a, index) for a in arrays] for k in HEADLINE}}
            curves.append({"seed": trajectory.seed, "epochs": trajectory.epochs, "samples": points})
        out[group["reward"]] = {"model": group["model"], "curves": curves}
    return out


def write_figure(result: dict, root: Path, path: Path) -> None:
    """IS and Vendi against reward gain: each arm's mean over seeds, with the seed range as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from hrf_core.measure.frontier import crossing, interpolate, load_trajectory

    groups = list(result["groups"].values())
    fig, axes = plt.subplots(2, len(groups), figsize=(4.6 * len(groups), 8.2), squeeze=False)
    # one colour per arm across every panel, from its method's (arm_colors); an /image arm dotted, in its base's
    color_of = arm_colors([arm for g in groups for arm in g["arms"]])
    legend: dict[str, object] = {}
    for col, group in enumerate(groups):
        arms = list(group["arms"])
        final = group["reference"]["final_gain"]
        grid = np.linspace(0, final, 25) if final > 0 else np.linspace(final, 0, 25)
        for row, metric in enumerate(("is_classifier", "vendi_rbf")):
            ax = axes[row][col]
            for arm in arms:
                curves = []
                for run_id in group["arms"][arm]["runs"]:
                    t = load_trajectory(Run(root / run_id))
                    if t is None or metric not in t.metrics:
                        continue
                    spots = [crossing(t.gains, g) for g in grid]  # the first crossing, as in the tables
                    curves.append([interpolate(t.metrics[metric], at) if at is not None else np.nan for at in spots])
                if not curves:
                    continue
                curves = np.array(curves, dtype=float)
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # levels no seed reaches: NaN, not drawn
                    mean = np.nanmean(curves, axis=0) if np.isfinite(curves).any() else curves[0]
                style = dict(lw=3 if arm == DDPO_ARM else 1.6, color=color_of[arm],
                             ls="--" if arm == HANDOVER_ARM else ":" if arm.endswith("/image") else "-")
                legend.setdefault(arm, ax.plot(grid, mean, label=arm, **style)[0])
                if len(curves) > 1 and np.isfinite(curves).any():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
                    ax.fill_between(grid, low, high, color=style["color"], alpha=0.12, lw=0)
            ax.set_title(f"{group['reward']}" if row == 0 else "")
            ax.set_xlabel("reward gain over the base model")
            ax.set_ylabel(metric_title(metric))
            ax.grid(alpha=0.3)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(7, len(legend)), fontsize=8,
                   frameon=False)
    fig.suptitle("Diversity at matched reward: mean over the seeds that reach each gain (line) and their range "
                 "(band); DDPO in black.\n"
                 "A method above the black line keeps more diversity than early-stopped DDPO at that reward.",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07 if len(legend) > 7 else 0.04, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def metric_title(name: str) -> str:
    return {"is_classifier": "Inception Score (classifier)", "vendi_classifier": "Vendi (classifier features)",
            "vendi_rbf": "Vendi (RBF on blurred pixels; calibrated)",
            "class_entropy": "class entropy (bits)", "vendi_pixel": "Vendi (pixels)"}.get(name, name)


def write_report(out: Path, docs: Path, reference_file: Path | None = None, resamples: int = 400,
                 previous: Path | None = None) -> Path:
    """docs/RESULTS.md, docs/results/{frontier.json, frontier.png, grids} and the app's DDPO reference.

    ``previous``: a ``frontier.json`` of an earlier sitting; the arms this store lacks join every table
    (:func:`merge_earlier`), so the written ``frontier.json`` holds both sittings.
    """
    from hrf_core.measure.frontier import format_value, frontier, handover_rows, standing_table, table

    progress = read_progress(out)
    settings = Settings(**progress["settings"]) if progress.get("settings") else Settings()
    result = frontier(finished_runs(out), resamples=resamples, interval_names=HEADLINE)  # the tables' metrics
    result["execution"] = progress["sittings"]
    earlier = read_json(previous, None) if previous is not None else None
    if earlier:
        result = merge_earlier(result, earlier)
    for group in result["groups"].values():  # the reference and its no-training frontier first
        order = [DDPO_ARM, HANDOVER_ARM, *full_arms(settings), *(f"{a}/image" for a in ABLATION_BASES)]
        group["arms"] = dict(sorted(group["arms"].items(),
                                    key=lambda item: (order.index(item[0]) if item[0] in order else len(order),
                                                      item[0])))
    results = docs / "results"
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "frontier.json", result)
    write_figure(result, out, results / "frontier.png")
    if reference_file is not None:  # only when asked (--reference): merged, never narrowed (reference.write_shipped)
        from hrf_core.measure.reference import write_shipped

        write_shipped(reference_file, {"experiment": NAME, "settings": asdict(settings),
                                       "rewards": reference_curves(result, out)})
        folder = reference_file.parent
        if (folder / "training.json").is_file() and (folder / "README.md").is_file():  # a shipped model's card
            from hrf_core.models.pretrain import write_ddpm_card

            write_ddpm_card(folder)  # its file table lists every file's sha256
    seeds = " ".join(str(s) for s in settings.seeds)
    lines = [
        "# Results: what does each method's reward cost in diversity, at matched reward?",
        "",
        f"Generated by `hrf_core.study.experiment` from the runs; regenerate with "
        f"`python -m hrf_core experiment {NAME} --seeds {seeds} --jobs 2` "
        f"({execution_note(progress['sittings'])}).",
        "",
        f"Setting: `{settings.model}`, K = {settings.steps} DDIM steps, eta = 1, {settings.samples} samples per epoch "
        f"(batch {settings.batch_size}, {settings.siblings} siblings per re-noised image), {settings.epochs} epochs, "
        f"AdamW lr {settings.lr:g}, seeds {seeds}. Every arm is evaluated every {settings.eval_every} epochs on the "
        f"same **{settings.eval_samples} fixed-seed samples** (the same noise for every arm and epoch). Diversity is "
        "measured with the digits classifier (Inception Score, Vendi on its features, entropy of its class "
        "histogram: they pass the calibration suite across classes, docs/METHOD.md) and with the calibrated Vendi "
        "(RBF kernel on blurred pixels), which reads no network: a task whose reward reads the classifier "
        "(`digit:N`) is judged on it.",
        "",
        "**How to read the tables.** Each cell is read off the run's own evaluated epochs where its reward gain "
        "first reaches the level (linear interpolation), as a fraction of DDPO's mean final gain; `Δ` is the "
        "difference to the DDPO run of the same seed at the same reward (the early-stopping frontier). "
        "`mean ± std` over seeds, then a 95% interval in brackets (" + result["interval"] + "). A method beats "
        "early-stopped DDPO only where its Δ interval lies above 0.",
        "",
    ]
    # the locality profile's suggested windows differ per task: one row for them all
    by_role = {key: {**group, "arms": {arm_role(arm, settings): entry for arm, entry in group["arms"].items()}}
               for key, group in result["groups"].items()}
    rows, best = standing_table([{**result, "groups": by_role}], standing_metric)
    windows: dict[str, list[str]] = {}  # suggested arm -> its tasks
    for group in result["groups"].values():
        for arm in group["arms"]:
            if arm_role(arm, settings) == "suggested/wo":
                windows.setdefault(arm, []).append(group["reward"])
    lines += ["## Which method is on or above early-stopped DDPO?", "",
              "For each method, on how many tasks its IS Δ (on a task whose reward reads the classifier, `digit:N`: "
              "its calibrated Vendi Δ instead) to the same seed's DDPO at 25/50/75% of DDPO's gain is "
              "on the frontier (interval spans 0) or above it (interval above 0), out of the tasks it ran; "
              "below: interval under 0; not reached: some seed never gets there."
              + (" Arms marked ¹ come from an earlier sitting (see each task)." if earlier else "")
              + (" `suggested/wo`: window-only at the window the locality profile suggests ("
                 + "; ".join(f"{w} on {', '.join(tasks)}" for w, tasks in windows.items()) + ")." if windows else ""),
              ""]
    lines += rows + [""]
    if best:
        lines += [f"Best row: **{best}**.", ""]
    versus = handover_rows([result])
    if versus:
        lines += ["## Window-only training against the training-free hand-over at the same split", "",
                  "Both sample the steps before S with the base model; the window-only run trains steps S..K-1 "
                  "from the base, the hand-over uses the same seed's final DDPO checkpoint there. Δ IS is the "
                  "window-only run's minus the hand-over's, where the window-only run's reward gain first reaches "
                  "the hand-over's (above: interval above 0), and at the end of training (different rewards).",
                  "", *versus, ""]
    lines += ["![frontier](results/frontier.png)", ""]
    for group in result["groups"].values():
        ref = group["reference"]
        lines += [f"## {group['reward']}", "",
                  f"DDPO's mean final gain: {ref['final_gain']:.4g} after {settings.epochs} epochs "
                  f"({ref['final_compute'] / 1e3:.0f}k UNet forward-equivalents).", ""]
        logged = [m for m in HEADLINE if any(m in row["values"] for entry in group["arms"].values()
                                             for row in entry["matched_reward"])]  # an older store: no vendi_rbf
        for metric in logged:
            lines += [f"**{metric_title(metric)} at matched reward** (levels: % of DDPO's final gain)", ""]
            lines += table(group, metric, "reward") + [""]
        missing = [metric_title(m) for m in HEADLINE if m not in logged]
        if missing:
            lines += [f"Not measured in these runs: {', '.join(missing)}.", ""]
        lines += ["**Reward reached and compute spent** (final epoch, mean ± std over seeds; compute in thousands "
                  "of UNet forward-equivalents: sampled + reference rows + 3 × trained rows)", "",
                  "| arm | reward gain | % of DDPO's | fall from its best (% of DDPO's gain: mean, worst seed) "
                  "| compute (k) | " + " | ".join(metric_title(m) for m in HEADLINE)
                  + " |", "|---" * (5 + len(HEADLINE)) + "|"]
        for arm, entry in group["arms"].items():
            final = entry["final"]
            reference = entry.get("reference_final_gain", ref["final_gain"])  # an earlier arm: its sitting's
            scale = 100 / reference if reference else float("nan")  # % of DDPO's final gain
            share = final["gain"]["mean"] * scale
            fall = final.get("fall")
            fall_text = (f"{fall['mean'] * scale:.0f}%, {fall['max'] * scale:.0f}%" if fall and arm != HANDOVER_ARM
                         else "n/a")
            lines.append(f"| {arm} | {format_value(final['gain'], 4)} | {share:.0f}% | {fall_text} | "
                         f"{final['compute']['mean'] / 1e3:.0f} | "
                         + " | ".join(format_value(final[m]) if m in final else "not measured" for m in HEADLINE)
                         + " |")
        lines += ["", f"**{metric_title('is_classifier')} at matched compute** (levels: % of DDPO's final compute; "
                  "hand-over excluded: it spends no compute of its own)", ""]
        lines += table({**group, "arms": {a: e for a, e in group["arms"].items() if a != HANDOVER_ARM}},
                       "is_classifier", "compute") + [""]
        carried = [arm for arm, entry in group["arms"].items() if entry.get("earlier")]
        if carried:
            lines += [f"¹ From an earlier sitting (same settings and seeds; its Δ against that sitting's DDPO runs): "
                      f"{', '.join(carried)}.", ""]
        first = settings.seeds[0]
        grids = []
        for arm, entry in group["arms"].items():
            run_id = next((r for r in entry["runs"] if r.endswith(f"seed{first}")), None)
            if run_id is None:
                continue
            target = results / f"grid-{run_name(group['reward'], arm, first)}.png"
            grid = Run(out / run_id).latest_grid() if (out / run_id).is_dir() else None
            if grid is not None:
                target.write_bytes(grid.read_bytes())
            elif not (entry.get("earlier") and target.is_file()):  # an earlier sitting's grid stays
                continue
            grids.append((arm, target.name))
        if grids:
            lines += [" ".join(f"![{arm}](results/{name})" for arm, name in grids), "",
                      f"Final evaluation grids, seed {first}, left to right: " + ", ".join(a for a, _ in grids) + ".",
                      ""]
    notes = results / "reading.md"
    locality = results / "locality.md"
    if locality.is_file():  # python -m hrf_core locality-study
        lines += [locality.read_text().strip(), ""]
    prompted = results / "prompts.md"
    if prompted.is_file():  # python -m hrf_core experiment prompts-digits
        begin, end = section_markers(prompted.name)
        lines += [begin, prompted.read_text().strip(), end, ""]
    lines += ["## Reading", "", notes.read_text().strip() if notes.is_file() else "_No reading written yet._", ""]
    if notes.is_file():  # the prose may quote only what the tables hold (tests/test_reading.py)
        from hrf_core.study.reading import report_sources, stale_numbers

        sources, shares = report_sources(results)
        for stale in stale_numbers(notes.read_text(), sources, shares):
            print(f"warning: reading.md quotes a number the tables do not hold: {stale}")
    report = docs / "RESULTS.md"
    report.write_text("\n".join(lines))
    return report


def section_markers(source: str) -> tuple[str, str]:
    """The markers around a section of ``docs/RESULTS.md`` that another study generates as ``results/<source>``
    (this report keeps it when it rewrites the file)."""
    return f"<!-- generated from results/{source} -->", f"<!-- /results/{source} -->"


def include_in_results(results_md: Path, source: str, section: str) -> None:
    """Put ``section`` (``results/<source>``) into ``docs/RESULTS.md`` between its markers (replacing an earlier
    one), before the Reading."""
    if not results_md.is_file():
        return
    begin, end = section_markers(source)
    text = results_md.read_text()
    block = f"{begin}\n{section.strip()}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    elif "\n## Reading" in text:
        at = text.index("\n## Reading")
        text = text[:at] + "\n" + block + "\n" + text[at:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    results_md.write_text(text)


def merge_earlier(result: dict, earlier: dict) -> dict:
    """``result`` with the arms (and tasks) of an earlier sitting's ``frontier.json`` that it lacks, each marked
    ``"earlier": True``; this sitting's arms win where both have one."""
    groups = {key: {**group, "arms": dict(group["arms"])} for key, group in result["groups"].items()}
    for key, group in earlier.get("groups", {}).items():
        # shares of DDPO's gain stay those of the earlier sitting's DDPO runs, which its Δs were read against
        carried = {arm: {**entry, "earlier": True, "reference_final_gain": group["reference"]["final_gain"]}
                   for arm, entry in group["arms"].items()}
        if key not in groups:
            groups[key] = {**group, "arms": carried}
            continue
        for arm, entry in carried.items():
            groups[key]["arms"].setdefault(arm, entry)
    return {**result, "groups": groups}


def suggested_starts(tasks: list[str], model: str, steps: int) -> dict[str, int]:
    """task -> the window start suggested by the shipped base-model locality profile (tasks without one: none)."""
    from hrf_core.measure.locality import shipped_profile, suggest_window

    out = {}
    for task in tasks:
        profile = shipped_profile(model, task)
        if profile is not None and profile["num_steps"] == steps:
            out[task] = suggest_window(profile)[0][0]
    return out
