"""The policy update's training calls: (sample, step) rows gathered across sampling batches (issue #38) against the
per-batch calls they replaced, whose reference is written out here."""

from __future__ import annotations

import pytest
import torch

from hrf_core.config import TrainConfig
from hrf_core.rl import ppo
from hrf_core.rl.policy import ddim_step_mean, gaussian_log_prob, unet_eps
from hrf_core.rl.trainer import Trainer
from hrf_core.rl.update import Batch, UpdateDiagnostics
from hrf_core.store.runs import RunStore


def per_batch_backward(update, batches: dict[int, Batch], chunk_samples: list[tuple[int, int]]) -> None:
    """The update's backward before issue #38's last item: each sampling batch's (sample, step) pairs, step-major,
    in equal-sized calls of <= train_batch_size rows of their own (PolicyUpdate._chunk_backward as it was)."""
    trainer, c = update.t, update.t.config
    for b, batch in batches.items():
        rows = torch.tensor([i for bb, i in chunk_samples if bb == b], dtype=torch.long)
        if len(rows) == 0 or not batch.trained:
            continue
        clip_range = c.clip_range * update.clip_scale(batch.trajectory.start)
        steps = torch.tensor(batch.trained, dtype=torch.long)
        pairs_i, pairs_j = rows.repeat(len(steps)), steps.repeat_interleave(len(rows))
        calls = -(-len(pairs_i) // c.train_batch_size)
        for i, j in zip(pairs_i.tensor_split(calls), pairs_j.tensor_split(calls), strict=True):
            traj = batch.trajectory
            t = traj.timesteps[j]
            cond = traj.cond[i] if traj.cond is not None else None
            x = traj.states[i, j]
            eps = unet_eps(trainer.unet, x, t, trainer.autocast, cond)
            mean, sigma = ddim_step_mean(trainer.scheduler, eps, t, x, eta=c.eta)
            log_prob = gaussian_log_prob(traj.states[i, j + 1], mean, sigma)
            losses = ppo.ppo_clip_loss(log_prob, traj.log_probs[i, j], batch.advantages[i], clip_range)
            if c.kl_coef > 0:
                losses = losses + c.kl_coef * update._kl_to_base(mean, sigma, x, t, cond)
            (losses.sum() / (len(batch.trained) * len(chunk_samples))).backward()


def sampled(config: TrainConfig, path, dtype: torch.dtype) -> tuple[Trainer, dict[int, Batch]]:
    """A trainer and the batches, with advantages, of the first epoch whose batches start at different steps, as
    the trainer samples them; in ``dtype`` (the UNets, states, log-probs and advantages). The recorded log-probs are
    moved by up to the clip range, so that some ratios fall outside their batch's (window-scaled) clip range, some
    inside, and some inside one batch's and outside another's."""
    trainer = Trainer(config, RunStore(path).create(config.to_dict()))
    n = config.batches_per_epoch
    epoch = next(e for e in range(1, 100) if len(set(trainer._starts(e, n))) == n)
    starts = trainer._starts(epoch, n)
    batches = {b: trainer._sample_batch(epoch, b, starts[b]) for b in range(n)}
    rewards = trainer._gather_rewards(batches, n)
    prompts = [trainer.prompts.batch(epoch, b, starts[b]) for b in range(n)] if config.prompted else None
    trainer.update.assign_advantages(batches, rewards, starts, prompts)
    trainer.unet.to(dtype)
    if trainer.frozen is not None:
        trainer.frozen.to(dtype)
    shift = torch.Generator().manual_seed(0)
    for batch in batches.values():
        traj = batch.trajectory
        traj.states, traj.log_probs = traj.states.to(dtype), traj.log_probs.to(dtype)
        traj.log_probs += config.clip_range * (2 * torch.rand(traj.log_probs.shape, generator=shift, dtype=dtype) - 1)
        batch.advantages = batch.advantages.to(dtype)
    return trainer, batches


def gradients(trainer, backward) -> tuple[list[torch.Tensor], list[int]]:
    """The trainable parameters' gradients after ``backward()`` and the row counts of its trained UNet calls."""
    calls: list[int] = []
    hook = trainer.unet.register_forward_pre_hook(
        lambda module, args: calls.append(args[0].shape[0]) if torch.is_grad_enabled() else None)
    trainer.optimizer.zero_grad(set_to_none=True)
    backward()
    hook.remove()
    return [p.grad.clone() for p in trainer.trainable_params], calls


def configs(tiny_model_dir, tiny_cond_model_dir) -> dict[str, TrainConfig]:
    """HRF with three batches of different starts (so different timesteps, trained-step counts and window-scaled
    clip ranges) and the KL penalty; and a prompted, guided one (each row's prompt, a UNet call of twice the
    rows)."""
    base = dict(method="hrf", window=(2, 8), num_steps=8, epochs=1, samples_per_epoch=12, batch_size=4, siblings=2,
                eval_samples=4, device="cpu", clip_range=1e-3, window_scaled_clip=True)
    return {
        "hrf-kl": TrainConfig(model=str(tiny_model_dir), kl_coef=0.5, seed=1,
                              **base).validate(),
        "prompted": TrainConfig(model=str(tiny_cond_model_dir), prompts=("0", "1", "2"), guidance=2.0,
                                reward="ink", seed=1, **base).validate(),
    }


# rows of several batches, in the order of a drawn chunk (not sorted by batch)
CHUNK = [(2, 1), (0, 3), (1, 0), (0, 0), (2, 2), (1, 3), (0, 2)]


@pytest.mark.parametrize("case", ["hrf-kl", "prompted"])
def test_gathered_calls_give_the_per_batch_gradient_in_float64(tiny_model_dir, tiny_cond_model_dir, tmp_path, case):
    """Rows of several batches (different starts, timesteps, trained-step counts, clip ranges, prompts) in one call:
    the gradient is the per-batch calls' to float64 rounding, in fewer calls, none over train_batch_size rows."""
    config = configs(tiny_model_dir, tiny_cond_model_dir)[case].replace(train_batch_size=6)
    trainer, batches = sampled(config, tmp_path, torch.float64)
    assert len({len(batch.trained) for batch in batches.values()}) > 1
    update, diagnostics = trainer.update, UpdateDiagnostics(trainer.device)
    new, new_calls = gradients(trainer, lambda: update._chunk_backward(batches, CHUNK, diagnostics, first=True))
    old, old_calls = gradients(trainer, lambda: per_batch_backward(update, batches, CHUNK))
    pairs = sum(len(batch.trained) * sum(bb == b for bb, _ in CHUNK) for b, batch in batches.items())
    rows = 2 if config.guidance != 1 else 1  # guidance doubles a call's UNet rows
    assert sum(new_calls) == sum(old_calls) == pairs * rows
    assert len(new_calls) == -(-pairs // 6) < len(old_calls) and max(new_calls) <= 6 * rows
    assert 0 < float(diagnostics.sums["clipped"]) < pairs  # some rows clipped, some not
    assert float(diagnostics.sums["rows"]) == pairs
    for a, b in zip(new, old, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_the_same_calls_give_the_same_gradient_bit_for_bit(tiny_model_dir, tiny_cond_model_dir, tmp_path):
    """Where every batch's pairs fill whole calls (here 2 rows of each batch, calls of 2 rows), the gathered calls
    are the per-batch calls: the float32 gradient is the old one bit for bit."""
    config = configs(tiny_model_dir, tiny_cond_model_dir)["hrf-kl"].replace(train_batch_size=2)
    trainer, batches = sampled(config, tmp_path, torch.float32)
    chunk = [(2, 1), (0, 3), (1, 0), (0, 0), (2, 2), (1, 3)]
    update = trainer.update
    new, new_calls = gradients(trainer, lambda: update._chunk_backward(batches, chunk, UpdateDiagnostics(
        trainer.device), first=True))
    old, old_calls = gradients(trainer, lambda: per_batch_backward(update, batches, chunk))
    assert new_calls == old_calls
    assert all(torch.equal(a, b) for a, b in zip(new, old, strict=True))


# -- the update is a unit: it returns what it did, and the trainer applies it -----------------------------------
@pytest.mark.parametrize("stop_at", ["update", "sampling"])
def test_a_stop_checkpoints_the_last_epoch_only_while_its_weights_are_unchanged(tiny_model_dir, tmp_path, stop_at):
    """A stop in epoch 2 after its first optimiser step (``UpdateResult.steps`` = 1, ``stopped``) saves nothing:
    the weights are no epoch's any more; a stop in epoch 2's sampling saves epoch 1's weights. (Seen failing with
    the trainer ignoring the result's steps: the first case then saved a checkpoint of moved weights.)"""
    import threading

    config = TrainConfig(model=str(tiny_model_dir), method="hrf", window=(4, 8), num_steps=10, epochs=3,
                         samples_per_epoch=8, batch_size=4, siblings=2, train_batch_size=4, updates_per_epoch=2,
                         eval_samples=8, eval_every=5, checkpoint_every=5, device="cpu").validate()
    run, stop = RunStore(tmp_path).create(config.to_dict()), threading.Event()
    trainer = Trainer(config, run, stop_event=stop)
    results = []
    run_update = trainer.update.run
    trainer.update.run = lambda batches, epoch: results.append(run_update(batches, epoch)) or results[-1]
    step = trainer.optimizer.step

    def stepped(*args, **kwargs):
        out = step(*args, **kwargs)
        if trainer.epoch == 1 and stop_at == "update":
            stop.set()  # after epoch 2's first optimiser step
        return out

    trainer.optimizer.step = stepped
    if stop_at == "sampling":
        trainer.unet.register_forward_pre_hook(lambda m, a: stop.set() if trainer.epoch == 1 else None)
    assert trainer.train() == "stopped" and trainer.epoch == 1
    if stop_at == "update":
        assert (results[-1].steps, results[-1].stopped, dict(results[-1])) == (1, True, {})
        assert run.checkpoints() == []
    else:
        assert len(results) == 1 and results[0].steps == 2 and not results[0].stopped
        assert set(results[0]) >= {"approx_kl", "clip_fraction", "loss", "grad_norm", "first_ratio_deviation"}
        assert [p.name for p in run.checkpoints()] == ["epoch-0001"]
