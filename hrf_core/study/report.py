"""``frontier-digits``'s report: ``docs/RESULTS.md``, ``docs/results/{frontier.json, frontier.png, grids}`` and the
app's DDPO reference curves, from the finished runs; the helpers every experiment's report shares (what ran it,
the arms' colours, a generated section of ``RESULTS.md``). The Markdown tables are :mod:`hrf_core.study.tables`'.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path

from hrf_core.methods.arms import coefficients
from hrf_core.store.runs import Run, read_json, write_json
from hrf_core.study.arms import (
    ABLATION_BASES,
    DDPO_ARM,
    HANDOVER_ARM,
    NAME,
    Settings,
    arm_method,
    arm_role,
    full_arms,
    run_name,
)
from hrf_core.study.units import finished_runs, read_progress, report_settings

#: The report's metrics: the classifier's pass the calibration suite across classes (docs/METHOD.md); the calibrated
#: vendi_rbf reads no network and stands in where the reward reads the classifier (:func:`standing_metric`); the
#: calibrated vendi_hog reads no network either, and it is the one the diversity bonus does not read.
HEADLINE = ("is_classifier", "vendi_rbf", "vendi_hog", "vendi_classifier", "class_entropy")


def standing_metric(reward: str) -> str:
    """The metric a task's standing is read on: the classifier's IS, unless the reward reads the classifier
    (``digit:N``), where it is the calibrated ``vendi_rbf``: never measure with the network a reward reads."""
    from hrf_core.rewards.registry import embedding_read_by

    return "vendi_rbf" if embedding_read_by(reward) == "classifier" else "is_classifier"


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


def reference_curves(result: dict, root: Path, prefix_n: tuple[int, ...] = (64,)) -> dict:
    """DDPO's evaluated points per reward and seed (the app's reference curve), also recomputed on the
    first n samples of each evaluation for the app's smaller evaluation sets."""
    import numpy as np

    from hrf_core.study.frontier import load_trajectory, metric_from_arrays

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

    from hrf_core.study.frontier import crossing, interpolate, load_trajectory

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
            "vendi_hog": "Vendi (RBF on HOG edge descriptors; calibrated)",
            "class_entropy": "class entropy (bits)", "vendi_pixel": "Vendi (pixels)"}.get(name, name)


