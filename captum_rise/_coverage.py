"""How a mask method covers its inputs when the caller leaves it open: groups or a grid.

The defaults, shared by RISE and HSIC attribution:

- ``feature_mask`` given: its groups.
- ``grid_size`` given: that grid, as given (too large for the input is an error).
- every input is a table ``(B, F)``: one group per feature (a grid interpolated
  across columns means nothing for a table).
- otherwise the method's default grid, shrunk to the input where it is larger
  (one cell per element). Rank-3 inputs are ``(B, C, L)`` signals, channels
  first as for ``Conv1d``: the grid covers ``L``. For ``(B, T, D)`` token
  embeddings that masks embedding dims, the same for every token, so a warning
  says to pass ``feature_mask`` of shape ``(1, T, 1)`` (one group per token).
"""

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from captum_rise.masks import GridSize

DEFAULT_GRID_SIZE = 7  # the RISE and HSIC papers' grid on ImageNet images

# A rank-3 input whose last dim is at least this many times its middle dim looks like
# (B, T, D) token embeddings rather than a (B, C, L) signal.
EMBEDDING_RATIO = 4


@dataclass(frozen=True)
class Coverage:
    """Groups (``feature_mask``) or a grid (``grid_size``, shrunk when ``fit_grid``)."""

    feature_mask: tuple[Tensor, ...] | None
    grid_size: GridSize
    fit_grid: bool


def format_feature_mask(feature_mask: object) -> tuple[Tensor, ...]:
    """``feature_mask`` as a tuple of tensors, or a TypeError that names it."""
    masks = feature_mask if isinstance(feature_mask, tuple) else (feature_mask,)
    for i, mask in enumerate(masks):
        if not isinstance(mask, Tensor):
            where = f"feature_mask[{i}]" if isinstance(feature_mask, tuple) else "feature_mask"
            raise TypeError(
                f"{where} must be a torch.Tensor of integer group ids (or a tuple of them, "
                f"one per input), got {type(mask).__module__}.{type(mask).__name__}; "
                "convert it with torch.as_tensor"
            )
    return masks


def choose_coverage(
    inputs: tuple[Tensor, ...],
    feature_mask: object,
    grid_size: GridSize | None,
    default_grid_size: GridSize,
) -> Coverage:
    """The groups or grid that cover ``inputs`` (the module's rules)."""
    if feature_mask is not None:
        return Coverage(format_feature_mask(feature_mask), default_grid_size, False)
    if grid_size is not None:
        return Coverage(None, grid_size, False)
    if all(inp.dim() == 2 for inp in inputs):
        return Coverage(per_feature_groups(inputs), default_grid_size, False)
    for i, inp in enumerate(inputs):
        if inp.dim() == 3 and inp.shape[1] > 1 and inp.shape[2] >= EMBEDDING_RATIO * inp.shape[1]:
            middle = inp.shape[1]
            warnings.warn(
                f"input {i} of shape {tuple(inp.shape)} is masked as a (B, C, L) signal: "
                f"the grid covers its last dim, the same for all {middle} rows of dim 1. "
                f"For (B, T, D) token embeddings pass feature_mask="
                f"torch.arange({middle}).reshape(1, {middle}, 1) (one group per token); "
                "pass grid_size to keep the signal convention without this warning",
                UserWarning,
                stacklevel=5,  # the caller of attribute (through Captum's log_usage)
            )
    return Coverage(None, default_grid_size, True)


def per_feature_groups(inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """One group per column of ``(B, F)`` inputs, ids distinct across the tuple: ``(1, F)`` each."""
    groups = []
    offset = 0
    for inp in inputs:
        n_features = inp.shape[1]
        ids = torch.arange(offset, offset + n_features, device=inp.device)
        groups.append(ids.reshape(1, n_features))
        offset += n_features
    return tuple(groups)
