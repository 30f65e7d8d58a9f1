"""RISE: Randomized Input Sampling for Explanation (Petsiuk et al., BMVC 2018)."""

from collections.abc import Callable, Sequence
from typing import Literal, overload

import torch
import torch.distributed as dist
from captum._utils.common import _format_additional_forward_args, _format_output, _is_tuple
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from torch import Tensor
from typing_extensions import Unpack

from captum_rise._base import MaskAttribution, log_usage
from captum_rise._coverage import DEFAULT_GRID_SIZE, Coverage, choose_coverage
from captum_rise._forward import ClassScorer, ModelScorer
from captum_rise._pipeline import (
    AttributionCall,
    ExecutionOptions,
    design_sampler,
)
from captum_rise._validation import (
    attribution_dtype,
    check_int,
    check_positive,
    check_probability,
    is_integer_input,
)
from captum_rise.accumulator import (
    BUFFER_BYTES,
    SaliencyAccumulator,
    check_normalization,
    sum_block,
)
from captum_rise.distributed import (
    ProcessGroup,
    all_reduce,
)
from captum_rise.masks import (
    DEFAULT_MASK_SAMPLING,
    GridMaskSampler,
    GridSize,
    GroupMaskSampler,
    MaskSampler,
    ParamStream,
    replicate_unit,
)

FeatureMaskType = Tensor | tuple[Tensor, ...] | None

ROUND_MASKS = 256
"""With a ``tolerance``, masks are drawn in rounds of this many; the error is checked after each."""

ERROR_REPLICATES = {"random": 16, "antithetic": 16, "sobol": 4}
"""With ``tolerance`` or ``return_convergence_delta``: per mask sampling, the independent
replicates of the masks whose spread gives the error estimate
(:meth:`SaliencyAccumulator.relative_standard_error`). More replicates make the estimate less
noisy; a Sobol' replicate is a scrambled sequence of its own, whose advantage grows with its
length, so Sobol' masks use 4 (measured on issue 21's box model: 512 masks to reach 0.2, 768 with
8 replicates)."""


