"""The defaults that decide how masks cover an input: tables, small inputs, embeddings."""

import warnings

import numpy as np
import pytest
import torch

from captum_rise import RISE, HSICAttribution

WEIGHTS = torch.tensor([0.5, -1.0, 2.0, 3.0])


def linear(x):
    return x @ WEIGHTS


def test_tables_get_one_group_per_feature_by_default():
    x = torch.rand(3, 4) + 0.5
    default = RISE(linear).attribute(x, n_masks=512, seed=0)
    per_feature = RISE(linear).attribute(
        x, feature_mask=torch.arange(4).reshape(1, 4), n_masks=512, seed=0
    )
    torch.testing.assert_close(default, per_feature)


def test_table_map_matches_the_closed_form_of_a_linear_model():
    # Independent keep variables M_i ~ Bernoulli(p): E[f(M * x) M_i] / p
    # = w_i x_i + p * sum_{j != i} w_j x_j for f(x) = w . x.
    p = 0.5
    x = torch.rand(2, 4, dtype=torch.float64) + 0.5
    saliency = RISE(lambda v: v @ WEIGHTS.double()).attribute(x, n_masks=4096, seed=0, p_keep=p)
    contributions = x * WEIGHTS.double()
    expected = contributions + p * (contributions.sum(1, keepdim=True) - contributions)
    torch.testing.assert_close(saliency, expected, atol=0.02, rtol=0)


def test_hsic_tables_get_one_group_per_feature_by_default():
    x = torch.ones(2, 4)  # the dependence on feature i grows with |w_i|
    default = HSICAttribution(linear).attribute(x, n_designs=128, seed=0)
    per_feature = HSICAttribution(linear).attribute(
        x, feature_mask=torch.arange(4).reshape(1, 4), n_designs=128, seed=0
    )
    torch.testing.assert_close(default, per_feature)
    assert (default.argmax(1) == 3).all()


def image_sum(x):
    return x.flatten(1).sum(1)


@pytest.mark.parametrize("method", [RISE, HSICAttribution])
def test_a_default_grid_larger_than_the_input_shrinks_to_it(method):
    x = torch.rand(2, 3, 5, 40)
    budget = {"n_masks": 32} if method is RISE else {"n_designs": 32}
    default = method(image_sum).attribute(x, seed=0, **budget)
    explicit = method(image_sum).attribute(x, grid_size=(5, 7), seed=0, **budget)
    torch.testing.assert_close(default, explicit)
    with pytest.raises(ValueError, match="grid_size"):
        method(image_sum).attribute(x, grid_size=7, seed=0, **budget)


def test_embeddings_without_a_feature_mask_get_a_warning_that_gives_the_recipe():
    embeddings = torch.rand(2, 6, 48)  # (B, T, D)
    with pytest.warns(
        UserWarning, match=r"feature_mask=torch.arange\(6\).reshape\(1, 6, 1\)"
    ) as caught:
        RISE(image_sum).attribute(embeddings, n_masks=8, seed=0)
    assert caught[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RISE(image_sum).attribute(embeddings, grid_size=7, n_masks=8, seed=0)
        RISE(image_sum).attribute(
            embeddings, feature_mask=torch.arange(6).reshape(1, 6, 1), n_masks=8, seed=0
        )
        RISE(image_sum).attribute(torch.rand(2, 3, 8), n_masks=8, seed=0)  # a short signal


def test_the_token_recipe_finds_the_token_that_matters():
    embeddings = torch.rand(3, 6, 48)
    model = lambda e: e[:, 4].sum(1)  # only token 4 counts
    saliency = RISE(model).attribute(
        embeddings, feature_mask=torch.arange(6).reshape(1, 6, 1), n_masks=256, seed=0
    )
    per_token = saliency[:, :, 0]
    assert (per_token.argmax(1) == 4).all()
    torch.testing.assert_close(saliency, per_token[:, :, None].expand_as(saliency))


@pytest.mark.parametrize("method", [RISE, HSICAttribution])
def test_a_numpy_feature_mask_is_a_type_error_naming_feature_mask(method):
    x = torch.rand(2, 4)
    with pytest.raises(TypeError, match=r"^feature_mask must be a torch.Tensor.*numpy"):
        method(linear).attribute(x, feature_mask=np.zeros((1, 4), dtype=int))
    pair = (torch.rand(2, 4), torch.rand(2, 4))
    with pytest.raises(TypeError, match=r"^feature_mask\[1\] must be a torch.Tensor"):
        method(lambda a, b: linear(a) + linear(b)).attribute(
            pair, feature_mask=(torch.zeros(1, 4, dtype=torch.long), [[0, 1, 2, 3]])
        )
