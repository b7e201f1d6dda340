"""Prompted models end to end (#29): guided log-probs against diffusers, the on-policy ratio, the per-prompt
tracker by hand, every sample's prompt kept, the refusals, every method and the tools with prompts."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import make_scheduler, make_tiny_cond_unet

from hrf_core.config import TrainConfig
from hrf_core.models.conditioning import ClassLabels
from hrf_core.rl.launch import preflight, resume_training
from hrf_core.rl.policy import ddim_step_mean, gaussian_log_prob, rollout, step_sigma, unet_eps
from hrf_core.rl.ppo import PerPromptStats
from hrf_core.rl.sampling import round_robin, sample_from
from hrf_core.rl.trainer import Trainer
from hrf_core.store.runs import RunStore

PROMPTS = ("0", "1", "2")


def tiny(model_dir, **changes) -> TrainConfig:
    """A prompted run of the tiny class-conditional model: K = 6, 8 samples an epoch, every epoch evaluated."""
    base = dict(model=str(model_dir), reward="ink", method="hrf", window=(3, 6), num_steps=6, epochs=2,
                samples_per_epoch=8, batch_size=4, siblings=2, eval_samples=6, eval_every=1, train_batch_size=8,
                updates_per_epoch=1, checkpoint_every=1, device="cpu", prompts=PROMPTS, seed=3)
    return TrainConfig(**{**base, **changes}).validate()


# ------------------------------------------------------------------------------------------ the policy
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_guided_rollout_log_probs_match_diffusers_in_float64(scale):
    """Each recorded action's log-prob equals the Gaussian of diffusers' own DDIM step around the guided eps,
    that eps computed by hand from two separate float64 forwards (conditional and null class)."""
    unet, scheduler = make_tiny_cond_unet(), make_scheduler()
    scheduler.set_timesteps(6)
    conditioner = ClassLabels(4)
    prompts = ["0", "2", "1", "2"]
    cond = conditioner.condition(prompts, scale)
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    traj = rollout(unet, scheduler, x0, 0, 1.0, torch.Generator().manual_seed(1), cond=cond)
    unet64, labels = copy.deepcopy(unet).double(), torch.tensor([0, 2, 1, 2])
    for j, t in enumerate(scheduler.timesteps):
        x = traj.states[:, j].double()
        with torch.no_grad():
            steps = torch.full((4,), int(t))
            eps_c = unet64(x, steps, class_labels=labels).sample
            eps_u = unet64(x, steps, class_labels=torch.full_like(labels, 3)).sample
        eps = eps_u + scale * (eps_c - eps_u)
        mean = scheduler.step(eps, int(t), x, eta=1.0, variance_noise=torch.zeros_like(x)).prev_sample
        sigma = step_sigma(scheduler, int(t), 1.0)
        action = traj.states[:, j + 1].double()
        expected = (-((action - mean) ** 2) / (2 * sigma**2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)).mean(
            dim=(1, 2, 3))
        assert torch.allclose(traj.log_probs[:, j].double(), expected, atol=2e-5), j


@pytest.mark.parametrize("scale,detach", [(1.0, False), (3.0, False), (3.0, True)])
def test_the_on_policy_ratio_is_exactly_one(scale, detach):
    """Recomputing a guided rollout's log-probs as the update does (same rows, same condition) gives ratio 1 exactly."""
    unet, scheduler = make_tiny_cond_unet(), make_scheduler()
    scheduler.set_timesteps(6)
    cond = ClassLabels(4).condition(["1", "0", "2", "1"], scale, detach_uncond=detach)
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    traj = rollout(unet, scheduler, x0, 0, 1.0, torch.Generator().manual_seed(1), cond=cond)
    for j, t in enumerate(scheduler.timesteps):
        with torch.no_grad():
            eps = unet_eps(unet, traj.states[:, j], int(t), cond=traj.cond)
        mean, sigma = ddim_step_mean(scheduler, eps, int(t), traj.states[:, j])
        log_prob = gaussian_log_prob(traj.states[:, j + 1], mean, sigma)
        assert torch.equal(torch.exp(log_prob - traj.log_probs[:, j]), torch.ones(4)), j


