"""Extremal perturbation: the fixed-area mask finds the one region that matters."""

import pytest
import torch

from captum_rise import ExtremalPerturbation
from captum_rise.extremal_perturbation import SmoothMaxMask, area_penalty
from conftest import BoxEnergy

AREA = 64 * 64 / 224**2


@pytest.mark.parametrize("variant", [pytest.param("preserve", marks=pytest.mark.slow), "delete"])
def test_fixed_area_mask_finds_the_box(variant):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 224, 224)
    model = BoxEnergy()
    assert abs(float(torch.softmax(model(x), dim=1)[0, 0]) - 0.997) < 0.001
    # 200 of the paper's 800 iterations keep the test short; the box is found by then.
    mask = ExtremalPerturbation(model).attribute(
        x, target=0, areas=[AREA], n_iter=200, variant=variant
    )
    assert mask.shape == x.shape
    assert model.top_region_iou(mask[0].sum(dim=0), AREA) > 0.5
    assert abs(float(mask.mean()) - AREA) < 0.05  # the area constraint holds


def test_several_areas_and_examples_in_one_run(tiny_convnet):
    x = torch.rand(2, 3, 32, 32)
    masks = ExtremalPerturbation(tiny_convnet).attribute(
        x, target=[0, 1], areas=[0.1, 0.3], n_iter=30, step=4, sigma=6.0
    )
    assert masks.shape == (2, 2, 3, 32, 32)
    assert masks.min() >= 0 and masks.max() <= 1
    means = masks.mean(dim=(2, 3, 4))
    assert torch.all(means[:, 1] > means[:, 0])  # a larger area gives a larger mask


def test_model_is_left_as_found(tiny_convnet):
    tiny_convnet.train()
    tiny_convnet.head.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in tiny_convnet.state_dict().items()}
    ExtremalPerturbation(tiny_convnet).attribute(
        torch.rand(1, 3, 16, 16), target=0, n_iter=3, step=4, sigma=4.0
    )
    assert tiny_convnet.training and not tiny_convnet.head.weight.requires_grad
    assert all(p.grad is None for p in tiny_convnet.parameters())
    assert all(torch.equal(before[k], v) for k, v in tiny_convnet.state_dict().items())


def test_smooth_max_mask_and_area_penalty():
    generator = SmoothMaxMask(40, 40, 4, 6.0, 0.1, torch.device("cpu"))
    params = torch.zeros(1, 1, *generator.grid)
    params[0, 0, 5, 5] = 1.0  # one parameter at pixel (20, 20)
    mask = generator(params)[0, 0]
    assert mask[20, 20] > 0.9 and mask[0, 0] < 0.05 and mask[20, 30] < mask[20, 24]
    full = torch.zeros(1, 1, 10, 10)
    full[..., :5, :] = 1  # exactly half
    torch.testing.assert_close(area_penalty(full, torch.tensor([0.5])), torch.tensor([0.0]))
    assert area_penalty(full, torch.tensor([0.2])) > 0


def test_bad_arguments_are_clear_errors(tiny_convnet):
    method = ExtremalPerturbation(tiny_convnet)
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="areas must be fractions"):
        method.attribute(x, target=0, areas=[1.5])
    with pytest.raises(ValueError, match="variant must be one of"):
        method.attribute(x, target=0, variant="keep")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        method.attribute(torch.rand(3, 16, 16), target=0)
