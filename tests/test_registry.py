"""One place per decision: the method registry and the settings table.

- a throwaway method, registered at run time, trains end to end through the CLI, the scripting API and the
  page's handlers, with nothing else changed;
- no method name appears as a string literal outside the registry and the presets;
- the settings table holds every TrainConfig field, and the page's form, the API's parameters, the CLI's flags
  and the Runs table's columns are the table's.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from explorer.api import ScriptingApi, form_signature
from explorer.jobs import JobManager
from explorer.page import Lab
from explorer.views import runs as runs_view
from hrf_core import REPO_ROOT, methods, settings
from hrf_core.cli import build_parser, main
from hrf_core.config import TrainConfig
from hrf_core.methods.base import Method
from hrf_core.methods.hrf import ddpo_partner
from hrf_core.store.runs import RunStore


class LastQuarter(Method):
    """Trains only the last quarter of the steps, from re-noised starts at its first step (a test's method)."""

    name = "last-quarter"
    label = "Last quarter"
    help = "Trains the last quarter of the steps only."
    color = "#000000"

    def window(self, config, epoch):
        return (3 * config.num_steps // 4, config.num_steps)

    def from_form(self, config, span):
        return config.replace(window=self.window(config, 1))

    def starts(self, config, epoch, batches, generator, state):
        return [self.window(config, epoch)[0]] * batches

    def partner(self, config):
        return ddpo_partner(config)

    def schedule(self, config):
        return "the last quarter of the steps"


@pytest.fixture
def last_quarter():
    method = methods.register(LastQuarter())
    yield method
    methods.unregister(method.name)


def tiny(model_dir) -> dict:
    """A run of the throwaway method on a tiny model: K = 8, one epoch of 4 samples."""
    return dict(model=str(model_dir), reward="jpeg-compressibility", method=LastQuarter.name, num_steps=8,
                epochs=1, samples_per_epoch=4, batch_size=4, siblings=2, eval_samples=4, eval_every=1)


def trained_steps(run) -> list[tuple[int, int]]:
    return [(row["window_start"], row["window_end"]) for row in run.metrics() if row.get("epoch", 0) >= 1]


@pytest.mark.slow
def test_a_registered_method_trains_through_the_cli_the_api_and_the_page(last_quarter, tiny_model_dir, tmp_path):
    train_help = next(a for a in build_parser()._subparsers._actions if a.dest == "command").choices["train"]
    assert LastQuarter.name in train_help.format_help()  # the CLI's --method choices
    # the command line
    args = ["train", "--model", str(tiny_model_dir), "--reward", "jpeg-compressibility", "--method", LastQuarter.name,
            "--steps", "8", "--epochs", "1", "--samples", "4", "--batch-size", "4", "--siblings", "2",
            "--eval-samples", "4", "--device", "cpu", "--out", str(tmp_path / "cli"), "--name", "q"]
    assert main(args) == 0
    cli_run = RunStore(tmp_path / "cli").get("q")
    assert cli_run.config["method"] == LastQuarter.name and trained_steps(cli_run) == [(6, 8)]

    # the scripting API (its parameters are built with the registry as it is now)
    manager = JobManager(RunStore(tmp_path / "app"), torch_threads=1)
    api = ScriptingApi(manager, TrainConfig(**tiny(tiny_model_dir)))
    assert LastQuarter.name in str(inspect.signature(api.start).parameters["method"].annotation)
    result = api.start(method=LastQuarter.name, model=str(tiny_model_dir))
    assert manager.wait(120) and manager.snapshot().state == "done"
    api_run = manager.store.get(result["run_id"])
    assert trained_steps(api_run) == [(6, 8)]

    # the page's handlers: the method's choice, its help and note, Start and Duel
    lab = Lab(manager, TrainConfig(**tiny(tiny_model_dir)), docs_dir=tmp_path / "docs")
    assert lab.train.method_help(LastQuarter.name) == LastQuarter.help
    assert lab.train.note(LastQuarter.name, "2:8", 8, 1) == LastQuarter.help
    values = {**settings.to_values(lab.defaults, "form"), "window": "1:8"}
    notice, tabs = lab.train.duel("", "custom", values)
    assert "Started" in notice and tabs.selected == "live", notice
    assert manager.wait(120) and manager.snapshot().state == "done"
    pair = {run.config["method"]: run for run in manager.store.list() if run.config["extra"].get("duel_with")}
    assert set(pair) == {LastQuarter.name, methods.reference().name}
    assert trained_steps(pair[LastQuarter.name]) == [(6, 8)]
    assert methods.run_label(pair[LastQuarter.name].config) == LastQuarter.label


def test_an_unregistered_method_is_refused_everywhere_with_one_line(last_quarter):
    methods.unregister(LastQuarter.name)
    with pytest.raises(settings.SettingError, match="method: 'last-quarter' is not allowed"):
        TrainConfig(method=LastQuarter.name).validate()
    methods.register(last_quarter)
    TrainConfig(method=LastQuarter.name, num_steps=8).validate()


def method_literals(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """``line: literal`` of every string literal in ``path`` that is a method's name where a method is meant.

    The hand-over's name ("handover") is also the metric rows' and the API's field for its step S: as a
    dictionary key, a subscript, a ``.get`` key, a keyword or a field list it is that field, not the method.
    """
    trainable = set(methods.trainable())
    derived = set(methods.METHODS) - trainable
    tree = ast.parse(path.read_text())
    keys: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Subscript):
            keys.add(id(node.slice))
        elif isinstance(node, ast.Call):
            if node.args and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "setdefault", "pop"):
                keys.add(id(node.args[0]))
            if node.args and isinstance(node.func, ast.Name):  # parse_bounded("handover", ...): a parameter name
                keys.add(id(node.args[0]))
        elif isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) > 3:
            keys.update(id(e) for e in node.elts)  # a list of field names (ROW_KEYS)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in trainable or (node.value in derived and id(node) not in keys):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    return found


