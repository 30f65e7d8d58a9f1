"""Random mask samplers shared by the perturbation methods.

A sampler turns per-mask random parameters into masks for a tuple of inputs.
Every input ``inputs[i]`` of shape ``(B, *rest_i)`` gets masks of shape
``(n, Bm, *mask_rest_i)``, where ``Bm`` is 1 (one mask shared by the batch) or
``B`` (one per example) and ``mask_rest_i`` broadcasts to ``rest_i``.

Masks are rendered on the sampler's device, in the inputs' dtype, a chunk at
a time, so that peak memory depends on the chunk and never on the total
number of masks. The random parameters (a few numbers per mask) are drawn
from a private CPU :class:`torch.Generator` in fixed blocks of
:data:`DRAW_BLOCK` masks and sent to the device a block at a time
(:class:`ParamStream`), so mask ``k`` is the same whatever the chunk size and
whatever the device. The global RNG is touched only for ``seed=None``, which
takes one draw from it (:func:`make_generator`).
"""

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_rise._validation import check_one_per_input, resolve_seed

DRAW_BLOCK = 1024
"""Number of masks whose random parameters are drawn from the generator at once."""

MASK_SAMPLINGS = ("random", "antithetic", "sobol")
"""How mask parameters are drawn: independent uniforms (the paper's); antithetic
pairs ``u, reflect(u)``; scrambled Sobol' points (quasi-Monte Carlo)."""

DEFAULT_MASK_SAMPLING = "sobol"
"""RISE's default: the sampling with the least map error per mask, measured on
MobileNetV2 and real photos (``benchmarks/mask_sampling.py``)."""

GridSize = int | Sequence[int]

ALWAYS_KEPT = -1
"""The ``feature_mask`` group id of features that are never masked (special tokens,
padding, a region that must stay): RISE and HSIC keep them in every perturbation and
give them attribution 0, since nothing is learned about what is never removed."""

_SMOOTH_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}


def spatial_grid_shape(
    input_shape: torch.Size, grid_size: GridSize, fit: bool = False
) -> tuple[int, ...]:
    """The per-axis grid for an input of shape ``(B, *rest)``.

    An int ``grid_size`` covers the trailing spatial dims: all dims after the
    channel dim for inputs of rank 3 to 5 (``(B, C, L)``, ``(B, C, H, W)``,
    ``(B, C, D, H, W)``), the feature dim for rank 2 (``(B, F)``) and the last three
    dims above rank 5. A tuple names one grid size per trailing dim. With
    ``fit`` (a default grid rather than the caller's), a grid larger than its
    input dim shrinks to that dim: one cell per element.

    Raises:
        TypeError: ``grid_size`` is not an int or a tuple of ints.
        ValueError: a grid size is below 1, or larger than its input dim
            without ``fit``.
    """
    rank = len(input_shape)
    if isinstance(grid_size, bool) or not isinstance(grid_size, (int, tuple, list)):
        raise TypeError(f"grid_size must be an int or a tuple of ints, got {grid_size!r}")
    if isinstance(grid_size, int):
        n_spatial = max(1, min(rank - 2, 3))
        grid = (grid_size,) * n_spatial
    else:
        grid = tuple(grid_size)
        if not grid or not all(isinstance(g, int) and not isinstance(g, bool) for g in grid):
            raise TypeError(f"grid_size must be an int or a tuple of ints, got {grid_size!r}")
        if len(grid) > min(rank - 1, 3):
            raise ValueError(
                f"grid_size {grid_size!r} has {len(grid)} axes, but an input of shape "
                f"{tuple(input_shape)} has at most {min(rank - 1, 3)} spatial axes"
            )
    spatial = tuple(input_shape[rank - len(grid) :])
    if fit:
        grid = tuple(min(g, size) for g, size in zip(grid, spatial))
    for g, size in zip(grid, spatial):
        if g < 1 or g > size:
            raise ValueError(
                f"grid_size must be between 1 and the input's spatial size {spatial}, "
                f"got {grid_size!r}"
            )
    return grid


