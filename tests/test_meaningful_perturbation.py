"""Meaningful perturbation learns the region a synthetic model looks at."""

import pytest
import torch

from captum_rise import MeaningfulPerturbation
from captum_rise._forward import ModelScorer
from captum_rise.meaningful_perturbation import log_probability_and_complement
from conftest import BoxEnergy

H = 32
REGION = torch.zeros(H, H, dtype=torch.bool)
REGION[4:16, 12:28] = True


def texture_of_region(x):
    """~1 while the noise texture inside REGION is intact, ~0 once it is blurred away."""
    return x[:, :, REGION].var(dim=(1, 2)) / 0.083


def _iou_of_top_pixels(attribution):
    k = int(REGION.sum())
    top = torch.zeros(H * H, dtype=torch.bool)
    top[attribution[0].flatten().argsort(descending=True)[:k]] = True
    top = top.reshape(H, H)
    return float((top & REGION).sum() / (top | REGION).sum())


# Coefficients are per pixel of a 224x224 image: these weigh the sums over 32x32 by 2e-3 and 1e-2.
SETTINGS = dict(
    n_iter=150,
    mask_shape=(8, 8),
    blur_sigma=3.0,
    l1_coeff=2e-3 * (H / 224) ** 2,
    tv_coeff=1e-2 * (H / 224) ** 2,
    seed=0,
)


@pytest.mark.parametrize("variant", ["delete", "preserve"])
def test_mask_concentrates_on_the_region(variant):
    x = torch.rand(2, 3, H, H)
    attr = MeaningfulPerturbation(texture_of_region).attribute(x, variant=variant, **SETTINGS)
    assert attr.shape == x.shape
    assert float(attr.min()) >= 0.0 and float(attr.max()) <= 1.0
    for b in range(2):
        assert _iou_of_top_pixels(attr[b]) >= 0.5


@pytest.mark.parametrize("size", [56, 224, pytest.param(448, marks=pytest.mark.slow)])
def test_default_call_finds_the_box_of_a_confident_model_at_any_size(size):
    # The paper's objective deleted nothing here at 224 and 448 (IoU 0.03): the
    # probability saturates at 0.997 and its L1 term grew with the pixel count.
    x = torch.rand(1, 3, size, size)
    model = BoxEnergy(size)
    assert abs(float(torch.softmax(model(x), dim=1)[0, 0]) - 0.997) < 0.001
    attr = MeaningfulPerturbation(model).attribute(x, target=0, seed=0)
    assert model.top_region_iou(attr[0, 0], 64 * 64 / 224**2) >= 0.5


def test_preserve_keeps_a_region_inside_the_box():
    # Any part of the box keeps class 0, so the smallest preserved region is
    # a part of it: its mass lies inside the box.
    x = torch.rand(1, 3, 224, 224)
    model = BoxEnergy()
    attr = MeaningfulPerturbation(model).attribute(x, target=0, variant="preserve", seed=0)
    assert float(attr[0, 0][model.box_mask()].sum() / attr[0, 0].sum()) > 0.9


def test_log_probability_and_complement_are_exact_when_saturated():
    logits = torch.tensor([[30.0, 0.0, -1.0], [0.5, 0.2, 0.1], [-40.0, 3.0, 2.0]])
    logits.requires_grad_(True)
    columns = torch.tensor([0, 2, 0])
    log_p, log_not_p = log_probability_and_complement(logits, columns)
    exact = torch.softmax(logits.detach().double(), dim=1).gather(1, columns[:, None])[:, 0]
    rest = (
        torch.exp(logits.detach().double()[[0, 0], [1, 2]]).sum()
        / torch.exp(logits.detach().double()[0]).sum()
    )
    torch.testing.assert_close(log_p.double(), exact.log(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log_not_p[1:].double(), (1 - exact[1:]).log(), rtol=1e-5, atol=1e-6)
    # p = 1 - 1e-13 in float32 is 1.0; the complement is still e^-30-ish, not log(0)
    torch.testing.assert_close(log_not_p[0].double(), rest.log(), rtol=1e-5, atol=1e-6)
    (gradient,) = torch.autograd.grad(log_not_p.sum(), logits)
    assert torch.isfinite(gradient).all()


@pytest.mark.parametrize(
    "target, expected",
    [(2, [2, 2]), ([1, 0], [1, 0]), (torch.tensor([0, 3]), [0, 3]), (torch.tensor(1), [1, 1])],
)
def test_target_columns_follow_every_captum_target_form(target, expected):
    scorer = ModelScorer(lambda x: x, 2, None, target=target)
    output = torch.rand(4, 5)  # 2 perturbations of 2 examples, mask-major
    assert scorer.target_columns(output, 2).tolist() == expected * 2


def test_seed_determinism_and_batch_of_masks_optimised_together():
    x = torch.rand(2, 3, H, H)
    mp = MeaningfulPerturbation(texture_of_region)
    a = mp.attribute(x, **{**SETTINGS, "n_iter": 20})
    b = mp.attribute(x, **{**SETTINGS, "n_iter": 20})
    torch.testing.assert_close(a, b)
    single = mp.attribute(x[1:], **{**SETTINGS, "n_iter": 20})
    torch.testing.assert_close(single[0], a[1], rtol=1e-4, atol=1e-5)


def test_model_state_is_left_as_found(tiny_convnet):
    tiny_convnet.train()
    tiny_convnet.head.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in tiny_convnet.state_dict().items()}
    flags = [p.requires_grad for p in tiny_convnet.parameters()]
    attr = MeaningfulPerturbation(tiny_convnet).attribute(
        torch.rand(2, 3, 16, 16), target=[1, 2], n_iter=5, seed=0
    )
    assert attr.shape == (2, 3, 16, 16) and not attr.requires_grad
    assert tiny_convnet.training
    assert [p.requires_grad for p in tiny_convnet.parameters()] == flags
    assert all(p.grad is None for p in tiny_convnet.parameters())
    for key, value in tiny_convnet.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_errors():
    mp = MeaningfulPerturbation(texture_of_region)
    with pytest.raises(ValueError, match="variant"):
        mp.attribute(torch.rand(1, 3, H, H), variant="extremal")
    with pytest.raises(ValueError, match="mask_shape"):
        mp.attribute(torch.rand(1, 3, H, H), mask_shape=(64, 64))
    with pytest.raises(ValueError, match="inputs"):
        mp.attribute(torch.rand(3, H, H))
    with pytest.raises(ValueError, match="n_iter"):
        mp.attribute(torch.rand(1, 3, H, H), n_iter=0)
