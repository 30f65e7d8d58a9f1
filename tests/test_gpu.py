"""CUDA paths: the same seed gives the same maps as on the CPU, memory is flat in N,
and the automatic chunk size survives a real out-of-memory error.

Every test here is marked ``gpu`` and skipped where there is no CUDA device.
"""

import time

import pytest
import torch

from captum_rise import RISE, HSICAttribution, SaliencyAccumulator, batching, deletion, insertion
from captum_rise._forward import blend
from captum_rise.masks import (
    CellMaskSampler,
    GridMaskSampler,
    GroupIndex,
    GroupMaskSampler,
    make_generator,
)
from conftest import TinyConvNet

pytestmark = pytest.mark.gpu


@pytest.fixture
def models():
    torch.manual_seed(1)
    cpu = TinyConvNet().eval()
    cuda = TinyConvNet().eval()
    cuda.load_state_dict(cpu.state_dict())
    return cpu, cuda.cuda()


def test_samplers_give_the_same_masks_on_cuda():
    shape = torch.Size((2, 3, 20, 20))
    ids = torch.arange(25).reshape(1, 1, 5, 5).repeat_interleave(4, 2).repeat_interleave(4, 3)
    for make in (
        lambda d: GridMaskSampler([shape], 7, 0.5, d),
        lambda d: CellMaskSampler([shape], 4, 0.5, d),
        lambda d: GroupMaskSampler(
            GroupIndex((ids.to(d),), (torch.rand(shape, device=d),)), 0.5, d
        ),
    ):
        on_cpu = torch.cat(
            [m[0] for m in make(torch.device("cpu")).chunks(300, 64, make_generator(3))]
        )
        on_cuda = torch.cat(
            [m[0] for m in make(torch.device("cuda")).chunks(300, 64, make_generator(3))]
        )
        assert on_cuda.device.type == "cuda"
        torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=1e-6, rtol=0)


def test_rise_and_hsic_same_seed_same_map_on_cpu_and_cuda(models):
    cpu_model, cuda_model = models
    x = torch.rand(2, 3, 16, 16)
    for method, kwargs in (
        (RISE, dict(n_masks=500, seed=7)),
        (HSICAttribution, dict(n_designs=128, grid_size=4, seed=7)),
    ):
        on_cpu = method(cpu_model).attribute(x, target=[1, 3], **kwargs)
        on_cuda = method(cuda_model).attribute(x.cuda(), target=[1, 3], **kwargs)
        assert on_cuda.device.type == "cuda"
        torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=1e-4, rtol=1e-3)
    classes_cpu = RISE(cpu_model).attribute_classes(x, n_masks=300, seed=2)
    classes_cuda = RISE(cuda_model).attribute_classes(x.cuda(), n_masks=300, seed=2)
    torch.testing.assert_close(classes_cuda.cpu(), classes_cpu, atol=1e-4, rtol=1e-3)


def test_accumulator_blend_and_metrics_on_cuda(models):
    cpu_model, cuda_model = models
    x = torch.rand(2, 3, 16, 16)
    saliency = torch.rand(2, 1, 16, 16)
    for curve in (deletion, insertion):
        on_cpu = curve(cpu_model, x, saliency, [0, 4])
        on_cuda = curve(cuda_model, x.cuda(), saliency.cuda(), [0, 4])
        torch.testing.assert_close(on_cuda.auc.cpu(), on_cpu.auc, atol=1e-4, rtol=1e-3)
    masks = (torch.rand(5, 1, 1, 16, 16, device="cuda"),)
    (mixed,) = blend((x.cuda(),), (0.5,), masks)
    torch.testing.assert_close(mixed, (0.5 + (x.cuda() - 0.5) * masks[0]).reshape(10, 3, 16, 16))
    accumulator = SaliencyAccumulator(2, 1, [(1, 1, 16, 16)], torch.device("cuda"))
    accumulator.add(torch.rand(5, 2, 1, device="cuda"), (masks[0][:, 0],))
    assert accumulator.saliency(0.5)[0].device.type == "cuda"