@dataclass(frozen=True)
class GridLayout:
    """How a grid covers one input of shape ``(B, *rest)``.

    Attributes:
        grid: cells per spatial axis.
        spatial: the trailing dims the grid covers.
        mask_shape: ``(1, ..., 1, *spatial)``, of the input's rank, so a mask
            is shared by the batch and broadcast over channels.
    """

    grid: tuple[int, ...]
    spatial: tuple[int, ...]
    mask_shape: tuple[int, ...]

    @classmethod
    def of(cls, input_shape: torch.Size, grid_size: GridSize, fit: bool = False) -> "GridLayout":
        grid = spatial_grid_shape(input_shape, grid_size, fit)
        spatial = tuple(input_shape[len(input_shape) - len(grid) :])
        return cls(grid, spatial, (1,) * (len(input_shape) - len(grid)) + spatial)


class MaskSampler(ABC):
    """Base class: draws per-mask parameters in fixed blocks and renders chunks.

    Subclasses say how many uniform numbers a mask needs (:attr:`n_params`) and
    how to turn them into masks (:meth:`render`).
    """

    n_params: int
    mask_shapes: list[tuple[int, ...]]

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.device = torch.device(device)
        self.dtype = dtype

    @abstractmethod
    def render(self, params: Tensor) -> tuple[Tensor, ...]:
        """Masks from parameters of shape ``(n, n_params)``; one ``(n, Bm, ...)`` per input,
        in :attr:`dtype`."""

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, n_params)`` float32 uniform numbers in [0, 1) from ``generator``, on
        :attr:`device` (drawn where the generator lives)."""
        drawn = torch.rand(n, self.n_params, generator=generator, device=generator.device)
        return to_device(drawn, self.device)

    def reflect(self, params: Tensor) -> Tensor:
        """The antithetic partners of ``(n, n_params)`` parameters: ``1 - u`` for the
        numbers that decide what is kept (a kept variable becomes dropped and
        the reverse when ``p_keep = 0.5``; the same keep probability for any
        ``p_keep``); subclasses keep the numbers that place a mask (shifts)."""
        return 1.0 - params

    def chunks(
        self, n_masks: int, chunk_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, ...]]:
        """Yield ``ceil(n_masks / chunk_size)`` chunks of at most ``chunk_size`` masks.

        Mask ``k`` does not depend on ``chunk_size`` (see :class:`ParamStream`).
        """
        stream = ParamStream(self, generator)
        for start in range(0, n_masks, chunk_size):
            yield self.render(stream.params(start, min(start + chunk_size, n_masks)))


class ParamStream:
    """The parameters of masks ``0, 1, 2, ...``, drawn in blocks of :data:`DRAW_BLOCK`.

    :meth:`params` hands out any range at or after the last one asked for, so a
    chunk that failed (e.g. out of memory) can be asked for again in parts, and
    a rank can start at its own share of the masks (the blocks before it are
    drawn and dropped). Parameters before the range asked for are dropped.

    With ``replicates`` ``R > 1`` the masks form ``R`` independent replicates
    (:meth:`replicate_of`), whose spread measures the error of any sampling
    (randomised quasi-Monte Carlo): mask ``k`` belongs to replicate ``k mod R``
    (antithetic pairs ``2i, 2i + 1`` to replicate ``i mod R``, so that a pair
    stays together), and Sobol' masks come from ``R`` independently scrambled
    sequences, replicate ``r`` taking the points of the ``r``-th in order.

    Args:
        sampler: says how many numbers a mask needs and where they go.
        generator: the private generator they are drawn from.
        sampling: one of :data:`MASK_SAMPLINGS`.
        replicates: ``R``, dividing :data:`DRAW_BLOCK` / 2.
    """

    def __init__(
        self,
        sampler: MaskSampler,
        generator: torch.Generator,
        sampling: str = "random",
        replicates: int = 1,
    ) -> None:
        if sampling not in MASK_SAMPLINGS:
            raise ValueError(f"mask_sampling must be one of {MASK_SAMPLINGS}, got {sampling!r}")
        if replicates < 1 or (DRAW_BLOCK // 2) % replicates:
            raise ValueError(f"replicates must divide {DRAW_BLOCK // 2}, got {replicates}")
        self.sampler = sampler
        self.generator = generator
        self.sampling = sampling
        self.replicates = replicates
        self._sobol: list[torch.quasirandom.SobolEngine] = []
        if sampling == "sobol":
            if sampler.n_params > torch.quasirandom.SobolEngine.MAXDIM:
                raise ValueError(
                    f"mask_sampling='sobol' supports masks of at most "
                    f"{torch.quasirandom.SobolEngine.MAXDIM} random numbers (grid cells or "
                    f"feature groups, plus shifts), these need {sampler.n_params}: use "
                    f"mask_sampling='antithetic' or 'random'"
                )
            for _ in range(replicates):
                sobol_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
                self._sobol.append(
                    torch.quasirandom.SobolEngine(sampler.n_params, scramble=True, seed=sobol_seed)
                )
        self._buffer = torch.empty(0, sampler.n_params, device=sampler.device)
        self._start = 0

    def replicate_of(self, lo: int, hi: int) -> Tensor:
        """``(hi - lo,)`` long: the replicate of masks ``lo .. hi - 1``, on the sampler's device."""
        index = torch.arange(lo, hi, device=self.sampler.device)
        return index // replicate_unit(self.sampling) % self.replicates

    def _draw_block(self) -> Tensor:
        """The next :data:`DRAW_BLOCK` masks' parameters (an even number: antithetic
        pairs never straddle two blocks)."""
        if self._sobol:
            per_sequence = DRAW_BLOCK // len(self._sobol)
            points = torch.stack([engine.draw(per_sequence) for engine in self._sobol], dim=1)
            return to_device(points.reshape(DRAW_BLOCK, -1).to(torch.float32), self.sampler.device)
        if self.sampling == "antithetic":
            half = self.sampler.draw(DRAW_BLOCK // 2, self.generator)
            pairs = torch.stack([half, self.sampler.reflect(half)], dim=1)
            return pairs.reshape(DRAW_BLOCK, -1)
        return self.sampler.draw(DRAW_BLOCK, self.generator)

    def params(self, lo: int, hi: int) -> Tensor:
        """``(hi - lo, n_params)`` parameters of masks ``lo .. hi - 1``."""
        if lo < self._start or hi <= lo:
            raise ValueError(
                f"mask parameters are handed out in order: asked for [{lo}, {hi}) after "
                f"dropping those before {self._start}"
            )
        while self._start + self._buffer.shape[0] < hi:
            self._buffer = torch.cat([self._buffer, self._draw_block()])
            self._drop_before(lo)
        self._drop_before(lo)
        return self._buffer[: hi - lo]

    def _drop_before(self, lo: int) -> None:
        """Forgets the parameters of masks before ``lo`` (all held ones, if ``lo`` is past them)."""
        dropped = min(lo - self._start, self._buffer.shape[0])
        self._buffer = self._buffer[dropped:]
        self._start += dropped


class GridMaskSampler(MaskSampler):
    """RISE masks (Petsiuk et al. 2018, section 3.2), for each input of a tuple.

    For an input whose spatial size is ``S`` (per axis) and a grid ``s``:

    1. a binary ``s`` grid with ``P(1) = p_keep``;
    2. upsampled (bi/trilinear) to ``(s + 1) * cell`` with ``cell = ceil(S / s)``;
    3. cropped to ``S`` at a uniformly random integer shift in ``[0, cell)``
       per axis.

    Steps 2 and 3 are done together, one matmul per axis (:meth:`render`).

    Masks have shape ``(n, 1, 1, ..., *S)``: shared by the batch and broadcast
    over the channel (and any other non-spatial) dims.

    Args:
        input_shapes: shape ``(B, *rest)`` of each input.
        grid_size: int or per-axis tuple, see :func:`spatial_grid_shape`.
        p_keep: probability that a grid cell is kept.
        device: where masks are made.
        dtype: of the masks (the inputs' dtype): the upsampling runs in it.
        fit_grid: shrink a grid larger than its input (a default grid).
    """

    def __init__(
        self,
        input_shapes: Sequence[torch.Size],
        grid_size: GridSize,
        p_keep: float,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        fit_grid: bool = False,
    ) -> None:
        super().__init__(device, dtype)
        self.p_keep = p_keep
        self.layouts = [GridLayout.of(shape, grid_size, fit_grid) for shape in input_shapes]
        self.cells = [
            tuple(math.ceil(s / g) for s, g in zip(layout.spatial, layout.grid))
            for layout in self.layouts
        ]
        self._cell_sizes = [torch.tensor(cell, device=self.device) for cell in self.cells]
        self._matrices = [
            [
                interpolation_matrix(g, (g + 1) * c, dtype, self.device)
                for g, c in zip(layout.grid, cell)
            ]
            for layout, cell in zip(self.layouts, self.cells)
        ]
        self.mask_shapes = [layout.mask_shape for layout in self.layouts]
        self.n_params = sum(math.prod(layout.grid) + len(layout.grid) for layout in self.layouts)

    def split_params(self, params: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per input: binary grids ``(n, *s)`` in :attr:`dtype` and integer shifts ``(n, d)``."""
        out = []
        offset = 0
        n = params.shape[0]
        for layout, cell_size in zip(self.layouts, self._cell_sizes):
            grid = layout.grid
            n_cells = math.prod(grid)
            cells = params[:, offset : offset + n_cells].reshape(n, *grid)
            offset += n_cells
            shift_u = params[:, offset : offset + len(grid)]
            offset += len(grid)
            binary = (cells < self.p_keep).to(self.dtype)
            shifts = torch.floor(shift_u * cell_size.to(params.dtype)).long()
            out.append((binary, shifts))
        return out

    def reflect(self, params: Tensor) -> Tensor:
        """``1 - u`` for the grid cells, the same shifts: with ``p_keep = 0.5`` the
        partner of a mask is ``1 - mask`` (the upsampling is linear)."""
        reflected = params.clone()
        offset = 0
        for layout in self.layouts:
            n_cells = math.prod(layout.grid)
            reflected[:, offset : offset + n_cells] = 1.0 - params[:, offset : offset + n_cells]
            offset += n_cells + len(layout.grid)
        return reflected

    def render(self, params: Tensor) -> tuple[Tensor, ...]:
        """Masks ``(n, 1, ..., *S)`` per input: the binary grids upsampled and cropped.

        The (bi/tri)linear upsampling is separable, so each axis is one batched
        matmul with the rows of that axis's interpolation matrix that the crop
        keeps (:func:`interpolation_matrix`): the same values as upsampling the
        whole ``(s + 1) * cell`` volume and cropping it, without making it.
        """
        masks = []
        n = params.shape[0]
        for (binary, shifts), layout, matrices in zip(
            self.split_params(params), self.layouts, self._matrices
        ):
            mask = binary
            for axis, (matrix, length) in enumerate(zip(matrices, layout.spatial)):
                rows = matrix[shifts[:, axis, None] + torch.arange(length, device=self.device)]
                mask = _contract_axis(mask, axis + 1, rows)
            mask.clamp_max_(1.0)  # the weights' round-off can exceed 1 by an ulp
            masks.append(mask.reshape(n, *layout.mask_shape))
        return tuple(masks)


def interpolation_matrix(
    grid: int, upsampled: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``(upsampled, grid)``: row ``i`` holds the weights that linear upsampling
    (``align_corners=False``, torch's) gives the ``grid`` values at output ``i``."""
    identity = torch.eye(grid, dtype=torch.float32, device=device).unsqueeze(0)
    weights = F.interpolate(identity, size=upsampled, mode="linear", align_corners=False)
    return weights[0].T.to(dtype).contiguous()


def _contract_axis(values: Tensor, dim: int, rows: Tensor) -> Tensor:
    """``values`` ``(n, ..., g, ...)`` with dim ``dim`` (of size ``g``) replaced by
    ``rows`` ``(n, S, g)`` applied per mask: ``(n, ..., S, ...)``."""
    moved = values.movedim(dim, -1)
    flat = moved.reshape(moved.shape[0], -1, moved.shape[-1])
    out = torch.bmm(flat, rows.transpose(1, 2))
    return out.reshape(*moved.shape[:-1], rows.shape[1]).movedim(-1, dim)


class DesignMaskSampler(MaskSampler):
    """Binary designs: one uniform number per variable (a cell or a group), which is
    kept when the number is below :attr:`p_keep`; subclasses say how a value per
    variable becomes a mask (:meth:`expand`)."""

    p_keep: float

    def keep(self, params: Tensor) -> Tensor:
        """``(n, n_params)`` binary design: 1 where the variable is kept."""
        return (params < self.p_keep).to(params.dtype)

    @abstractmethod
    def expand(self, values: Tensor, fill: float = 0.0) -> tuple[Tensor, ...]:
        """``(n, n_params)`` values per variable to one ``(n, *mask_shape_i)`` per input;
        features of no variable (:data:`ALWAYS_KEPT`) get ``fill``."""

    def render(self, params: Tensor) -> tuple[Tensor, ...]:
        return self.expand(self.keep(params).to(self.dtype), fill=1.0)


class CellMaskSampler(DesignMaskSampler):
    """Binary masks over a grid of cells, upsampled by nearest neighbour (no shift).

    One uniform number per cell; a cell is kept when it is below ``p_keep``.
    Used by HSIC attribution, whose designs are these per-cell variables
    (:meth:`keep`). The grid convention is that of :class:`GridMaskSampler`.
    """

    def __init__(
        self,
        input_shapes: Sequence[torch.Size],
        grid_size: GridSize,
        p_keep: float,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        fit_grid: bool = False,
    ) -> None:
        super().__init__(device, dtype)
        self.p_keep = p_keep
        self.layouts = [GridLayout.of(shape, grid_size, fit_grid) for shape in input_shapes]
        if len({layout.grid for layout in self.layouts}) > 1:
            raise ValueError(
                "inputs of a tuple need grids of the same shape to share cells; give a "
                "feature_mask instead"
            )
        self.mask_shapes = [layout.mask_shape for layout in self.layouts]
        self.n_params = math.prod(self.layouts[0].grid)

    def expand(self, values: Tensor, fill: float = 0.0) -> tuple[Tensor, ...]:
        """``(n, n_cells)`` values per cell to one ``(n, *mask_shape_i)`` per input (every
        feature is in a cell: ``fill`` is unused)."""
        return self._upsample(values, smooth=False)

    def interpolate(self, values: Tensor) -> tuple[Tensor, ...]:
        """Like :meth:`expand`, but smooth: bicubic for 2-D grids, (tri)linear for 1-D/3-D."""
        return self._upsample(values, smooth=True)

    def _upsample(self, values: Tensor, smooth: bool) -> tuple[Tensor, ...]:
        n = values.shape[0]
        out = []
        for layout in self.layouts:
            cells = values.reshape(n, 1, *layout.grid)
            if smooth:
                mode = _SMOOTH_MODES[len(layout.grid)]
                upsampled = F.interpolate(
                    cells, size=layout.spatial, mode=mode, align_corners=False
                )
            else:
                upsampled = F.interpolate(cells, size=layout.spatial, mode="nearest")
            out.append(upsampled.reshape(n, *layout.mask_shape))
        return tuple(out)


class GroupIndex:
    """Feature groups shared across a tuple of inputs, as Captum's ``feature_mask``.

    Group ids (any integers) are mapped to ``0..n_groups-1``, except
    :data:`ALWAYS_KEPT` (-1): features with that id are in no group and never
    masked. Each feature mask is left-padded with singleton dims to its
    input's rank, so it has shape ``(Bm, ...)`` with ``Bm`` 1 or the batch size.

    Raises:
        TypeError: a feature mask is not an integer tensor.
        ValueError: the number of feature masks differs from the number of
            inputs, or a feature mask does not broadcast to its input.
    """

    def __init__(self, feature_mask: tuple[Tensor, ...], inputs: tuple[Tensor, ...]) -> None:
        check_one_per_input("feature_mask", feature_mask, inputs)
        padded = []
        for i, (mask, inp) in enumerate(zip(feature_mask, inputs)):
            if not isinstance(mask, Tensor) or mask.is_floating_point() or mask.is_complex():
                raise TypeError(
                    f"feature_mask[{i}] must be an integer tensor of group ids, got "
                    f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}"
                )
            if mask.dim() > inp.dim() or any(
                m not in (1, s) for m, s in zip(mask.shape[::-1], inp.shape[::-1])
            ):
                raise ValueError(
                    f"feature_mask[{i}] of shape {tuple(mask.shape)} cannot be broadcast "
                    f"to its input of shape {tuple(inp.shape)}"
                )
            padded.append(mask.reshape((1,) * (inp.dim() - mask.dim()) + tuple(mask.shape)))
        flat = torch.cat([m.reshape(-1).to(inputs[0].device) for m in padded])
        ids, inverse = torch.unique(flat, return_inverse=True)
        kept_slot = (ids == ALWAYS_KEPT).nonzero()
        self.has_always_kept = bool(kept_slot.numel())
        if self.has_always_kept:  # the always-kept features index one slot past the groups
            slot = int(kept_slot[0, 0])
            inverse = torch.where(
                inverse == slot, ids.numel() - 1, inverse - (inverse > slot).long()
            )
        self.n_groups = int(ids.numel()) - self.has_always_kept
        if self.n_groups == 0:
            raise ValueError(
                "feature_mask has no group to perturb: every feature is ALWAYS_KEPT "
                f"({ALWAYS_KEPT})"
            )
        self.index: list[Tensor] = []
        offset = 0
        for mask in padded:
            self.index.append(inverse[offset : offset + mask.numel()].reshape(mask.shape))
            offset += mask.numel()

    def always_kept(self) -> list[Tensor]:
        """Per input, ``(Bm, ...)`` True where a feature is :data:`ALWAYS_KEPT`."""
        return [index == self.n_groups for index in self.index]

    def expand(self, group_values: Tensor, fill: float = 0.0) -> tuple[Tensor, ...]:
        """``(n, n_groups)`` values per group to one ``(n, *feature_mask_i.shape)`` per input;
        :data:`ALWAYS_KEPT` features get ``fill``."""
        if self.has_always_kept:
            extra = group_values.new_full((group_values.shape[0], 1), fill)
            group_values = torch.cat([group_values, extra], dim=1)
        return tuple(group_values[:, index] for index in self.index)


class GroupMaskSampler(DesignMaskSampler):
    """Masks that keep each feature group with probability ``p_keep``.

    Works for any input rank: superpixels, token groups, tabular columns,
    time-series windows. Masks are binary with the feature masks' shapes.
    """

    def __init__(
        self,
        groups: GroupIndex,
        p_keep: float,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(device, dtype)
        self.groups = groups
        self.p_keep = p_keep
        self.n_params = groups.n_groups
        self.mask_shapes = [tuple(index.shape) for index in groups.index]

    def expand(self, values: Tensor, fill: float = 0.0) -> tuple[Tensor, ...]:
        """``(n, n_groups)`` values per group to one ``(n, *feature_mask_i.shape)`` per input;
        :data:`ALWAYS_KEPT` features get ``fill``."""
        return self.groups.expand(values, fill)


def replicate_unit(sampling: str) -> int:
    """Consecutive masks that go to one replicate together: an antithetic pair, or one mask."""
    return 2 if sampling == "antithetic" else 1


def to_device(params: Tensor, device: torch.device) -> Tensor:
    """Parameters drawn on the CPU, on ``device``. To CUDA they go through pinned
    memory without blocking: a plain copy would wait for every kernel queued on
    the device (the chunks before), once per block of masks."""
    if device.type == "cuda" and params.device.type == "cpu":
        return params.pin_memory().to(device, non_blocking=True)
    return params.to(device)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A private generator on ``device``, seeded with ``seed``; None takes the seed
    from one draw of torch's global generator (:func:`resolve_seed`), so
    ``torch.manual_seed`` makes the run reproducible.

    The samplers draw from a CPU generator (the default), so that a seed gives
    the same masks on every device. With an int ``seed`` the global RNG state is
    left untouched.
    """
    return torch.Generator(device=device).manual_seed(resolve_seed(seed))
