"""``python -m hrf_core export RUN [--epoch N] --out DIR [--push-to-hub REPO]``: a run checkpoint as a
diffusers pipeline folder with a model card, optionally uploaded to the Hugging Face Hub.

DIR holds ``model_index.json`` (a ``DDIMPipeline``: the sampler the run trained and evaluated with),
``unet/`` (the checkpoint's UNet, safetensors only), ``scheduler/`` (its DDIM scheduler), ``grid.png`` (the
run's evaluation grid) and ``README.md``, a model card: YAML metadata (library, base model when it is on
the Hub, license of the base, tags) and the reward, method, window, seeds, metrics and grid. It loads
with ``DDIMPipeline.from_pretrained(DIR)`` and ``DDPMPipeline.from_pretrained(DIR)``. DIR is written
atomically (a temporary folder renamed into place) and must not exist or be empty.

A LoRA run's checkpoint (a text-to-image model) exports as its adapter: DIR holds
``pytorch_lora_weights.safetensors`` in the layout ``StableDiffusionPipeline.load_lora_weights(DIR)`` reads (rank,
alpha and targets in its metadata), ``grid.png`` and the model card (base model, prompts, reward, method, window,
guidance and sampler); the base pipeline plus the adapter sample what ``python -m hrf_core sample`` samples.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from hrf_core import methods
from hrf_core.store.runs import Run, RunStore, checkpoint_epoch, open_run

#: Licenses of the registered base models. digits16 was trained by this project (apache-2.0, the
#: repository's license); the google DDPMs are apache-2.0 on the Hub.
BASE_LICENSES = {"digits16": "apache-2.0", "digits16-cond": "apache-2.0", "google/ddpm-celebahq-256": "apache-2.0",
                 "google/ddpm-ema-celebahq-256": "apache-2.0", "CompVis/stable-diffusion-v1-4": "creativeml-openrail-m",
                 "stabilityai/stable-diffusion-2-base": "openrail++"}
#: Row entries that describe the epoch's bookkeeping rather than the model (left out of the card's table).
_BOOKKEEPING = re.compile(r"^(epoch|logged_at|seconds|.*_seconds|eval_samples|(cum_)?rows_.*|window_(start|end)|"
                          r"sample_handover|trained_steps)$")


def find_run(name: str, store: str | Path = "runs") -> Run:
    """A run folder, or a run id of ``store`` (validated)."""
    if (Path(name).expanduser() / "config.json").is_file():
        return open_run(name)
    try:
        return RunStore(store).get(name)
    except ValueError:
        raise ValueError(f"unknown run {name!r}: give a run folder or the id of a run in {store}") from None


def checkpoint_of(run: Run, epoch: int | None = None) -> Path:
    """The run's checkpoint of ``epoch`` (default: its latest)."""
    checkpoints = {checkpoint_epoch(p): p for p in run.checkpoints()}
    if not checkpoints:
        raise ValueError(f"run {run.run_id} has no checkpoint")
    if epoch is None:
        return checkpoints[max(checkpoints)]
    if epoch not in checkpoints:
        raise ValueError(f"run {run.run_id} has no checkpoint of epoch {epoch}; it has epochs "
                         f"{', '.join(map(str, sorted(checkpoints)))}")
    return checkpoints[epoch]


def empty_target(out: Path) -> Path:
    """``out`` (``~`` expanded) when it is a new or empty folder; else ValueError naming --out."""
    out = out.expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder: choose a new --out")
    return out


def _schedule(config: dict) -> str:
    """Which DDIM steps the run trained, in words (its method's)."""
    return methods.get(str(config.get("method")), trainable_only=False).schedule(config)


def _license(base: str) -> str | None:
    """The base model's license: a registered model's, else the ``license`` of a local folder's model card."""
    if base in BASE_LICENSES:
        return BASE_LICENSES[base]
    card = Path(base).expanduser() / "README.md"
    if card.is_file():
        from huggingface_hub import ModelCard

        try:
            return ModelCard.load(card).data.license
        except Exception:  # noqa: BLE001 - a folder's README need not be a model card
            return None
    return None


