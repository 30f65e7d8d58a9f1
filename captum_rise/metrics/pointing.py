"""The pointing game (Zhang et al., ECCV 2016), as used in the RISE paper's section 4.1."""

import torch
from torch import Tensor


def pointing_game(attributions: Tensor, regions: Tensor, tolerance: float = 15.0) -> Tensor:
    """Whether the most salient pixel falls on the object, per example.

    A hit is a maximum of the saliency map within ``tolerance`` pixels
    (Euclidean) of the object's region, the 15-pixel tolerance of Zhang et
    al. Ties for the maximum go to the first pixel in row-major order.

    Args:
        attributions: ``(B, H, W)`` or ``(B, C, H, W)`` (channels summed).
        regions: ``(B, H, W)`` boolean object masks (e.g. filled bounding boxes).
        tolerance: in pixels, >= 0.

    Returns:
        ``(B,)`` boolean hits; their mean is the pointing accuracy.
    """
    if attributions.dim() == 4:
        attributions = attributions.sum(dim=1)
    if attributions.dim() != 3 or regions.shape != attributions.shape:
        raise ValueError(
            f"attributions (B, [C,] H, W) and regions (B, H, W) must match, got "
            f"{tuple(attributions.shape)} and {tuple(regions.shape)}"
        )
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if not torch.isfinite(attributions).all():
        raise ValueError("attributions contain NaN or infinite values")
    width = attributions.shape[2]
    flat_max = attributions.flatten(1).argmax(dim=1)
    peak_y, peak_x = flat_max // width, flat_max % width
    hits = []
    for b in range(attributions.shape[0]):
        ys, xs = torch.nonzero(regions[b], as_tuple=True)
        if ys.numel() == 0:
            raise ValueError(f"regions[{b}] is empty")
        distance = torch.sqrt(((ys - peak_y[b]) ** 2 + (xs - peak_x[b]) ** 2).double()).min()
        hits.append(bool(distance <= tolerance))
    return torch.tensor(hits)
