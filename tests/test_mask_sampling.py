"""Variance-reduced masks: antithetic pairs and scrambled Sobol' points."""

import pytest
import torch
from test_rise_ground_truth import _closed_form_linear, _linear_model

from captum_rise import RISE
from captum_rise.masks import MASK_SAMPLINGS, GridMaskSampler, ParamStream, make_generator


def _masks(sampling: str, n: int, p_keep: float = 0.5, seed: int = 0) -> torch.Tensor:
    sampler = GridMaskSampler([torch.Size([1, 3, 20, 20])], 4, p_keep, torch.device("cpu"))
    stream = ParamStream(sampler, make_generator(seed), sampling)
    return sampler.render(stream.params(0, n))[0]


@pytest.mark.parametrize("sampling", MASK_SAMPLINGS)
@pytest.mark.parametrize("p_keep", [0.5, 0.3])
def test_masks_are_in_unit_interval_with_mean_p_keep(sampling, p_keep):
    masks = _masks(sampling, 2048, p_keep)
    assert masks.min() >= 0 and masks.max() <= 1
    assert abs(float(masks.mean()) - p_keep) < 0.01


def test_antithetic_partner_is_the_complement_at_one_half():
    masks = _masks("antithetic", 64)
    torch.testing.assert_close(masks[1::2], 1 - masks[0::2], rtol=0, atol=1e-6)


def test_sobol_is_seeded():
    assert torch.equal(_masks("sobol", 50, seed=1), _masks("sobol", 50, seed=1))
    assert not torch.equal(_masks("sobol", 50, seed=1), _masks("sobol", 50, seed=2))


@pytest.mark.parametrize("sampling", ["antithetic", "sobol"])
def test_maps_do_not_depend_on_the_chunk_size(tiny_convnet, sampling):
    x = torch.rand(2, 3, 16, 16)
    rise = RISE(tiny_convnet)
    maps = [
        rise.attribute(
            x,
            target=[0, 1],
            n_masks=1100,
            seed=4,
            perturbations_per_eval=ppe,
            mask_sampling=sampling,
        )
        for ppe in (7, 64)
    ]
    torch.testing.assert_close(maps[0], maps[1])


def test_sobol_reduces_the_error_on_a_linear_model_with_groups():
    """With 8 groups and 256 = 2^8 Sobol' points every keep pattern comes once: the map
    is the exact expectation, where independent masks leave a Monte Carlo error.
    (Antithetic pairs do not help here: for a linear model a pair adds one term of
    f given M_j = 1, as one independent mask does in expectation; measured in
    benchmarks/mask_sampling.py for a real model.)"""
    torch.manual_seed(0)
    n_features = 16
    x, weights = torch.rand(1, n_features), torch.randn(n_features)
    groups = (torch.arange(n_features) // 2).reshape(1, n_features)
    truth = _closed_form_linear(x[0], weights, 0.3, groups[0], 0.5).float()
    rise = RISE(_linear_model(weights, 0.3))

    def mean_squared_error(sampling):
        errors = [
            (
                rise.attribute(x, feature_mask=groups, n_masks=256, seed=s, mask_sampling=sampling)[
                    0
                ]
                - truth
            )
            .pow(2)
            .mean()
            for s in range(10)
        ]
        return float(torch.stack(errors).mean())

    assert mean_squared_error("sobol") < 1e-6 < 0.01 * mean_squared_error("random")


def test_antithetic_pairs_cover_every_pixel_equally():
    """At p_keep = 0.5 each pair sums to 1: the coverage noise of random masks is gone."""
    coverage = _masks("antithetic", 200).sum(dim=0)
    torch.testing.assert_close(coverage, torch.full_like(coverage, 100.0))
    assert _masks("random", 200).sum(dim=0).std() > 1


def test_unknown_sampling_is_a_clear_error(tiny_convnet):
    with pytest.raises(ValueError, match="mask_sampling must be one of"):
        RISE(tiny_convnet).attribute(
            torch.rand(1, 3, 8, 8), target=0, n_masks=4, mask_sampling="lhs"
        )
