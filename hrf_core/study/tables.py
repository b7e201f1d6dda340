"""The frontier's Markdown: cells (``mean ± std [interval] n=``), each arm's metric at the levels and its Δ to
DDPO, where an arm stands against early-stopped DDPO (:func:`standing`, :func:`position`), the standing table over
tasks and the window-only against hand-over rows; every table with how many calls chance alone would make.

Read off a frontier result (:func:`hrf_core.study.frontier.frontier`); the experiments' reports and the
``frontier`` command print them.
"""

from __future__ import annotations

from collections.abc import Callable

from hrf_core import methods
from hrf_core.study.frontier import LEVEL, MIN_HEADLINE_SEEDS, VS_DDPO, VS_HANDOVER


def format_value(entry: dict | None, digits: int = 2) -> str:
    if not entry:
        return "not reached"
    text = f"{entry['mean']:.{digits}f}"
    if entry.get("n", 1) > 1:
        text += f" ± {entry['std']:.{digits}f}"
    if "ci" in entry:
        text += f" [{entry['ci'][0]:.{digits}f}, {entry['ci'][1]:.{digits}f}]"
    if "n" in entry:
        text += f" n={entry['n']}"
    return text


def logged_metrics(groups) -> set[str]:
    """The metrics some arm of these frontier groups (``result["groups"].values()``) has at a matched-reward level:
    what the runs logged (an older store lacks the newer measures)."""
    return {name for group in groups for entry in group["arms"].values()
            for row in entry.get("matched_reward", []) for name in row["values"]}


def baseline_arm(against: str) -> str:
    """The arm a Δ key (:data:`~hrf_core.study.frontier.VS_DDPO`, :data:`~hrf_core.study.frontier.VS_HANDOVER`) is
    taken against: the reference (DDPO) or the hand-over."""
    return methods.Handover.name if against == VS_HANDOVER else methods.reference().name


def table(group: dict, metric: str, axis: str = "reward", against: str = VS_DDPO) -> list[str]:
    """Markdown rows: each arm's ``metric`` (and its difference to the baseline ``against``, DDPO by default) at
    the group's levels."""
    levels = group["reward_levels"] if axis == "reward" else group["compute_levels"]
    head = "| arm | " + " | ".join(f"{int(lv['fraction'] * 100)}%" for lv in levels) + " |"
    lines = [head, "|---" * (len(levels) + 1) + "|"]
    calls = 0
    for arm, entry in group["arms"].items():
        cells = []
        for row in entry[f"matched_{axis}"]:
            value = row["values"].get(metric)
            delta = row.get(against, {}).get(metric)
            cell = format_value(value) if value or not row["reached"] else "not measured"
            if delta and arm != baseline_arm(against):
                cell += f"; Δ {format_value(delta)}"
                calls += "ci" in delta
            if row["reached"] < row["n"]:
                cell += f" ({row['reached']}/{row['n']} seeds)"
            cells.append(cell if row["reached"] else "not reached")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if calls:
        lines += ["", chance_note(calls)]
    return lines


def standing(row: dict, metric: str = "is_classifier", against: str = VS_DDPO) -> str:
    """Where one arm stands against a baseline (``against``: early-stopped DDPO by default) at one level: "above"
    (the Δ interval is above 0), "below" (under 0), "on" (it spans 0), "undetermined" (one seed), "not reached" (by
    some seed), or "not measured" (the runs did not log ``metric``, or the baseline's seeds are missing)."""
    deltas = row.get(against, {})
    if row.get("reached", 0) and row["reached"] == row["n"] and metric not in deltas:
        return "not measured"
    return position(deltas.get(metric), row.get("reached", 0), row["n"])


def position(delta: dict | None, reached: int, n: int) -> str:
    """"above" / "below" / "on" for a Δ summary whose seed-level interval is above 0 / under 0 / spans it,
    "undetermined" without an interval (one seed); "not reached" when fewer than all ``n`` seeds reached the level."""
    if not reached or reached < n or not delta:
        return "not reached"
    if "ci" not in delta:  # one seed: no interval, no call
        return "undetermined"
    low, high = delta["ci"]
    return "above" if low > 0 else "below" if high < 0 else "on"


