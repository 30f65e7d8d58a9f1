import pytest
import torch

from captum_rise.metrics import pointing_game


def test_hits_within_tolerance_and_misses_beyond():
    regions = torch.zeros(3, 40, 40, dtype=torch.bool)
    regions[:, 10:20, 10:20] = True
    saliency = torch.zeros(3, 40, 40)
    saliency[0, 15, 15] = 1.0  # inside
    saliency[1, 15, 30] = 1.0  # 11 px right of the box: within 15
    saliency[2, 39, 39] = 1.0  # sqrt(20^2 + 20^2) = 28 px away
    assert pointing_game(saliency, regions).tolist() == [True, True, False]
    assert pointing_game(saliency, regions, tolerance=0).tolist() == [True, False, False]
    assert pointing_game(saliency[:, None].expand(3, 3, 40, 40), regions).tolist() == [
        True,
        True,
        False,
    ]


def test_bad_inputs():
    with pytest.raises(ValueError, match="match"):
        pointing_game(torch.rand(1, 4, 4), torch.ones(1, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        pointing_game(torch.rand(1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        pointing_game(torch.full((1, 4, 4), float("nan")), torch.ones(1, 4, 4, dtype=torch.bool))
