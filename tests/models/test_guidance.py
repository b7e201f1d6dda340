"""Classifier-free guidance (hrf_core.models.guidance.guided_eps) on a tiny random class-conditional UNet."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_scheduler
from diffusers import UNet2DModel

from hrf_core.models.guidance import guided_eps
from hrf_core.models.pretrain import sample_ddim

CLASSES = 5  # 4 classes + the null class 4
NULL = CLASSES - 1


@pytest.fixture(scope="module")
def unet() -> UNet2DModel:
    torch.manual_seed(0)
    model = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=CLASSES,
    ).eval()
    with torch.no_grad():
        model.class_embedding.weight.mul_(3.0)  # make the classes matter
    return model


def _inputs(batch: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, 1, 8, 8, generator=gen), torch.randint(0, NULL, (batch,), generator=gen)


class CallCounter:
    """A forward hook that records the batch size of every UNet call."""

    def __init__(self, module: torch.nn.Module):
        self.batches: list[int] = []
        self.handle = module.register_forward_hook(lambda _m, args, _out: self.batches.append(args[0].shape[0]))

    def __enter__(self) -> CallCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


@pytest.mark.parametrize("t", [500, torch.tensor(321), torch.tensor([999, 700, 500, 300, 100, 1])],
                         ids=["int", "0-d", "per-row"])
@pytest.mark.parametrize("scale", [0.0, 1.5, 3.0, 7.5])
def test_guided_eps_matches_two_forwards_in_float64(unet, t, scale):
    x, labels = _inputs()
    unet64 = copy.deepcopy(unet).double()
    steps = torch.as_tensor(t).expand(len(x))
    with torch.no_grad():
        eps_u = unet64(x.double(), steps, class_labels=torch.full_like(labels, NULL)).sample
        eps_c = unet64(x.double(), steps, class_labels=labels).sample
        got = guided_eps(unet, x, t, labels, scale, NULL)
    assert (eps_c - eps_u).abs().amax() > 1e-2  # the branches differ, so the order matters
    reference = eps_u + scale * (eps_c - eps_u)
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got.double(), reference, rtol=1e-4, atol=1e-5)


def test_one_batched_unet_call_per_guided_eps(unet):
    x, labels = _inputs()
    with CallCounter(unet) as calls, torch.no_grad():
        guided_eps(unet, x, 10, labels, 2.0, NULL)
    assert calls.batches == [2 * len(x)]  # both branches in one forward
    with CallCounter(unet) as calls, torch.no_grad():
        guided_eps(unet, x, 10, labels, 1.0, NULL)
    assert calls.batches == [len(x)]  # scale 1: the conditional branch only


def test_scale_one_is_the_conditional_eps_exactly(unet):
    x, labels = _inputs()
    with torch.no_grad():
        got = guided_eps(unet, x, torch.tensor(250), labels, 1.0, NULL)
        expected = unet(x, torch.full((len(x),), 250), class_labels=labels).sample
        one_label = guided_eps(unet, x, 250, 2, 1.0, NULL)
    assert torch.equal(got, expected)
    torch.testing.assert_close(one_label, unet(x, torch.full((len(x),), 250), class_labels=torch.full((6,), 2)).sample)


def test_bf16_autocast_returns_float32(unet):
    x, labels = _inputs()
    with torch.no_grad():
        low = guided_eps(unet, x, 400, labels, 3.0, NULL, autocast_bf16=True)
        full = guided_eps(unet, x, 400, labels, 3.0, NULL)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, full, rtol=0.1, atol=0.1)


def test_guided_eps_rejects_mismatched_labels(unet):
    x, _ = _inputs()
    with pytest.raises(ValueError, match="labels has shape"):
        guided_eps(unet, x, 10, torch.tensor([0, 1]), 2.0, NULL)


def test_sample_ddim_with_labels_uses_one_guided_call_per_step(unet):
    sched = make_scheduler()
    labels = torch.tensor([0, 1, 2, 3])
    with CallCounter(unet) as calls:
        x = sample_ddim(unet, sched, 4, steps=5, eta=1.0, seed=0, batch=4, labels=labels, guidance=3.0)
    assert calls.batches == [8] * 5 and x.shape == (4, 1, 8, 8)
    torch.testing.assert_close(x, sample_ddim(unet, sched, 4, steps=5, seed=0, batch=4, labels=labels, guidance=3.0))
    assert not torch.equal(x, sample_ddim(unet, sched, 4, steps=5, seed=0, batch=4, labels=labels, guidance=1.0))
    with pytest.raises(ValueError, match="labels has shape"):
        sample_ddim(unet, sched, 4, steps=5, labels=labels[:3])