def test_a_detached_unconditional_branch_carries_no_gradient():
    """Both branches in the gradient (ddpo-pytorch): d/dθ [(1 - w) e_u + w e_c]; detached (Flow-GRPO): w de_c/dθ."""
    unet, w = make_tiny_cond_unet(), 2.0
    x, t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), 500
    labels = ClassLabels(4)

    def grad(fn):
        unet.zero_grad()
        fn().sum().backward()
        return unet.class_embedding.weight.grad.clone()

    g_cond = grad(lambda: unet(x, torch.full((2,), t), class_labels=torch.tensor([0, 1])).sample)
    g_null = grad(lambda: unet(x, torch.full((2,), t), class_labels=torch.tensor([3, 3])).sample)
    both = grad(lambda: labels.condition(["0", "1"], w).eps(unet, x, t))
    cond_only = grad(lambda: labels.condition(["0", "1"], w, detach_uncond=True).eps(unet, x, t))
    assert torch.allclose(both, (1 - w) * g_null + w * g_cond, atol=1e-5)
    assert torch.allclose(cond_only, w * g_cond, atol=1e-5)


# ------------------------------------------------------------------------------------ per-prompt advantages
def test_the_per_prompt_tracker_by_hand():
    """buffer 3, minimum 2. Epoch 1: "a" has two rewards (1, 3): its own mean 2, std 1; "b" has one, so the
    epoch's (mean 2, std sqrt(2/3)). Epoch 2: "a" keeps its last three (1, 3, 5): mean 3, std sqrt(8/3); "b" now
    (2, 4): mean 3, std 1."""
    stats = PerPromptStats(buffer=3, min_count=2)
    first = stats.update(["a", "b", "a"], torch.tensor([1.0, 2.0, 3.0]))
    assert first.tolist() == pytest.approx([-1 / (1 + 1e-6), 0.0, 1 / (1 + 1e-6)], abs=1e-6)
    second = stats.update(["a", "b"], torch.tensor([5.0, 4.0]))
    assert second.tolist() == pytest.approx([2 / (math.sqrt(8 / 3) + 1e-6), 1 / (1 + 1e-6)], abs=1e-6)
    assert stats.state() == {"a": [1.0, 3.0, 5.0], "b": [2.0, 4.0]}
    restored = PerPromptStats(buffer=3, min_count=2)
    restored.restore(stats.state())
    assert restored.update(["b"], torch.tensor([6.0])).tolist() == pytest.approx(
        stats.update(["b"], torch.tensor([6.0])).tolist())


def test_prompt_scope_uses_the_tracker_and_resumes_it_exactly(tiny_cond_model_dir, tmp_path):
    """adv_scope "prompt": a resumed run continues the buffers (kept in the checkpoint), so two epochs plus one
    give the rows and weights of three straight."""
    config = tiny(tiny_cond_model_dir, method="ddpo", window=(0, 6), adv_scope="prompt", epochs=3,
                  prompt_min_count=2)
    straight = RunStore(tmp_path / "a").create(config.to_dict())
    Trainer(config, straight).train()
    half = RunStore(tmp_path / "b").create(config.replace(epochs=2).to_dict())
    Trainer(config.replace(epochs=2), half).train()
    resumed = resume_training(half, epochs=3)
    assert resumed.prompt_stats.state()  # restored from the checkpoint of epoch 2
    resumed.train()
    keys = ("epoch", "train_reward_mean", "reward_mean", "prompt_rewards")
    assert [{k: r.get(k) for k in keys} for r in straight.metrics()] == [
        {k: r.get(k) for k in keys} for r in half.metrics()]


