"""How good the embedded digits models are, and their model cards.

- The classifier that scores them, `digits16-classifier` (`DigitClassifier`, trained here on the train split
  only: its config and card give its held-out accuracy and the Inception Score of the real held-out digits);
- the quality of a DDPM's samples against it and the real split (`sample_quality`: Inception Score, confident
  fraction, class histogram, memorisation) and, for `digits16-cond`, at each guidance scale
  (`guidance_sweep_quality`, the default scale by `pick_guidance`);
- the cards (`README.md`) of `checkpoints/`, each with its files' sha256.

The Inception Score is `hrf_core.measure.metrics.inception_score`; the models are `hrf_core.models.pretrain`'s.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hrf_core.measure.metrics import inception_score
from hrf_core.models.digits import (
    HELDOUT_FRACTION,
    NUM_CLASSES,
    SPLIT_SEED,
    DigitClassifier,
    augment,
    classifier_accuracy,
    load_digit_classifier,
    load_split,
)
from hrf_core.models.pretrain import CHECKPOINTS, environment, load_digits_ddpm, lr_factor, sample_ddim, save_json
from hrf_core.models.weights import file_sha256

CLASSIFIER_RECIPE: dict[str, Any] = {
    "epochs": 40,
    "batch_size": 64,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "augment": {"max_shift": 1.0, "max_rot_deg": 8.0, "max_scale": 0.08},
}
QUALITY_DEFAULTS: dict[str, Any] = {"n": 1000, "steps": 40, "eta": 1.0, "seed": 0, "batch": 250}
#: digits16-cond's quality: guidance scales measured (same seed, same start noise for each).
GUIDANCE_SWEEP = (1.0, 1.5, 2.0, 3.0, 5.0)
#: ... and the default among them: the smallest scale within this of the sweep's best prompted-class accuracy.
GUIDANCE_ACCURACY_SLACK = 0.01

def folder_hashes(folder: Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file under `folder` except the top-level README.md."""
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() != "README.md"}


# ----------------------------------------------------------------------------- quality


