"""Meaningful perturbation learns the region a synthetic model looks at."""

import pytest
import torch

from captum_rise import MeaningfulPerturbation

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


SETTINGS = dict(n_iter=150, mask_shape=(8, 8), blur_sigma=3.0, l1_coeff=2e-3, seed=0)


@pytest.mark.parametrize("variant", ["delete", "preserve"])
def test_mask_concentrates_on_the_region(variant):
    x = torch.rand(2, 3, H, H)
    attr = MeaningfulPerturbation(texture_of_region).attribute(x, variant=variant, **SETTINGS)
    assert attr.shape == x.shape
    assert float(attr.min()) >= 0.0 and float(attr.max()) <= 1.0
    for b in range(2):
        assert _iou_of_top_pixels(attr[b]) >= 0.5


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