def test_no_method_name_outside_the_registry_and_the_presets():
    files = [*REPO_ROOT.glob("hrf_core/**/*.py"), *REPO_ROOT.glob("explorer/**/*.py"), REPO_ROOT / "app.py"]
    allowed = {REPO_ROOT / "hrf_core" / "presets.py", REPO_ROOT / "hrf_core" / "config.py",  # its default
               *REPO_ROOT.glob("hrf_core/methods/*.py")}
    found = [hit for path in files if path not in allowed for hit in method_literals(path)]
    assert not found, "\n".join(found)


def test_the_config_default_method_is_registered():
    """The config names its default method as a literal (no import of the registry for a string): it is trainable."""
    default = TrainConfig().method
    assert methods.get(default) is methods.METHODS[default] and default in methods.trainable()


def test_the_literal_check_can_fail(tmp_path):
    """The check above finds a method compared by name (what the registry replaced), and the hand-over's name where
    it means the method, not where it names the field of its step."""
    probe = tmp_path / "probe.py"
    probe.write_text('def f(config, row):\n    return config.get("method") == "hrf-sliding" or row["handover"] or \\\n'
                     '        config["method"] == "handover"\n')
    hits = [hit.split(":", 1)[1] for hit in method_literals(probe, root=tmp_path)]
    assert hits == ["2: 'hrf-sliding'", "3: 'handover'"]


def test_the_settings_table_holds_every_field_and_drives_every_surface():
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(settings.TABLE) == sorted(fields)
    # the page's form
    shown = [s.name for s in settings.on("form")]
    assert set(shown) == {"model", "reward", "method", "window", "start_mode", "adv_scope", "outside_window",
                          "prompts", "guidance_grad", "bf16", "fp16", "grad_checkpointing", "finetune",
                          *settings.form_numbers()}
    assert len(shown) == len(set(shown))
    # the API's parameters: every API setting (the window also by its two ends), then preset and token
    names = list(form_signature().parameters)
    expected = [n for s in settings.on("api") for n in (
        ["window_start", "window_end", "window"] if s.name == "window" else [s.name])]
    assert names == [*expected, "preset", "token"]
    # the CLI's flags
    train = next(a for a in build_parser()._subparsers._actions if a.dest == "command").choices["train"]
    flags = {o for action in train._actions for o in action.option_strings}
    assert {s.flag for s in settings.on("cli")} <= flags
    assert flags - {s.flag for s in settings.on("cli")} == {"-h", "--help", "--preset", "--out", "--name",
                                                            "--report-to", "--prompts-file"}
    # the Runs table's columns
    assert runs_view.RUN_COLUMNS[2:2 + len(settings.on("column"))] == [s.column for s in settings.on("column")]


@pytest.mark.parametrize("surface,naming,expected", [
    ("page", settings.words, "Samples per epoch (8) must be a multiple of the batch (3)"),
    ("api", lambda n: n, "samples_per_epoch (8) must be a multiple of batch_size (3)"),
    ("cli", settings.flag, "--samples (8) must be a multiple of --batch-size (3)"),
])
def test_one_check_names_the_setting_each_surface_s_way(surface, naming, expected):
    with pytest.raises(settings.SettingError) as caught:
        TrainConfig(samples_per_epoch=8, batch_size=3, siblings=1).validate()
    text = caught.value.sentence() if surface == "page" else caught.value.render(naming)
    assert text == expected
