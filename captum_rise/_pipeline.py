"""The perturbation pipeline that RISE, HSIC and Sobol' attribution share: one run.

coverage -> sampler -> mask stream -> blend -> score -> chunks -> sink -> estimator.
A method brings what differs: how the masks of items ``lo .. hi - 1`` are made
(``masks_of``: its sampler and its stream of random numbers or designs), its
:class:`Sink` (RISE sums score-weighted masks, HSIC and Sobol' keep a table of
scores) and its estimator, which turns what the sink gathered into maps.
:meth:`Perturbations.run` does the rest, once for all of them, as an
:class:`Execution` says: it blends the masks into the inputs towards the
baselines, scores the perturbed copies with the model for the targets, runs the
items in chunks (:func:`captum_rise.batching.run_in_chunks`: the automatic size,
the padded last call, the out-of-memory fallback, calls in flight, retries),
splits the items among the ranks of a process group, stops after a round whose
result is good enough, and shows the progress on rank 0. The execution options
are defined once (:class:`ExecutionOptions`) and every method takes them as
``**execution``.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, TypeVar

import torch
from captum._utils.common import (
    _format_additional_forward_args,
    _format_output,
    _format_tensor_into_tuples,
    _is_tuple,
)
from captum._utils.progress import NullProgress, Progress
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import PerturbationAttribution
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
    check_chunk_size,
    check_retries,
    deterministic_chunk,
    run_in_chunks,
    sizer_for,
)
from captum_rise.distributed import (
    ProcessGroup,
    agree_on_seed,
    all_reduce,
    group_rank_and_size,
    share,
)
from captum_rise.masks import (
    CellMaskSampler,
    DesignMaskSampler,
    GroupIndex,
    GroupMaskSampler,
    make_generator,
)

MasksOf = Callable[[int, int], tuple[Tensor, ...]]
"""``masks_of(lo, hi)``: the masks of items ``lo .. hi - 1``, one ``(hi - lo, *mask_shape_i)``
tensor per input (1 keeps the input, 0 replaces it by the baseline)."""

Chunk = tuple[Tensor, tuple[Tensor, ...]]
"""What a chunk of items ``lo .. hi - 1`` gives its sink: the ``(hi - lo, B, K)`` scores
and the masks that made them."""

Gathered = TypeVar("Gathered", covariant=True)


class Sink(Protocol[Gathered]):
    """Keeps what the items give, and hands it over when asked: what a method sums.

    Attributes:
        block: items that the sink sums together (a power of two; 1 when it keeps
            every item apart): the ranks' shares start at multiples of it.
    """

    block: int

    def __call__(self, lo: int, hi: int, chunk: Chunk) -> None:
        """Keeps what items ``lo .. hi - 1`` gave; called once per item, in order."""

    def gathered(self, process_group: ProcessGroup) -> Gathered:
        """What all the items run so far gave, on every rank of ``process_group``."""


class ExecutionOptions(TypedDict, total=False):
    """How a method's forwards run: the keywords every perturbation method takes
    (``**execution``), with :class:`Execution`'s defaults.

    * ``perturbations_per_eval``: perturbations per forward call (each call
      sees that many times the batch); None (the default, unlike Captum's 1)
      chooses it while they run (:mod:`captum_rise.batching`): on the CPU from
      1 up (or, when a new batch size costs a GPU's warm-up, straight to the
      memory bound), on a GPU from 512 ImageNet images' worth of inputs (each
      new batch size costs a one-off plan there); the last
      chunk runs padded at a size the model has met; an out-of-memory error
      halves it. What was measured is remembered for the model and this
      input shape. Under ``torch.use_deterministic_algorithms(True)`` it is
      fixed instead (:func:`captum_rise.batching.deterministic_chunk`), so a
      seed gives the same bits. An int is used as given.
    * ``show_progress``: a progress bar (on rank 0 of a group).
    * ``process_group``: a ``torch.distributed`` group (e.g.
      ``torch.distributed.group.WORLD``) whose ranks share the work: every
      rank calls with the same arguments, runs its contiguous share of the
      perturbations, and every rank returns the whole result, the
      single-process result of the same ``seed`` (to the bit under
      deterministic mode). None: one process.
    * ``concurrent_calls``: forward calls kept in flight at once, on worker
      threads (default 1), for a forward that waits on something else (a
      model server, a remote API): set it to the requests the server takes at
      once. Results do not depend on it (chunks are summed in order). The
      forward must allow calls from several threads (ONNX Runtime sessions,
      :class:`captum_rise.runtimes.OpenVINOForward` and HTTP clients do).
    * ``retries``: times a forward call that raised a network, I/O or timeout
      error (an ``OSError``: urllib's and requests' HTTP errors,
      ``TimeoutError``) is tried again, at once, then after 0.05 s, 0.1 s, ...
      (default 3). When they run out, :class:`captum_rise.ForwardError` names
      the call's perturbations; no result is made from part of them. Other
      errors are raised at once.
    """

    perturbations_per_eval: int | None
    show_progress: bool
    process_group: ProcessGroup
    concurrent_calls: int
    retries: int


@dataclass(frozen=True)
class Execution:
    """The :class:`ExecutionOptions` of one call, checked (see there)."""

    perturbations_per_eval: int | None = None
    show_progress: bool = False
    process_group: ProcessGroup = None
    concurrent_calls: int = 1
    retries: int = DEFAULT_RETRIES

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> "Execution":
        """The options a method's ``**execution`` received; a ``TypeError`` names an
        unknown one, a ``ValueError`` a bad value."""
        unknown = sorted(set(options) - set(ExecutionOptions.__annotations__))
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        execution = cls(**options)
        check_chunk_size("perturbations_per_eval", execution.perturbations_per_eval)
        check_int("concurrent_calls", execution.concurrent_calls)
        check_retries(execution.retries)
        group_rank_and_size(execution.process_group)  # a clear error for a group not set up
        return execution


class Perturbations:
    """Perturbed copies of ``inputs`` and the model's scores of them, run for a sink.

    The run owns the execution (:class:`Execution`): chunks, calls in flight,
    retries, the ranks' shares, rounds that stop once the result is good
    enough, and the progress bar.

    Args:
        forward_func: the model or a function running it (for the chunk sizes
            remembered per model, :func:`captum_rise.batching.sizer_for`).
        inputs: the formatted inputs, each ``(B, ...)``.
        baselines: what a masked-out feature becomes (Captum's forms).
        scorer: the model's ``(n, B, K)`` scores of ``n`` perturbations of the batch.
        masks_of: see :data:`MasksOf`.
        execution: how the forwards run.
        label, unit: the progress bar's label (a method's name) and what it counts.
    """

    def __init__(
        self,
        forward_func: object,
        inputs: tuple[Tensor, ...],
        baselines: BaselineType,
        scorer: ModelScorer,
        masks_of: MasksOf,
        execution: Execution,
        label: str = "",
        unit: str = "it",
    ) -> None:
        self.forward_func = forward_func
        self.inputs = inputs
        self.blender = Blender(inputs, format_baselines(baselines, inputs))
        self.scorer = scorer
        self.masks_of = masks_of
        self.execution = execution
        self.rank, self.world_size = group_rank_and_size(execution.process_group)
        self.label, self.unit = label, unit
        self.retries = Retries(execution.retries, unit)  # one count of failures per call

    def run(
        self,
        sink: Sink[Gathered],
        n_items: int,
        done: Callable[[Gathered], bool] | None = None,
        round_items: int = 256,
    ) -> Gathered:
        """Items ``0 .. n_items - 1`` through the model into ``sink``, whose gathered
        result it returns. With ``done``, the items run in rounds of ``round_items``
        (a multiple of the sink's block) and the run stops after the first round whose
        gathered result is ``done`` (every rank sees the same one, so they stop
        together); without it, in one round. Every rank runs its contiguous share of
        each round (:meth:`share`), so any group gives the one-process items."""
        step = n_items if done is None else round_items
        rounds = [(lo, min(lo + step, n_items)) for lo in range(0, n_items, step)]
        shares = [self.share(lo, hi, sink.block) for lo, hi in rounds]
        bar = self.progress(sum(hi - lo for lo, hi in shares))
        for lo, hi in shares:
            self._run_items(lo, hi, sink, bar)
            gathered = sink.gathered(self.execution.process_group)
            if done is not None and done(gathered):
                break
        bar.close()
        return gathered

    def share(self, lo: int, hi: int, block: int = 1) -> tuple[int, int]:
        """This rank's contiguous share of items ``lo .. hi - 1`` (``lo`` a multiple
        of ``block``), aligned to ``block`` and to a fixed chunk that is a power of
        two, so that a group makes the calls and sums of one process."""
        unit = block
        if self.world_size > 1:
            chunk = self.execution.perturbations_per_eval
            if chunk is None and torch.are_deterministic_algorithms_enabled():
                chunk = deterministic_chunk(self._sizer())
            if chunk is not None and chunk & (chunk - 1) == 0:
                unit = max(unit, chunk)
        first, last = share(hi - lo, self.rank, self.world_size, unit)
        return lo + first, lo + last

    def progress(self, total: int) -> Progress:
        """A progress bar over ``total`` items, shown on rank 0 only."""
        if not (self.execution.show_progress and self.rank == 0):
            return NullProgress()
        return progress_bar(f"{self.label} attribution", total, self.unit)

    def _begin(self, lo: int, hi: int, batch: int) -> Callable[[], Chunk]:
        """Items ``lo .. hi - 1`` as one call of ``batch >= hi - lo`` perturbations
        (the rest padding): their masks now, and the call that blends and scores
        them (their scores and masks)."""
        masks = self.masks_of(lo, hi)

        def call() -> Chunk:
            perturbed = self.blender(masks, batch)
            scores = self.scorer(perturbed, hi - lo, batch)
            self.blender.release(perturbed, scores)
            return scores, masks

        return call

    def _run_items(self, lo: int, hi: int, sink: Sink[Any], progress: Progress) -> None:
        """Items ``lo .. hi - 1``, all of them in this process, through the model."""
        if hi > lo:
            with torch.no_grad():
                run_in_chunks(
                    hi - lo, self._begin, sink, self.execution.perturbations_per_eval,
                    self._sizer, self.inputs[0].device, progress, start=lo,
                    concurrent_calls=self.execution.concurrent_calls, retries=self.retries,
                )  # fmt: skip

    def _sizer(self) -> ChunkSizer:
        return sizer_for(self.forward_func, self.inputs)


class ScoreTable:
    """A :data:`Sink` that writes each item's first score; :meth:`gathered` is the
    ``(n_items, B)`` table of all ranks, checked to be finite."""

    block = 1

    def __init__(self, n_items: int, batch_size: int, device: torch.device) -> None:
        self.scores = torch.zeros(n_items, batch_size, device=device, dtype=torch.float32)

    def __call__(self, lo: int, hi: int, chunk: Chunk) -> None:
        self.scores[lo:hi] = chunk[0][..., 0]

    def gathered(self, process_group: ProcessGroup) -> Tensor:
        # zero where another rank ran the item: the sum is every item's own score
        scores = self.scores if process_group is None else all_reduce(self.scores, process_group)
        check_finite_scores(scores)
        return scores


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


@dataclass(frozen=True)
class AttributionCall:
    """One call of a perturbation method: what Captum's ``attribute`` received, formatted
    and checked, and how its forwards run. A method makes it first
    (:meth:`of`), then asks it for its seed and to run perturbations (:meth:`scores`,
    :meth:`run`); :func:`dataclasses.replace` gives the call with other ``baselines``
    (e.g. blurred references).

    Attributes:
        forward_func: the model or a function running it.
        label: the method's name, for the progress bar.
        inputs: the formatted inputs, each ``(B, ...)``.
        is_inputs_tuple: whether the method was given a tuple of inputs.
        baselines, target, additional_forward_args: as Captum's (``target`` checked).
        execution: the execution options, checked (:class:`Execution`).
    """

    forward_func: Callable[..., Any]
    label: str
    inputs: tuple[Tensor, ...]
    is_inputs_tuple: bool
    baselines: BaselineType
    target: TargetType
    additional_forward_args: object | None
    execution: Execution

    @classmethod
    def of(
        cls,
        method: "PerturbationAttribution",
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType,
        target: TargetType,
        additional_forward_args: object | None,
        execution: Mapping[str, Any],
    ) -> "AttributionCall":
        """The call of ``method`` (its ``forward_func`` and ``get_name()``) on Captum's
        arguments and its ``**execution`` keywords; a ``ValueError``/``TypeError`` names
        what is wrong, before any forward."""
        formatted = format_inputs(inputs, target)
        return cls(
            method.forward_func, method.get_name(), formatted, _is_tuple(inputs), baselines,
            target, additional_forward_args, Execution.of(execution),
        )  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self.inputs[0].device

    @property
    def batch_size(self) -> int:
        return self.inputs[0].shape[0]

    def seed(self, seed: int | None) -> int:
        """``seed``, or one draw from torch's global generator for None, the same on every
        rank of the call's process group (:func:`captum_rise.distributed.agree_on_seed`)."""
        return agree_on_seed(seed, self.execution.process_group)

    def generator(self, seed: int | None) -> torch.Generator:
        """A private CPU generator seeded by :meth:`seed`: the samplers draw on the
        CPU, so a seed gives the same masks on every device
        (:func:`~captum_rise.masks.make_generator`)."""
        return make_generator(self.seed(seed))

    def scorer(self, multi_output: bool = False) -> ModelScorer:
        """The model's scores for the call's target of each perturbed copy of the batch."""
        args = _format_additional_forward_args(self.additional_forward_args)
        return ModelScorer(self.forward_func, self.batch_size, args, self.target, multi_output)

    def run(
        self,
        scorer: ModelScorer,
        masks_of: MasksOf,
        sink: Sink[Gathered],
        n_items: int,
        unit: str = "it",
        done: Callable[[Gathered], bool] | None = None,
        round_items: int = 256,
    ) -> Gathered:
        """Items ``0 .. n_items - 1`` (masks by ``masks_of``, scores by ``scorer``) in one
        pipeline run into ``sink``, whose gathered result it returns
        (:meth:`Perturbations.run`; ``unit``: what the progress bar counts)."""
        pipeline = Perturbations(
            self.forward_func, self.inputs, self.baselines, scorer, masks_of, self.execution,
            self.label, unit,
        )  # fmt: skip
        return pipeline.run(sink, n_items, done, round_items)

    def scores(self, masks_of: MasksOf, n_items: int, unit: str = "it") -> Tensor:
        """The ``(n_items, B)`` scores of the model for the target of the items whose
        masks ``masks_of`` makes (a :class:`ScoreTable`), in one pipeline run."""
        table = ScoreTable(n_items, self.batch_size, self.device)
        return self.run(self.scorer(), masks_of, table, n_items, unit)

    def design_run(
        self, sampler: DesignMaskSampler, designs: Tensor | None, scores: Tensor
    ) -> "DesignRun":
        """What the run gave the estimator (:class:`DesignRun`)."""
        return DesignRun(self.is_inputs_tuple, self.inputs, sampler, designs, scores)