# ------------------------------------------------------------------------------------- prompts are kept
def test_every_sample_keeps_the_prompt_it_was_sampled_with(tiny_cond_model_dir, tmp_path, monkeypatch):
    """The condition of each rollout, the reward's prompts and the batch's drawn prompts agree; the evaluation's
    arrays and metrics name each sample's prompt (round robin over the set)."""
    config = tiny(tiny_cond_model_dir, epochs=1)
    run = RunStore(tmp_path).create(config.to_dict())
    seen = []

    def reward(images, prompts):
        seen.append(list(prompts))
        return images.mean(dim=(1, 2, 3))

    conditioned = []
    original = ClassLabels.condition

    def recording(self, prompts, *args, **kwargs):
        conditioned.append(list(prompts))
        return original(self, prompts, *args, **kwargs)

    monkeypatch.setattr(ClassLabels, "condition", recording)
    trainer = Trainer(config, run, reward_fn=reward)
    trainer.train()
    starts = run.metrics()[1]["starts"]
    for b, start in enumerate(starts):
        drawn = trainer.prompts.batch(1, b, start)
        assert drawn in seen and drawn in conditioned and set(drawn) <= set(PROMPTS)
    evaluation = round_robin(PROMPTS, config.eval_samples)
    assert seen.count(evaluation) == 2  # epoch 0 and epoch 1
    arrays = run.load_eval(1)
    assert [PROMPTS[i] for i in arrays["prompt_index"].tolist()] == evaluation
    row = run.metrics()[1]
    assert set(row["per_prompt"]) == set(PROMPTS) and all(row["per_prompt"][p]["samples"] == 2 for p in PROMPTS)
    assert set(row["prompt_rewards"]) <= set(PROMPTS)
    assert any(key.startswith("vendi_pixel_within@") for key in row)


def test_the_digits_model_draws_the_prompted_digit():
    """digits16-cond at guidance 3: the classifier reads the prompted digit on nearly every sample."""
    from hrf_core.models.digits import load_digit_classifier
    from hrf_core.models.registry import load_base_model

    prompts = round_robin(["3", "7", "8"], 12)
    images = sample_from(load_base_model("digits16-cond", "cpu"), 12, 0, num_steps=20, prompts=prompts, guidance=3.0)
    with torch.no_grad():
        read = load_digit_classifier()(images).argmax(1).tolist()
    assert sum(str(d) == p for d, p in zip(read, prompts, strict=True)) >= 10