class RISE(MaskAttribution):
    r"""RISE (Petsiuk, Das & Saenko, BMVC 2018): black-box saliency from random masks.

    The model is probed with ``N`` randomly masked copies of the input,
    ``x_k = input * M_k + baseline * (1 - M_k)``, and the saliency of every
    feature is the score-weighted average of the masks, normalised by the keep
    probability:

    .. math::
        S = \frac{1}{N \cdot p_{keep}} \sum_{k=1}^{N} f(x_k) \, M_k
          \approx E[f(x) \mid M = 1]

    Without ``feature_mask`` the masks are the paper's: a binary ``s x s`` grid
    (keep probability ``p_keep``), bilinearly upsampled to ``(s + 1) * cell``
    and cropped at a random shift; they cover the trailing 1, 2 or 3 spatial
    dims and are broadcast over channels. With ``feature_mask`` each feature
    group is kept with probability ``p_keep``, for inputs of any rank.

    Masks are rendered on the inputs' device, in the inputs' dtype, a chunk of
    ``perturbations_per_eval`` at a time, so peak memory does not grow with
    ``n_masks``; their random parameters come from a private CPU
    :class:`torch.Generator`. The same ``seed`` gives the same result for any
    ``perturbations_per_eval`` (automatic or fixed), for a batch as for its
    examples one by one, and on the CPU as on a GPU (to rounding); under
    ``torch.use_deterministic_algorithms(True)``, the same bits on every call,
    with calls in flight, anytime and from a process group (sums in fixed blocks
    and a fixed tree, :class:`captum_rise.SaliencyAccumulator`; the chunk fixed).

    float16 and bfloat16 inputs (with a model in the same dtype) are blended
    in their dtype while the sums are kept in float32; the maps come back in
    the inputs' dtype. ``channels_last`` inputs give ``channels_last``
    perturbed batches.

    Args:
        forward_func: the model or any callable returning ``(B, C)`` scores,
            or ``(B,)`` scores (then ``target=None``). Scores are used as
            returned: pass probabilities (e.g. a softmax) as in the paper.
    """

    method_name = "RISE"
    n_masks_used: int | None = None
    """Masks the last call used (fewer than ``n_masks`` when ``tolerance`` stopped it)."""

    def has_convergence_delta(self) -> bool:
        return True

    # Captum's convention: the return type follows return_convergence_delta.
    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        feature_mask: FeatureMaskType = None,
        n_masks: int = 4000,
        grid_size: GridSize | None = None,
        p_keep: float = 0.5,
        seed: int | None = None,
        normalization: str | None = None,
        mask_sampling: str = DEFAULT_MASK_SAMPLING,
        tolerance: float | None = None,
        return_convergence_delta: Literal[False] = False,
        **execution: Unpack[ExecutionOptions],
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        feature_mask: FeatureMaskType = None,
        n_masks: int = 4000,
        grid_size: GridSize | None = None,
        p_keep: float = 0.5,
        seed: int | None = None,
        normalization: str | None = None,
        mask_sampling: str = DEFAULT_MASK_SAMPLING,
        tolerance: float | None = None,
        *,
        return_convergence_delta: Literal[True],
        **execution: Unpack[ExecutionOptions],
    ) -> tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @log_usage
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        feature_mask: FeatureMaskType = None,
        n_masks: int = 4000,
        grid_size: GridSize | None = None,
        p_keep: float = 0.5,
        seed: int | None = None,
        normalization: str | None = None,
        mask_sampling: str = DEFAULT_MASK_SAMPLING,
        tolerance: float | None = None,
        return_convergence_delta: bool = False,
        **execution: Unpack[ExecutionOptions],
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""Saliency of every input feature for ``target``.

        Args:
            inputs: a tensor ``(B, ...)`` or a tuple of them, batch first.
            baselines: what a masked-out feature becomes: None (0, the
                paper's dimming), a number, a tensor broadcastable to the input,
                or a tuple of those, one per input.
            target: output index for each example, in any Captum form: None
                (for ``(B,)`` outputs), int, tuple, list or tensor of length B.
                With None and ``(N, K)`` outputs, ``K > 1`` (e.g. an answer's
                per-token log-probabilities, several heads), every output is
                explained from the same forwards: maps ``(B, K, ...)``.
            additional_forward_args: extra arguments to ``forward_func``;
                tensors are repeated for every mask, as Captum does.
            feature_mask: integer group ids broadcastable to each input (first
                dim 1 or B), ids shared across a tuple. When given, groups are
                kept or dropped instead of the grid. A group is one random
                variable for the whole batch, numbered by the batch's sorted
                ids: with per-example masks whose examples use different ids,
                an example's map depends on the other examples' ids (the same
                distribution, other draws), so splitting such a batch changes
                the maps for a given ``seed``. Features with the id
                :data:`captum_rise.masks.ALWAYS_KEPT` (-1: special tokens,
                padding) are never masked and get 0.
            n_masks: ``N``, the number of masks (paper: 4000 for VGG16, 8000
                for ResNet50).
            grid_size: ``s``, an int or a per-axis tuple for the trailing
                spatial dims: ``(H, W)`` of ``(B, C, H, W)`` images, ``L`` of
                ``(B, C, L)`` signals, ``(D, H, W)`` of volumes. None (the
                default): one group per feature for ``(B, F)`` tables; else the
                ``forward_func``'s ``default_grid_size`` attribute when it has
                one (16 for :class:`captum_rise.scores.DetectionScore`, as
                D-RISE), else 7 (the paper's), shrunk to the input on any axis
                shorter than that (one cell per element). Rank-3 inputs are
                ``(B, C, L)`` signals; for ``(B, T, D)`` token embeddings pass
                ``feature_mask=torch.arange(T).reshape(1, T, 1)`` (a warning
                says so when ``D >= 4 T``). A grid given explicitly is used as
                given.
            p_keep: probability that a cell or group is kept (paper: 0.5).
            seed: seeds the private mask generator; None takes one draw from
                torch's global generator (Captum's convention:
                ``torch.manual_seed`` reproduces it).
            normalization: how the score-weighted masks become a map
                (:meth:`captum_rise.SaliencyAccumulator.saliency`).
                ``"expectation"`` divides by ``N * p_keep`` (the paper):
                ``E[f | M = 1]``. ``"coverage"`` (``sum_k f_k M_k / sum_k
                M_k``) and ``"centred"`` (the mean score as a control
                variate) estimate the same map without the masks' uneven
                coverage times the mean score: use one when the scores vary
                little around a large mean (similarities), where that noise
                would dominate the map. ``"difference"`` is the signed view,
                ``E[f | kept] - E[f | dropped]`` from the same forwards:
                positive where a feature raises the score, negative where it
                lowers it (for ``feature_mask`` groups at ``p_keep=0.5``, the
                Banzhaf value). None: the ``forward_func``'s
                ``default_normalization`` attribute when it has one
                (``"centred"`` for :class:`captum_rise.scores.SimilarityScore`),
                else ``"expectation"``.
            tolerance: stop early: ``n_masks`` becomes the maximum, masks are
                drawn in rounds of :data:`ROUND_MASKS`, and the run stops once
                the estimated relative standard error of the map is at most
                ``tolerance`` for every example. That error is the RMS over
                the map's features (at the masks' resolution) of each
                feature's standard error, divided by the standard deviation
                of the map over its features. The standard errors come from
                the spread of independent replicates of the masks
                (randomised quasi-Monte Carlo, :data:`ERROR_REPLICATES`):
                mask ``k`` is in replicate ``k mod R`` (antithetic pairs stay
                together), and Sobol' masks come from ``R`` independently
                scrambled sequences, so the estimate measures the error of
                every ``mask_sampling`` instead of bounding it (within a
                factor 2 of the true error in at least 16 of 20 seeds for each
                sampling, tested against closed forms). The masks used are
                masks ``0 .. n`` of the seed's replicated stream, so the map
                is the one ``n_masks=n, return_convergence_delta=True``
                gives (Sobol' masks without an error estimate come from one
                sequence, with a somewhat smaller error for the same ``n``);
                ``n`` is left in :attr:`n_masks_used`. Every
                ``normalization`` has its error (the same estimator on each
                replicate). With ``process_group``,
                every rank runs its share of each round and the ranks gather
                their sums before the check, so they stop together, at the
                one-process ``n``.
            return_convergence_delta: also return, per example, the estimated
                relative standard error defined above (Captum's convention).
            mask_sampling: how the masks' random numbers are drawn; every
                choice gives each mask the paper's distribution, so the map
                estimates the same expectation. ``"sobol"`` (the default):
                scrambled Sobol' points (``torch.quasirandom.SobolEngine``) for
                the cells and shifts; ``"antithetic"``: masks in pairs ``M``
                and its mirror, the same shift with every grid cell's draw
                ``u`` replaced by ``1 - u`` (for ``p_keep = 0.5``, ``1 - M``:
                the upsampling is linear); ``"random"``: independent draws,
                the paper's. Measured on MobileNetV2 and real photos
                (``benchmarks/mask_sampling.py``), Sobol' masks reach the map
                error of 1000 random masks with about 250, and fewer still at
                larger N (docs/guide/usage.md, "Variance-reduced masks"). All
                are seeded by ``seed``, independent of the chunk size, and work with
                ``feature_mask`` groups; Sobol' points exist for up to 21201
                numbers per mask (cells or groups plus shifts).
            **execution: how the forwards run (:class:`captum_rise.ExecutionOptions`):
                ``perturbations_per_eval`` (masks per forward call; each call
                sees that many times ``B`` inputs; None, the default, chooses
                it), ``show_progress``, ``process_group`` (a
                ``torch.distributed`` group whose ranks share the masks and all
                return the whole map, the one-process map of the same seed),
                ``concurrent_calls`` (calls in flight, for model servers) and
                ``retries`` (of calls that failed with network, I/O or timeout
                errors).

        Returns:
            Attributions with the shape and tuple-ness of ``inputs``: a tensor
            ``(B, ...)`` or a tuple of them (``(B, K, ...)`` for ``K`` outputs
            with ``target=None``), floating (float32 for integer inputs);
            with ``return_convergence_delta``, ``(attributions, delta)`` with
            ``delta`` the ``(B,)`` (or ``(B, K)``) relative standard errors.
        """
        call = AttributionCall.of(
            self, inputs, baselines, target, additional_forward_args, execution
        )
        maps, errors = self._estimate(
            call, call.scorer(multi_output=True), feature_mask, n_masks, grid_size, p_keep, seed,
            normalization, mask_sampling, tolerance, return_convergence_delta,
        )  # fmt: skip
        n_outputs = maps[0].shape[1]
        attributions = tuple(  # (B, ...) for one output, else (B, K, ...)
            saliency.expand(inp.shape[0], n_outputs, *inp.shape[1:]).squeeze(1).contiguous()
            for saliency, inp in zip(maps, call.inputs)
        )
        output = _format_output(_is_tuple(inputs), attributions)
        if return_convergence_delta:
            assert errors is not None
            return output, errors[:, 0] if n_outputs == 1 else errors
        return output

    @log_usage
    def attribute_classes(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        classes: Sequence[int] | Tensor | None = None,
        baselines: BaselineType = None,
        additional_forward_args: object | None = None,
        feature_mask: FeatureMaskType = None,
        n_masks: int = 4000,
        grid_size: GridSize | None = None,
        p_keep: float = 0.5,
        seed: int | None = None,
        normalization: str | None = None,
        mask_sampling: str = DEFAULT_MASK_SAMPLING,
        tolerance: float | None = None,
        **execution: Unpack[ExecutionOptions],
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""Saliency maps for several classes from one set of forward passes.

        The ``(N, B, C)`` scores of the masked inputs are multiplied with the
        masks in one matmul per chunk, so explaining 1000 classes costs the same
        forwards as explaining one. Arguments are those of :meth:`attribute`,
        with ``classes`` in place of ``target``; with ``tolerance``, the run
        stops when every class's map meets it.

        Args:
            classes: ``K`` class indices into the ``(B, C)`` output, or None for
                all ``C`` classes.

        Returns:
            ``(B, K, ...)`` per input, map ``[:, k]`` explaining ``classes[k]``.
            Sums are kept at the masks' resolution; a map broadcast over
            channels is returned as an expanded view (``.contiguous()`` makes
            a copy).
        """
        call = AttributionCall.of(self, inputs, baselines, None, additional_forward_args, execution)
        args = _format_additional_forward_args(additional_forward_args)
        class_index = _class_index(classes, call.device)
        scorer = ClassScorer(self.forward_func, call.batch_size, args, class_index)
        maps, _ = self._estimate(
            call, scorer, feature_mask, n_masks, grid_size, p_keep, seed, normalization,
            mask_sampling, tolerance, False,
        )  # fmt: skip
        attributions = tuple(
            saliency.expand(inp.shape[0], saliency.shape[1], *inp.shape[1:])
            for saliency, inp in zip(maps, call.inputs)
        )
        return _format_output(_is_tuple(inputs), attributions)

    def _estimate(
        self,
        call: AttributionCall,
        scorer: ModelScorer,
        feature_mask: FeatureMaskType,
        n_masks: int,
        grid_size: GridSize | None,
        p_keep: float,
        seed: int | None,
        normalization: str | None,
        mask_sampling: str,
        tolerance: float | None,
        track_error: bool,
    ) -> tuple[list[Tensor], Tensor | None]:
        """The sampler and the sink of RISE, handed to one pipeline run (in rounds of
        :data:`ROUND_MASKS` until the relative standard error is at most
        ``tolerance``, when given).

        Returns ``(B, K, *mask_rest_i)`` per input in the inputs' dtype, ``K``
        being the number of scores ``scorer`` returns per example, and the
        ``(B, K)`` relative standard errors when ``tolerance`` or
        ``track_error`` is set (else None). Sets :attr:`n_masks_used`."""
        n_masks = check_int("n_masks", n_masks)
        p_keep = check_probability("p_keep", p_keep)
        if normalization is None:
            normalization = getattr(self.forward_func, "default_normalization", "expectation")
        check_normalization(normalization, p_keep)  # before any forward
        tolerance = None if tolerance is None else check_positive("tolerance", tolerance)
        track_error = track_error or tolerance is not None
        replicates, min_masks = _error_replicates(mask_sampling, n_masks, track_error)
        default_grid = getattr(self.forward_func, "default_grid_size", DEFAULT_GRID_SIZE)
        coverage = choose_coverage(call.inputs, feature_mask, grid_size, default_grid)
        sampler = _make_sampler(call.inputs, coverage, p_keep, attribution_dtype(call.inputs[0]))
        replicates = replicates if track_error else 1
        stream = ParamStream(sampler, call.generator(seed), mask_sampling, replicates)
        sums = MaskSums(call.batch_size, sampler, stream, track_error, p_keep, normalization)
        accumulator = call.run(
            scorer, lambda lo, hi: sampler.render(stream.params(lo, hi)), sums, n_masks, "mask",
            sums.stop_rule(tolerance, min_masks), ROUND_MASKS,
        )  # fmt: skip
        self.n_masks_used = accumulator.n_masks
        errors = sums.errors(accumulator) if track_error else None
        return sums.maps(accumulator, call.inputs), errors


class MaskSums:
    """RISE's sink (:class:`captum_rise._pipeline.Sink`) and estimator: every chunk's
    score-weighted masks are added to a :class:`SaliencyAccumulator`, made at the
    first chunk (when the number of scores per example is known), with each mask's
    replicate when the error is tracked; the maps and their errors are read from it
    with ``normalization``."""

    def __init__(
        self,
        batch_size: int,
        sampler: MaskSampler,
        stream: ParamStream,
        track_error: bool,
        p_keep: float,
        normalization: str,
    ) -> None:
        self.batch_size, self.mask_shapes = batch_size, sampler.mask_shapes
        self.device, self.dtype = sampler.device, torch.promote_types(sampler.dtype, torch.float32)
        self.stream, self.replicates = stream, stream.replicates if track_error else 0
        self.p_keep, self.normalization = p_keep, normalization
        self.block = sum_block(self.mask_shapes, self.dtype, BUFFER_BYTES)
        self.accumulator: SaliencyAccumulator | None = None
        self.always_kept = None  # features never masked: nothing is known of them
        if isinstance(sampler, GroupMaskSampler) and sampler.groups.has_always_kept:
            self.always_kept = sampler.groups.always_kept()

    def __call__(self, lo: int, hi: int, chunk: tuple[Tensor, tuple[Tensor, ...]]) -> None:
        scores, masks = chunk
        if self.accumulator is None:
            self.accumulator = self.empty(scores.shape[2])
        replicates = self.stream.replicate_of(lo, hi) if self.replicates else None
        self.accumulator.add(scores, masks, replicates, first=lo)

    def empty(self, n_outputs: int) -> SaliencyAccumulator:
        """An accumulator with no masks yet, for ``n_outputs`` scores per example."""
        return SaliencyAccumulator(
            self.batch_size,
            n_outputs,
            self.mask_shapes,
            self.device,
            self.dtype,
            replicates=self.replicates,
        )

    def gathered(self, process_group: ProcessGroup) -> SaliencyAccumulator:
        """The sums of all masks run so far, on every rank (a copy under a group)."""
        if process_group is None:
            assert self.accumulator is not None  # n_masks >= 1
            return self.accumulator
        # A rank with no masks (fewer masks than ranks) learns the number of outputs.
        local_outputs = torch.tensor([self.accumulator.n_outputs if self.accumulator else 0])
        n_outputs = int(all_reduce(local_outputs, process_group, dist.ReduceOp.MAX).item())
        summed = self.empty(n_outputs)
        if self.accumulator is not None:
            summed.merge(self.accumulator)  # a copy: this rank's masks go on after
        return summed.all_reduce(process_group)

    def errors(self, summed: SaliencyAccumulator) -> Tensor:
        """``(B, K)`` relative standard errors of the maps of ``summed``."""
        return summed.relative_standard_error(self.p_keep, self.normalization, self.always_kept)

    def stop_rule(
        self, tolerance: float | None, min_masks: int
    ) -> Callable[[SaliencyAccumulator], bool] | None:
        """Whether a run may stop at the sums it gathered: once they hold ``min_masks``
        and every map's error is at most ``tolerance`` (None: no tolerance, no rule)."""
        if tolerance is None:
            return None
        return lambda summed: (
            summed.n_masks >= min_masks and float(self.errors(summed).max()) <= tolerance
        )

    def maps(self, summed: SaliencyAccumulator, inputs: tuple[Tensor, ...]) -> list[Tensor]:
        """``(B, K, *mask_rest_i)`` per input, in the inputs' dtypes (0 where always kept)."""
        maps = summed.saliency(self.p_keep, self.normalization)
        if self.always_kept is not None:
            maps = [m.masked_fill(kept[:, None], 0) for m, kept in zip(maps, self.always_kept)]
        return [m.to(attribution_dtype(inp)) for m, inp in zip(maps, inputs)]


def _error_replicates(mask_sampling: str, n_masks: int, track_error: bool) -> tuple[int, int]:
    """``(replicates, min_masks)``: the replicates of the masks that the error estimate
    of ``mask_sampling`` uses, and the fewest masks that hold them all (refused when
    the error is tracked with fewer). An unknown ``mask_sampling`` is refused later,
    by :class:`captum_rise.masks.ParamStream`."""
    replicates = ERROR_REPLICATES.get(mask_sampling, 1)
    min_masks = replicates * replicate_unit(mask_sampling)
    if track_error and n_masks < min_masks:
        raise ValueError(
            f"tolerance and return_convergence_delta need n_masks >= {min_masks} with "
            f"mask_sampling={mask_sampling!r} (the error comes from {replicates} "
            f"replicates of the masks), got {n_masks}"
        )
    return replicates, min_masks


def _class_index(classes: Sequence[int] | Tensor | None, device: torch.device) -> Tensor | None:
    """``classes`` as a ``(K,)`` tensor of class indices on ``device`` (None: all classes)."""
    if classes is None:
        return None
    class_index = torch.as_tensor(classes, device=device).reshape(-1)
    if class_index.numel() == 0 or class_index.is_floating_point() or bool(class_index.min() < 0):
        raise ValueError(f"classes must be non-negative class indices, got {classes!r}")
    return class_index


def _make_sampler(
    inputs: tuple[Tensor, ...], coverage: Coverage, p_keep: float, dtype: torch.dtype
) -> MaskSampler:
    """RISE's sampler on the inputs' device: the paper's smooth grid masks, or binary
    masks of ``feature_mask`` groups."""
    device = inputs[0].device
    if coverage.feature_mask is None:
        if any(is_integer_input(inp) for inp in inputs):
            raise ValueError(
                "integer inputs (token ids, category codes) are kept or replaced, never "
                "blended, so their masks must be binary: RISE's grid masks are smooth; pass "
                "feature_mask (one group per token or word), or no grid_size for (B, T) inputs"
            )
        shapes = [inp.shape for inp in inputs]
        return GridMaskSampler(shapes, coverage.grid_size, p_keep, device, dtype, coverage.fit_grid)
    return design_sampler(inputs, coverage, p_keep, device, dtype)
