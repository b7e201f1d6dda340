"""``prompts-digits``: which method keeps diversity *within a prompt* best, at matched reward?

``python -m hrf_core experiment prompts-digits [--seeds 0 1 2] [--jobs 2 | --backend ray] [--shard i/N]
[--report-only]``

The class-conditional embedded model ``digits16-cond``, prompted with a set of digits (each sample draws one).
Arms, every task and seed:

- ``ddpo``: every step, advantages per prompt (ddpo-pytorch's per-prompt tracker, buffer 16, minimum 16): the
  early-stopping frontier;
- ``hrf[20,40)/image``: HRF on the window [20, 40), advantages over each re-noised image's siblings (which share
  its prompt);
- ``hrf[30,40)/image/wo``: window-only HRF [30, 40): the base model samples the steps before the window;
- ``handover``: no training: the base model before S, the final DDPO checkpoint from S (S = K .. 0);
- ``ddpo+kl0.1``: DDPO with the KL penalty to the base model (DPOK), 0.1 nats per pixel;
- ``ddpo/epoch`` (on ``--tracker-tasks``): DDPO with advantages over the whole epoch: what the per-prompt tracker
  changes;
- ``<arm>+div<w>`` (each w of ``--diversity-weights``, none by default): ``ddpo``, ``hrf[30,40)/image/wo`` and the
  hand-over of the ``ddpo+div<w>`` run, with the diversity bonus of weight w (as in ``frontier-digits``).

``--arms`` runs only the arms it names.

Tasks: ``alignment`` (the classifier's probability of the prompted digit), ``ink`` and ``jpeg-incompressibility``.
``alignment`` is trained at guidance 0.5 (``--guidance``): at the model's default of 1 it starts at 1.000, with
nothing to gain. Diversity within a prompt (the calibrated measure, :data:`PRIMARY`: Vendi of an RBF kernel on
blurred pixels among the samples of one prompt, averaged over the prompts; the classifier's within-prompt Vendi,
which fails the calibration suite, is a labelled secondary column) is the headline; the across-prompt value is
beside it. The second calibrated measure, :data:`JUDGE` (an RBF kernel on HOG edge descriptors), has tables of its
own: the diversity bonus reads the first measure's kernel, so the bonus arms are judged on this one. Every arm is
also compared with the same seed's hand-over at matched reward (``delta_vs_handover``). Units are resumable and run
on a backend or a shard, with one retry, as in ``frontier-digits``; the report is
``docs/results/prompts.{md,json,png}``, and ``docs/RESULTS.md`` includes its Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hrf_core.config import TrainConfig
from hrf_core.store.runs import Run, write_json
from hrf_core.study.arms import (
    DDPO_ARM,
    HANDOVER_ARM,
    arm_overrides,
    diversity_arms,
    sitting_config,
    window_arm,
)
from hrf_core.study.report import (
    arm_colors,
    arms_in,
    bonus_note,
    execution_note,
    include_in_results,
    regenerate_command,
)
from hrf_core.study.units import arm_units, finished_runs, read_progress, report_settings

NAME = "prompts-digits"
TASKS = ("alignment", "ink", "jpeg-incompressibility")
#: The tracker's ablation: DDPO with advantages over the whole epoch instead of per prompt.
EPOCH_ARM = f"{DDPO_ARM}/epoch"
ARMS = (DDPO_ARM, f"{window_arm(20, 40)}/image", f"{window_arm(30, 40)}/image/wo", HANDOVER_ARM,
        f"{DDPO_ARM}+kl0.1")
#: How far the samples stay the digit they were prompted with (the classifier's probability of it): a sample that
#: leaves its prompt for another digit raises that prompt's diversity, so the two are read together.
ALIGNMENT = "prompt_alignment"
#: The judge among the samples that are their prompt's digit only: diversity a run cannot buy by leaving its prompt.
ON_PROMPT = "vendi_hog_within_on_prompt"
ON_PROMPT_LABEL = ("Within-prompt HOG Vendi among the samples the classifier puts in their prompt's digit (a sample "
                   "drawn as another digit left out)")
#: The within-prompt measure the report leads with (it passes the calibration suite, docs/METHOD.md), and the one
#: of runs logged before it existed (it fails the suite: thicker strokes raise it), labelled so.
PRIMARY, FALLBACK = "vendi_rbf_within", "vendi_classifier_within"
#: The second calibrated within-prompt measure, which the diversity bonus does not read: it judges the bonus arms.
JUDGE = "vendi_hog_within"
LABELS = {"vendi_rbf_within": "Within-prompt Vendi (RBF kernel on blurred pixels; calibrated)",
          JUDGE: "Within-prompt Vendi (RBF kernel on HOG edge descriptors; calibrated; the bonus does not read it)",
          "vendi_classifier_within": "Within-prompt Vendi (classifier features; uncalibrated: thicker strokes raise "
                                     "it)",
          "vendi_pixel_within": "Within-prompt Vendi (pixels; a weak proxy)"}


def primary_within(result: dict) -> str:
    """The within-prompt metric the report leads with: the first of :data:`LABELS` the runs logged (:data:`PRIMARY`
    on digits; :data:`FALLBACK` for a store logged before it; pixels for a model that is not 1x16x16)."""
    from hrf_core.study.tables import logged_metrics

    logged = logged_metrics(result.get("groups", {}).values())
    return next((name for name in LABELS if name in logged), PRIMARY)
LEVELS = (0.25, 0.5, 0.75)


@dataclass
class Settings:
    """The experiment's shared settings."""

    #: a headline claim needs at least 5 seeds (hrf_core.study.frontier.MIN_HEADLINE_SEEDS)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    prompts: list[str] = field(default_factory=lambda: ["3", "7", "8"])
    #: task -> guidance scale (tasks not named: 1, the model's default)
    guidance: dict[str, float] = field(default_factory=lambda: {"alignment": 0.5})
    tracker_tasks: list[str] = field(default_factory=lambda: ["alignment"])
    epochs: int = 18
    eval_every: int = 3
    eval_samples: int = 96
    samples: int = 32
    batch_size: int = 16
    siblings: int = 4
    steps: int = 40
    lr: float = 3e-4
    handover_every: int = 5
    model: str = "digits16-cond"
    #: also run ddpo, window-only hrf[30,40) and the hand-over with each diversity-bonus weight (``+div<w>`` arms)
    diversity_weights: list[float] = field(default_factory=list)
    #: run only these arms (empty: all)
    arms: list[str] = field(default_factory=list)


