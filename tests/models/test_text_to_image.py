"""Text-to-image (#30) on a tiny Stable Diffusion the tests build offline: the latent model and its text conditioner,
LoRA training end to end through the command line, exact log-probs, adapter-only updates and checkpoints, resume,
export into a StableDiffusionPipeline, prompt sets, the memory estimate and its refusal, the CLIP alignment reward,
diversity on decoded images, and the scripting API and the page taking the model by its folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hrf_core import settings
from hrf_core.cli import main
from hrf_core.config import TrainConfig
from hrf_core.models import lora
from hrf_core.models.registry import availability, load_base_model
from hrf_core.rl.launch import resume_training
from hrf_core.rl.trainer import Trainer
from hrf_core.store.runs import RunStore

SMALL = ["--steps", "6", "--samples", "4", "--batch-size", "2", "--siblings", "2", "--eval-samples", "4",
         "--train-batch-size", "4", "--updates", "1", "--device", "cpu", "--guidance", "3", "--lr", "0.01"]


def config_of(folder, **changes) -> TrainConfig:
    base = TrainConfig(model=str(folder), prompts=("cat", "dog"), guidance=3.0, method="ddpo", window=(3, 6),
                       num_steps=6, epochs=2,
                       samples_per_epoch=4, batch_size=2, siblings=2, eval_samples=4, eval_every=1, train_batch_size=4,
                       updates_per_epoch=1, checkpoint_every=1, device="cpu", lr=1e-2)
    return base.replace(**changes).validate()


def base_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


# --------------------------------------------------------------------------------------------- the model
def test_pipeline_folder_loads_as_a_latent_text_to_image_model(tiny_sd_dir):
    from diffusers import StableDiffusionPipeline

    model = load_base_model(str(tiny_sd_dir), "cpu")
    assert model.family == "text-to-image" and model.sample_shape == (4, 8, 8) and model.image_shape == (3, 16, 16)
    assert model.scheduler.config.set_alpha_to_one is False
    images = model.decode(torch.randn(3, 4, 8, 8))
    assert images.shape == (3, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    # the condition is what diffusers' pipeline encodes: prompt rows, the empty prompt as the null condition
    cond = model.conditioner.condition(["cat", "dog", "cat"], scale=3.0)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None)
    embeds, negative = pipe.encode_prompt(["cat", "dog", "cat"], "cpu", 1, True, ["", "", ""])
    assert torch.equal(cond.rows, embeds) and torch.equal(cond.null[0], negative[0])
    calls = []
    model.conditioner.text_encoder.register_forward_pre_hook(lambda module, args: calls.append(1))
    model.conditioner.condition(["cat", "dog"] * 4)
    assert calls == []  # each prompt encoded once


def test_a_folder_without_weights_and_a_registered_model_without_a_gpu_are_refused_in_one_line(tiny_sd_dir, tmp_path,
                                                                                                 capsys):
    broken = tmp_path / "no-vae-weights"
    shutil.copytree(tiny_sd_dir, broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    code = main(["train", "--model", str(broken), "--prompts", "cat", "--method", "ddpo", "--out",
                 str(tmp_path / "runs"), *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "has no weights for vae" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    for name in ("CompVis/stable-diffusion-v1-4", "stabilityai/stable-diffusion-2-base"):
        ok, reason = availability(name)
        assert not ok and reason and "\n" not in reason  # no GPU here, or no cached weights


def test_a_vae_that_lacks_a_tensor_is_refused_in_one_line(tiny_sd_dir, tmp_path):
    """Each pipeline part loads through base.load_component: a weight file missing a tensor is refused (it would
    start from random values), as a UNet's is."""
    from safetensors.torch import save_file

    broken = tmp_path / "vae-lacks-a-tensor"
    shutil.copytree(tiny_sd_dir, broken)
    path = broken / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    dropped = sorted(tensors)[0]
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(path))
    with pytest.raises(ValueError, match="lack 1 of the AutoencoderKL's tensors") as error:
        load_base_model(str(broken), "cpu")
    assert "\n" not in str(error.value)