@torch.no_grad()
def _probs(classifier: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    dev = next(classifier.parameters()).device
    return torch.cat([classifier(x[i:i + 500].to(dev)).softmax(1).cpu() for i in range(0, len(x), 500)])


def nn_distances(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """L2 distance (N,) from each image in `x` (N, ...) to its nearest image in `ref` (M, ...), in [-1,1] pixels."""
    return torch.cdist(x.flatten(1).double(), ref.flatten(1).double()).min(1).values.float()


def within_class_l2(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean L2 distance (in [-1,1] pixels) between two different images of the same class, averaged over classes."""
    means = []
    for c in labels.unique():
        xc = x[labels == c].flatten(1).double()
        if len(xc) > 1:
            means.append(float(torch.cdist(xc, xc).sum()) / (len(xc) * (len(xc) - 1)))
    return float(np.mean(means))


def sample_quality(samples: torch.Tensor, classifier: torch.nn.Module,
                   labels: torch.Tensor | None = None) -> dict[str, Any]:
    """Quality of digit samples (N, 1, 16, 16) in [-1, 1] against the classifier and the real split.

    Returns IS (samples and real held-out), confident fraction (max prob > 0.9), class histogram
    (fractions), and median nearest-training-image L2 distances (samples vs real held-out).
    With the prompted `labels` (N,) of a class-conditional model, also the classifier's accuracy on
    the prompted class and the within-class diversity (`within_class_l2`), each beside the real held-out's.
    """
    x_train, _ = load_split("train")
    x_ho, y_ho = load_split("heldout")
    p, p_real = _probs(classifier, samples), _probs(classifier, x_ho)
    hist = torch.bincount(p.argmax(1), minlength=p.shape[1]).double() / len(p)
    d_s, d_r = nn_distances(samples, x_train), nn_distances(x_ho, x_train)
    q = {
        "n_samples": len(samples),
        "inception_score": round(inception_score(p)[0], 3),
        "inception_score_real_heldout": round(inception_score(p_real)[0], 3),
        "confident_fraction": round(float((p.max(1).values > 0.9).double().mean()), 4),
        "class_histogram": [round(float(h), 4) for h in hist],
        "min_class_fraction": round(float(hist.min()), 4),
        "nn_train_l2_median_samples": round(float(d_s.median()), 4),
        "nn_train_l2_median_heldout": round(float(d_r.median()), 4),
    }
    if labels is not None:
        q["prompted_accuracy"] = round(float((p.argmax(1) == labels).double().mean()), 4)
        q["prompted_accuracy_real_heldout"] = round(float((p_real.argmax(1) == y_ho).double().mean()), 4)
        q["within_class_l2"] = round(within_class_l2(samples, labels), 4)
        q["within_class_l2_real_heldout"] = round(within_class_l2(x_ho, y_ho), 4)
    q["passes"] = {
        "inception_score>=7.5": q["inception_score"] >= 7.5,
        "confident_fraction>=0.75": q["confident_fraction"] >= 0.75,
        "every_class>=5%": q["min_class_fraction"] >= 0.05,
        "no_memorisation": q["nn_train_l2_median_samples"] >= q["nn_train_l2_median_heldout"],
        **({"prompted_accuracy>=0.9": q["prompted_accuracy"] >= 0.9} if labels is not None else {}),
    }
    return q


def digits_quality(model_dir: str | Path = CHECKPOINTS / "digits16",
                   classifier_dir: str | Path = CHECKPOINTS / "digits16-classifier",
                   **kw: Any) -> dict[str, Any]:
    """Sample the DDPM in `model_dir` (defaults: 1,000 samples, 40 DDIM steps, eta 1, seed 0) and score it.

    A class-conditional model (digits16-cond) is measured by `guidance_sweep_quality` (kw `guidance`: scales).
    """
    s = {**QUALITY_DEFAULTS, **kw}
    unet, sched = load_digits_ddpm(model_dir, s.pop("device", "cpu"))
    if unet.config.num_class_embeds:
        return guidance_sweep_quality(unet, sched, load_digit_classifier(classifier_dir), s,
                                      classifier_name=Path(classifier_dir).name)
    t0 = time.time()
    samples = sample_ddim(unet, sched, s["n"], steps=s["steps"], eta=s["eta"], seed=s["seed"], batch=s["batch"])
    q = {"sampling": {k: s[k] for k in ("n", "steps", "eta", "seed")}, "sample_seconds": round(time.time() - t0, 1),
         "classifier": Path(classifier_dir).name}
    return {**q, **sample_quality(samples, load_digit_classifier(classifier_dir))}


SWEEP_KEYS = ("prompted_accuracy", "inception_score", "confident_fraction", "min_class_fraction",
              "within_class_l2", "nn_train_l2_median_samples", "sample_seconds")


def pick_guidance(sweep: list[dict[str, Any]], slack: float = GUIDANCE_ACCURACY_SLACK) -> float:
    """The smallest guidance scale whose prompted-class accuracy is within `slack` of the sweep's best.

    More guidance only narrows each class, so past the point where accuracy stops rising it costs diversity.
    """
    best = max(row["prompted_accuracy"] for row in sweep)
    return min(row["guidance"] for row in sweep if row["prompted_accuracy"] >= best - slack)


def guidance_sweep_quality(unet: Any, scheduler: Any, classifier: torch.nn.Module, settings: dict[str, Any],
                           classifier_name: str = "digits16-classifier") -> dict[str, Any]:
    """Quality of a class-conditional digits model at each guidance scale of `settings["guidance"]`.

    `settings`: QUALITY_DEFAULTS-like (n, steps, eta, seed, batch); n // 10 samples per class, prompted
    0, 1, ..., 9, 0, 1, ... and sampled from the same seed (same start noise) at every scale. Returns the
    `sample_quality` of the default scale (`pick_guidance`) at the top level, plus `guidance_sweep` rows.
    """
    scales = [float(g) for g in settings.get("guidance") or GUIDANCE_SWEEP]
    per_class = settings["n"] // NUM_CLASSES
    labels = torch.arange(NUM_CLASSES).repeat(per_class)
    null_label = unet.config.num_class_embeds - 1
    full, sweep = {}, []
    for g in scales:
        t0 = time.time()
        x = sample_ddim(unet, scheduler, len(labels), steps=settings["steps"], eta=settings["eta"],
                        seed=settings["seed"], batch=settings["batch"], labels=labels, guidance=g,
                        null_label=null_label)
        full[g] = {"sample_seconds": round(time.time() - t0, 1), **sample_quality(x, classifier, labels)}
        sweep.append({"guidance": g, **{k: full[g][k] for k in SWEEP_KEYS}})
        print(f"guidance {g}: " + ", ".join(f"{k} {full[g][k]}" for k in SWEEP_KEYS), flush=True)
    default = pick_guidance(sweep)
    q = full[default]
    return {
        "sampling": {"n": len(labels), "per_class": per_class, "steps": settings["steps"], "eta": settings["eta"],
                     "seed": settings["seed"]},
        "sample_seconds": q["sample_seconds"],
        "classifier": classifier_name,
        "null_label": null_label,
        "default_guidance": default,
        "default_guidance_rule": f"smallest scale within {GUIDANCE_ACCURACY_SLACK} of the sweep's best "
                                 "prompted-class accuracy",
        **{k: v for k, v in q.items() if k != "sample_seconds"},
        "guidance_sweep": sweep,
    }


# ----------------------------------------------------------------------------- classifier


def train_classifier(out: Path, seed: int = 0, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the `DigitClassifier` on the train split only; save model.safetensors + config.json in `out`."""
    from safetensors.torch import save_file

    r = {**CLASSIFIER_RECIPE, **(recipe or {})}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr = load_split("train")
    x_ho, y_ho = load_split("heldout")
    model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    steps_per_epoch = math.ceil(len(x_tr) / r["batch_size"])
    total = r["epochs"] * steps_per_epoch
    t0, step = time.time(), 0
    for epoch in range(r["epochs"]):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(perm), r["batch_size"]):
            for group in opt.param_groups:
                group["lr"] = r["lr"] * lr_factor(step, total, steps_per_epoch, 0.0)
            idx = perm[i:i + r["batch_size"]]
            loss = F.cross_entropy(model(augment(x_tr[idx], gen, **r["augment"])), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1}/{r['epochs']} loss {loss.item():.4f} "
                  f"held-out acc {classifier_accuracy(model, x_ho, y_ho):.4f}", flush=True)
    train_seconds = time.time() - t0
    model.eval()
    acc_ho, acc_tr = classifier_accuracy(model, x_ho, y_ho), classifier_accuracy(model, x_tr, y_tr)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    is_real = inception_score(_probs(model, x_ho))[0]
    cfg = {
        **model.config,
        "architecture": "DigitClassifier",
        "input": "(N,1,16,16) float in [-1,1]",
        "split_seed": SPLIT_SEED,
        "heldout_fraction": HELDOUT_FRACTION,
        "heldout_accuracy": round(acc_ho, 4),
        "train_accuracy": round(acc_tr, 4),
        "n_train": len(x_tr),
        "n_heldout": len(x_ho),
        "inception_score_real_heldout": round(is_real, 3),
        "training": {"seed": seed, "recipe": r, "train_seconds": round(train_seconds, 1), "env": environment()},
    }
    save_json(out / "config.json", cfg)
    return cfg


# ----------------------------------------------------------------------------- model cards


def _hash_table(folder: Path) -> list[str]:
    rows = ["| file | bytes | sha256 |", "|---|---|---|"]
    rows += [f"| `{f}` | {(folder / f).stat().st_size} | `{h}` |" for f, h in folder_hashes(folder).items()]
    return rows


def quality_rows(q: dict[str, Any]) -> list[str]:
    """The quality table's rows every digits card shares (after its IS row), and a blank line."""
    return [
        f"| fraction with max class prob > 0.9 | {q['confident_fraction']:.3f} | | >= 0.75 |",
        f"| smallest class fraction | {q['min_class_fraction']:.3f} | | >= 0.05 |",
        f"| median L2 to nearest training image | {q['nn_train_l2_median_samples']:.3f} | "
        f"{q['nn_train_l2_median_heldout']:.3f} | samples >= held-out |", "",
    ]


def write_ddpm_card(folder: Path) -> None:
    """(Re)write `folder/README.md` from `training.json` (recipe, time, quality) and the files' sha256."""
    info = json.loads((folder / "training.json").read_text())
    r, q, c = info["recipe"], info.get("quality"), info.get("conditioning")
    name = info.get("model", "digits16")
    lines = [
        f"# {name}: a 16x16 {'class-conditional ' if c else ''}DDPM of the UCI handwritten digits", "",
        *([f"digits16 with class embeddings: prompt a digit 0-9, or the null class {c['null_label']} (no class), and "
           "sample with classifier-free guidance (`hrf_core.models.guidance.guided_eps`). Runs offline on a CPU.",
           ""] if c
          else ["The embedded default base model of HRF Explorer: runs offline on a CPU.", ""]),
        "## Data",
        f"`sklearn.datasets.load_digits` (1,797 8x8 images, values 0..16), upsampled bilinearly to 16x16, "
        f"one channel, scaled to [-1, 1]. Trained on the fixed stratified train split only "
        f"({info['data']['n_train']} images; {HELDOUT_FRACTION:.0%} held out, `train_test_split(stratify=y, "
        f"random_state={SPLIT_SEED})`).", "",
        "## Model",
        f"diffusers `UNet2DModel`, {info['params']:,} parameters: sample_size 16, 1 channel, block_out_channels "
        "(32, 64, 64), layers_per_block 1, attention at 4x4 (`AttnDownBlock2D`/`AttnUpBlock2D` + mid block). "
        + (f"Class embeddings: `num_class_embeds={c['num_class_embeds']}` (digits 0-9, null class "
           f"{c['null_label']}), an `nn.Embedding` added to the timestep embedding; call it with `class_labels` "
           "(B,). "
           if c else "")
        + "Weights are the EMA weights. `scheduler/` is a `DDIMScheduler` with the training betas, "
        "`clip_sample=True` (range 1), `set_alpha_to_one=False`, `steps_offset=1` (non-zero variance at every "
        "step).", "",
        "## Recipe",
        f"Epsilon-prediction DDPM loss (MSE), `DDPMScheduler` with {r['num_train_timesteps']} steps and "
        f"`{r['beta_schedule']}` betas; AdamW lr {r['lr']} (warmup {r['warmup_steps']} steps, cosine to "
        f"{r['min_lr_fraction']}x), weight decay {r['weight_decay']}, batch {r['batch_size']}, {r['steps']} steps, "
        f"grad-norm clip {r['grad_clip']}, EMA {r['ema_decay']}; light affine augmentation "
        f"(shift <= {r['augment']['max_shift']} px, rotation <= {r['augment']['max_rot_deg']} deg, "
        f"scale +-{r['augment']['max_scale']}), no flips. "
        + (f"Each image's digit label is passed as `class_labels` and replaced by the null class {c['null_label']} "
           f"with probability p_uncond = {c['p_uncond']} (classifier-free guidance training, Ho & Salimans 2022), "
           "so the one network is also the unconditional model. " if c else "")
        + f"Seed {info['seed']}.", "",
        f"Reproduce: `python -m hrf_core pretrain {name}` (final loss {info['final_loss']}).", "",
        f"Training time (measured): {info['train_seconds']:.0f} s ({info['train_seconds'] / 60:.1f} min) on "
        f"{info['env']['machine']}; torch {info['env']['torch']}, diffusers {info['env']['diffusers']}.", "",
        *([info["notes"], ""] if info.get("notes") else []),
        "## Quality", "",
    ]
    if q and c:
        lines += _guidance_quality_lines(q, name)
    elif q:
        s = q["sampling"]
        lines += [
            f"`python bench/digits_quality.py`: {s['n']} samples, {s['steps']} DDIM steps, eta {s['eta']}, seed "
            f"{s['seed']} (sampled in {q['sample_seconds']:.0f} s), scored by the "
            f"`{q.get('classifier', 'digits16-classifier')}` "
            "classifier. Targets: IS >= 7.5, confident fraction >= 0.75, every class >= 5%, no memorisation.", "",
            "| metric | samples | real held-out | target |", "|---|---|---|---|",
            f"| classifier Inception Score | {q['inception_score']:.3f} | {q['inception_score_real_heldout']:.3f} "
            "| >= 7.5 |",
            *quality_rows(q),
            "Class histogram (fraction of samples predicted 0..9): "
            + ", ".join(f"{i}: {h:.3f}" for i, h in enumerate(q["class_histogram"])), "",
        ]
    else:
        lines += ["Not measured yet: run `python bench/digits_quality.py --update-card`.", ""]
    lines += ["## Files", "", *_hash_table(folder), ""]
    (folder / "README.md").write_text("\n".join(lines))


def _guidance_reason(sweep: list[dict[str, Any]], g: float) -> str:
    """One line on why the default guidance `g`, from the sweep's numbers."""
    at = {row["guidance"]: row for row in sweep}
    best = max(sweep, key=lambda row: (row["prompted_accuracy"], -row["guidance"]))
    text = (f"Why: {at[g]['prompted_accuracy']:.3f} prompted-class accuracy (best {best['prompted_accuracy']:.3f} at "
            f"{best['guidance']:g}) with IS {at[g]['inception_score']:.2f} at the sweep's least guidance that gets "
            "there, so the least narrowing of each class"
            + (" and one UNet forward per step, not two" if g == 1 else ""))
    high = at[max(at)]
    if high["guidance"] > g:
        text += (f"; at {high['guidance']:g} accuracy is {high['prompted_accuracy']:.3f}, IS "
                 f"{high['inception_score']:.2f}, and the samples sit further from the training digits (median L2 to "
                 f"the nearest {high['nn_train_l2_median_samples']:.2f} vs {at[g]['nn_train_l2_median_samples']:.2f})")
    return text + "."


def _guidance_quality_lines(q: dict[str, Any], name: str) -> list[str]:
    """The quality section of a class-conditional model's card: the guidance sweep and the default's numbers."""
    s, g = q["sampling"], q["default_guidance"]
    sweep = q["guidance_sweep"]
    at = {row["guidance"]: row for row in sweep}
    lines = [
        f"Measured by `python -m hrf_core pretrain {name}` after training "
        f"(`hrf_core.study.digits_quality.guidance_sweep_quality`): n = {s['n']} samples "
        f"({s['per_class']} prompted per class), "
        f"{s['steps']} DDIM steps, eta {s['eta']}, seed {s['seed']} (the same start noise at every guidance scale), "
        f"scored by the `{q['classifier']}` classifier: its accuracy on the prompted class, the classifier "
        "Inception Score (max 10), the fraction with max class prob > 0.9, the smallest predicted-class fraction, "
        "within-class diversity (mean L2 between two samples prompted with the same digit, [-1,1] pixels, 16x16) "
        "and the median L2 to the nearest training image (memorisation).", "",
        "### Guidance sweep", "",
        "| guidance | prompted-class accuracy | classifier IS | max prob > 0.9 | smallest class | within-class L2 "
        "| L2 to nearest train image | sampling s |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {row['guidance']:g}{' (default)' if row['guidance'] == g else ''} | {row['prompted_accuracy']:.3f} | "
          f"{row['inception_score']:.3f} | {row['confident_fraction']:.3f} | {row['min_class_fraction']:.3f} | "
          f"{row['within_class_l2']:.3f} | {row['nn_train_l2_median_samples']:.3f} | {row['sample_seconds']:.0f} |"
          for row in sweep],
        f"| real held-out | {q['prompted_accuracy_real_heldout']:.3f} | {q['inception_score_real_heldout']:.3f} | | | "
        f"{q['within_class_l2_real_heldout']:.3f} | {q['nn_train_l2_median_heldout']:.3f} | |", "",
        f"Default guidance: **{g:g}** (rule: the {q['default_guidance_rule']}). " + _guidance_reason(sweep, g), "",
    ]
    if 1.0 in at and g != 1.0:
        lines += [f"At guidance 1 (the conditional model alone): prompted-class accuracy "
                  f"{at[1.0]['prompted_accuracy']:.3f}, "
                  f"IS {at[1.0]['inception_score']:.3f}; at the default {g:g}: {q['prompted_accuracy']:.3f}, "
                  f"IS {q['inception_score']:.3f}.", ""]
    lines += [
        f"### At the default guidance {g:g}", "",
        "| metric | samples | real held-out | target |", "|---|---|---|---|",
        f"| prompted-class accuracy | {q['prompted_accuracy']:.3f} | {q['prompted_accuracy_real_heldout']:.3f} "
        "| >= 0.9 |",
        f"| classifier Inception Score | {q['inception_score']:.3f} | {q['inception_score_real_heldout']:.3f} "
        "| >= 7.5 |",
        *quality_rows(q),
        "Use: `eps = hrf_core.models.guidance.guided_eps(unet, x, t, labels, scale, null_label="
        f"{q['null_label']})` (both branches in one batched forward), or "
        f"`hrf_core.models.pretrain.sample_ddim(unet, scheduler, n, labels=labels, guidance={g:g})`.", "",
    ]
    return lines