# ------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("changes,message", [
    (dict(prompts=()), "is prompted: give it prompts (its prompts: 0, 1, 2)"),
    (dict(prompts=("0", "7")), "unknown prompt '7' for this class-conditional model: its prompts are 0, 1, 2"),
    (dict(reward="alignment", prompts=()), "is prompted: give it prompts"),
])
def test_a_prompted_model_refuses_bad_prompts_in_one_line(tiny_cond_model_dir, changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        preflight(tiny(tiny_cond_model_dir).replace(**changes))


def test_an_unconditional_model_refuses_prompts_everywhere(tiny_model_dir, tmp_path, capsys):
    from hrf_core.cli import main

    config = TrainConfig(model=str(tiny_model_dir), num_steps=6, window=(3, 6), prompts=("0",), eval_samples=4)
    with pytest.raises(ValueError, match="is unconditional: it takes no prompts"):
        preflight(config)
    assert main(["train", "--model", str(tiny_model_dir), "--prompts", "3,7", "--steps", "6", "--window", "3:6",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is unconditional: it takes no prompts" in err
    with pytest.raises(ValueError, match="'prompt' needs prompts"):
        TrainConfig(adv_scope="prompt").validate()
    with pytest.raises(ValueError, match="guidance needs prompts"):
        TrainConfig(guidance=2.0).validate()
    with pytest.raises(ValueError, match="alignment reads each sample's prompt"):
        preflight(TrainConfig(model="digits16", reward="alignment"))


def test_the_api_and_the_page_take_prompts_and_name_a_bad_one(tiny_cond_model_dir, tmp_path):
    from test_jobs import fake_factory

    from explorer.api import ScriptingApi
    from explorer.jobs import JobManager
    from explorer.page import Lab

    manager = JobManager(RunStore(tmp_path / "runs"), trainer_factory=fake_factory())
    api = ScriptingApi(manager, tiny(tiny_cond_model_dir))
    config = api.config({"prompts": "2, 0", "guidance": 1.5})
    assert config.prompts == ("2", "0") and config.guidance == 1.5
    with pytest.raises(ValueError, match="prompts: Prompts name '0' twice"):
        api.config({"prompts": "0,0"})
    lab = Lab(manager, tiny(tiny_cond_model_dir), docs_dir=tmp_path / "docs")
    values = {**lab.train.fill_preset("digits-cond-ddpo"), "model": str(tiny_cond_model_dir), "prompts": "1,9"}
    values.pop("note")
    notice, _ = lab.train.start("", "custom", values)
    assert "Not started" in notice and "unknown prompt" in notice and "9" in notice


# ------------------------------------------------------------------------------ every method, every tool
@pytest.mark.slow
@pytest.mark.parametrize("changes", [
    dict(method="ddpo", window=(0, 6), adv_scope="prompt", prompt_min_count=2),
    dict(method="hrf", adv_scope="image", guidance=2.0, guidance_grad="cond"),
    dict(method="hrf-sliding", clusters=((0, 3, 1), (3, 6, 1))),
    dict(method="hrf-d", hrfd_stride=2),
    dict(method="hrf", outside_window="base", adv_scope="image"),
    dict(method="ddpo", window=(0, 6), kl_coef=0.5, guidance=1.5),
], ids=["ddpo", "hrf-guided-cond", "sliding", "hrf-d", "window-only", "ddpo-kl"])
def test_every_method_trains_with_prompts(tiny_cond_model_dir, tmp_path, changes):
    config = tiny(tiny_cond_model_dir, **changes)
    run = RunStore(tmp_path).create(config.to_dict())
    assert Trainer(config, run).train() == "done"
    last = run.metrics()[-1]
    assert last["epoch"] == 2 and math.isfinite(last["train_reward_mean"]) and last["first_ratio_deviation"] < 1e-4
    assert any(key.startswith("vendi_pixel_within@") for key in last) and set(last["per_prompt"]) == set(PROMPTS)
    if config.kl_coef:
        assert last["kl_to_base"] >= 0


@pytest.mark.slow
def test_the_tools_work_with_prompts(tiny_cond_model_dir, tmp_path):
    """Hand-over sampling, Compare, the locality profile per prompt, export, and a duel, on a prompted run."""
    from explorer.jobs import JobManager
    from explorer.views import compare
    from hrf_core.models.registry import load_base_model
    from hrf_core.rewards.registry import make_reward
    from hrf_core.share.export import export_checkpoint
    from hrf_core.study.locality import ProfileSettings, profile

    store = RunStore(tmp_path / "runs")
    config = tiny(tiny_cond_model_dir, epochs=1)
    run = store.create(config.to_dict(), name="prompted")
    Trainer(config, run).train()
    checkpoint = run.checkpoints()[-1]
    base, tuned = load_base_model(str(tiny_cond_model_dir), "cpu"), load_base_model(str(checkpoint), "cpu")
    prompts = round_robin(PROMPTS, 6)
    # hand-over at S = K: the base model's samples exactly, with the same prompts
    assert torch.equal(sample_from(tuned, 6, 0, 6, early=base, handover=6, prompts=prompts),
                       sample_from(base, 6, 0, 6, prompts=prompts))
    result = compare.compare(store, f"base:{tiny_cond_model_dir}", f"ckpt:prompted:{checkpoint.name}", n=6,
                             reward="ink")
    assert any(key.startswith("vendi_pixel_within@") for key in result.metrics_b)
    found = profile(base, {"ink": make_reward("ink")}, ProfileSettings(trunks=6, branches=2, num_steps=6,
                                                                         resamples=0))["ink"]
    assert set(found["per_prompt"]) == set(PROMPTS) and len(found["decided"]) == len(found["probes"])
    card = (export_checkpoint(run, checkpoint, tmp_path / "export") / "README.md").read_text()
    assert "## Prompts" in card and "class_labels" in card
    manager = JobManager(store, torch_threads=1, preflight=None)
    first, second = manager.start_duel(config.replace(epochs=1), config.replace(method="ddpo", window=(0, 6),
                                                                                 epochs=1))
    assert manager.wait(120) and manager.snapshot().state == "done"
    for run_id in (first, second):
        assert json.loads(store.get(run_id).config_path.read_text())["prompts"] == list(PROMPTS)


def test_the_prompts_experiment_runs_every_arm_and_reports_within_prompt(tiny_cond_model_dir, tmp_path):
    """``experiment prompts-digits`` at its smallest, as a user starts it: every arm trains (the hand-over after
    DDPO), the report has the within-prompt table for every arm and the tracker's ablation; a shard writes none."""
    import subprocess
    import sys

    from hrf_core import REPO_ROOT
    from hrf_core.study.arms import run_name

    def experiment(*extra):
        return subprocess.run(
            [sys.executable, "-m", "hrf_core", "experiment", "prompts-digits", "--model", str(tiny_cond_model_dir),
             "--tasks", "ink", "--prompts", *PROMPTS, "--guidance", "--tracker-tasks", "ink", "--epochs", "2",
             "--steps", "8", "--samples", "8", "--batch-size", "4", "--siblings", "2", "--eval-every", "1",
             "--eval-samples", "6", "--seeds", "0", "--threads", "1",
             "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"), *extra],
            capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)

    sharded = experiment("--shard", "1/2")
    assert sharded.returncode == 0, sharded.stderr
    assert "shard 1/2 finished" in sharded.stdout and not (tmp_path / "docs").exists()
    done = experiment()
    assert done.returncode == 0, done.stderr
    arms = ["ddpo", "handover", "ddpo/epoch", "hrf[20,40)/image", "hrf[30,40)/image/wo", "ddpo+kl0.1"]
    for arm in arms:
        status = json.loads((tmp_path / "runs" / run_name("ink", arm, 0) / "status.json").read_text())
        assert status["state"] == "done", arm
    report = (tmp_path / "docs" / "results" / "prompts.md").read_text()
    # an 8x8 model has no calibrated measure (1x16x16 digits only): the report leads with pixels, and says so
    lead = "**Within-prompt Vendi (pixels; a weak proxy) at matched reward**"
    within = report.split(lead)[1].split("**")[0]
    assert all(f"| {arm} |" in within for arm in arms), within
    assert "These runs have no calibrated measure" in report
    result = json.loads((tmp_path / "docs" / "results" / "prompts.json").read_text())
    assert set(result["tracker"]) == {"ink"}
    assert report.count("1 process(es) of 1 thread(s)") == 2  # both sittings: the shard's and the rest


def test_the_prompts_report_leads_with_the_calibrated_measure_where_the_runs_logged_it():
    from hrf_core.study.prompts_experiment import FALLBACK, PRIMARY, primary_within

    def result(*names):
        return {"groups": {"g": {"arms": {"ddpo": {"matched_reward": [{"values": {n: {} for n in names}}]}}}}}

    assert primary_within(result("vendi_pixel_within", FALLBACK, PRIMARY)) == PRIMARY
    assert primary_within(result("vendi_pixel_within", FALLBACK)) == FALLBACK  # a store logged before it
    assert primary_within(result("vendi_pixel_within")) == "vendi_pixel_within"  # not 1x16x16 digits


def test_the_prompts_experiment_takes_diversity_arms_and_an_arm_filter(tmp_path):
    """``--diversity-weights 1 --arms ...``: the ``+div1`` arms join, the filter keeps only the named arms, and the
    hand-over of a bonus run waits for that run (not for plain DDPO)."""
    from hrf_core.study.arms import run_name
    from hrf_core.study.prompts_experiment import Settings, build_units

    settings = Settings(seeds=[0], tasks=["ink"], tracker_tasks=[], diversity_weights=[1.0],
                        arms=["ddpo", "ddpo+div1", "handover+div1"])
    units = {unit.name: unit for unit in build_units(settings, tmp_path)}
    assert set(units) == {run_name("ink", arm, 0) for arm in ("ddpo", "ddpo+div1", "handover+div1")}
    handover = units[run_name("ink", "handover+div1", 0)]
    assert handover.after == (run_name("ink", "ddpo+div1", 0),)
    assert handover.args[-1] == "handover+div1"
    trained = units[run_name("ink", "ddpo+div1", 0)].args[0]
    assert trained["diversity_weight"] == 1.0 and trained["extra"]["arm"] == "ddpo+div1"
