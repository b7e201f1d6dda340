"""The Runs tab: the table of runs on disk, a run's details and checkpoints."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from hrf_core import settings
from hrf_core.measure.headline import finite
from hrf_core.methods import color_of, run_label
from hrf_core.rewards.headline import metric_keys
from hrf_core.store.runs import Run, RunStore, checkpoint_epoch

# ------------------------------------------------------------------------------------------ run table
#: How a setting's Runs-table cell shows a run (``config``, its last epoch); by default its value as it is.
CELLS = {
    "model": lambda config, done: (Path(str(config.get("model", "?"))).name
                                   if "/" in str(config.get("model", "")) and Path(str(config["model"])).exists()
                                   else str(config.get("model", "?"))),
    "method": lambda config, done: (f"<span style='color:{color_of(config.get('method', ''))};font-weight:600'>"
                                    f"{html.escape(run_label(config))}</span>"),  # its colour on every tab
    "epochs": lambda config, done: f"{done}/{config.get('epochs', '?')}",
    "prompts": lambda config, done: settings.format_prompts(tuple(config.get("prompts") or ())) or "–",
}
#: The settings shown as columns (the settings table's ``column``), between the run's id and status and its metrics.
SETTING_COLUMNS = settings.on("column")
#: The metric columns (base model -> last evaluation), named apart from the settings' (the reward's name is a setting).
METRIC_COLUMNS = ["reward value", "Vendi", "IS", "s/epoch"]
RUN_COLUMNS = ["run", "status", *(s.column for s in SETTING_COLUMNS), *METRIC_COLUMNS]
#: How the table renders each column: the method's cell is HTML (its label in its colour).
RUN_DATATYPES = ["html" if column == "method" else "str" for column in RUN_COLUMNS]
#: The columns' widths (percent): the run id widest, each setting an equal share of what the others leave.
RUN_WIDTHS = [20, 8, *[round(38 / len(SETTING_COLUMNS))] * len(SETTING_COLUMNS), 11, 9, 6, 8]


def _arrow(rows: list[dict], key: str | None, digits: int = 2) -> str:
    if not key:
        return "–"
    values = [r[key] for r in rows if finite(r.get(key))]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values[0]:.{digits}f} → {values[-1]:.{digits}f}"


def runs_table(store: RunStore, snapshot_of=None) -> list[list[Any]]:
    """One row per run on disk (newest first), columns :data:`RUN_COLUMNS`."""
    table = []
    for run in store.list():
        config = run.config
        snap = snapshot_of(run.run_id) if snapshot_of else None
        rows = snap.rows if snap is not None else run.metrics()
        status = snap.status if snap is not None else run.status.get("state", "?")
        keys = metric_keys(rows, config.get("reward"), config.get("diversity_weight") or 0.0)
        trained = [r["seconds"] for r in rows if r.get("epoch", 0) >= 1 and finite(r.get("seconds"))]
        done = max((r.get("epoch", 0) for r in rows), default=0)
        table.append([
            run.run_id, status,
            *(CELLS.get(s.name, lambda c, d, name=s.name: c.get(name, "?"))(config, done) for s in SETTING_COLUMNS),
            _arrow(rows, "reward_mean", 3), _arrow(rows, keys.diversity), _arrow(rows, keys.inception),
            f"{sum(trained) / len(trained):.1f}" if trained else "–",
        ])
    return table


def run_details(run: Run) -> dict:
    """The config and the last evaluated metrics of a run, for a JSON view."""
    rows = run.metrics()
    last = next((r for r in reversed(rows) if "reward_mean" in r), {})
    return {"status": run.status, "config": run.config, "last_metrics": last}



def checkpoint_choices(run: Run) -> list[tuple[str, str]]:
    return [(f"epoch {int(c.name.split('-')[1])}", f"ckpt:{run.run_id}:{c.name}") for c in reversed(run.checkpoints())]


#: More epochs offered by default when a run has trained all it planned.
DEFAULT_MORE_EPOCHS = 5


def continue_hint(run: Run, snap=None) -> tuple[int, str]:
    """How many more epochs Continue offers for ``run`` (what it planned and has not trained, else a few) and one
    line saying from where it continues (``snap``: the run's :class:`~explorer.snapshots.JobSnapshot`, for its
    state)."""
    if run.is_example:
        return DEFAULT_MORE_EPOCHS, "An example run ships without weights: it cannot continue."
    checkpoints = run.checkpoints()
    if not checkpoints:
        return DEFAULT_MORE_EPOCHS, "No checkpoint yet: nothing to continue from."
    at = checkpoint_epoch(checkpoints[-1])
    planned = int(run.config.get("epochs") or 0)
    state = snap.status if snap is not None else run.status.get("state", "?")
    return (planned - at if planned > at else DEFAULT_MORE_EPOCHS,
            f"{state.capitalize()}: Continue trains it on from the checkpoint of epoch {at} for the epochs set here "
            f"(the command line's python -m hrf_core resume).")

