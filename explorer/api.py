"""The scripting API: what ``gradio_client`` calls by name, as plain typed Python (no gradio).

``app.py`` registers each function of :meth:`ScriptingApi.endpoints` with ``gr.api``, which turns the
function's signature into the endpoint's named, typed parameters: these signatures are the API
(``/start``, ``/duel``, ``/stop``, ``/compare``, ``/sample``, ``/suggest_window``, ``/compute_profile``;
``/status`` is the app's own). The functions take values, never the page's components, so every
registered reward (those of ``HRF_EXTRA_REWARDS`` too) and model, or a typed local diffusers folder, is
accepted as in the page.

Every value is checked before anything starts: a bad one raises ValueError naming the parameter and its
allowed values; a missing or wrong presenter token raises PermissionError (:func:`explorer.presenter.check`).
Results are plain data: numbers and strings in dicts, images as PNG files (:class:`~pathlib.Path`, which
app.py hands to Gradio to serve). Samples use the page's seeds: the same ``seed`` and ``n`` give the
page's images.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from explorer import presenter
from explorer.jobs import JobManager
from explorer.views import compare, train
from explorer.views.common import parse_bounded, require_runnable
from hrf_core import settings
from hrf_core.config import TrainConfig
from hrf_core.presets import PRESETS
from hrf_core.store.runs import checkpoint_epoch

MAX_SEED = 2**31 - 1


def form_signature() -> inspect.Signature:
    """The parameters of ``/start`` and ``/duel``, from the settings table (:func:`hrf_core.settings.on`): every
    API setting in the table's order (the window also as ``window_start`` / ``window_end``), then ``preset`` and
    ``token``. Choices are ``Literal`` types (the endpoint's schema lists them); built when the API is, so a method
    registered before then is a choice too."""
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = []
    for setting in settings.on("api"):
        if setting.kind == "window":
            parameters += [inspect.Parameter(end, keyword, default=None, annotation=int | None)
                           for end in ("window_start", "window_end")]
            annotation = str | None
        elif setting.kind == "choice":
            annotation = Literal[tuple(setting.choice_labels())] | None
        else:
            annotation = setting.python_type | None
        parameters.append(inspect.Parameter(setting.name, keyword, default=None, annotation=annotation))
    parameters.append(inspect.Parameter("preset", keyword, default=None,
                                        annotation=Literal[(train.NO_PRESET, *PRESETS)] | None))
    parameters.append(inspect.Parameter("token", keyword, default="", annotation=str))
    return inspect.Signature(parameters, return_annotation=dict)


@contextmanager
def naming(parameter: str) -> Iterator[None]:
    """Put ``parameter:`` in front of the ValueError a check raises inside the block."""
    try:
        yield
    except ValueError as error:
        raise ValueError(f"{parameter}: {error}") from None


def choice(parameter: str, value: Any, allowed) -> Any:
    """``value`` when it is one of ``allowed``; else ValueError naming the parameter and the allowed values."""
    if value not in allowed:
        raise ValueError(f"{parameter}: {value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")
    return value


def check_model(parameter: str, value: Any, available: bool = True) -> str:
    """A registered model (usable here when ``available``) or a local diffusers folder; else ValueError."""
    from hrf_core.models.registry import MODELS, availability, model_folder

    name = str(value or "").strip()
    allowed = f"choose one of {', '.join(MODELS)}, or a local diffusers folder"
    if name in MODELS:
        ok, reason = availability(name)
        if available and not ok:
            raise ValueError(f"{parameter}: {name} is unavailable here: {reason} ({allowed})")
        return name
    if not name or not Path(name).expanduser().is_dir():
        raise ValueError(f"{parameter}: unknown model {name!r}: {allowed}")
    with naming(parameter):
        model_folder(name)
    return name


def check_reward(parameter: str, value: Any) -> str:
    """A registered reward (the shipped ones and ``HRF_EXTRA_REWARDS``'s) that can run here; else ValueError."""
    ok, reason = train.reward_status(str(value or ""))
    if not ok:
        raise ValueError(f"{parameter}: {reason}")
    return str(value)


def check_number(parameter: str, value: Any) -> int | float:
    """A numeric setting (the settings table's range); else ValueError naming the parameter."""
    try:
        return settings.parse(parameter, value)
    except settings.SettingError as error:
        raise ValueError(str(error)) from None


def parse_window(value: Any, num_steps: int, parameter: str = "window") -> tuple[int, int]:
    """A window "start:end" (or a pair) inside steps 0..K; else ValueError naming ``parameter``."""
    try:
        return settings.parse_window(value, num_steps)
    except settings.SettingError as error:
        raise ValueError(f"{parameter}: {error.page or error.render(lambda name: 'the window')}") from None


def map_files(value: Any, convert: Callable[[Path], Any]) -> Any:
    """``value`` with every :class:`~pathlib.Path` in it (inside dicts and lists too) replaced by ``convert(path)``."""
    if isinstance(value, Path):
        return convert(value)
    if isinstance(value, dict):
        return {key: map_files(item, convert) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_files(item, convert) for item in value]
    return value


def plain_metrics(metrics: dict) -> dict:
    """Metrics as JSON numbers: counts as int, the rest as float (nested: a prompted run's ``per_prompt``)."""
    return {key: plain_metrics(value) if isinstance(value, dict) else int(value) if isinstance(value, int)
            else float(value) for key, value in metrics.items()}


class ScriptingApi:
    """The API's functions over one job manager; ``defaults``: the page's settings (and the rest of a run's)."""

    def __init__(self, manager: JobManager, defaults: TrainConfig):
        self.manager = manager
        self.store = manager.store
        self.defaults = defaults
        self._files: Path | None = None
        form = train.form_from_config(defaults)
        shown = ", ".join(f"{key}={value!r}" for key, value in form.items())
        left_out = ("Parameters left out take the preset's values when `preset` is given, else the page's: "
                    f"{shown}; window_start/window_end replace one end of that window (or give window='start:end').")
        self.start = self._form_endpoint("start", self._start, (
            "Start a fine-tuning run with the Train tab's settings; returns its run_id and config. " + left_out))
        self.duel = self._form_endpoint("duel", self._duel, (
            "Train the settings against DDPO (or, for DDPO, against HRF on the late half) side by side; returns "
            "both run_ids. " + left_out))

    def endpoints(self) -> dict[str, Callable[..., dict]]:
        """Every endpoint by its API name (``/status`` is the app's)."""
        return {"start": self.start, "duel": self.duel, "stop": self.stop, "continue": self.continue_run,
                "compare": self.compare, "sample": self.sample, "suggest_window": self.suggest_window,
                "compute_profile": self.compute_profile}

    # -- /start and /duel ------------------------------------------------------------------------------
    @staticmethod
    def _form_endpoint(name: str, launch: Callable[[dict], dict], doc: str) -> Callable[..., dict]:
        """A function with the parameters of :func:`form_signature` that calls ``launch(values)``."""
        signature = form_signature()

        def endpoint(*args: Any, **kwargs: Any) -> dict:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return launch(dict(bound.arguments))

        endpoint.__signature__ = signature
        endpoint.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        endpoint.__name__ = endpoint.__qualname__ = name
        endpoint.__doc__ = doc
        return endpoint

    def config(self, values: dict) -> TrainConfig:
        """The TrainConfig of the form's ``values`` (None: the preset's, else the page's); ValueError names the
        field."""
        preset = values.get("preset")
        if preset not in (None, ""):
            choice("preset", preset, [train.NO_PRESET, *PRESETS])
        base = PRESETS[preset] if preset in PRESETS else self.defaults
        given = {key: value for key, value in values.items()
                 if value is not None and key not in ("preset", "token", "window_start", "window_end", "window")}
        given["model"] = check_model("model", given.get("model", base.model))
        given["reward"] = check_reward("reward", given.get("reward", base.reward))
        k = int(check_number("num_steps", given.get("num_steps", base.num_steps)))
        given["window"] = self._window(values, train.form_from_config(base)["window"], k)
        try:
            return settings.from_values(given, base.replace())
        except settings.SettingError as error:
            raise ValueError(str(error)) from None

    @staticmethod
    def _window(given: dict, default: str, num_steps: int) -> str:
        """``window`` ("start:end"), or the default window (kept inside 0..K, as the page does) with
        ``window_start`` / ``window_end`` replacing its ends."""
        given = {key: value for key, value in given.items() if value is not None}
        ends = [key for key in ("window_start", "window_end") if key in given]
        if "window" in given:
            if ends:
                raise ValueError(f"window: give window='start:end' or {' and '.join(ends)}, not both")
            return settings.format_window(parse_window(given["window"], num_steps))
        start, end = settings.fit_window(default, num_steps)
        span = (given.get("window_start", start), given.get("window_end", end))
        try:
            span = tuple(int(v) for v in span)
        except (TypeError, ValueError):
            raise ValueError(f"window_start, window_end: must be whole numbers, got {span[0]!r}, {span[1]!r}") \
                from None
        return settings.format_window(parse_window(span, num_steps, "window_start, window_end"))

    def _start(self, values: dict) -> dict:
        presenter.check(values.get("token"))
        config = self.config(values)
        run_id = self.manager.start(config)
        note = f" {self.manager.start_note}" if self.manager.start_note else ""
        return {"run_id": run_id, "config": config.to_dict(), "message": f"Started {run_id}.{note}"}

    def _duel(self, values: dict) -> dict:
        presenter.check(values.get("token"))
        config = self.config(values)
        partner = train.duel_partner(config)
        run_ids = list(self.manager.start_duel(config, partner))
        return {"run_ids": run_ids, "configs": [config.to_dict(), partner.to_dict()],
                "message": f"Started {' and '.join(run_ids)}."}

    # -- /stop -------------------------------------------------------------------------------------------
    def stop(self, token: str = "") -> dict:
        """Ask the running job (a run, a duel or a locality profile) to stop after its current denoising step.

        Returns {"stopping": false} when nothing is running. Poll /status for the run's end.
        """
        presenter.check(token)
        stopping = self.manager.stop()
        return {"stopping": stopping,
                "message": "Stopping after the current denoising step." if stopping else "Nothing is running."}

    # -- /continue ---------------------------------------------------------------------------------------
    def continue_run(self, run_id: str, more_epochs: int = 5, token: str = "") -> dict:
        """Continue a stopped, interrupted or finished run for ``more_epochs`` epochs from its latest checkpoint,
        exactly like ``python -m hrf_core resume`` (later metrics are trained again, each epoch logged once)."""
        presenter.check(token)
        at = self.manager.continue_run(run_id, more_epochs)
        snap = self.manager.snapshot()
        return {"run_id": run_id, "from_epoch": at, "epochs": snap.epochs,
                "message": f"Continuing {run_id} from epoch {at} to epoch {snap.epochs}."}

    # -- /compare and /sample ----------------------------------------------------------------------------
    def compare(self, a: str | None = None, b: str | None = None, a_run_id: str | None = None,
                a_epoch: int | None = None, b_run_id: str | None = None, b_epoch: int | None = None, n: int = 32,
                seed: int = 0, reward: str | None = None, handover: int = 0, token: str = "") -> dict:
        """Sample A and B with the same seeds (as the Compare tab) and measure both: metrics and grids.

        Each side is a model (a registered name such as "digits16", or a local diffusers folder) or a
        checkpoint: its run's run_id with the epoch (default: the run's last checkpoint). Defaults: A is the
        page's base model, B the newest checkpoint on disk. reward: default the reward of A's run, else B's.
        handover = S > 0: B's checkpoint samples the steps before S with its base model.
        Returns {"a": {"source", "label", "metrics", "grid"}, "b": ..., "reward", "num_steps", "n", "seed",
        "handover"}; metrics by key (reward_mean, vendi_...@n, ...), grid a PNG file.
        """
        presenter.check(token)
        n = int(parse_bounded("n", n, 4, 256))
        seed = int(parse_bounded("seed", seed, 0, MAX_SEED))
        handover = int(parse_bounded("handover", handover, 0, 1000))
        reward = check_reward("reward", reward) if reward else None
        latest = next((value for _, value in compare.source_choices(self.store) if value.startswith("ckpt:")), None)
        source_a = self._source("a", a, a_run_id, a_epoch, f"base:{self.defaults.model}")
        source_b = self._source("b", b, b_run_id, b_epoch, latest)
        result = compare.compare(self.store, source_a, source_b, n=n, seed=seed, reward=reward, handover=handover)
        sides = {side: {"source": source, "label": label, "grid": self._png(grid),
                        "metrics": plain_metrics(metrics)}
                 for side, source, label, grid, metrics in (
                     ("a", source_a, result.label_a, result.grid_a, result.metrics_a),
                     ("b", source_b, result.label_b, result.grid_b, result.metrics_b))}
        return {**sides, "reward": result.reward, "num_steps": result.num_steps, "n": n, "seed": seed,
                "handover": handover}

    def sample(self, run_id: str | None = None, epoch: int | None = None, n: int = 16, seed: int = 0,
               token: str = "") -> dict:
        """Sample a checkpoint (as the Runs tab): run_id (default: the newest run with a checkpoint) and epoch
        (default: its last checkpoint), with its run's K.

        Returns {"run_id", "epoch", "source", "n", "seed", "num_steps", "grid"}; grid a PNG file.
        """
        presenter.check(token)
        n = int(parse_bounded("n", n, 1, 256))
        seed = int(parse_bounded("seed", seed, 0, MAX_SEED))
        if not run_id:
            run_id = next((run.run_id for run in self.store.list() if run.checkpoints()), None)
            if run_id is None:
                raise ValueError("run_id: no run has a checkpoint yet: train one with /start")
        source = self._checkpoint("run_id", "epoch", run_id, epoch)
        grid = compare.sample_grid(self.store, source, n=n, seed=seed)
        resolved = compare.resolve_source(self.store, source)
        return {"run_id": run_id, "epoch": int(source.rsplit("-", 1)[1]), "source": source, "n": n, "seed": seed,
                "num_steps": resolved.num_steps, "grid": self._png(grid)}

    def _source(self, side: str, model: str | None, run_id: str | None, epoch: int | None,
                default: str | None) -> str:
        """The Compare tab's value for one side: ``base:<model>`` or ``ckpt:<run_id>:epoch-NNNN``."""
        if model and run_id:
            raise ValueError(f"{side}: give a model as {side} or a run as {side}_run_id, not both")
        if run_id:
            return self._checkpoint(f"{side}_run_id", f"{side}_epoch", run_id, epoch)
        if epoch is not None:
            raise ValueError(f"{side}_epoch: give {side}_run_id with it")
        if not model:
            if default is None:
                raise ValueError(f"{side}: no run has a checkpoint yet: give a model as {side}, or {side}_run_id")
            return default
        if model.startswith(("base:", "ckpt:")):  # the page's own values
            with naming(side):
                compare.resolve_source(self.store, model)
            return model
        return "base:" + check_model(side, model)

    def _checkpoint(self, run_parameter: str, epoch_parameter: str, run_id: str, epoch: Any) -> str:
        """``ckpt:<run_id>:epoch-NNNN`` of a run's checkpoint (default: its last); ValueError names the parameter."""
        try:
            run = self.store.get(str(run_id))
        except ValueError as error:
            ids = [r.run_id for r in self.store.list()]
            shown = ", ".join(ids[:10]) + (", …" if len(ids) > 10 else "") if ids else "none yet"
            raise ValueError(f"{run_parameter}: {error}; runs: {shown}") from None
        folders = {checkpoint_epoch(c): c.name for c in run.checkpoints()}
        if not folders:
            raise ValueError(f"{run_parameter}: run {run.run_id} has no checkpoint yet (checkpoints are saved every "
                             "few epochs and at the end; example runs ship without weights)")
        epochs = ", ".join(map(str, sorted(folders)))
        if epoch is None:
            epoch = max(folders)
        with naming(epoch_parameter):
            epoch = int(parse_bounded(f"the epoch of run {run.run_id} (checkpoints: {epochs})", epoch, 0, 10**6))
        if epoch not in folders:
            raise ValueError(f"{epoch_parameter}: run {run.run_id} has checkpoints at epochs {epochs}, got {epoch}")
        return f"ckpt:{run.run_id}:{folders[epoch]}"

    def _png(self, image) -> Path:
        """``image`` (PIL) as a PNG file in this API's temporary folder, named by its content."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        if self._files is None:
            self._files = Path(tempfile.mkdtemp(prefix="hrf-api-"))
        path = self._files / f"{hashlib.sha256(data).hexdigest()[:24]}.png"
        if not path.is_file():
            path.write_bytes(data)
        return path

    # -- the locality profile --------------------------------------------------------------------------
    def _profile_key(self, model: str | None, reward: str | None, num_steps: int | None, available: bool):
        """(model, reward, K), each checked; None: the page's."""
        model = check_model("model", model or self.defaults.model, available=available)
        reward = check_reward("reward", reward or self.defaults.reward)
        k = int(check_number("num_steps", num_steps if num_steps is not None else self.defaults.num_steps))
        return model, reward, k

    def suggest_window(self, model: str | None = None, reward: str | None = None,
                       num_steps: int | None = None) -> dict:
        """The window the reward's locality profile suggests (the page's ✦ Suggest window), with the reason.

        Needs the profile of (model, reward, num_steps): the shipped one, or one /compute_profile made.
        Defaults: the page's model, reward and K. Returns {"window": "start:end", "window_start",
        "window_end", "reason", "decided"}; decided[i]: the share of the reward's variance decided before step i.
        """
        model, reward, k = self._profile_key(model, reward, num_steps, available=False)
        profile = train.stored_profile(self.store, model, reward, k)
        if profile is None:
            raise ValueError(f"num_steps: no locality profile of {reward} on {model} with num_steps={k} yet: "
                             "call /compute_profile with these values first")
        window, reason = train.suggested_window(profile, k)
        start, end = parse_window(window, k)
        return {"window": window, "window_start": start, "window_end": end, "reason": reason,
                "decided": train.profile_props(profile, k)["profile"]}

    def compute_profile(self, model: str | None = None, reward: str | None = None, num_steps: int | None = None,
                        wait: bool = True, token: str = "") -> dict:
        """Compute the reward's locality profile on the model in the job slot (the page's Compute profile).

        Refused while a run is in progress. Returns when it is done ({"state": "done"}; "stopped" after a /stop,
        "failed" with "error"), or at once with wait=False ({"state": "running"}: /suggest_window answers once
        the profile is stored). Then /suggest_window gives its window. Returns {"state", "label", "fraction",
        "error"}.
        """
        presenter.check(token)
        model, reward, k = self._profile_key(model, reward, num_steps, available=True)
        with naming("model"):
            require_runnable(model)
        task = train.start_profile(self.manager, model, reward, k)
        if wait and task.thread is not None:
            task.thread.join()
        return {"state": task.state, "label": task.label, "fraction": task.fraction, "error": task.error}


def start_params(config, token: str = "") -> dict:
    """The ``/start`` (or ``/duel``) parameters that describe a TrainConfig ``config``, for scripts and tests."""
    return {**settings.to_values(config, "api"), "token": token}


# -------------------------------------------------------------------------------------------- the reference
#: Where docs/API.md holds the generated tables (``python scripts/api_reference.py`` rewrites what is between).
REFERENCE_BEGIN = "<!-- generated by scripts/api_reference.py from the settings table: do not edit by hand -->"
REFERENCE_END = "<!-- end of the generated reference -->"


def _allowed(setting) -> str:
    """What a setting's API parameter accepts, in words (its choices, its range, its kind)."""
    if setting.kind == "choice":
        return " · ".join(f"`{value}`" for value in setting.choice_labels())
    if setting.kind == "window":
        return '"start:end" in 0..K'
    if setting.kind == "prompts":
        return "text: commas or one per line, or a list"
    if setting.kind in ("int", "float"):
        number = (lambda x: f"{int(x)}") if setting.kind == "int" else (lambda x: f"{x:g}")
        low = "" if setting.low is None else number(setting.low)
        high = "" if setting.high is None else number(setting.high)
        return f"{setting.kind} {low}…{high}".strip() if (low or high) else setting.kind
    return setting.kind


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def reference_markdown() -> str:
    """The API reference, generated: ``/start`` and ``/duel``'s parameters from the settings table (every API
    setting, so none can be missed), then every other endpoint's parameters from its signature."""
    lines = ["### `/start` and `/duel`", "",
             "Every parameter is optional: one left out takes the `preset`'s value when a preset is given, else the "
             "page's.", "", "| parameter | accepts | what it sets |", "| --- | --- | --- |"]
    for setting in settings.on("api"):
        if setting.kind == "window":
            lines.append("| `window_start`, `window_end` | int | one end of the window (instead of `window`) |")
        lines.append(f"| `{setting.name}` | {_cell(_allowed(setting))} | {_cell(setting.help)} |")
    lines += [f"| `preset` | {' · '.join(f'`{name}`' for name in (train.NO_PRESET, *PRESETS))} | "
              "the preset whose values fill the parameters left out |",
              "| `token` | text | the presenter token (empty when `HRF_PRESENTER_TOKEN` is not set) |", "",
              "Returns `run_id` and `config` (`/duel`: `run_ids` and `configs`).", "",
              "### The other endpoints", "", "| endpoint | parameters | returns |", "| --- | --- | --- |"]
    for name, method in (("stop", ScriptingApi.stop), ("continue", ScriptingApi.continue_run),
                         ("compare", ScriptingApi.compare), ("sample", ScriptingApi.sample),
                         ("suggest_window", ScriptingApi.suggest_window),
                         ("compute_profile", ScriptingApi.compute_profile)):
        parameters = [p for p in inspect.signature(method).parameters if p != "self"]
        doc = inspect.getdoc(method) or ""
        returns = doc[doc.find("Returns"):].split("\n\n")[0] if "Returns" in doc else doc.split("\n\n")[0]
        lines.append(f"| `/{name}` | {', '.join(f'`{p}`' for p in parameters)} | {_cell(returns)} |")
    lines.append("| `/status` | | the job: `state`, `run_id`, `epoch`, `latest_metrics`, … "
                 "(also plain `GET /status`) |")
    return "\n".join(lines)


def with_reference(document: str) -> str:
    """``document`` (docs/API.md) with its generated part replaced by :func:`reference_markdown`."""
    head, found, rest = document.partition(REFERENCE_BEGIN)
    if not found or REFERENCE_END not in rest:
        raise ValueError("docs/API.md lacks the generated reference's markers")
    return f"{head}{REFERENCE_BEGIN}\n{reference_markdown()}\n{REFERENCE_END}{rest.partition(REFERENCE_END)[2]}"
