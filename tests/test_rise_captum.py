"""RISE follows Captum's conventions."""

import pytest
import torch
from captum.attr import NoiseTunnel
from captum.metrics import infidelity, sensitivity_max

from captum_rise import RISE

KW = dict(n_masks=64, perturbations_per_eval=16, seed=3)


def test_identity_and_decorators():
    assert RISE.get_name() == "RISE"
    assert RISE(lambda x: x).multiplies_by_inputs is False
    assert hasattr(RISE.attribute, "__wrapped__")
    assert hasattr(RISE.attribute_classes, "__wrapped__")


def test_tensor_input_gives_tensor_of_same_shape(tiny_convnet):
    x = torch.rand(3, 3, 16, 16)
    attr = RISE(tiny_convnet).attribute(x, target=2, **KW)
    assert isinstance(attr, torch.Tensor) and attr.shape == x.shape
    # broadcast over channels
    torch.testing.assert_close(attr[:, 0], attr[:, 2])


def test_tuple_inputs_give_tuple_of_same_shapes():
    torch.manual_seed(0)
    image_weights = torch.randn(3 * 8 * 8)
    tab_weights = torch.randn(5)

    def model(image, table):
        return image.flatten(1) @ image_weights + table @ tab_weights

    inputs = (torch.rand(2, 3, 8, 8), torch.rand(2, 5))
    attr = RISE(model).attribute(inputs, grid_size=2, **KW)
    assert isinstance(attr, tuple) and len(attr) == 2
    assert attr[0].shape == inputs[0].shape and attr[1].shape == inputs[1].shape
    single = RISE(model).attribute((inputs[0][:1], inputs[1][:1]), grid_size=2, **KW)
    torch.testing.assert_close(single[1], attr[1][:1])


def test_every_target_form_selects_the_same_scores(tiny_convnet):
    x = torch.rand(2, 3, 16, 16)
    rise = RISE(tiny_convnet)
    per_example = torch.stack(
        [rise.attribute(x[i : i + 1], target=t, **KW)[0] for i, t in enumerate([1, 4])]
    )
    for target in ([1, 4], torch.tensor([1, 4]), [(1,), (4,)]):
        torch.testing.assert_close(rise.attribute(x, target=target, **KW), per_example)
    by_int = rise.attribute(x, target=3, **KW)
    for target in ((3,), torch.tensor(3)):
        torch.testing.assert_close(rise.attribute(x, target=target, **KW), by_int)


def test_scalar_output_with_target_none():
    x = torch.rand(2, 3, 16, 16)

    def word_probability(inp):  # a black box returning one score per example
        return torch.sigmoid(inp[:, 0, :8, :8].mean(dim=(1, 2)))

    attr = RISE(word_probability).attribute(x, **KW)
    assert attr.shape == x.shape and torch.isfinite(attr).all()


def test_additional_forward_args_tensor_and_non_tensor(tiny_convnet):
    x = torch.rand(2, 3, 16, 16)
    offset = torch.rand(2, 3, 16, 16)

    def model(inp, extra, scale):
        return tiny_convnet((inp + extra) * scale)

    rise_args = RISE(model).attribute(x, target=0, additional_forward_args=(offset, 2.0), **KW)
    reference = torch.stack(
        [
            RISE(lambda inp, i=i: tiny_convnet((inp + offset[i : i + 1]) * 2.0)).attribute(
                x[i : i + 1], target=0, **KW
            )[0]
            for i in range(2)
        ]
    )
    torch.testing.assert_close(rise_args, reference)


def test_batch_equals_examples_one_by_one(tiny_convnet):
    x = torch.rand(4, 3, 16, 16)
    batch = RISE(tiny_convnet).attribute(x, target=1, **KW)
    for i in range(4):
        single = RISE(tiny_convnet).attribute(x[i : i + 1], target=1, **KW)
        torch.testing.assert_close(single[0], batch[i])


@pytest.mark.parametrize("perturbations_per_eval", [1, 5, 64, 100])
def test_invariant_to_perturbations_per_eval(tiny_convnet, perturbations_per_eval):
    x = torch.rand(2, 3, 16, 16)
    reference = RISE(tiny_convnet).attribute(x, target=1, n_masks=64, seed=5)
    attr = RISE(tiny_convnet).attribute(
        x, target=1, n_masks=64, seed=5, perturbations_per_eval=perturbations_per_eval
    )
    torch.testing.assert_close(attr, reference)


def test_seed_reproducible_and_different_seeds_differ(tiny_convnet):
    x = torch.rand(1, 3, 16, 16)
    fixed = dict(n_masks=32, perturbations_per_eval=4)
    a = RISE(tiny_convnet).attribute(x, target=1, seed=1, **fixed)
    b = RISE(tiny_convnet).attribute(x, target=1, seed=1, **fixed)
    c = RISE(tiny_convnet).attribute(x, target=1, seed=2, **fixed)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # The automatic chunk size may differ between runs; a model's outputs for a
    # batch depend on its size at the last bit, so the maps agree to rounding.
    automatic = RISE(tiny_convnet).attribute(x, target=1, n_masks=32, seed=1)
    torch.testing.assert_close(automatic, a)
    assert not torch.allclose(automatic, c)