def test_half_precision_and_channels_last_on_cuda(models):
    _, cuda_model = models
    x = torch.rand(2, 3, 16, 16, device="cuda")
    reference = RISE(cuda_model).attribute(x, target=1, n_masks=256, seed=0)
    for dtype in (torch.float16, torch.bfloat16):
        model = TinyConvNet().eval().cuda()
        model.load_state_dict(cuda_model.state_dict())
        attr = RISE(model.to(dtype)).attribute(x.to(dtype), target=1, n_masks=256, seed=0)
        assert attr.dtype == dtype
        torch.testing.assert_close(attr.float(), reference, atol=5e-3, rtol=2e-2)
    seen = []

    def forward(inp):
        seen.append(inp.is_contiguous(memory_format=torch.channels_last))
        return cuda_model(inp)

    RISE(forward).attribute(
        x.contiguous(memory_format=torch.channels_last), target=1, n_masks=64, seed=0
    )
    assert all(seen)


def peak_bytes(rise, x, **kwargs):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    rise.attribute(x, target=0, seed=0, **kwargs)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def test_peak_memory_is_flat_in_the_number_of_masks():
    torch.manual_seed(0)
    model = (
        torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 10),
            torch.nn.Softmax(dim=1),
        )
        .cuda()
        .eval()
    )
    x = torch.rand(1, 3, 224, 224, device="cuda")
    rise = RISE(model)
    for kwargs in (dict(perturbations_per_eval=64), {}):  # fixed, then automatic (probed first)
        rise.attribute(x, target=0, n_masks=8000, seed=1, **kwargs)
        small = peak_bytes(rise, x, n_masks=500, **kwargs)
        large = peak_bytes(rise, x, n_masks=8000, **kwargs)
        assert large <= 1.1 * small, (kwargs, large, small)


def test_first_call_meets_one_new_batch_size(models):
    """Issue 19: on a GPU every batch size met for the first time costs a one-off plan;
    the automatic chunk starts at its accelerator size and pads the last call."""
    _, cuda_model = models
    model = TinyConvNet().eval().cuda()
    model.load_state_dict(cuda_model.state_dict())
    sizes = set()
    model.register_forward_pre_hook(lambda module, args: sizes.add(args[0].shape[0]))
    x = torch.rand(1, 3, 224, 224, device="cuda")
    rise = RISE(lambda inp: model(inp))
    saliency = rise.attribute(x, target=1, n_masks=8000, seed=0)
    assert len(sizes) == 1, sorted(sizes)
    rise.attribute(x, target=1, n_masks=3000, seed=1)  # another N: its tail is padded
    RISE(lambda inp: model(inp)).attribute(x, target=1, n_masks=500, seed=2)  # a new closure
    deletion(model, x, saliency, target=1)
    HSICAttribution(model).attribute(x, target=1, seed=0)
    assert len(sizes) == 1, sorted(sizes)


def test_automatic_chunk_survives_a_real_out_of_memory_error(models):
    _, cuda_model = models
    total = torch.cuda.get_device_properties(0).total_memory
    per_image = total // 6  # four images per call fit, eight cannot
    sizes = []

    def hungry_model(x):
        sizes.append(x.shape[0])
        scratch = torch.empty(x.shape[0] * per_image, dtype=torch.uint8, device="cuda")
        scratch[-1] = 0
        time.sleep(0.002)  # a fixed cost per call, so larger chunks pay while they fit
        return cuda_model(x)

    x = torch.rand(1, 3, 16, 16, device="cuda")
    attr = RISE(hungry_model).attribute(x, target=1, n_masks=600, seed=5)
    reference = RISE(cuda_model).attribute(
        x, target=1, n_masks=600, seed=5, perturbations_per_eval=4
    )
    torch.testing.assert_close(attr, reference, atol=1e-5, rtol=1e-4)
    assert max(sizes) * per_image > total  # it did run out of memory
    sizer = batching.sizer_for(hungry_model, (x,))
    assert sizer.limit * per_image < total and sizer.size <= sizer.limit


def test_dataset_runner_on_cuda_matches_the_cpu(tmp_path):
    """The runner on a CUDA model writes the CPU run's AUCs (same image seeds)."""
    from test_evaluation import BoxModel, _assert_same_results, _dataset, _write_images

    from captum_rise.evaluation import evaluate_dataset

    _write_images(tmp_path / "data")
    settings = dict(n_masks=120, n_designs=64, curve_steps=8, show_progress=False)
    methods = ["rise", "hsic", "gradcam", "ig"]
    on_cpu = evaluate_dataset(
        BoxModel(), _dataset(tmp_path / "data"), tmp_path / "cpu", methods, **settings
    )
    on_cuda = evaluate_dataset(
        BoxModel().cuda(), _dataset(tmp_path / "data"), tmp_path / "cuda", methods, **settings
    )
    assert all(row["error"] == "" for row in on_cuda)
    _assert_same_results(on_cuda, on_cpu)