def arms_of(task: str, settings: Settings) -> list[str]:
    arms = [*ARMS, *([EPOCH_ARM] if task in settings.tracker_tasks else []),
            *(arm for weight in settings.diversity_weights for arm in diversity_arms(weight))]
    return [arm for arm in arms if not settings.arms or arm in settings.arms]


def arm_config(task: str, arm: str, seed: int, settings: Settings, device: str = "cpu") -> TrainConfig:
    """The config of one arm: the frontier experiment's arm grammar, with DDPO's advantages per prompt."""
    s = settings
    base = arm[: -len("/epoch")] if arm.endswith("/epoch") else arm
    overrides = arm_overrides(base, s.steps, s.epochs)
    scope = overrides.pop("adv_scope", "epoch" if arm.endswith("/epoch") else "prompt")
    return sitting_config(NAME, task, arm, seed, s, device, prompts=tuple(s.prompts),
                          guidance=s.guidance.get(task, 1.0), adv_scope=scope, **overrides)


def build_units(settings: Settings, root: Path, device: str = "cpu", report_to: tuple[str, ...] = ()):
    """Every (task, arm, seed) unit, arm by arm (DDPO first: the hand-over waits for it)."""
    order = [DDPO_ARM, HANDOVER_ARM, EPOCH_ARM, *ARMS]
    pairs = sorted(((task, arm) for task in settings.tasks for arm in arms_of(task, settings)),
                   key=lambda pair: order.index(pair[1]) if pair[1] in order else len(order))
    return arm_units(pairs, settings.seeds, root, settings.handover_every,
                     lambda task, arm, seed: arm_config(task, arm, seed, settings, device), report_to)