# ----------------------------------------------------------------------------------- training end to end
@pytest.mark.slow
def test_ddpo_and_hrf_through_the_command_line(tiny_sd_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--model", str(tiny_sd_dir), "--prompts", "cat,dog", "--reward", "jpeg-compressibility",
                 "--method", "ddpo", "--epochs", "2", "--out", str(out), "--name", "ddpo", *SMALL]) == 0
    assert main(["train", "--model", str(tiny_sd_dir), "--prompts", "@animals", "--reward", "jpeg-compressibility",
                 "--method", "hrf", "--window", "3:6", "--outside", "base", "--kl-coef", "0.1", "--epochs", "2",
                 "--out", str(out), "--name", "hrf", *SMALL]) == 0
    for name in ("ddpo", "hrf"):
        run = out / name
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [0, 1, 2]
        assert json.loads((run / "status.json").read_text())["state"] == "done"
        checkpoint = run / "checkpoints" / "epoch-0002"
        assert (checkpoint / lora.ADAPTER_FILE).is_file() and not (checkpoint / "unet").exists()  # the adapter only
        assert any(k.startswith("vendi_") and k.endswith("_within@4") for k in rows[-1])  # within-prompt diversity
    config = json.loads((out / "hrf" / "config.json").read_text())
    assert len(config["prompts"]) == 27 and config["finetune"] == "auto" and config["lora_rank"] == 4
    hrf = [json.loads(line) for line in (out / "hrf" / "metrics.jsonl").read_text().splitlines()]
    assert hrf[-1]["kl_to_base"] > 0  # the adapter moved the policy away from the base (adapter disabled)

    assert main(["resume", str(out / "ddpo"), "--epochs", "3"]) == 0  # resumes from the adapter checkpoint
    grid, array = tmp_path / "grid.png", tmp_path / "samples.npy"
    assert main(["sample", "--checkpoint", str(out / "ddpo" / "checkpoints" / "epoch-0003"), "--n", "4", "--steps",
                 "6", "--device", "cpu", "--out", str(grid), "--array", str(array)]) == 0
    assert np.load(array).shape == (4, 3, 16, 16)


