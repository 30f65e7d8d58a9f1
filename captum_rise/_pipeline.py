"""The perturbation pipeline that RISE, HSIC and Sobol' attribution share.

coverage -> sampler -> mask stream -> blend -> score -> chunks -> sink. A method
brings how the masks of items ``lo .. hi - 1`` are made (``masks_of``: its
sampler and its stream of random numbers or designs) and what is done with
each chunk's scores (its sink: RISE adds score-weighted masks to sums, HSIC
and Sobol' keep a table of scores for their estimators). :class:`Perturbations`
does the rest, once for all of them: it blends the masks into the inputs
towards the baselines, scores the perturbed copies with the model for the
targets, runs the items in chunks (:func:`captum_rise.batching.run_in_chunks`:
the automatic size, the padded last call, the out-of-memory fallback), shows
the progress on rank 0, and splits the items among the ranks of a process
group.
"""

from collections.abc import Callable

import torch
from captum._utils.common import _format_additional_forward_args, _format_tensor_into_tuples
from captum._utils.progress import NullProgress, Progress
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from torch import Tensor

from captum_rise._coverage import Coverage
from captum_rise._forward import Blender, ModelScorer, check_finite_scores
from captum_rise._progress import progress_bar
from captum_rise._validation import (
    attribution_dtype,
    check_inputs,
    check_int,
    check_target,
    format_baselines,
)
from captum_rise.batching import (
    DEFAULT_RETRIES,
    ChunkSizer,
    Retries,
    deterministic_chunk,
    run_in_chunks,
    sizer_for,
)
from captum_rise.distributed import ProcessGroup, all_reduce, group_rank_and_size, share
from captum_rise.masks import CellMaskSampler, DesignMaskSampler, GroupIndex, GroupMaskSampler

MasksOf = Callable[[int, int], tuple[Tensor, ...]]
"""``masks_of(lo, hi)``: the masks of items ``lo .. hi - 1``, one ``(hi - lo, *mask_shape_i)``
tensor per input (1 keeps the input, 0 replaces it by the baseline)."""

Chunk = tuple[Tensor, tuple[Tensor, ...]]
"""What a chunk of items ``lo .. hi - 1`` gives its sink: the ``(hi - lo, B, K)`` scores
and the masks that made them."""

Sink = Callable[[int, int, Chunk], None]
"""``sink(lo, hi, chunk)``: keeps what items ``lo .. hi - 1`` gave; called once per item."""