# ---------------------------------------------------------------------------------------------- report
def tracker_effect(runs: list[Run]) -> dict:
    """DDPO with per-prompt advantages against DDPO with epoch advantages, per task: final reward gain and final
    within-prompt Vendi (mean ± std over seeds, and every seed)."""
    import statistics

    out: dict = {}
    for run in runs:
        extra = run.config.get("extra") or {}
        if extra.get("arm") not in (DDPO_ARM, EPOCH_ARM):
            continue
        rows = [r for r in run.metrics() if "reward_mean" in r]
        if len(rows) < 2:
            continue
        key = next((k for k in rows[-1] if k.startswith(f"{PRIMARY}@")), None) or next(
            (k for k in rows[-1] if k.startswith(f"{FALLBACK}@")), None)
        entry = out.setdefault(extra["task"], {}).setdefault(extra["arm"], {"gain": [], "within": []})
        entry["gain"].append(rows[-1]["reward_mean"] - rows[0]["reward_mean"])
        entry["within"].append(rows[-1].get(key, float("nan")) if key else float("nan"))
    for arms in out.values():
        for entry in arms.values():
            for name in ("gain", "within"):
                values = entry[name]
                entry[f"{name}_mean"] = statistics.fmean(values)
                entry[f"{name}_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
    return out


def write_report(out: Path, docs: Path) -> Path:
    """``docs/results/prompts.{json,md,png}`` from the finished runs of ``out``; returns the Markdown's path."""
    from hrf_core.study.frontier import VS_HANDOVER, frontier
    from hrf_core.study.tables import format_value, logged_metrics, standing_table, table

    progress = read_progress(out)
    finished = finished_runs(out)
    settings = report_settings(Settings(**progress["settings"]) if progress.get("settings") else Settings(), finished)
    result = frontier(finished, fractions=LEVELS)
    order = [DDPO_ARM, HANDOVER_ARM, *ARMS, EPOCH_ARM]
    for group in result["groups"].values():
        group["arms"] = dict(sorted(group["arms"].items(), key=lambda item: (
            order.index(item[0]) if item[0] in order else len(order), item[0])))
    result["tracker"] = tracker_effect([Run(p) for p in finished])
    lead = result["primary_within"] = primary_within(result)
    older = "" if lead == PRIMARY else (f" **These runs have no calibrated measure (logged before it, or not 1x16x16 "
                                       f"digits): the tables lead with {LABELS[lead]}, which fails the calibration "
                                       "suite (docs/METHOD.md).**")
    results = docs / "results"
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "prompts.json", result)
    judged = lead == PRIMARY and JUDGE in logged_metrics(result["groups"].values())
    # the figure stands on the measure no arm was trained on (the bonus arms' RBF Vendi is their training signal)
    write_figure(result, out, results / "prompts.png", JUDGE if judged else lead)
    seeds = " ".join(map(str, settings.seeds))
    guided = ", ".join(f"{t} at guidance {g:g}" for t, g in settings.guidance.items() if t in settings.tasks)
    guided = f"guidance 1 except {guided}" if guided else "guidance 1"
    lines = [
        "## Prompts: diversity within a prompt, at matched reward (`prompts-digits`)", "",
        f"Generated by `hrf_core.study.prompts_experiment`; regenerate with "
        f"`{regenerate_command(NAME, settings, arms_in(result))}` ({execution_note(progress['sittings'])}).", "",
        f"Setting: `{settings.model}` prompted with the digits {', '.join(settings.prompts)} (each sample draws one; "
        f"the evaluation gives each prompt {settings.eval_samples // len(settings.prompts)} of its "
        f"{settings.eval_samples} fixed-seed samples), K = {settings.steps}, {settings.samples} samples per epoch, "
        f"{settings.epochs} epochs, lr {settings.lr:g}, seeds {seeds}; {guided}. "
        "DDPO's advantages are per prompt (ddpo-pytorch's tracker: buffer 16, minimum count 16); HRF's per "
        "re-noised image. **Within prompt**: Vendi among one prompt's samples, averaged over the prompts; it falls "
        "when every `3` becomes the same 3, which the across-prompt Vendi (three prompts, three digits) hides. It is "
        "the calibrated Vendi (RBF kernel on blurred pixels, docs/METHOD.md: collapse lowers it, thicker strokes, "
        "noise, contrast and a shift do not move it); the second calibrated measure (RBF kernel on HOG edge "
        "descriptors) judges the bonus arms, whose training read the first; the classifier's within-prompt Vendi is "
        "a secondary table. "
        "Cells as in the tables above: the value where a run's reward gain first reaches the level (a fraction of "
        "DDPO's final gain), `Δ` against the same seed's DDPO, `mean ± std` [95% interval] n=seeds "
        f"({result['interval']}).{older}", "",
    ]
    rows, _ = standing_table([result], metric=lead)
    lines += ["### Which method keeps within-prompt diversity on or above early-stopped DDPO?", "",
              f"For each method, on how many tasks its {LABELS[lead]} Δ to the same seed's DDPO at 25/50/75% of "
              "DDPO's gain is on the frontier (interval spans 0), above it, below it, or not reached.", "",
              *rows, "", *bonus_note(arms_in(result))]
    if judged:
        rows, _ = standing_table([result], metric=JUDGE)
        lines += [f"The same question on the {LABELS[JUDGE]}: the answer for the bonus arms.", "", *rows, ""]
    judge = JUDGE if judged else lead
    rows, _ = standing_table([result], metric=judge, against=VS_HANDOVER)
    lines += ["### Is any trained method above the hand-over at the same reward?", "",
              f"The same count against the training-free hand-over: each arm's {LABELS[judge]} Δ to the same seed's "
              "hand-over where both reach the level (the hand-over's gain grows as its split moves earlier).", "",
              *rows, ""]
    for group in result["groups"].values():
        lines += [f"### {group['reward']}", "",
                  f"**{LABELS[lead]} at matched reward** (DDPO's mean final gain "
                  f"{group['reference']['final_gain']:.4f})", ""]
        lines += table(group, lead) + [""]
        if judged:
            lines += [f"**{LABELS[JUDGE]} at matched reward**", ""]
            lines += table(group, JUDGE) + [""]
        lines += [f"**{LABELS[judge]} at matched reward, Δ to the same seed's hand-over**", ""]
        lines += table(group, judge, against=VS_HANDOVER) + [""]
        if lead == PRIMARY:
            lines += [f"**{LABELS[FALLBACK]} at matched reward** (secondary)", ""]
            lines += table(group, FALLBACK) + [""]
        if ALIGNMENT in logged_metrics([group]):
            lines += ["**Prompt alignment (the digits classifier's probability of the prompted digit) at matched "
                      "reward**: a sample drawn as another digit adds to its prompt's diversity and lowers this", ""]
            lines += table(group, ALIGNMENT) + [""]
            lines += [f"**{ON_PROMPT_LABEL} at matched reward**", ""]
            lines += table(group, ON_PROMPT) + [""]
            lines += [f"**{ON_PROMPT_LABEL} at matched reward, Δ to the same seed's hand-over**", ""]
            lines += table(group, ON_PROMPT, against=VS_HANDOVER) + [""]
        lines += ["**Across-prompt Vendi (classifier features) at matched reward**", ""]
        lines += table(group, "vendi_classifier") + [""]
        lines += ["**Within-prompt Vendi (pixels; a weak proxy, but blind to what the classifier was trained to "
                  "ignore) at matched reward**", ""]
        lines += table(group, "vendi_pixel_within") + [""]
        lines += ["| arm | final gain | % of DDPO's | within-prompt Vendi (calibrated) | within-prompt Vendi (HOG; "
                  "calibrated) | within-prompt Vendi (classifier; uncalibrated) | across-prompt Vendi (classifier) | "
                  "prompt alignment |", "|---|---|---|---|---|---|---|---|"]
        ref = group["reference"]["final_gain"]
        for arm, entry in group["arms"].items():
            final = entry["final"]
            share = final["gain"]["mean"] * 100 / ref if ref else float("nan")
            lines.append(f"| {arm} | {format_value(final['gain'], 4)} | {share:.0f}% | "
                         f"{format_value(final.get(PRIMARY)) if PRIMARY in final else 'not measured'} | "
                         f"{format_value(final.get(JUDGE)) if JUDGE in final else 'not measured'} | "
                         f"{format_value(final.get(FALLBACK))} | {format_value(final.get('vendi_classifier'))} | "
                         f"{format_value(final.get(ALIGNMENT))} |")
        lines.append("")
    if result["tracker"]:
        lines += ["### The per-prompt tracker: DDPO with per-prompt against epoch advantages", "",
                  "| task | advantages | final reward gain | final within-prompt Vendi | seeds |",
                  "|---|---|---|---|---|"]
        for task, arms in result["tracker"].items():
            for arm, entry in arms.items():
                lines.append(f"| {task} | {'per prompt' if arm == DDPO_ARM else 'epoch'} | "
                             f"{entry['gain_mean']:+.4f} ± {entry['gain_std']:.4f} | "
                             f"{entry['within_mean']:.2f} ± {entry['within_std']:.2f} | {len(entry['gain'])} |")
        lines.append("")
    lines += ["![within-prompt diversity against reward gain](results/prompts.png)", "",
              "### Reading", "", f"Where each method stands against early-stopped DDPO on {LABELS[lead]}, by level "
              "(generated from the tables):", "", *reading(result, lead), ""]
    if judged:
        lines += [f"And on the {LABELS[JUDGE]}:", "", *reading(result, JUDGE), ""]
    notes = results / "prompts-reading.md"  # written by hand; every interval and share it quotes must be in the tables
    if notes.is_file():
        from hrf_core.study.reading import stale_numbers

        lines += [notes.read_text().strip(), ""]
        for stale in stale_numbers(notes.read_text(), [result]):
            print(f"warning: prompts-reading.md quotes a number the tables do not hold: {stale}")
    report = results / "prompts.md"
    report.write_text("\n".join(lines))
    include_in_results(docs / "RESULTS.md", report.name, report.read_text())
    return report




