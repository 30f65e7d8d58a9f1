"""float16 / bfloat16 inputs and channels_last layouts, through every method and metric."""

import pytest
import torch

from captum_rise import RISE, HSICAttribution, SaliencyAccumulator, deletion, insertion
from captum_rise.masks import CellMaskSampler, GridMaskSampler, GroupIndex, GroupMaskSampler
from conftest import TinyConvNet

HALF_TYPES = [torch.float16, torch.bfloat16]


def model_in(dtype):
    torch.manual_seed(1)
    return TinyConvNet().eval().to(dtype)


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_samplers_render_in_the_requested_dtype(dtype):
    shape = torch.Size((2, 3, 16, 16))
    cpu = torch.device("cpu")
    params = torch.rand(5, 60)
    grid = GridMaskSampler([shape], 7, 0.5, cpu, dtype)
    cells = CellMaskSampler([shape], 4, 0.5, cpu, dtype)
    ids = torch.arange(4).reshape(1, 1, 2, 2).repeat_interleave(8, 2).repeat_interleave(8, 3)
    groups = GroupMaskSampler(GroupIndex((ids,), (torch.rand(shape),)), 0.5, cpu, dtype)
    for sampler in (grid, cells, groups):
        (masks,) = sampler.render(params[:, : sampler.n_params])
        assert masks.dtype == dtype and float(masks.min()) >= 0 and float(masks.max()) <= 1
    # the same masks as in float32, to the dtype's rounding
    (reference,) = GridMaskSampler([shape], 7, 0.5, cpu).render(params[:, : grid.n_params])
    torch.testing.assert_close(
        grid.render(params[:, : grid.n_params])[0].float(), reference, atol=1e-2, rtol=0
    )


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_rise_in_half_precision_matches_float32(dtype):
    x = torch.rand(2, 3, 16, 16)
    reference = RISE(model_in(torch.float32)).attribute(x, target=1, n_masks=512, seed=0)
    attr = RISE(model_in(dtype)).attribute(x.to(dtype), target=1, n_masks=512, seed=0)
    assert attr.dtype == dtype and attr.shape == x.shape
    # scores and masks are rounded to the dtype, the sums are not
    torch.testing.assert_close(attr.float(), reference, atol=5e-3, rtol=2e-2)
    classes = RISE(model_in(dtype)).attribute_classes(
        x.to(dtype), classes=[1, 2], n_masks=64, seed=0
    )
    assert classes.dtype == dtype


def test_accumulator_sums_half_precision_chunks_in_float32():
    n, p = 4096, 8
    masks = torch.rand(n, 1, p).to(torch.float16)
    scores = torch.rand(n, 1, 1).to(torch.float16)
    accumulator = SaliencyAccumulator(1, 1, [(1, p)], torch.device("cpu"), torch.float32)
    for lo in range(0, n, 16):
        accumulator.add(scores[lo : lo + 16], (masks[lo : lo + 16],))
    (saliency,) = accumulator.saliency(p_keep=1.0)
    exact = (scores.double()[:, 0, 0, None] * masks.double()[:, 0]).sum(0) / n
    assert saliency.dtype == torch.float32
    torch.testing.assert_close(saliency[0, 0].double(), exact, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_hsic_and_metrics_in_half_precision(dtype):
    x = torch.rand(2, 3, 16, 16)
    model = model_in(dtype)
    reference = HSICAttribution(model_in(torch.float32)).attribute(
        x, target=1, n_designs=64, grid_size=4, seed=0
    )
    hsic = HSICAttribution(model).attribute(
        x.to(dtype), target=1, n_designs=64, grid_size=4, seed=0
    )
    assert hsic.dtype == dtype
    assert torch.corrcoef(torch.stack([hsic.float().flatten(), reference.flatten()]))[0, 1] > 0.9
    saliency = torch.rand(2, 1, 16, 16)
    for curve in (deletion, insertion):
        half = curve(model, x.to(dtype), saliency.to(dtype), [1, 2])
        full = curve(model_in(torch.float32), x, saliency, [1, 2])
        assert half.auc.dtype == torch.float32
        torch.testing.assert_close(half.auc, full.auc, atol=2e-2, rtol=0)


def recording(model, seen):
    def forward(x):
        seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return model(x)

    return forward


def test_channels_last_inputs_give_channels_last_batches(tiny_convnet):
    x = torch.rand(2, 3, 16, 16)
    last = x.contiguous(memory_format=torch.channels_last)
    seen = []
    attr = RISE(recording(tiny_convnet, seen)).attribute(last, target=1, n_masks=64, seed=0)
    assert seen and all(seen)
    torch.testing.assert_close(attr, RISE(tiny_convnet).attribute(x, target=1, n_masks=64, seed=0))
    seen.clear()
    HSICAttribution(recording(tiny_convnet, seen)).attribute(
        last, target=1, n_designs=16, grid_size=4, seed=0
    )
    assert seen and all(seen)
    seen.clear()
    deletion(recording(tiny_convnet, seen), last, torch.rand(2, 1, 16, 16), [1, 2])
    assert seen and all(seen)
    seen.clear()
    RISE(recording(tiny_convnet, seen)).attribute(x, target=1, n_masks=8, seed=0)
    assert not any(seen)  # contiguous in, contiguous out