def test_log_probs_are_recomputed_exactly_and_only_the_adapter_trains(tiny_sd_dir, tmp_path):
    from hrf_core.rl.policy import ddim_step_mean, gaussian_log_prob, unet_eps

    config = config_of(tiny_sd_dir, epochs=2, kl_coef=0.1)
    trainer = Trainer(config, RunStore(tmp_path).create(config.to_dict()))
    batch = trainer._sample_batch(1, 0, 0)
    traj = batch.trajectory
    for j, t in enumerate(traj.timesteps.tolist()):  # grad mode, the rollout's batch: the same numbers exactly
        eps = unet_eps(trainer.unet, traj.states[:, j], t, trainer.autocast, traj.cond)
        mean, sigma = ddim_step_mean(trainer.scheduler, eps, t, traj.states[:, j], eta=config.eta)
        assert torch.equal(gaussian_log_prob(traj.states[:, j + 1], mean, sigma), traj.log_probs[:, j])

    before = {name: p.detach().clone() for name, p in trainer.unet.named_parameters()}
    frozen_parts = [trainer.base.vae, trainer.base.conditioner.text_encoder]
    frozen_before = [{k: v.clone() for k, v in part.state_dict().items()} for part in frozen_parts]
    assert trainer.train() == "done"
    changed = {name for name, p in trainer.unet.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(".lora_" in name for name in changed)  # only the adapter's weights change
    assert all(trainer.unet.get_parameter(name).dtype == torch.float32 for name in changed)
    for part, saved in zip(frozen_parts, frozen_before, strict=True):
        assert all(torch.equal(v, saved[k]) for k, v in part.state_dict().items())
    assert isinstance(trainer.frozen, lora.AdapterDisabled)  # the KL's base: the same UNet, adapter disabled
    row = trainer.run.metrics()[-1]
    assert row["first_ratio_deviation"] < 1e-5 and row["kl_to_base"] > 0


def test_the_adapter_switch_gives_the_base_exactly_and_walks_no_modules():
    """AdapterDisabled is the base model bit for bit, the adapter is on again after each call (also after an error),
    and a call walks no modules (one shared switch, O(1) per call)."""
    from diffusers import UNet2DConditionModel

    from hrf_core.models.latent import TINY_UNET_CONFIG

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**TINY_UNET_CONFIG).eval()
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 5, 16)
    with torch.no_grad():
        base = unet(x, t, encoder_hidden_states=text).sample
        lora.add_lora(unet, 4)
        for parameter in lora.adapter_parameters(unet):
            parameter.normal_()  # a trained adapter: B is no longer 0
        adapted = unet(x, t, encoder_hidden_states=text).sample
        frozen = lora.AdapterDisabled(unet)
        unet.modules = unet.named_modules = lambda *a, **k: (_ for _ in ()).throw(AssertionError("walked"))
        assert torch.equal(frozen(x, t, encoder_hidden_states=text).sample, base)
        assert not torch.equal(adapted, base) and torch.equal(unet(x, t, encoder_hidden_states=text).sample, adapted)
        with pytest.raises(TypeError):
            frozen(x)  # an error inside the call ...
        assert torch.equal(unet(x, t, encoder_hidden_states=text).sample, adapted)  # ... leaves the adapter on
        with lora.adapter_disabled(unet):
            assert torch.equal(unet(x, t, encoder_hidden_states=text).sample, base)


def test_save_resume_and_reload_of_the_adapter_are_bit_identical(tiny_sd_dir, tmp_path):
    config = config_of(tiny_sd_dir, epochs=2, method="hrf", window=(3, 6))
    full = RunStore(tmp_path / "a").create(config.to_dict())
    whole = Trainer(config, full)
    whole.train()
    half = RunStore(tmp_path / "b").create(config.replace(epochs=1).to_dict())
    Trainer(config.replace(epochs=1), half).train()
    resumed = resume_training(half, epochs=2)
    assert resumed.epoch == 1 and resumed.train() == "done"

    a, b = (load_file(str(run.checkpoints()[-1] / lora.ADAPTER_FILE)) for run in (full, half))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa, ob = (load_file(str(run.checkpoints()[-1] / "optimizer.safetensors")) for run in (full, half))
    assert oa.keys() == ob.keys() and all(torch.equal(oa[k], ob[k]) for k in oa)
    drop = {"seconds", "sample_seconds", "update_seconds", "eval_seconds", "logged_at"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in full.metrics()] == \
        [{k: v for k, v in r.items() if k not in drop} for r in half.metrics()]
    # reload: the checkpoint is the base model plus the adapter, bit for bit; the base UNet is the folder's
    reloaded = load_base_model(str(full.checkpoints()[-1]), "cpu")
    live = dict(whole.unet.named_parameters())
    for name, parameter in reloaded.unet.named_parameters():
        assert torch.equal(parameter, live[name]), name
    weights = base_weights(tiny_sd_dir)
    base = {n.replace(".base_layer", ""): p for n, p in reloaded.unet.named_parameters() if ".lora_" not in n}
    assert base.keys() == weights.keys()  # every base weight, those under an adapter's layer too
    assert all(torch.equal(p, weights[n]) for n, p in base.items())