@dataclass
class DesignRun:
    """What a design method's run gave its estimator (HSIC, Sobol' attribution).

    Attributes:
        is_inputs_tuple: whether the method was given a tuple of inputs.
        inputs: the formatted inputs, each ``(B, ...)``.
        sampler: the designs' sampler (grid cells or ``feature_mask`` groups).
        designs: ``(n, V)`` the designs' variables (None when the estimator
            reads only the scores).
        scores: ``(n, B)`` the model's scores of the designs.
    """

    is_inputs_tuple: bool
    inputs: tuple[Tensor, ...]
    sampler: DesignMaskSampler
    designs: Tensor | None
    scores: Tensor

    def per_example(self, estimator: Callable[..., Tensor], *args: Any) -> Tensor:
        """``(B, ...)``: ``estimator(designs, scores[:, b], *args)`` of every example,
        in the attributions' floating dtype (at least float32)."""
        assert self.designs is not None
        with torch.no_grad():
            examples = range(self.scores.shape[1])
            values = torch.stack(
                [estimator(self.designs, self.scores[:, b], *args) for b in examples]
            )
        return values.to(torch.promote_types(attribution_dtype(self.inputs[0]), torch.float32))

    def attributions(self, values: Tensor, smooth_map: bool) -> Any:
        """The attributions of ``(B, V)`` values per variable (:func:`design_attributions`),
        as a tensor or a tuple like the method's inputs."""
        maps = design_attributions(values, self.sampler, self.inputs, smooth_map)
        return _format_output(self.is_inputs_tuple, maps)


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