def test_baselines_scalar_and_tensor(tiny_convnet):
    x = torch.rand(2, 3, 16, 16)
    rise = RISE(tiny_convnet)
    zero = rise.attribute(x, target=0, **KW)
    torch.testing.assert_close(rise.attribute(x, baselines=0.0, target=0, **KW), zero)
    gray = rise.attribute(x, baselines=0.5, target=0, **KW)
    gray_tensor = rise.attribute(x, baselines=torch.full((1, 3, 1, 1), 0.5), target=0, **KW)
    torch.testing.assert_close(gray, gray_tensor)
    assert not torch.allclose(gray, zero)
    # a baseline equal to the input makes every masked copy the input: S = f(x)
    same = rise.attribute(x, baselines=x, target=0, normalization="coverage", **KW)
    expected = tiny_convnet(x)[:, 0].reshape(2, 1, 1, 1).expand_as(x)
    torch.testing.assert_close(same, expected)


def test_feature_mask_shared_and_per_example(tiny_convnet):
    x = torch.rand(2, 3, 16, 16)
    quadrants = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    quadrants[..., :8, 8:] = 1
    quadrants[..., 8:, :8] = 2
    quadrants[..., 8:, 8:] = 3
    rise = RISE(tiny_convnet)
    shared = rise.attribute(x, target=1, feature_mask=quadrants, **KW)
    assert shared.shape == x.shape
    # constant within a group
    assert torch.allclose(shared[:, :, :8, :8], shared[:, :1, :1, :1].expand(2, 3, 8, 8))
    per_example = rise.attribute(x, target=1, feature_mask=quadrants.expand(2, 1, 16, 16), **KW)
    torch.testing.assert_close(per_example, shared)
    # a 2-D mask broadcast over batch and channels
    torch.testing.assert_close(
        rise.attribute(x, target=1, feature_mask=quadrants[0, 0], **KW), shared
    )


def test_feature_mask_on_token_input():
    tokens = torch.rand(3, 10, 4)  # (batch, tokens, embedding)
    weights = torch.randn(10)

    def model(emb):
        return emb.sum(-1) @ weights

    token_groups = torch.arange(10).reshape(1, 10, 1)
    attr = RISE(model).attribute(tokens, feature_mask=token_groups, **KW)
    assert attr.shape == tokens.shape
    torch.testing.assert_close(attr[..., 0], attr[..., 3])


def test_attribute_classes_matches_one_target_at_a_time(tiny_convnet):
    x = torch.rand(2, 3, 16, 16)
    rise = RISE(tiny_convnet)
    maps = rise.attribute_classes(x, classes=[4, 0], **KW)
    assert maps.shape == (2, 2, 3, 16, 16)
    torch.testing.assert_close(maps[:, 0], rise.attribute(x, target=4, **KW))
    torch.testing.assert_close(maps[:, 1], rise.attribute(x, target=0, **KW))
    every = rise.attribute_classes(x, **KW)
    assert every.shape == (2, 5, 3, 16, 16)
    torch.testing.assert_close(every[:, 4], maps[:, 0])
    # the sums are kept once per pixel, not per channel
    assert every.stride(2) == 0


def test_noise_tunnel_wraps_rise(tiny_convnet):
    x = torch.rand(2, 3, 16, 16)
    nt = NoiseTunnel(RISE(tiny_convnet))
    attr = nt.attribute(x, nt_type="smoothgrad", nt_samples=3, stdevs=0.1, target=1, **KW)
    assert attr.shape == x.shape and torch.isfinite(attr).all()


def test_captum_infidelity_and_sensitivity_accept_rise(tiny_convnet):
    x = torch.rand(2, 3, 16, 16)
    rise = RISE(tiny_convnet)
    attr = rise.attribute(x, target=1, **KW)

    def perturb(inputs):
        noise = 0.05 * torch.randn_like(inputs)
        return noise, inputs - noise

    infid = infidelity(tiny_convnet, perturb, x, attr, target=1, n_perturb_samples=4)
    assert infid.shape == (2,) and torch.isfinite(infid).all()
    sens = sensitivity_max(
        rise.attribute, x, target=1, n_perturb_samples=2, perturb_radius=0.01, **KW
    )
    assert sens.shape == (2,) and torch.isfinite(sens).all()


def test_model_is_left_as_found(tiny_convnet):
    tiny_convnet.train()
    tiny_convnet.head.weight.requires_grad_(False)
    flags = [p.requires_grad for p in tiny_convnet.parameters()]
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    attr = RISE(tiny_convnet).attribute(x, target=1, **KW)
    assert tiny_convnet.training
    assert [p.requires_grad for p in tiny_convnet.parameters()] == flags
    assert attr.grad_fn is None and not attr.requires_grad
    assert all(p.grad is None for p in tiny_convnet.parameters())


@pytest.mark.parametrize("perturbations_per_eval", [16, 5, None])
def test_show_progress_counts_masks(tiny_convnet, capsys, perturbations_per_eval):
    x = torch.rand(1, 3, 16, 16)
    RISE(tiny_convnet).attribute(
        x, target=0, show_progress=True, n_masks=64, perturbations_per_eval=perturbations_per_eval
    )
    err = capsys.readouterr().err
    assert "RISE attribution" in err and "64/64" in err and "mask" in err


@pytest.mark.gpu
def test_masks_are_made_on_the_inputs_device(tiny_convnet):
    model = tiny_convnet.cuda()
    x = torch.rand(2, 3, 16, 16, device="cuda")
    attr = RISE(model).attribute(x, target=1, **KW)
    assert attr.device == x.device
    cpu = RISE(tiny_convnet.cpu()).attribute(x.cpu(), target=1, **KW)
    assert cpu.shape == attr.shape
