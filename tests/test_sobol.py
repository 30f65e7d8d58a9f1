"""Sobol' attribution: closed forms, brute force, the estimator, conventions, errors.

Tolerances: at ``n_designs=1024`` the largest error over seeds 0..99 was 0.0013
(linear model), 0.0063 (product) and 0.0068 (nonlinear model against quadrature);
the tests allow 0.02, three times the worst of 100 seeds, with fixed seeds.
"""

import numpy as np
import pytest
import torch

from captum_rise import ALWAYS_KEPT, SobolAttribution
from captum_rise.sobol import SaltelliDesign, jansen_total_indices

ESTIMATE_ATOL = 0.02


def test_linear_model_total_indices_equal_the_closed_form():
    # f(x~) = sum_i a_i x_i M_i: S_Ti = (a_i x_i)^2 / sum_j (a_j x_j)^2 for i.i.d. masks
    a = torch.tensor([1.0, -2.0, 3.0, 0.5])
    x = torch.tensor([[1.0, 1.0, 2.0, 4.0]])
    truth = (a * x[0]) ** 2 / ((a * x[0]) ** 2).sum()
    attr = SobolAttribution(lambda inp: (inp * a).sum(1)).attribute(
        x, feature_mask=torch.arange(4).reshape(1, 4), n_designs=1024, seed=0
    )
    torch.testing.assert_close(attr[0], truth, atol=ESTIMATE_ATOL, rtol=0)


def test_an_interaction_raises_the_total_indices_of_both_features():
    # f = M0 M1 with uniform masks: S_T0 = S_T1 = 4/7, above the first-order 3/7
    x = torch.ones(1, 3)
    product = SobolAttribution(lambda inp: inp[:, 0] * inp[:, 1]).attribute(
        x, n_designs=1024, seed=1
    )
    torch.testing.assert_close(product[0, :2], torch.full((2,), 4 / 7), atol=ESTIMATE_ATOL, rtol=0)
    assert abs(float(product[0, 2])) <= ESTIMATE_ATOL  # no effect at all
    additive = SobolAttribution(lambda inp: inp.sum(1)).attribute(x, n_designs=1024, seed=1)
    interacting = SobolAttribution(lambda inp: inp.sum(1) + 3 * inp[:, 0] * inp[:, 1]).attribute(
        x, n_designs=1024, seed=1
    )
    ratio = lambda s: s[0, :2] / s[0, 2]
    assert bool((ratio(interacting) > 1.5 * ratio(additive)).all())


def nonlinear(inp):
    return torch.tanh(
        inp @ torch.tensor([1.5, -1.0, 0.7], dtype=inp.dtype) + 2 * inp[:, 0] * inp[:, 2]
    )


def exact_total_indices(f, x, nodes=24):
    """Total indices of the 3 mask variables by tensor Gauss-Legendre quadrature on [0, 1]^3."""
    points, weights = np.polynomial.legendre.leggauss(nodes)
    points = torch.tensor((points + 1) / 2, dtype=torch.float64)
    weights = torch.tensor(weights / 2, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(points, points, points, indexing="ij"), -1).reshape(-1, 3)
    values = f(grid * x.double()).reshape(nodes, nodes, nodes)
    w3 = weights[:, None, None] * weights[None, :, None] * weights[None, None, :]
    mean = (values * w3).sum()
    variance = ((values - mean) ** 2 * w3).sum()
    totals = []
    for i in range(3):
        along = values.movedim(i, 0)
        conditional_mean = (along * weights[:, None, None]).sum(0)
        conditional_variance = ((along - conditional_mean) ** 2 * weights[:, None, None]).sum(0)
        totals.append((conditional_variance * weights[:, None] * weights[None, :]).sum() / variance)
    return torch.stack(totals)


def test_nonlinear_model_matches_brute_force_quadrature():
    x = torch.tensor([[0.8, 1.2, 1.0]])
    exact = exact_total_indices(nonlinear, x)
    attr = SobolAttribution(lambda inp: nonlinear(inp.double()).float()).attribute(
        x, n_designs=1024, seed=0
    )
    torch.testing.assert_close(attr[0].double(), exact, atol=ESTIMATE_ATOL, rtol=0)


def test_saltelli_rows_swap_one_column_and_jansen_reads_them():
    design = SaltelliDesign(4, 3, seed=0, device=torch.device("cpu"))
    rows = design.rows(0, design.n_rows)
    assert rows.shape == (20, 3)
    torch.testing.assert_close(rows[:4], design.a)
    torch.testing.assert_close(rows[4:8], design.b)
    for i in range(3):
        c_i = rows[8 + 4 * i : 12 + 4 * i]
        torch.testing.assert_close(c_i[:, i], design.b[:, i])
        others = [j for j in range(3) if j != i]
        torch.testing.assert_close(c_i[:, others], design.a[:, others])
    torch.testing.assert_close(design.rows(5, 13), rows[5:13])  # made on demand, any chunk
    flat = torch.ones(design.n_rows, 2)
    assert bool((jansen_total_indices(flat, 4) == 0).all())  # no variance: zeros, not NaN