def model_card(run: Run, checkpoint: Path, grid: str | None, repo: str | None = None):
    """The model card (a ``huggingface_hub.ModelCard``) of ``checkpoint``."""
    from huggingface_hub import ModelCard, ModelCardData

    from hrf_core.models.lora import ADAPTER_FILE
    from hrf_core.models.registry import MODELS, window_only_of

    config = run.config
    base, reward, method = config.get("model", ""), config.get("reward", ""), config.get("method", "")
    adapter = (checkpoint / ADAPTER_FILE).is_file()
    epoch = checkpoint_epoch(checkpoint)
    rows = run.metrics()
    evaluated = [r for r in rows if "reward_mean" in r and r.get("epoch", 0) <= epoch]
    final, first = (evaluated[-1], evaluated[0]) if evaluated else ({}, {})
    on_hub = base in MODELS and MODELS[base].source == "hub"
    task = "text-to-image" if adapter else "unconditional-image-generation"
    data = ModelCardData(library_name="diffusers", pipeline_tag=task,
                         base_model=base if on_hub else None, license=_license(base),
                         tags=list(dict.fromkeys(["diffusers", task, *(["lora"] if adapter else []),
                                                  "reinforcement-learning", methods.reference().name, method,
                                                  "hrf-explorer"])))
    k, eta = config.get("num_steps"), config.get("eval_eta", 1.0)
    source = repo or "path/to/this/folder"
    where = "" if on_hub else " (a local model, not on the Hub)" if adapter else \
        " (the embedded base model of HRF Explorer, not on the Hub)"
    what = (f"A LoRA adapter (rank {config.get('lora_rank')}, alpha {config.get('lora_alpha')}, on "
            f"{', '.join(config.get('lora_targets') or ())}) for `{base}`{where} trained") if adapter else \
        f"`{base}`{where} fine-tuned"
    lines = [
        f"# {run.run_id}", "",
        f"{what} with reinforcement learning on the reward `{reward}` by HRF Explorer (`hrf_core`), "
        f"checkpoint of epoch {epoch} of {config.get('epochs')}.", "",
        f"- **Method**: {method}; trained steps: {_schedule(config)}",
        f"- **Reward**: `{reward}`",
        f"- **Seeds**: training {config.get('seed')}, evaluation {config.get('eval_seed')}",
        f"- **Sampler**: DDIM, K = {k} steps, eta = {config.get('eta')} in training and {eta} in evaluation",
        f"- **Per epoch**: {config.get('samples_per_epoch')} samples, learning rate {config.get('lr')}, "
        f"PPO clip {config.get('clip_range')}, KL coefficient {config.get('kl_coef', 0.0)}, "
        f"diversity weight {config.get('diversity_weight', 0.0)}", "",
    ]
    handover, handover_k, handover_base = window_only_of(checkpoint)
    if handover:
        lines += [
            "## Window-only checkpoint", "",
            f"The run sampled steps 0 to {handover - 1} of K = {handover_k} with the frozen base model "
            f"`{handover_base}` and only steps {handover} to {handover_k - 1} with the fine-tuned UNet, in training "
            "and in evaluation: the metrics and the grid below were sampled that way. A plain diffusers pipeline "
            "from this folder samples every step with the fine-tuned UNet, which this run never evaluated, so "
            "expect different samples. `python -m hrf_core sample --checkpoint <checkpoint>` samples as the run did.",
            "",
        ]
    if final:
        keys = [key for key, value in final.items() if isinstance(value, (int, float)) and not isinstance(value, bool)
                and not _BOOKKEEPING.match(key)]
        lines += [f"## Metrics (evaluation of {final.get('eval_samples', '?')} samples, "
                  f"seed {config.get('eval_seed')})",
                  "", f"| metric | base model (epoch {first.get('epoch', 0)}) | epoch {final['epoch']} |",
                  "|---|---|---|"]
        lines += [f"| {key} | {_number(first.get(key))} | {_number(final[key])} |" for key in sorted(keys)]
        lines.append("")
    if grid:
        lines += ["## Samples", "", f"![evaluation samples of epoch {final.get('epoch', epoch)}]({grid})", ""]
    prompts = list(config.get("prompts") or ())
    if adapter:
        lines += text_to_image_use(source, base, prompts, float(config.get("guidance", 1.0)), k, eta)
    elif prompts:
        lines += prompted_use(source, prompts, float(config.get("guidance", 1.0)), k, eta, checkpoint)
    else:
        lines += [
            "## Use", "", "```python", "import torch", "from diffusers import DDIMPipeline", "",
            f'pipe = DDIMPipeline.from_pretrained("{source}")',
            f"images = pipe(batch_size=16, num_inference_steps={k}, eta={eta}, "
            "generator=torch.Generator().manual_seed(0)).images",
            "```", "",
            "`DDPMPipeline.from_pretrained` loads it too (with this DDIM scheduler).", "",
        ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def prompted_use(source: str, prompts: list[str], guidance: float, k, eta, checkpoint: Path) -> list[str]:
    """The card's "Use" section of a prompted (class-conditional) run: prompts, guidance and a sampling loop.

    diffusers has no class-conditional pipeline for a ``UNet2DModel``: the folder loads as a ``DDIMPipeline``, but
    sampling passes each image's class to the UNet, with classifier-free guidance against its null class.
    """
    from hrf_core.models.base import load_unet

    null = int(load_unet(checkpoint / "unet").config.num_class_embeds) - 1
    return [
        "## Prompts", "",
        f"The run prompted each sample with one of {', '.join(f'`{p}`' for p in prompts)} (the class index), with "
        f"classifier-free guidance {guidance:g} against the null class {null}; its metrics are also given within "
        "each prompt (`*_within`).", "",
        "## Use", "",
        "A class-conditional `UNet2DModel`: `DDIMPipeline.from_pretrained` loads the folder, but its sampler passes "
        "no class labels; sample with the UNet and the scheduler:", "",
        "```python", "import torch", "from diffusers import DDIMPipeline", "",
        f'pipe = DDIMPipeline.from_pretrained("{source}")',
        f"unet, scheduler, w = pipe.unet, pipe.scheduler, {guidance:g}",
        f"labels = torch.tensor([{', '.join(prompts)}] * 4)  # the prompts' classes",
        f"scheduler.set_timesteps({k})",
        "size = unet.config.sample_size",
        "x = torch.randn(len(labels), unet.config.in_channels, size, size, generator=torch.Generator().manual_seed(0))",
        "with torch.no_grad():",
        "    for t in scheduler.timesteps:",
        f"        eps = unet(torch.cat([x, x]), t, class_labels=torch.cat([torch.full_like(labels, {null}), labels]))"
        ".sample",
        "        eps_u, eps_c = eps.chunk(2)",
        f"        x = scheduler.step(eps_u + w * (eps_c - eps_u), t, x, eta={eta}).prev_sample",
        "```", "",
    ]


def text_to_image_use(source: str, base: str, prompts: list[str], guidance: float, k, eta) -> list[str]:
    """The card's "Prompts" and "Use" sections of a LoRA text-to-image run: the base pipeline, the run's DDIM
    sampler and guidance, and the adapter through ``load_lora_weights``."""
    from hrf_core.settings import format_prompts

    named = format_prompts(tuple(prompts))
    shown = named if named.startswith("@") else ", ".join(f"`{p}`" for p in prompts[:20]) + (
        f" and {len(prompts) - 20} more" if len(prompts) > 20 else "")
    example = ", ".join(repr(p) for p in prompts[:2])
    return [
        "## Prompts", "",
        f"Each training sample drew one of {len(prompts)} prompts ({shown}; `@` names a prompt set of HRF "
        f"Explorer), with classifier-free guidance {guidance:g} against the empty prompt; the metrics are also given "
        "within each prompt (`*_within`).", "",
        "## Use", "",
        "The base pipeline with this adapter and the run's sampler (DDIM, the same K, eta and guidance):", "",
        "```python", "import torch", "from diffusers import DDIMScheduler, StableDiffusionPipeline", "",
        f'pipe = StableDiffusionPipeline.from_pretrained("{base}", safety_checker=None)',
        "pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)",
        f'pipe.load_lora_weights("{source}")',
        f"images = pipe([{example}], num_inference_steps={k}, eta={eta}, guidance_scale={guidance:g},",
        "             generator=torch.Generator().manual_seed(0)).images",
        "```", "",
    ]


def _number(value) -> str:
    return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def export_checkpoint(run: Run, checkpoint: Path, out: Path, repo: str | None = None) -> Path:
    """Write ``checkpoint`` of ``run`` as a diffusers pipeline folder with a model card at ``out`` (atomic)."""
    from diffusers import DDIMPipeline

    from hrf_core.models.base import load_scheduler, load_unet
    from hrf_core.models.lora import ADAPTER_FILE, read_adapter

    out = empty_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        if (checkpoint / ADAPTER_FILE).is_file():  # a LoRA run: the adapter, in load_lora_weights' layout
            read_adapter(checkpoint)  # validated
            shutil.copyfile(checkpoint / ADAPTER_FILE, tmp / ADAPTER_FILE)
        else:
            pipeline = DDIMPipeline(unet=load_unet(checkpoint / "unet"), scheduler=load_scheduler(checkpoint))
            pipeline.save_pretrained(tmp, safe_serialization=True)
        epoch = checkpoint_epoch(checkpoint)
        grids = [g for g in run.grids() if int(g.stem.split("-")[1]) <= epoch]
        if grids:
            shutil.copyfile(grids[-1], tmp / "grid.png")
        model_card(run, checkpoint, "grid.png" if grids else None, repo).save(tmp / "README.md")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)  # an empty folder at ``out`` is replaced too
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_repo_id(repo: str) -> str:
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except ValueError:
        raise ValueError(f"--push-to-hub {repo!r} is not a Hub repo id (namespace/name)") from None
    return repo


def push_to_hub(folder: Path, repo: str, message: str) -> str:
    """Create the model repo ``repo`` (if needed) and upload ``folder`` to it; its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        repo_id = api.create_repo(repo, repo_type="model", exist_ok=True).repo_id
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message=message)
    except Exception as error:  # noqa: BLE001 - network, authentication, offline mode: one line
        reason = " ".join(str(error).split())[:300]
        raise ValueError(f"{folder} was written, but the upload to {repo} failed ({type(error).__name__}: "
                         f"{reason})") from None
    return f"https://huggingface.co/{repo_id}"