def reading(result: dict, metric: str = PRIMARY) -> list[str]:
    """The prose, built from the numbers it quotes (so it cannot drift from the tables)."""
    from hrf_core.study.tables import format_value, position

    lines = []
    for group in result["groups"].values():
        task = group["reward"]
        verdicts = []
        for arm, entry in group["arms"].items():
            if arm == DDPO_ARM:
                continue
            cells = []
            for level, row in zip(group["reward_levels"], entry["matched_reward"], strict=True):
                delta = row["delta_vs_ddpo"].get(metric)
                where = position(delta, row["reached"], row["n"])
                cells.append(f"{int(level['fraction'] * 100)}%: {where}"
                             + (f" (Δ {format_value(delta)})" if delta and where in ("above", "below") else ""))
            verdicts.append(f"{arm} — " + "; ".join(cells))
        lines.append(f"- **{task}**: {LABELS.get(metric, metric)} against early-stopped DDPO, by level: "
                     + " | ".join(verdicts) + ".")
    return lines


def write_figure(result: dict, root: Path, path: Path, metric: str = PRIMARY) -> None:
    """Within-prompt Vendi (``metric``) against reward gain, one panel per task, every arm's seeds averaged."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from hrf_core.study.frontier import load_trajectory

    groups = list(result["groups"].values())
    if not groups:
        return
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups) + 1.6, 4.0), squeeze=False,
                             layout="constrained")
    colours = arm_colors([arm for group in groups for arm in group["arms"]])  # the methods' colours, as the page
    for ax, group in zip(axes[0], groups, strict=True):
        for arm, entry in group["arms"].items():
            points = []
            for run_id in entry["runs"]:
                t = load_trajectory(Run(root / run_id))
                if t is not None and metric in t.metrics:
                    points.append((t.gains, t.metrics[metric]))
            if not points:
                continue
            size = min(len(p[0]) for p in points)
            gains = np.mean([p[0][:size] for p in points], axis=0)
            within = np.mean([p[1][:size] for p in points], axis=0)
            ax.plot(gains, within, marker="o", ms=3, lw=3 if arm == DDPO_ARM else 1.5, color=colours[arm],
                ls="--" if arm == HANDOVER_ARM else "-", label=arm)
        ax.set_title(group["reward"])
        ax.set_xlabel("reward gain over the base model")
        ax.set_ylabel(textwrap.fill(LABELS.get(metric, metric), 48), fontsize=8)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines()}  # every arm once, whichever panel has it
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="outside right upper")
    fig.savefig(path, dpi=110)
    plt.close(fig)
