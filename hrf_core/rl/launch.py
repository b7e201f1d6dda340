"""One way to start or continue a run: check, create the run, build its trainer, report it to the trackers.

Every driver goes through here: the app's job manager (a run or a duel in a background thread), the command
line (also one rank of torchrun) and the experiments (:mod:`hrf_core.study.units`).

- :func:`preflight`: can the config's model and reward run here now (one line when not; nothing written), and
  every download it needs decided (:mod:`hrf_core.downloads`): cached, downloadable, a labelled proxy, or a refusal;
- :func:`create_run`: the run folder (rank 0; every data-parallel rank gets its path) and its training lock;
  :func:`create_runs`: the folders of a job of one run or a duel (the app's);
- :func:`open_trainer`: the trainer of a created run, its trackers attached (:class:`Launch`);
- :func:`start_run`: the three in order; :func:`continue_run`: a run's latest (or given) checkpoint, restored.

A :class:`Launch` trains with :meth:`Launch.train` (or epoch by epoch with :meth:`Launch.steps`, so two can
alternate: :func:`duel`) and closes its trackers when it ends.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrf_core.config import TrainConfig
from hrf_core.models import families
from hrf_core.share.trackers import RunTrackers
from hrf_core.store.runs import Run, RunStore, StoreFullError, is_disk_full

if TYPE_CHECKING:
    import torch

    from hrf_core.rl.distributed import Dist
    from hrf_core.rl.trainer import Trainer


def default_torch_threads() -> int:
    """Threads for training: ``HRF_TORCH_THREADS``, else all cores but one (the UI keeps one)."""
    value = os.environ.get("HRF_TORCH_THREADS", "")
    if value.strip().isdigit() and int(value) >= 1:
        return int(value)
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def preflight(config: TrainConfig, trusted: bool = False, memory: bool = True) -> str:
    """Raise ValueError (one clear line) unless ``config`` is valid and its model and reward can run here now;
    return the one line that says its evaluation falls back to a proxy here ("" when it does not).

    Every download is decided here, before a run starts (:mod:`hrf_core.downloads`): weights that are cached are
    used; weights that are not, while the network is unreachable, fall back to a labelled proxy where one exists
    (the evaluation's learned embeddings: pixels) or are refused with one line naming what to fetch and how (the
    model, the reward's weights, an evaluation embedding asked for by name).

    A registered model must be available (a GPU when it needs one; its weights cached when offline); a local
    folder must be a diffusers model folder. The reward must be registered and available. ``trusted`` (the
    command line, never a browser): a registered model may be downloaded or run on a CPU, and the reward may be
    the user's own function (``path/to/file.py:function`` or ``module:function``), imported here and tried on
    two random images of the model's shape, so a wrong output fails before a run starts. ``memory``: also refuse a
    run that would not fit its GPU (:func:`hrf_core.rl.memory.check_fits`; the command line checks it itself, on its
    device and ranks, before it loads the model).
    """
    config.validate()
    from hrf_core.models.registry import MODELS, availability, model_folder

    if config.model in MODELS and not trusted:
        ok, reason = availability(config.model)
        if not ok:
            raise ValueError(f"model {config.model} is unavailable: {reason}")
    else:
        model_folder(config.model)  # a local diffusers folder (or, trusted, a registered model): validated
    check_prompts(config)
    from hrf_core.rewards.registry import REWARDS

    if trusted:
        prepare_reward(config.reward, config.model)
    elif config.reward not in REWARDS:
        raise ValueError(f"unknown reward {config.reward!r}: choose one of {', '.join(REWARDS)}")
    ok, reason = REWARDS[config.reward].available()  # its weights cached, or downloadable: no proxy stands in
    if not ok:
        raise ValueError(f"reward {config.reward} is unavailable: {reason}")
    if REWARDS[config.reward].prompted and not config.prompted:
        raise ValueError(f"reward {config.reward} reads each sample's prompt: it needs a prompted run (a conditional "
                         "model with prompts)")
    if memory:
        from hrf_core.rl.memory import check_fits

        check_fits(config)
    from hrf_core.measure.evaluation import evaluation_plan
    from hrf_core.models.registry import image_shape_of

    return evaluation_plan(image_shape_of(model_folder(config.model)), config.eval_embeddings)[1]


def check_prompts(config: TrainConfig) -> None:
    """ValueError (one line) unless the config's prompts suit its model: an unconditional model takes none, a
    prompted one needs some, each one it knows (read from the model's config: no weights are loaded)."""
    from hrf_core.models.registry import conditioner_of
    from hrf_core.rl.prompting import check_prompted

    conditioner = conditioner_of(config.model)
    check_prompted(config.model, conditioner, config.prompts)
    if conditioner is not None:
        conditioner.check(config.prompts)


def prepare_reward(name: str, model: str) -> None:
    """Make ``name`` usable here: a registered name, or a code reference the user typed (imported now).

    A custom reward is tried on two random images of the model's shape (a latent model's decoded images), with two
    prompts when it reads them, so a wrong output shape or NaN fails with one line before a run starts.
    """
    import torch

    from hrf_core.models.registry import image_shape_of, model_folder
    from hrf_core.rewards.registry import (
        BUILT_IN,
        REWARDS,
        is_reference,
        make_reward,
        register_from_env,
        register_reference,
    )

    register_from_env()
    if name not in REWARDS and is_reference(name):
        register_reference(name)
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; choose one of: {', '.join(REWARDS)}, or give "
                         "path/to/file.py:function")
    if name not in BUILT_IN:
        images = torch.rand(2, *image_shape_of(model_folder(model))) * 2 - 1
        reward = make_reward(name)
        reward(images, ["a photo", "a photo"]) if REWARDS[name].prompted else reward(images)


def create_run(store: RunStore, config: TrainConfig, name: str | None = None, dist: Any = None) -> Run:
    """The run folder of ``config`` (rank 0 creates it; every rank of ``dist`` gets it), held by this process's
    training lock (:mod:`hrf_core.store.liveness`)."""
    from hrf_core.store import liveness

    main = dist is None or dist.is_main
    path = str(store.create(config.to_dict(), name=name).path) if main else None
    run = Run(Path(dist.broadcast_object(path) if dist is not None else path))
    if main:
        liveness.hold(run.path)
    return run


def create_runs(store: RunStore, configs: Sequence[TrainConfig],
                names: Sequence[str | None] | None = None) -> list[Run]:
    """The run folders of one job, status "running" (held by this process); two configs are a duel: each run
    records its place (``extra.duel``) and its partner (``extra.duel_with``). On any failure (a full disk, the
    store over its limit) none is left behind and the error is raised (:class:`StoreFullError` for a full store)."""
    names = list(names or [None] * len(configs))
    runs: list[Run] = []
    try:
        for config, name in zip(configs, names, strict=True):
            if len(configs) > 1:
                config = config.replace(extra={**config.extra, "duel": len(runs)})
            runs.append(store.create(config.to_dict(), name=name))
            runs[-1].set_status("running", 0, config.epochs, "starting")
        if len(runs) == 2:  # each half names the other, so either can be shown with its partner
            for run, other in ((runs[0], runs[1]), (runs[1], runs[0])):
                data = run.config
                data["extra"]["duel_with"] = other.run_id
                run.write_config(data)
    except BaseException as error:
        for run in runs:
            shutil.rmtree(run.path, ignore_errors=True)
        if isinstance(error, OSError) and is_disk_full(error):
            raise StoreFullError(f"the disk holding the run store {store.root} is full: nothing was "
                                 "started; free some space") from error
        raise
    return runs


@dataclass
class Launch:
    """A run's trainer with its trackers: train it, or step it epoch by epoch; the trackers close at the end."""

    trainer: Any
    trackers: RunTrackers

    @property
    def run(self) -> Run:
        return self.trainer.run

    def steps(self) -> Generator[int, None, str]:
        """The trainer's epochs (see :meth:`hrf_core.rl.trainer.Trainer.steps`); the trackers close when it ends."""
        failed = True
        try:
            result = yield from self.trainer.steps()
            failed = False
            return result
        finally:
            self.trackers.close(failed=failed)

    def train(self) -> str:
        """Train to the end: "done" or "stopped"."""
        failed = True
        try:
            result = self.trainer.train()
            failed = False
            return result
        finally:
            self.trackers.close(failed=failed)


def open_trainer(config: TrainConfig, run: Run, *, report_to: Iterable[str] = (),
                 callbacks: Sequence[Callable] = (), stop_event: threading.Event | None = None,
                 factory: Callable | None = None, **trainer_kwargs: Any) -> Launch:
    """The trainer of ``run`` (``factory(config, run, callbacks, stop_event)``, default the real
    :class:`~hrf_core.rl.trainer.Trainer`), reporting to the trackers ``report_to``."""
    trackers = RunTrackers(report_to, run)
    callbacks = [*callbacks, trackers]
    stop_event = stop_event or threading.Event()
    if factory is not None:
        trainer = factory(config, run, callbacks, stop_event)
    else:
        from hrf_core.rl.trainer import Trainer

        trainer = Trainer(config, run, callbacks=callbacks, stop_event=stop_event, **trainer_kwargs)
    return Launch(trainer, trackers)


def start_run(config: TrainConfig, store: RunStore, name: str | None = None, *, report_to: Iterable[str] = (),
              trusted: bool = False, dist: Any = None, memory: bool = True, **kwargs: Any) -> Launch:
    """Check ``config`` (:func:`preflight`; ``memory``: its fit on the GPU too), create its run and open its trainer
    (see :func:`open_trainer`)."""
    preflight(config, trusted=trusted, memory=memory)
    if dist is not None:
        config.check_processes(dist.world)  # before a run folder is made
        kwargs["dist"] = dist
    run = create_run(store, config, name, kwargs.get("dist"))
    try:
        return open_trainer(config, run, report_to=report_to, **kwargs)
    except ValueError:  # refused before its first epoch (e.g. a download that failed): no run is left behind
        if dist is None or dist.is_main:
            shutil.rmtree(run.path, ignore_errors=True)
        raise


def continue_run(run: Run, epochs: int | None = None, checkpoint: Path | None = None, *,
                 report_to: Iterable[str] = (), callbacks: Sequence[Callable] = (),
                 stop_event: threading.Event | None = None, **kwargs: Any) -> Launch:
    """Continue ``run`` from ``checkpoint`` (default: its latest) up to ``epochs`` in all, with restored state
    (:func:`resume_training`), reporting to the trackers ``report_to``."""
    trackers = RunTrackers(report_to, run)
    trainer = resume_training(run, checkpoint, epochs, callbacks=[*callbacks, trackers],
                              stop_event=stop_event or threading.Event(), **kwargs)
    return Launch(trainer, trackers)


def resume_training(run: Run, checkpoint: Path | None = None, epochs: int | None = None,
                    device: torch.device | None = None, dist: Dist | None = None, **kwargs) -> Trainer:
    """A trainer that continues ``run`` from ``checkpoint`` (default: its latest) with restored state.

    ``device`` overrides the config's (a data-parallel rank passes its own GPU; ``dist`` its place, default one
    process). Rank 0 alone truncates the metrics to the checkpoint and rewrites the config. Refused when the store
    is over ``HRF_MAX_STORE_GB``.
    """
    from hrf_core.models.registry import load_base_model, resolve_device
    from hrf_core.rl.distributed import SINGLE
    from hrf_core.rl.trainer import Trainer
    from hrf_core.store.runs import check_store_limit

    dist = SINGLE if dist is None else dist

    check_store_limit(run.path.parent)
    saved = run.checkpoints()
    if checkpoint is None:
        if not saved:
            raise ValueError(f"run {run.run_id} has no checkpoint to resume from")
        checkpoint = saved[-1]
    checkpoint = Path(checkpoint)
    if checkpoint.resolve() not in [p.resolve() for p in saved]:
        raise ValueError(f"{checkpoint} is not a checkpoint of run {run.run_id}")
    config = TrainConfig.from_dict(run.config)
    if epochs is not None:
        config = config.replace(epochs=epochs)
    config.validate()
    device = device or resolve_device(config.device)
    policy = load_base_model(str(checkpoint), device, window_only=False)  # a LoRA checkpoint: base + its adapter
    frozen = None
    # LoRA: the frozen base is the adapter disabled, no copy
    if config.needs_frozen_base and not families.get(policy.family).trains_lora(config):
        frozen = load_base_model(config.model, device).unet
    trainer = Trainer(config, run, base=policy, frozen=frozen, dist=dist, **kwargs)
    trainer.load_checkpoint(checkpoint)
    if trainer.epoch >= config.epochs:
        raise ValueError(f"checkpoint is at epoch {trainer.epoch}; pass --epochs > {trainer.epoch} to continue")
    if dist.is_main:
        try:  # both atomic: a full disk leaves the metrics and the config as they were
            run.truncate_metrics(trainer.epoch)
            run.write_config(config.to_dict())
        except OSError as error:
            if is_disk_full(error):
                raise StoreFullError(f"the disk holding the run store is full: {run.run_id} was not resumed "
                                     "(nothing changed); free some space and resume again") from error
            raise
    return trainer


def duel(steps: Sequence[Generator[int, None, str]]) -> str:
    """Alternate the epochs of two (or more) runs until all end; "stopped" if any was stopped."""
    results: dict[int, str] = {}
    while len(results) < len(steps):
        for i, generator in enumerate(steps):
            if i in results:
                continue
            try:
                next(generator)
            except StopIteration as end:
                results[i] = end.value
    return "stopped" if "stopped" in results.values() else "done"