def write_report(out: Path, docs: Path, reference_file: Path | None = None, previous: Path | None = None) -> Path:
    """docs/RESULTS.md, docs/results/{frontier.json, frontier.png, grids} and the app's DDPO reference.

    ``previous``: a ``frontier.json`` of an earlier sitting; the arms this store lacks join every table
    (:func:`merge_earlier`), so the written ``frontier.json`` holds both sittings.
    """
    from hrf_core.study.frontier import VS_HANDOVER, frontier
    from hrf_core.study.tables import format_value, handover_rows, logged_metrics, standing_table, table

    progress = read_progress(out)
    finished = finished_runs(out)
    settings = report_settings(Settings(**progress["settings"]) if progress.get("settings") else Settings(), finished)
    result = frontier(finished)
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
        from hrf_core.study.reference import write_shipped

        write_shipped(reference_file, {"experiment": NAME, "settings": asdict(settings),
                                       "rewards": reference_curves(result, out)})
        folder = reference_file.parent
        if (folder / "training.json").is_file() and (folder / "README.md").is_file():  # a shipped model's card
            from hrf_core.study.digits_quality import write_ddpm_card

            write_ddpm_card(folder)  # its file table lists every file's sha256
    seeds = " ".join(str(s) for s in settings.seeds)
    lines = [
        "# Results: what does each method's reward cost in diversity, at matched reward?",
        "",
        f"Generated by `hrf_core.study.report` from the runs; regenerate with "
        f"`{regenerate_command(NAME, settings, arms_in(result))}` "
        f"({execution_note(progress['sittings'])}).",
        "",
        f"Setting: `{settings.model}`, K = {settings.steps} DDIM steps, eta = 1, {settings.samples} samples per epoch "
        f"(batch {settings.batch_size}, {settings.siblings} siblings per re-noised image), {settings.epochs} epochs, "
        f"AdamW lr {settings.lr:g}, seeds {seeds}. Every arm is evaluated every {settings.eval_every} epochs on the "
        f"same **{settings.eval_samples} fixed-seed samples** (the same noise for every arm and epoch). Diversity is "
        "measured with the digits classifier (Inception Score, Vendi on its features, entropy of its class "
        "histogram: they pass the calibration suite across classes, docs/METHOD.md) and with the two calibrated "
        "Vendis (RBF kernels on blurred pixels and on HOG edge descriptors), which read no network: a task whose "
        "reward reads the classifier (`digit:N`) is judged on them.",
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
    lines += rows + [""] + bonus_note(arms_in(result))
    if best:
        lines += [f"Best row: **{best}**.", ""]
    rows, _ = standing_table([{**result, "groups": by_role}], standing_metric, against=VS_HANDOVER)
    lines += ["## Is any trained method above the hand-over at the same reward?", "",
              "The same count against the training-free hand-over: each arm's IS Δ (calibrated Vendi Δ on a "
              "`digit:N` task) to the same seed's hand-over where both reach the level (the hand-over's gain grows "
              "as its split moves earlier).", "", *rows, ""]
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
        logged = [m for m in HEADLINE if m in logged_metrics([group])]  # an older store: no vendi_rbf
        for metric in logged:
            lines += [f"**{metric_title(metric)} at matched reward** (levels: % of DDPO's final gain)", ""]
            lines += table(group, metric, "reward") + [""]
        missing = [metric_title(m) for m in HEADLINE if m not in logged]
        if missing:
            lines += [f"Not measured in these runs: {', '.join(missing)}.", ""]
        judge = standing_metric(group["reward"])
        lines += [f"**{metric_title(judge)} at matched reward, Δ to the same seed's hand-over**", ""]
        lines += table(group, judge, "reward", against=VS_HANDOVER) + [""]
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


def arms_in(result: dict) -> list[str]:
    """Every arm a frontier result's tables hold, in their order."""
    return list(dict.fromkeys(arm for group in result["groups"].values() for arm in group["arms"]))


def bonus_note(arms: list[str]) -> list[str]:
    """A paragraph under a table that holds diversity-bonus arms (``+div<w>``): the bonus reads the calibrated RBF
    kernel, so their RBF Vendi is what they were trained to raise, not evidence; the HOG Vendi judges them within a
    prompt (docs/METHOD.md)."""
    bonus = [arm for arm in arms if coefficients(arm).get("diversity_weight")]
    if not bonus:
        return []
    return [f"**The bonus arms ({', '.join(bonus)}) sample a policy trained with the bonus on the calibrated "
            "RBF kernel:** their RBF Vendi is what the bonus raises, so it is not evidence of diversity "
            "(docs/METHOD.md, \"What may judge a bonus run\"): judge them on a calibrated measure the bonus does "
            "not read: across classes the classifier's, within a prompt the HOG Vendi (RBF kernel on HOG edge "
            "descriptors).", ""]


def regenerate_command(name: str, settings, arms: list[str]) -> str:
    """The command that runs this report's store again: its seeds, tasks, epochs, and the arms its tables hold
    (``--arms``; ``--diversity-weights`` when a bonus arm is among them)."""
    weights = sorted({w for arm in arms if (w := coefficients(arm).get("diversity_weight"))})
    quoted = " ".join(f"'{arm}'" if any(c in arm for c in "[]()") else arm for arm in arms)
    return (f"python -m hrf_core experiment {name} --seeds {' '.join(map(str, settings.seeds))} "
            f"--tasks {' '.join(settings.tasks)} --epochs {settings.epochs}"
            + (f" --diversity-weights {' '.join(f'{w:g}' for w in weights)}" if weights else "")
            + f" --arms {quoted} --jobs 2")


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