def standing_table(results: list[dict], metric: str | Callable[[str], str] = "is_classifier",
                   against: str = VS_DDPO) -> tuple[list[str], str | None]:
    """Per arm and reward level: on how many tasks it is on or above the baseline ``against`` (early-stopped DDPO
    by default; the hand-over with ``VS_HANDOVER``) (Markdown rows), and the arm with the best row (most tasks
    on or above, summed over levels; then most above).

    ``results``: frontier results (``frontier()``); an arm in a later one replaces the same arm of an earlier one.
    ``metric``: the Δ's metric, or a function of the task (reward) giving it (e.g. never one the reward reads).
    """
    metric_of = metric if callable(metric) else (lambda reward: metric)
    arms: dict[str, dict[str, dict]] = {}  # arm -> task -> entry
    levels: list[float] = []
    for result in results:
        for group in result["groups"].values():
            levels = [lv["fraction"] for lv in group["reward_levels"]]
            for arm, entry in group["arms"].items():
                if arm != baseline_arm(against):
                    arms.setdefault(arm, {})[group["reward"]] = entry
    lines = ["| method | " + " | ".join(f"{int(f * 100)}%" for f in levels) + " |", "|---" * (len(levels) + 1) + "|"]
    scores = {}
    calls = 0
    for arm, tasks in arms.items():
        cells, total = [], [0, 0]
        for i in range(len(levels)):
            rows = [entry["matched_reward"][i] for entry in tasks.values()]
            states = [standing(row, metric_of(task), against) for task, row in zip(tasks, rows, strict=True)]
            counts = {s: states.count(s) for s in ("above", "on", "below", "undetermined", "not reached",
                                                   "not measured")}
            good = counts["above"] + counts["on"]
            total[0] += good
            total[1] += counts["above"]
            calls += len(states) - counts["not reached"] - counts["not measured"]
            seeds = sorted({row["n"] for row in rows})
            low_n = seeds and seeds[0] < MIN_HEADLINE_SEEDS
            detail = ", ".join(f"{counts[s]} {s}" for s in ("above", "below", "undetermined", "not reached",
                                                            "not measured") if counts[s])
            cells.append(f"{good}/{len(states)}" + (f" ({detail})" if detail else "")
                         + f" n={'-'.join(str(n) for n in seeds[::max(1, len(seeds) - 1)])}"
                         + (" · not a headline" if low_n else ""))
        scores[arm] = tuple(total)
        mark = " ¹" if any(entry.get("earlier") for entry in tasks.values()) else ""  # from an earlier sitting
        lines.append(f"| {arm}{mark} | " + " | ".join(cells) + " |")
    best = max(scores, key=lambda a: scores[a]) if scores else None
    if calls:
        lines += ["", chance_note(calls)]
    return lines, best


def chance_note(cells: int, level: float = LEVEL) -> str:
    """How many of ``cells`` intervals chance alone would put off 0 (an "above" or "below" with no effect)."""
    return (f"Chance alone: with no difference anywhere, about {cells * (1 - level):.1f} of these {cells} "
            f"{level:.0%} intervals would miss 0 (an \"above\" or \"below\" call). n: seeds behind each cell; a "
            f"cell with fewer than {MIN_HEADLINE_SEEDS} is not a headline claim.")


def handover_rows(results: list[dict], metric: str = "is_classifier") -> list[str]:
    """Markdown rows: every window-only arm against the hand-over at its own split S, per task (see
    :func:`versus_handover`); "above" where the matched-reward Δ interval is above 0. Empty without such arms."""
    lines = []
    calls = 0
    for result in results:
        for group in result["groups"].values():
            for arm, entry in group["arms"].items():
                versus = entry.get("vs_handover")
                if not versus or not versus.get("n"):
                    continue
                handover, final = versus["handover_gain"]["mean"], versus["final_gain"]["mean"]
                share = f"{final / handover * 100:.0f}%" if handover > 0 else "n/a"
                delta = versus["delta"].get(metric)
                where = position(delta, versus["reached"], versus["n"])
                calls += bool(delta and "ci" in delta and where != "not reached")
                low_n = where in ("above", "below") and versus["n"] < MIN_HEADLINE_SEEDS
                matched = (f"{format_value(delta)} ({where}{'; not a headline' if low_n else ''})"
                           if where != "not reached" else f"not reached ({versus['reached']}/{versus['n']} seeds)")
                lines.append(f"| {group['reward']} | {arm} | {versus['split']} | "
                             f"{format_value(versus['handover_gain'], 4)} "
                             f"| {format_value(versus['final_gain'], 4)} ({share}) | {matched} | "
                             f"{format_value(versus['delta_final'].get(metric))} |")
    if not lines:
        return []
    return ["| task | window-only arm | S | hand-over's gain at S | window-only's final gain (% of it) "
            "| Δ IS at the hand-over's gain | Δ IS, final vs hand-over |", "|---|---|---|---|---|---|---|", *lines,
            *(["", chance_note(calls)] if calls else [])]
