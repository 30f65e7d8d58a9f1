"""RISE against ground truth: closed forms and brute-force expectations."""

import itertools
import math

import numpy as np
import pytest
import torch

from captum_rise import RISE
from captum_rise.testing import exact_banzhaf


def _linear_model(weights: torch.Tensor, bias: float):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ weights + bias

    return forward


def _closed_form_linear(x, weights, bias, groups, p_keep):
    """E[f | group of j kept] for f = bias + w . (x * M), groups kept independently."""
    contributions = weights.double() * x.reshape(-1).double()
    total = contributions.sum()
    own = torch.zeros_like(contributions)
    for g in groups.unique():
        members = groups == g
        own[members] = contributions[members].sum()
    return bias + own + p_keep * (total - own)


def _brute_force_rise(forward, x, groups, p_keep):
    """The exact RISE map: E[f(x * M) * M_j] / p_keep over all 2^k group masks."""
    ids = groups.unique().tolist()
    result = torch.zeros(groups.numel(), dtype=torch.float64)
    for keep in itertools.product([0, 1], repeat=len(ids)):
        keep_t = torch.tensor(keep, dtype=torch.float64)
        prob = math.prod(p_keep if k else 1 - p_keep for k in keep)
        mask = keep_t[torch.searchsorted(torch.tensor(ids), groups)]
        score = float(forward((x.double() * mask).reshape(1, -1)))
        result += prob * score * mask
    return result / p_keep


def test_brute_force_expectation_equals_closed_form_for_linear_model():
    torch.manual_seed(0)
    x = torch.rand(8)
    weights = torch.randn(8)
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    forward = _linear_model(weights.double(), 0.3)
    for p_keep in (0.5, 0.3):
        exact = _brute_force_rise(forward, x, groups, p_keep)
        closed = _closed_form_linear(x, weights, 0.3, groups, p_keep)
        torch.testing.assert_close(exact, closed, rtol=1e-10, atol=1e-10)


def test_estimate_converges_to_brute_force_for_nonlinear_model():
    torch.manual_seed(0)
    x = torch.rand(1, 8)
    groups = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3]])
    w = torch.randn(8)

    def forward(inp):
        return torch.sigmoid(3 * (inp.reshape(inp.shape[0], -1) * w).sum(-1)) * inp[:, 0]

    exact = _brute_force_rise(lambda z: forward(z.float()), x[0], groups[0], 0.5)
    estimate = RISE(forward).attribute(
        x, feature_mask=groups, n_masks=40000, perturbations_per_eval=4000, seed=0
    )
    torch.testing.assert_close(estimate[0].double(), exact, atol=0.01, rtol=0.0)


def _brute_force_banzhaf(forward, x, groups):
    """Exact Banzhaf values: E[f | group kept] - E[f | group dropped] over all 2^k masks."""
    ids = groups.unique().tolist()
    kept = torch.zeros(len(ids), dtype=torch.float64)
    dropped = torch.zeros(len(ids), dtype=torch.float64)
    for keep in itertools.product([0, 1], repeat=len(ids)):
        keep_t = torch.tensor(keep, dtype=torch.float64)
        mask = keep_t[torch.searchsorted(torch.tensor(ids), groups)]
        score = float(forward((x.double() * mask).reshape(1, -1)))
        kept += score * keep_t
        dropped += score * (1 - keep_t)
    half = 2 ** (len(ids) - 1)
    return ((kept - dropped) / half)[torch.searchsorted(torch.tensor(ids), groups)]


def test_signed_view_converges_to_brute_force_banzhaf_values():
    """normalization='difference' at p_keep=0.5 is the Banzhaf value of each group; on a
    model where group 3 lowers the score, its value is negative."""
    torch.manual_seed(0)
    x = torch.rand(1, 8) + 0.5
    groups = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3]])
    w = torch.tensor([1.0, 0.5, -0.2, 0.3, 0.8, 0.1, -1.5, -1.0])

    def forward(inp):
        return torch.sigmoid((inp.reshape(inp.shape[0], -1) * w).sum(-1)) + 4.0

    exact = _brute_force_banzhaf(lambda z: forward(z.float()), x[0], groups[0])
    assert float(exact[-1]) < 0 < float(exact[0])
    # the library's enumeration (tests, benchmarks and tutorial 07 use it) agrees
    torch.testing.assert_close(exact_banzhaf(forward, x, groups)[groups[0]], exact)
    estimate = RISE(forward).attribute(
        x, feature_mask=groups, n_masks=4096, seed=0, normalization="difference"
    )
    # Sobol' masks: the error at 4096 masks was 4.6e-5 in 5 seeds; 0.005 is 0.6% of the range
    torch.testing.assert_close(estimate[0].double(), exact, atol=0.005, rtol=0.0)


@pytest.mark.parametrize("sampling", ["random", "antithetic"])
def test_per_pixel_masks_converge_to_closed_form_at_rate_one_over_sqrt_n(sampling):
    """Independent masks (and antithetic pairs, which a linear model does not help)
    converge at the Monte Carlo rate; Sobol' masks faster (test_mask_sampling)."""
    torch.manual_seed(0)
    n_features = 12
    x = torch.rand(1, n_features)
    weights = torch.randn(n_features)
    bias = 0.5
    forward = _linear_model(weights, bias)
    per_pixel = torch.arange(n_features).reshape(1, -1)
    truth = _closed_form_linear(x, weights, bias, per_pixel[0], 0.5).float()

    sizes = [250, 1000, 4000, 16000]
    errors = []
    for n in sizes:
        rmse = []
        for seed in range(6):
            estimate = RISE(forward).attribute(
                x, feature_mask=per_pixel, n_masks=n, perturbations_per_eval=2000, seed=seed,
                mask_sampling=sampling,
            )[0]  # fmt: skip
            rmse.append(float(((estimate - truth) ** 2).mean().sqrt()))
        errors.append(np.mean(rmse))
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert -0.65 < slope < -0.35, (errors, slope)

    final = RISE(forward).attribute(
        x, feature_mask=per_pixel, n_masks=40000, perturbations_per_eval=4000, seed=0
    )[0]
    correlation = np.corrcoef(final.numpy(), truth.numpy())[0, 1]
    assert correlation >= 0.99


def test_grid_masks_on_constant_model():
    """f = c: expectation normalisation gives ~c, coverage normalisation exactly c."""
    x = torch.rand(2, 3, 20, 20)

    def constant(inp):
        return torch.full((inp.shape[0],), 2.0)

    rise = RISE(constant)
    expectation = rise.attribute(x, n_masks=2000, perturbations_per_eval=500, seed=0)
    coverage = rise.attribute(
        x, n_masks=50, perturbations_per_eval=25, seed=0, normalization="coverage"
    )
    torch.testing.assert_close(coverage, torch.full_like(x, 2.0))
    assert abs(float(expectation.mean()) - 2.0) < 0.05
    assert float((expectation - 2.0).abs().max()) < 0.3


def test_grid_masks_find_the_region_the_model_looks_at():
    """A model that scores the mean intensity of the top-left quadrant."""
    x = torch.ones(1, 3, 28, 28)

    def quadrant(inp):
        return inp[:, :, :14, :14].mean(dim=(1, 2, 3))

    saliency = RISE(quadrant).attribute(
        x, n_masks=1000, perturbations_per_eval=250, grid_size=2, seed=0
    )[0, 0]
    inside = saliency[:10, :10].mean()
    outside = saliency[18:, 18:].mean()
    assert inside > outside + 0.15