def test_image_maps_follow_the_object_and_do_not_depend_on_chunking(tiny_convnet):
    def box_score(x):  # only the top-left quarter matters
        return x[:, :, :8, :8].mean(dim=(1, 2, 3))

    x = torch.rand(2, 3, 16, 16) + 0.5
    sobol = SobolAttribution(box_score)
    attr = sobol.attribute(x, n_designs=32, grid_size=4, seed=3, smooth_map=False)
    assert attr.shape == x.shape
    assert float(attr[:, :, :8, :8].mean()) > 10 * float(attr[:, :, 8:, 8:].abs().mean())
    chunked = sobol.attribute(
        x, n_designs=32, grid_size=4, seed=3, smooth_map=False, perturbations_per_eval=7
    )
    torch.testing.assert_close(attr, chunked)
    smooth = SobolAttribution(tiny_convnet).attribute(x, target=[1, 2], n_designs=16, seed=0)
    assert smooth.shape == x.shape and torch.isfinite(smooth).all()
    assert SobolAttribution(tiny_convnet).attribute(x, target=1, n_designs=16).shape == x.shape


@pytest.mark.parametrize("perturbation", ["inpainting", "blur", "amplitude"])
def test_perturbations_move_towards_their_reference(perturbation):
    seen = []

    def model(x):
        seen.append(x.detach().clone())
        return x.mean(dim=(1, 2, 3))

    x = torch.rand(1, 3, 16, 16)
    SobolAttribution(model).attribute(
        x, n_designs=4, grid_size=2, perturbation=perturbation, perturbations_per_eval=1000
    )
    perturbed = torch.cat(seen)
    assert perturbed.shape[0] == 4 * (4 + 2)
    if perturbation == "amplitude":  # x~ = (x - mean) M + mean keeps the mean's side
        mean = x.mean()
        assert bool(((perturbed - mean) * (x - mean) >= -1e-6).all())
    else:
        assert not torch.equal(perturbed, x.expand_as(perturbed))


def test_groups_tuples_integer_inputs_and_always_kept():
    groups = torch.tensor([[0, 0, 1, 1, ALWAYS_KEPT]])
    weights = torch.tensor([1.0, 1.0, 3.0, 3.0, 5.0])
    attr = SobolAttribution(lambda x: (x * weights).sum(1)).attribute(
        torch.ones(1, 5), feature_mask=groups, n_designs=256, seed=0
    )
    assert float(attr[0, 4]) == 0  # never masked
    assert float(attr[0, 2]) > float(attr[0, 0]) > 0
    ids = torch.tensor([[5, 6, 7]])
    token_attr = SobolAttribution(lambda t: (t == 7).float().sum(1)).attribute(
        ids, baselines=0, n_designs=64, seed=0
    )
    assert token_attr.dtype == torch.float32 and int(token_attr[0].argmax()) == 2
    a, b = torch.ones(1, 2), torch.ones(1, 3)
    pair = SobolAttribution(lambda x, y: x.sum(1) + 2 * y[:, 0]).attribute(
        (a, b), feature_mask=(torch.tensor([[0, 1]]), torch.tensor([[2, 3, 3]])), n_designs=64
    )
    assert isinstance(pair, tuple) and float(pair[1][0, 0]) > float(pair[0][0, 0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_designs": 24}, "n_designs must be a power of two"),
        ({"n_designs": 1}, "n_designs"),
        ({"perturbation": "noise"}, "perturbation must be one of"),
        ({"perturbation": "blur", "baselines": 0.5}, "baselines apply to"),
        ({"perturbation": "blur", "blur_sigma": 0}, "blur_sigma"),
        ({"perturbations_per_eval": 0}, "perturbations_per_eval"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments_name_themselves(tiny_convnet, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        SobolAttribution(tiny_convnet).attribute(torch.rand(1, 3, 16, 16), target=0, **kwargs)


def test_noise_tunnel_with_zero_noise_equals_the_method(tiny_convnet):
    from captum.attr import NoiseTunnel

    x = torch.rand(1, 3, 16, 16)
    sobol = SobolAttribution(tiny_convnet)
    reference = sobol.attribute(x, target=1, n_designs=8, grid_size=4, seed=0)
    tunnel = NoiseTunnel(sobol).attribute(
        x, nt_type="smoothgrad", nt_samples=2, stdevs=0.0, target=1, n_designs=8, grid_size=4,
        seed=0,
    )  # fmt: skip
    torch.testing.assert_close(tunnel, reference)
