"""Anytime RISE: the stop rule, and an error estimate that is honest against a closed form."""

import pytest
import torch
from test_rise_ground_truth import _closed_form_linear, _linear_model

from captum_rise import RISE, SaliencyAccumulator
from captum_rise.rise import ROUND_MASKS

N_FEATURES = 16


@pytest.fixture
def linear_case():
    """A linear model with pairs of features as groups, and its exact RISE map."""
    torch.manual_seed(0)
    x = torch.rand(1, N_FEATURES)
    weights = torch.randn(N_FEATURES)
    groups = (torch.arange(N_FEATURES) // 2).reshape(1, N_FEATURES)
    truth = _closed_form_linear(x[0], weights, 0.3, groups[0], 0.5).float()
    return _linear_model(weights, 0.3), x, groups, truth


def test_estimated_error_is_honest_at_the_stop(linear_case):
    """The true relative error at the stop is within a factor 2 of the estimate in most runs."""
    model, x, groups, truth = linear_case
    rise = RISE(model)
    ratios = []
    for seed in range(20):
        saliency, delta = rise.attribute(
            x, feature_mask=groups, n_masks=20_000, seed=seed, tolerance=0.1,
            mask_sampling="random", return_convergence_delta=True,
        )  # fmt: skip
        assert float(delta[0]) <= 0.1 and rise.n_masks_used < 20_000
        true_error = ((saliency[0] - truth) ** 2).mean().sqrt() / saliency[0].std()
        ratios.append(float(true_error / delta[0]))
    within = sum(0.5 <= r <= 2 for r in ratios)
    assert within >= 16, sorted(ratios)


@pytest.mark.parametrize("sampling", ["antithetic", "sobol"])
def test_estimate_bounds_the_error_of_variance_reduced_masks(linear_case, sampling):
    """The estimate treats masks as independent: for antithetic and Sobol' masks,
    whose errors are smaller, it is an upper bound (the run never stops early)."""
    model, x, groups, truth = linear_case
    rise = RISE(model)
    for seed in range(5):
        saliency, delta = rise.attribute(
            x, feature_mask=groups, n_masks=20_000, seed=seed, tolerance=0.1,
            mask_sampling=sampling, return_convergence_delta=True,
        )  # fmt: skip
        true_error = ((saliency[0] - truth) ** 2).mean().sqrt() / saliency[0].std()
        assert float(true_error) <= 1.5 * float(delta[0]) <= 0.15


def test_stopped_map_is_the_fixed_n_map(linear_case):
    model, x, groups, _ = linear_case
    rise = RISE(model)
    stopped = rise.attribute(x, feature_mask=groups, n_masks=20_000, seed=3, tolerance=0.1)
    used = rise.n_masks_used
    assert used % ROUND_MASKS == 0 and used < 20_000
    fixed = rise.attribute(x, feature_mask=groups, n_masks=used, seed=3)
    torch.testing.assert_close(stopped, fixed)
    # A looser tolerance stops no later.
    rise.attribute(x, feature_mask=groups, n_masks=20_000, seed=3, tolerance=0.2)
    assert rise.n_masks_used <= used


def test_unreachable_tolerance_uses_every_mask_and_reports_the_error(linear_case):
    model, x, groups, _ = linear_case
    rise = RISE(model)
    _, delta = rise.attribute(
        x, feature_mask=groups, n_masks=600, seed=0, tolerance=1e-4, return_convergence_delta=True
    )
    assert rise.n_masks_used == 600 and float(delta[0]) > 1e-4
    assert rise.has_convergence_delta()


def test_convergence_delta_per_example_and_shrinking_with_n():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 12, 12)
    rise = RISE(lambda inp: inp[:, :, :6].mean(dim=(1, 2, 3)))
    deltas = [
        rise.attribute(x, n_masks=n, grid_size=3, seed=0, return_convergence_delta=True)[1]
        for n in (200, 3200)
    ]
    assert deltas[0].shape == (2,)
    # The standard error shrinks like 1 / sqrt(N): 16x the masks, about 1/4 the error.
    assert torch.all((deltas[1] / deltas[0] - 0.25).abs() < 0.08)


def test_tolerance_with_several_classes_stops_for_all():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 12, 12)
    linear = torch.nn.Linear(432, 3)
    torch.nn.init.normal_(linear.weight, std=0.3)  # scores that depend on the masks
    rise = RISE(torch.nn.Sequential(torch.nn.Flatten(), linear, torch.nn.Softmax(dim=1)))
    maps = rise.attribute_classes(x, n_masks=5000, grid_size=3, seed=0, tolerance=0.2)
    assert maps.shape == (1, 3, 3, 12, 12) and rise.n_masks_used < 5000


def test_bad_tolerance_is_a_clear_error(linear_case):
    model, x, groups, _ = linear_case
    rise = RISE(model)
    with pytest.raises(ValueError, match="tolerance must be > 0"):
        rise.attribute(x, feature_mask=groups, n_masks=10, tolerance=0.0)
    with pytest.raises(TypeError, match="tolerance must be a float"):
        rise.attribute(x, feature_mask=groups, n_masks=10, tolerance="1%")
    with pytest.raises(ValueError, match="normalization='expectation'"):
        rise.attribute(x, feature_mask=groups, n_masks=10, tolerance=0.1, normalization="coverage")


def test_merged_accumulators_keep_the_error_estimate():
    torch.manual_seed(0)
    scores, masks = torch.rand(40, 1, 1), torch.rand(40, 1, 5)
    whole = SaliencyAccumulator(1, 1, [(1, 5)], torch.device("cpu"), track_squares=True)
    whole.add(scores, (masks,))
    halves = [
        SaliencyAccumulator(1, 1, [(1, 5)], torch.device("cpu"), track_squares=True) for _ in "ab"
    ]
    halves[0].add(scores[:17], (masks[:17],))
    halves[1].add(scores[17:], (masks[17:],))
    merged = halves[0].merge(halves[1])
    torch.testing.assert_close(
        merged.relative_standard_error(0.5), whole.relative_standard_error(0.5)
    )