def write_classifier_card(folder: Path) -> None:
    """(Re)write `folder/README.md` from `config.json` and the files' sha256."""
    c = json.loads((folder / "config.json").read_text())
    r, tr = c["training"]["recipe"], c["training"]
    lines = [
        "# digits16-classifier: a small CNN on the 16x16 UCI digits", "",
        "Scores digits16 samples: its softmax gives the Inception Score, its penultimate features "
        f"(`features(x)`, {c['embed_dim']}-d) the Vendi embedding. Load with "
        "`hrf_core.models.digits.load_digit_classifier`.", "",
        "## Data",
        f"Same data as digits16 (16x16, [-1, 1]); trained on the fixed stratified train split only "
        f"({c['n_train']} images), evaluated on the {c['n_heldout']} held-out images "
        f"(`train_test_split(stratify=y, test_size={c['heldout_fraction']}, random_state={c['split_seed']})`).", "",
        "## Model and recipe",
        f"Two conv blocks (channels {tuple(c['channels'])}, 3x3 convs, GroupNorm, SiLU, max-pool), "
        f"dropout {c['dropout']}, a {c['embed_dim']}-d ReLU embedding and a linear head. Cross-entropy, AdamW lr "
        f"{r['lr']} (1 epoch warmup, cosine), weight decay {r['weight_decay']}, batch {r['batch_size']}, "
        f"{r['epochs']} epochs, light affine augmentation (shift <= {r['augment']['max_shift']} px, rotation <= "
        f"{r['augment']['max_rot_deg']} deg, scale +-{r['augment']['max_scale']}). Seed {tr['seed']}.", "",
        "Reproduce: `python -m hrf_core pretrain digits16-classifier`.", "",
        f"Training time (measured): {tr['train_seconds']:.0f} s on {tr['env']['machine']}; "
        f"torch {tr['env']['torch']}.", "",
        *([tr["notes"], ""] if tr.get("notes") else []),
        "## Quality", "",
        f"- held-out accuracy: {c['heldout_accuracy']:.4f} (train {c['train_accuracy']:.4f})",
        f"- Inception Score of the real held-out images: {c['inception_score_real_heldout']:.3f} (max 10)", "",
        "## Files", "", *_hash_table(folder), "",
    ]
    (folder / "README.md").write_text("\n".join(lines))


def update_ddpm_quality(folder: Path, quality: dict[str, Any]) -> None:
    """Store `quality` in `folder/training.json` and rewrite the model card."""
    info = json.loads((folder / "training.json").read_text())
    info["quality"] = quality
    save_json(folder / "training.json", info)
    write_ddpm_card(folder)