# ------------------------------------------------------------------------------------------------ export
@pytest.mark.slow
def test_export_loads_into_stable_diffusion_and_samples_like_the_sample_command(tiny_sd_dir, tmp_path):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    config = config_of(tiny_sd_dir, epochs=1, lora_alpha=8.0)
    run = RunStore(tmp_path / "runs").create(config.to_dict(), name="sd")
    Trainer(config, run).train()
    out = tmp_path / "exported"
    assert main(["export", str(run.path), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "grid.png", lora.ADAPTER_FILE]
    card = (out / "README.md").read_text()
    for words in (str(tiny_sd_dir), "jpeg-compressibility", "ddpo", "`cat`", "load_lora_weights", "lora"):
        assert words in card

    array = tmp_path / "samples.npy"
    assert main(["sample", "--checkpoint", str(run.checkpoints()[-1]), "--n", "4", "--seed", "7", "--steps", "6",
                 "--device", "cpu", "--out", str(tmp_path / "grid.png"), "--array", str(array)]) == 0
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    plain = pipe(["cat", "dog", "cat", "dog"], num_inference_steps=6, eta=1.0, guidance_scale=3.0, output_type="pt",
                 generator=torch.Generator().manual_seed(7), height=16, width=16).images
    pipe.load_lora_weights(str(out))
    adapted = pipe(["cat", "dog", "cat", "dog"], num_inference_steps=6, eta=1.0, guidance_scale=3.0,
                   output_type="pt", generator=torch.Generator().manual_seed(7), height=16, width=16).images
    ours = torch.from_numpy(np.load(array))
    assert torch.allclose(adapted, ours, atol=1e-5)
    assert not torch.allclose(plain, ours, atol=1e-5)  # the adapter is what makes them equal


# ----------------------------------------------------------------------------------------- prompt sets
def test_prompt_sets_are_named_with_an_at_and_expanded_where_the_setting_is_parsed(tmp_path):
    animals = settings.parse("prompts", "@animals")
    assert len(animals) == 27 and animals[0] == "cat" and settings.format_prompts(animals) == "@animals"
    imagenet = settings.parse("prompts", "@imagenet-animals")
    assert len(imagenet) == 398 and imagenet[0] == "tench" and imagenet[-1] == "puffer"
    assert settings.parse("prompts", "@animals,unicorn")[-1] == "unicorn"
    with pytest.raises(settings.SettingError, match="unknown prompt set '@plants'"):
        settings.parse("prompts", "@plants")
    with pytest.raises(settings.SettingError, match="'cat' twice"):
        settings.parse("prompts", "@animals,cat")
    # a large set is evaluated on an evenly spread subset, two samples a prompt
    from hrf_core.rl.sampling import eval_prompts

    assert eval_prompts(imagenet, 16) == [imagenet[(i * 398) // 8] for i in range(8)]
    assert eval_prompts(("a", "b"), 16) == ["a", "b"]
    TrainConfig(prompts=imagenet, eval_samples=16, model="x", guidance=5.0).validate()


def test_a_prompt_file_only_from_the_command_line(tiny_sd_dir, tmp_path, capsys):
    from hrf_core.cli import build_parser
    from hrf_core.commands.train import config_from_args

    path = tmp_path / "prompts.txt"
    path.write_text("# my prompts\na red cat, sitting\n\na blue dog\n")
    args = build_parser().parse_args(["train", "--model", str(tiny_sd_dir), "--prompts-file", str(path)])
    assert config_from_args(args).prompts == ("a red cat, sitting", "a blue dog")  # commas belong to a prompt
    (tmp_path / "empty.txt").write_text("# nothing\n")
    assert main(["train", "--prompts-file", str(tmp_path / "empty.txt"), "--out", str(tmp_path)]) == 2
    assert "holds no prompts" in capsys.readouterr().err
    assert "prompts_file" not in {s.name for s in settings.TABLE.values()}  # not a setting: never on the page or API


# ---------------------------------------------------------------------------------------- memory estimate
def test_the_memory_estimate_follows_the_settings():
    from hrf_core.rl.memory import estimate

    sd = TrainConfig(model="CompVis/stable-diffusion-v1-4", prompts=("cat",), guidance=5.0, num_steps=50,
                     samples_per_epoch=64, batch_size=8, train_batch_size=2, bf16=True)
    cpu = torch.device("cpu")
    base = estimate(sd, cpu)
    assert 3 < base.total_gb < 20 and base.fits  # SD 1.4, LoRA, bf16: single-GPU sized; no GPU: nothing refused
    assert 1.5 < base.parts["UNet weights"] < 1.7  # 859.5M parameters in bf16
    assert estimate(sd.replace(bf16=False), cpu).total_gb > base.total_gb
    assert estimate(sd.replace(finetune="full"), cpu).total_gb > base.total_gb + 9  # + gradients and AdamW
    bigger = estimate(sd.replace(train_batch_size=8), cpu)
    assert bigger.transient == "training call" and bigger.total_gb > base.total_gb
    assert estimate(sd.replace(train_batch_size=8, grad_checkpointing=True), cpu).total_gb < bigger.total_gb


def test_the_sd_presets_fit_a_24_gb_card(monkeypatch):
    """sd-ddpo and sd-hrf (bf16, LoRA r4, train batch 4 at guidance 5) are admitted with 23 GB free (a 24 GB card
    less the driver's share); their numbers are docs/GPU.md's."""
    from hrf_core.presets import PRESETS
    from hrf_core.rl import memory

    monkeypatch.setattr(memory, "device_memory", lambda device: (23.0, 24.0))
    for name in ("sd-ddpo", "sd-hrf"):
        found = memory.check_fits(PRESETS[name], torch.device("cuda"))
        assert found.fits and 10 < found.total_gb < 20, found.parts


def test_autocast_like_counting_keeps_norms_and_what_follows_them_in_float32():
    """On meta tensors, autocast's casts as on a GPU: a linear layer in bf16, a GroupNorm in float32, the SiLU after
    it in float32 (promotion), a linear after that in bf16 again; so a bf16 row costs more than half an fp32 one."""
    from hrf_core.rl import memory

    with torch.device("meta"):
        linear, norm, after = torch.nn.Linear(8, 16), torch.nn.GroupNorm(4, 16), torch.nn.Linear(16, 8)
        x = torch.zeros(2, 8)
    with memory._AutocastLike(torch.bfloat16):
        h = linear(x)
        n = norm(h)
        a = torch.nn.functional.silu(n)
        out = after(a)
    assert (h.dtype, n.dtype, a.dtype, out.dtype) == (torch.bfloat16, torch.float32, torch.float32, torch.bfloat16)
    sd = ("CompVis/stable-diffusion-v1-4", 4, ("to_k", "to_q", "to_v", "to_out.0"))
    fp32, bf16 = memory.architecture(*sd), memory.architecture(*sd, torch.bfloat16)
    assert 0.55 < bf16.train_row / fp32.train_row < 0.95  # not the half an all-bf16 count would give


def test_the_estimate_counts_the_adapters_own_activations():
    """A wider adapter keeps more activations for its backward: its rank-r intermediate per token and layer (SD 1.4's
    architecture on the meta device: 16 attention blocks, 4 adapted projections each, 4096 tokens at the top)."""
    from hrf_core.rl import memory

    targets = ("to_k", "to_q", "to_v", "to_out.0")
    narrow, wide = (memory.architecture("CompVis/stable-diffusion-v1-4", r, targets) for r in (4, 64))
    assert wide.lora_params == 16 * narrow.lora_params
    assert wide.train_row - narrow.train_row > 60 * 4096 * 4 / memory.GB  # at least one adapted layer at the top


def test_the_estimate_counts_the_adapter_peft_attaches(tiny_sd_dir):
    """The adapter's parameters are those of a real adapter on the loaded model, also for targets that are 1x1
    convolutions in SD 1.x (proj_in, proj_out), which a count of linear layers alone missed."""
    from hrf_core.models.lora import add_lora
    from hrf_core.models.registry import load_base_model
    from hrf_core.rl import memory

    for targets in (("to_k", "to_q", "to_v", "to_out.0"), ("to_q", "proj_in", "proj_out")):
        unet = load_base_model(str(tiny_sd_dir), "cpu").unet
        add_lora(unet, 4, 4.0, targets)
        real = sum(p.numel() for p in unet.parameters() if p.requires_grad)
        assert memory.architecture(str(tiny_sd_dir), 4, targets).lora_params == real > 0, targets


def test_the_memory_estimate_never_downloads(monkeypatch):
    """The Train tab asks for an estimate on every change: an uncached Hub model is its known architecture (or no
    estimate), never a download, even online."""
    from hrf_core.models import registry
    from hrf_core.rl.memory import estimate

    def download(*args, **kwargs):
        raise AssertionError("the estimate started a download")

    monkeypatch.setattr(registry, "_hub_folder", download)
    monkeypatch.setattr(registry, "_cached_snapshot", lambda repo_id, family="pixel": None)  # nothing cached
    sd = TrainConfig(model="CompVis/stable-diffusion-v1-4", prompts=("cat",), guidance=5.0, bf16=True)
    assert estimate(sd, torch.device("cpu")).total_gb > 3  # SD 1.4's known architecture
    with pytest.raises(ValueError, match="not in the local cache"):
        estimate(TrainConfig(model="google/ddpm-celebahq-256"), torch.device("cpu"))


def test_a_run_that_does_not_fit_is_refused_with_one_line_naming_what_to_lower(tiny_sd_dir, tmp_path, monkeypatch,
                                                                                capsys):
    from hrf_core.rl import memory

    monkeypatch.setattr(memory, "device_memory", lambda device: (1e-6, 80.0))  # a GPU with nothing free
    code = main(["train", "--model", str(tiny_sd_dir), "--prompts", "cat", "--method", "ddpo", "--out", str(tmp_path),
                 *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "this run needs about" in err and "--train-batch-size (now 4)" in err and "--grad-checkpointing" in err
    with pytest.raises(ValueError, match="train_batch_size"):  # the scripting API's and the page's path
        from hrf_core.rl.launch import preflight

        preflight(config_of(tiny_sd_dir))
    with pytest.raises(settings.SettingError) as refused:
        memory.check_fits(config_of(tiny_sd_dir))
    page_line = memory.estimate(config_of(tiny_sd_dir)).line()  # the Train tab's line names the same settings
    assert refused.value.sentence().split(": ", 1)[1] in page_line and "{" not in page_line
    assert settings.words("train_batch_size") in page_line
    monkeypatch.setattr(memory, "device_memory", lambda device: (80.0, 80.0))
    assert memory.check_fits(config_of(tiny_sd_dir)).fits


# -------------------------------------------------------------------------------------------- rewards
def test_clip_alignment_scores_each_image_against_its_prompt(tiny_clip_model, monkeypatch):
    from hrf_core.rewards.clip_alignment import make_clip_alignment
    from hrf_core.rewards.registry import REWARDS, checked

    tokens = {"cat": [1, 2, 3], "dog": [4, 5, 6]}
    reward = checked(make_clip_alignment(clip_model=tiny_clip_model, tokenizer=lambda prompts: torch.tensor(
        [tokens[p] + [0] * 5 for p in prompts])), "clip-alignment", prompted=True)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    scores = reward(images, ["cat", "dog", "cat", "dog"])
    assert scores.shape == (4,) and scores.abs().max() <= 1
    swapped = reward(images, ["dog", "cat", "dog", "cat"])
    assert not torch.allclose(scores, swapped)  # the prompt matters
    with pytest.raises(ValueError, match="needs a prompted run"):
        reward(images)
    spec = REWARDS["clip-alignment"]
    assert spec.prompted
    from hrf_core.rewards import clip_alignment

    monkeypatch.setattr(clip_alignment, "clip_checkpoint", lambda *args, **kwargs: None)  # weights not cached
    ok, reason = spec.available()  # HF_HUB_OFFLINE=1 (the suite's): unavailable, with the reason in one line
    assert not ok and "ViT-L-14" in reason and "\n" not in reason


def test_within_prompt_vendi_on_decoded_images(tiny_sd_dir, tiny_clip_model):
    from hrf_core.measure.evaluation import PIXEL_PROXY, Evaluator
    from hrf_core.measure.features import ClipFeatures
    from hrf_core.rl.sampling import round_robin, sample_from

    model = load_base_model(str(tiny_sd_dir), "cpu")
    prompts = round_robin(["cat", "dog"], 8)
    images = sample_from(model, 8, 0, num_steps=4, prompts=prompts, guidance=3.0)
    assert images.shape == (8, 3, 16, 16)
    learned = Evaluator(model.image_shape, embeddings=("clip",),
                        extractors={"clip": ClipFeatures(model=tiny_clip_model)})
    metrics = learned(images, torch.zeros(8), prompts=prompts)
    assert {"vendi_clip@8", "vendi_clip_within@8", "vendi_pixel_within@8"} <= set(metrics) and not learned.note
    pixels = Evaluator(model.image_shape, embeddings=("pixel",))
    assert pixels.note == PIXEL_PROXY and "vendi_pixel_within@8" in pixels(images, torch.zeros(8), prompts=prompts)


# ------------------------------------------------------------------------------------ the API and the page
def test_the_page_and_the_scripting_api_take_the_model_by_its_folder(tiny_sd_dir, tmp_path):
    import threading

    from test_jobs import fake_factory

    from explorer.api import check_model
    from explorer.jobs import JobManager
    from explorer.page import Lab
    from explorer.views import train

    assert check_model("model", str(tiny_sd_dir)) == str(tiny_sd_dir)
    gate = threading.Event()
    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=fake_factory(gate=gate))  # real preflight
    lab = Lab(manager, config_of(tiny_sd_dir), docs_dir=tmp_path / "docs")
    try:
        values = {**train.form_from_config(config_of(tiny_sd_dir)), "prompts": "@animals", "lora_rank": 8}
        assert train.model_info(str(tiny_sd_dir)).startswith("local diffusers folder")
        assert lab.train.memory("custom", values).startswith("Memory: ")
        notice, _ = lab.train.start("", "custom", values)
        assert "Started" in notice, notice
        config = lab.store.list()[0].config
        assert config["model"] == str(tiny_sd_dir) and len(config["prompts"]) == 27 and config["lora_rank"] == 8
    finally:
        gate.set()
        manager.stop()
        manager.wait(10)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_keeps_the_frozen_weights_half_and_the_adapter_fp32(tiny_sd_dir, tmp_path, precision):
    from hrf_core.rl.update import Batch

    config = config_of(tiny_sd_dir, epochs=1, num_steps=3, **{precision: True})
    trainer = Trainer(config, RunStore(tmp_path).create(config.to_dict()))
    half = torch.bfloat16 if precision == "bf16" else torch.float16
    dtypes = {n: p.dtype for n, p in trainer.unet.named_parameters()}
    assert {d for n, d in dtypes.items() if ".lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if ".lora_" not in n} == {half}
    assert next(trainer.base.vae.parameters()).dtype == half
    assert next(trainer.base.conditioner.text_encoder.parameters()).dtype == half
    assert trainer.scaler.is_enabled() == (precision == "fp16")  # fp16's loss scaling
    batches: dict[int, Batch] = {b: trainer._sample_batch(1, b, 0) for b in range(2)}
    rewards = torch.stack([batches[b].rewards for b in range(2)])
    trainer.update.assign_advantages(batches, rewards, [0, 0], [trainer.prompts.batch(1, b, 0) for b in range(2)])
    before = [p.detach().clone() for p in trainer.trainable_params]
    diagnostics = trainer.update.run(batches, 1)
    assert diagnostics["first_ratio_deviation"] < 1e-5  # sampling and training autocast alike
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.trainable_params, strict=True))
