"""HSIC attribution: ground truth on a synthetic model, estimator against a plain reference."""

import pytest
import torch

from captum_rise import HSICAttribution
from captum_rise.hsic import hsic_scores, output_bandwidth, sample_designs

CELL = 2  # a 14x14 input on a 7x7 grid: 2x2-pixel cells
A, B = (0, 0), (3, 5)


def two_cell_model(inp):
    """Depends only on cells A and B."""
    a = inp[:, 0, A[0] * CELL : (A[0] + 1) * CELL, A[1] * CELL : (A[1] + 1) * CELL]
    b = inp[:, 0, B[0] * CELL : (B[0] + 1) * CELL, B[1] * CELL : (B[1] + 1) * CELL]
    return a.mean(dim=(1, 2)) + 2 * b.mean(dim=(1, 2))


def _cells(attribution):
    return attribution[0, ::CELL, ::CELL]


def test_two_relevant_cells_get_the_largest_hsic_and_others_near_zero():
    x = torch.rand(2, 1, 14, 14) * 0.5 + 0.5
    attr = HSICAttribution(two_cell_model).attribute(
        x, n_designs=512, perturbations_per_eval=128, seed=0, smooth_map=False
    )
    assert attr.shape == x.shape
    for b in range(2):
        cells = _cells(attr[b])
        top_two = set(cells.flatten().argsort(descending=True)[:2].tolist())
        assert top_two == {A[0] * 7 + A[1], B[0] * 7 + B[1]}
        others = cells.clone()
        others[A], others[B] = 0.0, 0.0
        assert float(others.abs().max()) < 0.1 * float(min(cells[A], cells[B]))


def test_smooth_map_peaks_in_the_relevant_cells():
    x = torch.rand(1, 1, 14, 14) * 0.5 + 0.5
    hsic = HSICAttribution(two_cell_model)
    constant = hsic.attribute(x, n_designs=256, seed=0, smooth_map=False)[0, 0]
    smooth = hsic.attribute(x, n_designs=256, seed=0)[0, 0]
    assert not torch.allclose(constant, smooth)
    peak_y, peak_x = divmod(int(smooth.argmax()), 14)
    assert (peak_y // CELL, peak_x // CELL) == B  # the cell with the larger weight
    # the smooth map is the bicubic upsampling of the same cell values
    cells = constant[::CELL, ::CELL][None, None]
    expected = torch.nn.functional.interpolate(
        cells, size=(14, 14), mode="bicubic", align_corners=False
    )
    torch.testing.assert_close(smooth, expected[0, 0])


def _reference_hsic(x, y, width):
    """Plain O(n^2) estimator: explicit H, K, L and tr(HKH HLH) / n."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k = 1.0 - (x[:, None] - x[None, :]) ** 2
    gram_y = torch.exp(-((y[:, None] - y[None, :]) ** 2) / (2 * width**2))
    return torch.trace(h @ k @ h @ h @ gram_y @ h) / n


def test_estimator_matches_plain_reference():
    torch.manual_seed(0)
    designs = (torch.rand(40, 5) < 0.5).double()
    outputs = designs[:, 1] * 0.8 + 0.1 * torch.rand(40, dtype=torch.float64) + 0.2
    scores = hsic_scores(designs, outputs, batch_size=2)
    width = output_bandwidth(outputs)
    reference = torch.stack([_reference_hsic(designs[:, k], outputs, width) for k in range(5)])
    torch.testing.assert_close(scores, reference)
    assert int(scores.argmax()) == 1
    assert torch.allclose(width, outputs.median())


def test_bandwidth_falls_back_for_non_positive_outputs():
    logits = torch.tensor([-3.0, -1.0, -2.0, -0.5])
    assert float(output_bandwidth(logits)) > 0


def test_designs_are_stratified_and_seeded():
    lhs = sample_designs(64, 3, "lhs", seed=1)
    assert lhs.shape == (64, 3)
    # Latin hypercube: each of the 64 strata of every axis holds one point
    for axis in range(3):
        assert sorted((lhs[:, axis] * 64).astype(int).tolist()) == list(range(64))
    assert (sample_designs(64, 3, "lhs", seed=1) == lhs).all()
    sobol = sample_designs(100, 3, "sobol", seed=1)
    assert sobol.shape == (100, 3) and ((sobol >= 0) & (sobol < 1)).all()
    with pytest.raises(ValueError, match="sampler"):
        sample_designs(8, 3, "grid")


def test_seed_determinism_and_batch_invariance():
    x = torch.rand(3, 1, 14, 14)
    hsic = HSICAttribution(two_cell_model)
    reference = hsic.attribute(x, n_designs=64, seed=3, perturbations_per_eval=64)
    for per_eval in (1, 7):
        torch.testing.assert_close(
            hsic.attribute(x, n_designs=64, seed=3, perturbations_per_eval=per_eval), reference
        )
    torch.testing.assert_close(hsic.attribute(x[1:2], n_designs=64, seed=3), reference[1:2])
    assert not torch.allclose(hsic.attribute(x, n_designs=64, seed=4), reference)


def test_feature_mask_groups_replace_cells_and_targets():
    tokens = torch.rand(2, 6, 3)
    weights = torch.tensor([0.0, 3.0, 0.0, 0.0, 1.0, 0.0])

    def model(emb):
        return torch.stack([emb.sum(-1) @ weights, emb.sum((1, 2))], dim=1)

    groups = torch.arange(6).reshape(1, 6, 1)
    attr = HSICAttribution(model).attribute(
        tokens, target=0, feature_mask=groups, n_designs=256, perturbations_per_eval=256, seed=0
    )
    assert attr.shape == tokens.shape
    assert set(attr[0, :, 0].argsort(descending=True)[:2].tolist()) == {1, 4}


def test_identity_and_errors():
    assert HSICAttribution.get_name() == "HSIC"
    assert hasattr(HSICAttribution.attribute, "__wrapped__")
    x = torch.rand(1, 1, 14, 14)
    hsic = HSICAttribution(two_cell_model)
    with pytest.raises(ValueError, match="n_designs"):
        hsic.attribute(x, n_designs=1)
    with pytest.raises(ValueError, match="input_kernel"):
        hsic.attribute(x, n_designs=8, input_kernel="laplace")
    with pytest.raises(ValueError, match="grid_size"):
        hsic.attribute(x, n_designs=8, grid_size=15)
    rbf = hsic.attribute(x, n_designs=64, input_kernel="rbf", seed=0)
    assert torch.isfinite(rbf).all()


def test_signed_hsic_gives_a_lowering_region_a_negative_value():
    # the left half raises the score, the right half lowers it: HSIC ranks both high;
    # signed, the right half is negative and the left positive
    def score(x):
        return x[:, :, :, :8].mean(dim=(1, 2, 3)) - x[:, :, :, 8:].mean(dim=(1, 2, 3))

    x = torch.ones(1, 3, 16, 16)
    hsic = HSICAttribution(score)
    unsigned = hsic.attribute(x, n_designs=256, grid_size=(1, 2), seed=0, smooth_map=False)
    signed = hsic.attribute(
        x, n_designs=256, grid_size=(1, 2), seed=0, smooth_map=False, signed=True
    )
    assert float(unsigned[0, 0, 0, 0]) > 0 and float(unsigned[0, 0, 0, -1]) > 0
    torch.testing.assert_close(signed[..., :8], unsigned[..., :8])
    torch.testing.assert_close(signed[..., 8:], -unsigned[..., 8:])
