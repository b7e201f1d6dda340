"""The interface every fine-tuning method implements: which DDIM steps a batch starts from and trains.

A method is one object (a :class:`Method` subclass instance, registered in :mod:`hrf_core.methods`). It
owns everything that depends on its name: its label and help, its checks of a config, its window per
epoch, the start step of every batch, the step from which window-only sampling hands over to the tuned
network, its Duel partner, and how its runs are named in the app, the frontier and an exported model card.
The trainer, the sampler, the views, the frontier, the experiment and export ask it; nothing else compares
method names.

Step indices: 0 (pure noise) .. K-1 (the step that yields x_0); a window is [start, end): a batch started
at step s trains steps s .. end-1, and samples the steps >= end without training them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hrf_core.registry import Registry

if TYPE_CHECKING:
    import torch

    from hrf_core.config import TrainConfig

Check = Callable[[bool, str], None]


@dataclass
class StartState:
    """What a run remembers about dynamically chosen start steps (HRF-D), saved in its checkpoints.

    ``start``: the start chosen for the current epochs (None before any); ``earliest``: the smallest chosen so
    far (window-only sampling hands over there); ``info``: the finder's diagnostics of the last choice.
    """

    start: int | None = None
    earliest: int | None = None
    info: dict | None = None

    def record(self, start: int, info: dict | None) -> None:
        self.start, self.info = start, info
        self.earliest = start if self.earliest is None else min(self.earliest, start)


@dataclass
class EpochContext:
    """What a method sees before an epoch samples (:meth:`Method.prepare_epoch`), built by the trainer."""

    config: TrainConfig
    epoch: int  # 1-based
    state: StartState  # the run's dynamically chosen start steps
    #: HRF-D's probe (:func:`hrf_core.rl.probe.dynamic_start`) of the epoch's first trajectory-of-interest images:
    #: rank 0 probes, every rank receives its (start, diagnostics). A collective: all ranks call it, or none.
    probe_start: Callable[[], tuple[int, dict]]


class Method:
    """One fine-tuning method. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    label: ClassVar[str]
    help: ClassVar[str]  # one line for the Train tab
    color: ClassVar[str]  # its colour in plots
    #: False for a derived, sampling-only method (the hand-over): listed for its runs, never trained
    trainable: ClassVar[bool] = True
    #: batches start from re-noised trajectory-of-interest images inside a window: window-only sampling,
    #: per-image advantages and siblings apply
    windowed: ClassVar[bool] = True
    #: the early-stopping reference every other method is compared with (one method only)
    reference: ClassVar[bool] = False
    #: the TrainConfig fields this method reads beyond the common ones (the settings table shows them for it)
    settings: ClassVar[tuple[str, ...]] = ()

    # -- configuration ----------------------------------------------------------------------------------
    def validate(self, config: TrainConfig, check: Check) -> None:
        """Method-specific checks of ``config``: ``check(ok, one-line message)``."""

    def from_form(self, config: TrainConfig, span: tuple[int, int]) -> TrainConfig:
        """``config`` with the Train tab's window selector ``span`` applied (default: it is the window)."""
        return config.replace(window=span)

    def form_window(self, config: TrainConfig) -> tuple[int, int]:
        """The span the Train tab's window selector shows for ``config``."""
        return tuple(config.window)

    def partner(self, config: TrainConfig) -> TrainConfig:
        """The Duel button's opponent for ``config`` (validated)."""
        raise NotImplementedError

    # -- the schedule of trained steps ---------------------------------------------------------------
    def window(self, config: TrainConfig, epoch: int) -> tuple[int, int]:
        """The window [start, end) that epoch ``epoch`` (1-based) draws its start steps from."""
        return tuple(config.window)

    def window_end(self, config: TrainConfig, epoch: int) -> int:
        """The first step epoch ``epoch`` does not train."""
        return self.window(config, epoch)[1]

    def starts(self, config: TrainConfig, epoch: int, batches: int, generator: torch.Generator,
               state: StartState) -> list[int]:
        """The start step of each of the epoch's ``batches`` sampling batches (the same on every rank):
        uniform in the window per batch, or the window's start when ``start_mode`` is "fixed"."""
        import torch

        start, end = self.window(config, epoch)
        if config.start_mode == "fixed":
            return [start] * batches
        return [int(torch.randint(start, end, (1,), generator=generator).item()) for _ in range(batches)]

    def prepare_epoch(self, context: EpochContext) -> None:
        """Called by the trainer before an epoch samples (HRF-D finds its start step here)."""

    def epoch_notes(self, state: StartState) -> dict:
        """Extra fields of an epoch's metrics row."""
        return {}

    def handover(self, config: TrainConfig, epoch: int, state: StartState) -> int:
        """The step S from which the fine-tuned network samples in ``epoch`` (1-based); the base model samples the
        steps < S. 0 (the tuned network everywhere) unless the run samples window-only (``outside_window`` base)."""
        if config.outside_window != "base" or not self.windowed or epoch < 1:
            return 0
        return self.window_only_start(config, epoch, state)

    def window_only_start(self, config: TrainConfig, epoch: int, state: StartState) -> int:
        """Window-only sampling's hand-over step: every step the run has not trained yet stays the base model's."""
        return self.window(config, epoch)[0]

    # -- words ------------------------------------------------------------------------------------------
    def run_label(self, config: dict) -> str:
        """A run's short description in the app: the method and its trained steps."""
        return self.label

    def arm_label(self, config: dict) -> str:
        """A run's arm in the frontier's tables, before the KL suffix (the experiment's own names match it)."""
        return self.name

    def window_only_split(self, config: dict) -> int | None:
        """The hand-over step S of a window-only run that the frontier compares with the hand-over at S, else None."""
        return None

    def note(self, window: tuple[int, int], k: int, epochs: int, start_mode: str) -> str:
        """The line under the Train tab's window selector: what this method trains with that window."""
        return self.help

    def schedule(self, config: dict) -> str:
        """Which DDIM steps a run trained, in words (an exported model card)."""
        raise NotImplementedError


#: Every method by name, in the order the app lists them: filled, and served, by the registry
#: (:mod:`hrf_core.methods`); kept here so that a method can ask for another (:func:`reference`) without
#: importing its module.
METHODS: Registry[Method] = Registry("method")


def reference() -> Method:
    """The early-stopping reference (DDPO): the frontier compares every other method with its trajectory."""
    return next(method for method in METHODS.values() if method.reference)


def steps_words(start: int, end: int) -> str:
    """``steps 20–39`` for the window [20, 40)."""
    return f"steps {start}–{end - 1}"