class Perturbations:
    """Perturbed copies of ``inputs`` and the model's scores of them, a chunk at a time.

    Args:
        forward_func: the model or a function running it (for the chunk sizes
            remembered per model, :func:`captum_rise.batching.sizer_for`).
        inputs: the formatted inputs, each ``(B, ...)``.
        baselines: what a masked-out feature becomes (Captum's forms).
        scorer: the model's ``(n, B, K)`` scores of ``n`` perturbations of the batch.
        masks_of: see :data:`MasksOf`.
        perturbations_per_eval: items per forward call; None chooses it.
        process_group: ranks that share the items (None: one process).
        show_progress: show a progress bar (on rank 0) labelled ``label``
            and counted in ``unit``.
        concurrent_calls: forward calls kept in flight at once
            (:func:`captum_rise.batching.run_in_chunks`).
        block: the sink sums items in blocks of this many (a power of two,
            :func:`captum_rise.accumulator.sum_block`): the ranks' shares start
            at multiples of it, and of a fixed chunk that is a power of two, so a
            group makes the calls and sums of one process.
        retries: times a forward call that failed with a network, I/O or timeout
            error is tried again (:class:`captum_rise.batching.Retries`).
    """

    def __init__(
        self,
        forward_func: object,
        inputs: tuple[Tensor, ...],
        baselines: BaselineType,
        scorer: ModelScorer,
        masks_of: MasksOf,
        perturbations_per_eval: int | None,
        process_group: ProcessGroup = None,
        show_progress: bool = False,
        label: str = "",
        unit: str = "it",
        concurrent_calls: int = 1,
        block: int = 1,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.forward_func = forward_func
        self.inputs = inputs
        self.blender = Blender(inputs, format_baselines(baselines, inputs))
        self.scorer = scorer
        self.masks_of = masks_of
        self.perturbations_per_eval = perturbations_per_eval
        self.process_group = process_group
        self.rank, self.world_size = group_rank_and_size(process_group)
        self.device = inputs[0].device
        self.show_progress = show_progress
        self.label, self.unit = label, unit
        self.concurrent_calls = check_int("concurrent_calls", concurrent_calls)
        self.block = block
        self.retries = Retries(retries, unit)  # one count of failures for the whole call

    def begin(self, lo: int, hi: int, batch: int) -> Callable[[], Chunk]:
        """Items ``lo .. hi - 1`` as one call of ``batch >= hi - lo`` perturbations
        (the rest padding): their masks now, and the call that blends and scores
        them (their scores and masks)."""
        masks = self.masks_of(lo, hi)
        return lambda: (self.scorer(self.blender(masks, batch), hi - lo, batch), masks)

    def share(self, lo: int, hi: int) -> tuple[int, int]:
        """This rank's contiguous share of items ``lo .. hi - 1`` (``lo`` a multiple of
        :attr:`block`), aligned to the blocks and to a fixed chunk."""
        unit = self.block
        if self.world_size > 1:
            chunk = self.perturbations_per_eval
            if chunk is None and torch.are_deterministic_algorithms_enabled():
                chunk = deterministic_chunk(self._sizer())
            if chunk is not None and chunk & (chunk - 1) == 0:  # a power of two
                unit = max(unit, chunk)
        first, last = share(hi - lo, self.rank, self.world_size, unit)
        return lo + first, lo + last

    def progress(self, total: int) -> Progress:
        """A progress bar over ``total`` items, shown on rank 0 only."""
        if not (self.show_progress and self.rank == 0):
            return NullProgress()
        return progress_bar(f"{self.label} attribution", total, self.unit)

    def run(self, lo: int, hi: int, sink: Sink, progress: Progress) -> None:
        """Items ``lo .. hi - 1``, all of them in this process, through the model."""
        if hi > lo:
            with torch.no_grad():
                run_in_chunks(
                    hi - lo,
                    self.begin,
                    sink,
                    self.perturbations_per_eval,
                    self._sizer,
                    self.device,
                    progress,
                    start=lo,
                    concurrent_calls=self.concurrent_calls,
                    retries=self.retries,
                )

    def scores(self, n_items: int) -> Tensor:
        """``(n_items, B)`` first scores of items ``0 .. n_items - 1``: every rank runs
        its share and the table is summed over the ranks. Checked to be finite."""
        first, last = self.share(0, n_items)
        table = ScoreTable(n_items, self.inputs[0].shape[0], self.device)
        bar = self.progress(last - first)
        self.run(first, last, table, bar)
        bar.close()
        scores = table.scores
        if self.process_group is not None:
            scores = all_reduce(scores, self.process_group)
        check_finite_scores(scores)
        return scores

    def _sizer(self) -> ChunkSizer:
        return sizer_for(self.forward_func, self.inputs)


class ScoreTable:
    """A :data:`Sink` that writes each item's first score: :attr:`scores` ``(n_items, B)``,
    zero where no item was run (another rank's share)."""

    def __init__(self, n_items: int, batch_size: int, device: torch.device) -> None:
        self.scores = torch.zeros(n_items, batch_size, device=device, dtype=torch.float32)

    def __call__(self, lo: int, hi: int, chunk: Chunk) -> None:
        self.scores[lo:hi] = chunk[0][..., 0]


def design_sampler(
    inputs: tuple[Tensor, ...],
    coverage: Coverage,
    p_keep: float,
    device: torch.device,
    dtype: torch.dtype,
) -> DesignMaskSampler:
    """The designs' sampler of a coverage: one variable per ``feature_mask`` group
    (:class:`captum_rise.masks.GroupMaskSampler`) or per grid cell, upsampled by
    nearest neighbour (:class:`captum_rise.masks.CellMaskSampler`)."""
    if coverage.feature_mask is not None:
        groups = GroupIndex(coverage.feature_mask, inputs)
        return GroupMaskSampler(groups, p_keep, device, dtype)
    shapes = [inp.shape for inp in inputs]
    return CellMaskSampler(shapes, coverage.grid_size, p_keep, device, dtype, coverage.fit_grid)


def own_map(maps: Tensor) -> Tensor:
    """``(B, Bm, ...)`` -> ``(B, ...)``: example ``b`` gets the map drawn on its own
    feature mask (``Bm = B``) or on the shared one (``Bm = 1``)."""
    if maps.shape[1] == 1:
        return maps[:, 0]
    index = torch.arange(maps.shape[0], device=maps.device)
    return maps[index, index]


def format_inputs(inputs: TensorOrTupleOfTensorsGeneric, target: TargetType) -> tuple[Tensor, ...]:
    """``inputs`` as a tuple, after checking them and the targets (Captum's formats;
    a ``ValueError``/``TypeError`` naming what is wrong)."""
    formatted = _format_tensor_into_tuples(inputs)
    check_inputs(formatted)
    check_target(target, formatted[0].shape[0])
    return formatted


def target_scorer(
    forward_func: Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    additional_forward_args: object | None,
    target: TargetType,
) -> ModelScorer:
    """The model's score for ``target`` of each perturbed copy of the batch ``inputs``."""
    return ModelScorer(
        forward_func,
        inputs[0].shape[0],
        _format_additional_forward_args(additional_forward_args),
        target=target,
    )


def design_attributions(
    values: Tensor, sampler: DesignMaskSampler, inputs: tuple[Tensor, ...], smooth_map: bool
) -> tuple[Tensor, ...]:
    """Attributions of design methods from their ``(B, n_params)`` values per variable:
    upsampled to each input (bicubically for grid cells when ``smooth_map``, else
    constant per cell or group, :data:`captum_rise.masks.ALWAYS_KEPT` features 0),
    each example's map drawn on its own feature mask (:func:`own_map`), with the
    inputs' shapes and floating dtypes."""
    values = values.to(torch.promote_types(attribution_dtype(inputs[0]), torch.float32))
    if smooth_map and isinstance(sampler, CellMaskSampler):
        maps = sampler.interpolate(values)
    else:
        maps = sampler.expand(values)
    return tuple(
        own_map(m).to(attribution_dtype(inp)).expand_as(inp).contiguous()
        for m, inp in zip(maps, inputs)
    )
