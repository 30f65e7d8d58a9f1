"""HSIC attribution (Novello, Fel & Vigouroux, NeurIPS 2022).

Binary designs switch grid cells (or feature groups) on and off; the
importance of a cell is the Hilbert-Schmidt independence criterion between
its on/off variable and the model's output over the designs.
"""

import math

import numpy as np
import torch
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from scipy.stats import qmc
from torch import Tensor
from typing_extensions import Unpack

from captum_rise._base import MaskAttribution, log_usage
from captum_rise._coverage import DEFAULT_GRID_SIZE, choose_coverage
from captum_rise._pipeline import (
    AttributionCall,
    DesignRun,
    ExecutionOptions,
    design_sampler,
)
from captum_rise._validation import (
    attribution_dtype,
    check_int,
    check_probability,
)
from captum_rise.masks import (
    GridSize,
)

INPUT_KERNELS = ("binary", "rbf")
SAMPLERS = ("lhs", "sobol")
RBF_INPUT_WIDTH = 0.5


def sample_designs(
    n_designs: int, n_variables: int, sampler: str = "lhs", seed: int | None = None
) -> np.ndarray:
    """``(n_designs, n_variables)`` points in [0, 1) from scipy's ``stats.qmc``.

    ``"lhs"``: Latin hypercube (the paper's choice); ``"sobol"``: scrambled
    Sobol', the first ``n_designs`` of ``2**ceil(log2(n_designs))`` points.
    """
    if sampler == "lhs":
        return qmc.LatinHypercube(d=n_variables, rng=seed).random(n_designs)
    if sampler == "sobol":
        points = qmc.Sobol(d=n_variables, scramble=True, rng=seed)
        return points.random_base2(m=max(0, math.ceil(math.log2(n_designs))))[:n_designs]
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def output_bandwidth(outputs: Tensor) -> Tensor:
    """Width of the output RBF kernel: the median of the outputs, as the authors' code.

    When that median is not positive (e.g. logits), the median absolute
    difference between outputs is used instead, so the kernel stays defined.
    """
    width = outputs.median()
    if width <= 0:
        differences = (outputs[:, None] - outputs[None, :]).abs()
        width = (
            differences[differences > 0].median()
            if (differences > 0).any()
            else outputs.new_tensor(1.0)
        )
    return width


def centred_output_gram(outputs: Tensor) -> Tensor:
    """``H L H`` for the RBF Gram matrix ``L`` of ``(n,)`` outputs, ``H = I - 11^T/n``."""
    width = output_bandwidth(outputs)
    gram = torch.exp(-((outputs[:, None] - outputs[None, :]) ** 2) / (2 * width**2))
    return gram - gram.mean(dim=0, keepdim=True) - gram.mean(dim=1, keepdim=True) + gram.mean()


def input_gram(designs: Tensor, kernel: str) -> Tensor:
    """``(K, n, n)`` Gram matrices of ``K`` design variables ``(n, K)``.

    ``"binary"``: ``k(x, x') = 1 - (x - x')^2``, for 0/1 variables (authors' code);
    ``"rbf"``: ``exp(-(x - x')^2 / (2 * 0.5^2))``.
    """
    squared = (designs.T[:, :, None] - designs.T[:, None, :]) ** 2
    if kernel == "binary":
        return 1.0 - squared
    if kernel == "rbf":
        return torch.exp(-squared / (2 * RBF_INPUT_WIDTH**2))
    raise ValueError(f"input_kernel must be one of {INPUT_KERNELS}, got {kernel!r}")


def hsic_scores(
    designs: Tensor, outputs: Tensor, input_kernel: str = "binary", batch_size: int = 4
) -> Tensor:
    """HSIC between each design variable and the output: ``tr(K~ L~) / n``.

    Args:
        designs: ``(n, K)`` design variables (0/1 for the binary kernel).
        outputs: ``(n,)`` model outputs.
        input_kernel: ``"binary"`` or ``"rbf"``.
        batch_size: variables whose ``(n, n)`` Gram matrices are held at once,
            so memory is ``batch_size * n^2``, never ``K * n^2``.

    Returns:
        ``(K,)`` HSIC estimates (centred Gram matrices ``K~ = HKH``, ``L~ = HLH``).
    """
    n = designs.shape[0]
    outputs = outputs.to(torch.float64)
    centred_l = centred_output_gram(outputs)
    scores = []
    for lo in range(0, designs.shape[1], batch_size):
        gram = input_gram(designs[:, lo : lo + batch_size].to(torch.float64), input_kernel)
        # tr(HKH HLH) = tr(K HLH) since H is idempotent; HLH is symmetric.
        scores.append((gram * centred_l).sum(dim=(1, 2)) / n)
    return torch.cat(scores)


def kept_minus_dropped(designs: Tensor, outputs: Tensor) -> Tensor:
    """``(K,)``: the mean output where each binary design variable is 1 minus where it is 0
    (0 for a variable that is never, or always, kept)."""
    designs, outputs = designs.to(torch.float64), outputs.to(torch.float64)
    kept, dropped = designs.sum(0), (1 - designs).sum(0)
    difference = (designs.T @ outputs) / kept - ((1 - designs).T @ outputs) / dropped
    return torch.where((kept > 0) & (dropped > 0), difference, torch.zeros_like(difference))


def centred_input_grams(designs: Tensor, kernel: str) -> Tensor:
    """``(K, n, n)`` centred Gram matrices ``H K_k H`` of ``K`` design variables ``(n, K)``:
    the empirical zero-mean kernels ``k0`` of the ANOVA decomposition."""
    gram = input_gram(designs, kernel)
    return (
        gram
        - gram.mean(dim=1, keepdim=True)
        - gram.mean(dim=2, keepdim=True)
        + gram.mean(dim=(1, 2), keepdim=True)
    )


def hsic_interactions(
    designs: Tensor, outputs: Tensor, input_kernel: str = "binary", batch_size: int = 4
) -> Tensor:
    r"""Pairwise interactions of design variables with the output (Novello et al., 2022, §3.3).

    With ``k0_i`` the centred kernel of variable ``i``, the ANOVA kernel
    ``\prod_i (1 + k0_i)`` splits the HSIC into first-order terms (those of
    :func:`hsic_scores`) and interaction terms; the interaction of ``i`` and
    ``j`` is the HSIC with the kernel ``k0_i * k0_j``:
    ``sum((K0_i * K0_j) * L~) / n`` with ``K0 = HKH``, ``L~ = HLH``.

    Args:
        designs: ``(n, K)`` design variables.
        outputs: ``(n,)`` model outputs.
        input_kernel: ``"binary"`` or ``"rbf"``.
        batch_size: variables per block; memory is about ``3 * batch_size * n^2``
            numbers, never ``K * n^2``.

    Returns:
        ``(K, K)`` symmetric interactions, 0 on the diagonal.
    """
    n, n_variables = designs.shape
    designs = designs.to(torch.float64)
    centred_l = centred_output_gram(outputs.to(torch.float64))
    interactions = torch.zeros(n_variables, n_variables, dtype=torch.float64, device=designs.device)
    for lo in range(0, n_variables, batch_size):
        hi = min(lo + batch_size, n_variables)
        weighted = (centred_input_grams(designs[:, lo:hi], input_kernel) * centred_l).flatten(1)
        for lo2 in range(lo, n_variables, batch_size):
            hi2 = min(lo2 + batch_size, n_variables)
            others = centred_input_grams(designs[:, lo2:hi2], input_kernel).flatten(1)
            block = weighted @ others.T / n
            interactions[lo:hi, lo2:hi2] = block
            interactions[lo2:hi2, lo:hi] = block.T
    return interactions.fill_diagonal_(0.0)


class HSICAttribution(MaskAttribution):
    r"""HSIC attribution (Novello, Fel & Vigouroux, NeurIPS 2022), black box.

    ``n_designs`` binary designs over a grid (default 7x7) are drawn by Latin
    hypercube sampling (or scrambled Sobol'), upsampled by nearest neighbour to
    the input, and applied as ``input * M + baseline * (1 - M)``. The
    attribution of a cell is

    .. math::
        \mathrm{HSIC}(X_k, Y) = \frac{1}{n} \operatorname{tr}(\tilde K_k \tilde L)

    with ``K_k`` the input kernel on the cell's on/off variable
    (``1 - (x - x')^2``, as in the authors' code) and ``L`` an RBF kernel on
    the outputs whose width is the median of the outputs (the authors'
    choice; see :func:`output_bandwidth`). Cells (or ``feature_mask`` groups)
    the output depends on get large values, independent cells values near 0.
    The per-cell map is upsampled bicubically, as in the authors' code
    (``smooth_map=False`` keeps constant cells). Like the authors' code, the
    estimate divides by ``n`` (not ``n^2``), so it grows with ``n_designs``;
    rankings, and so the metrics, do not depend on that scale.

    Conventions are those of :class:`captum_rise.RISE`: targets, baselines,
    ``additional_forward_args``, tuple inputs (sharing one grid),
    ``feature_mask``, ``perturbations_per_eval`` (automatic by default),
    ``show_progress``, ``seed``, float16/bfloat16 and ``channels_last`` inputs.
    Results do not depend on ``perturbations_per_eval``, on batching or on the
    device (to rounding). The model's scores are checked to be finite once,
    after the last forward.
    """

    method_name = "HSIC"

    @log_usage
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        feature_mask: Tensor | tuple[Tensor, ...] | None = None,
        n_designs: int = 1536,
        grid_size: GridSize | None = None,
        sampler: str = "lhs",
        input_kernel: str = "binary",
        p_keep: float = 0.5,
        estimator_batch_size: int = 4,
        smooth_map: bool = True,
        signed: bool = False,
        seed: int | None = None,
        **execution: Unpack[ExecutionOptions],
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""HSIC of every grid cell (or feature group) with the output for ``target``.

        Args:
            inputs: as in :meth:`RISE.attribute`, and so are ``baselines``,
                ``target``, ``additional_forward_args`` and ``feature_mask``.
            n_designs: number of designs, i.e. forward passes per example
                (paper: 1536).
            grid_size: int or per-axis tuple. None: one group per feature
                for ``(B, F)`` tables, else 7 (the paper's), shrunk on an axis
                shorter than 7 (see :meth:`captum_rise.RISE.attribute`).
            sampler: ``"lhs"`` (Latin hypercube) or ``"sobol"`` (scrambled).
            input_kernel: ``"binary"`` (default) or ``"rbf"``.
            p_keep: probability that a cell is kept, in (0, 1) (0.5 in the paper).
            estimator_batch_size: cells whose ``n_designs^2`` Gram matrices are
                held in memory at once.
            smooth_map: upsample the per-cell HSIC map smoothly (bicubic for
                2-D grids), as the authors' code does; False gives constant
                cells. Feature-mask groups are always constant.
            signed: give each cell the sign of ``E[f | kept] - E[f | dropped]``
                from the same designs (:func:`kept_minus_dropped`): HSIC
                measures dependence, so a cell whose presence lowers the score
                ranks as high as one that raises it; signed, it ranks below the
                cells that do not matter (measured in docs/figures.md).
            seed: seeds the design sampler; None takes one draw from torch's global
                generator (Captum's convention: ``torch.manual_seed`` reproduces it).
            **execution: how the forwards run (:class:`captum_rise.ExecutionOptions`:
                ``perturbations_per_eval``, ``show_progress``,
                ``process_group``, ``concurrent_calls``, ``retries``); under a
                process group every rank draws the same designs, runs its share
                and returns the whole map.

        Returns:
            Attributions with the shape and tuple-ness of ``inputs``.
        """
        run = self._run(
            inputs, baselines, target, additional_forward_args, feature_mask, n_designs,
            grid_size, sampler, input_kernel, p_keep, estimator_batch_size, seed, execution,
        )  # fmt: skip
        importance = run.per_example(hsic_scores, input_kernel, estimator_batch_size)
        if signed:
            importance = importance * run.per_example(lambda d, s: kept_minus_dropped(d, s).sign())
        attributions = run.attributions(importance, smooth_map)
        return attributions

    @log_usage
    def attribute_interactions(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        feature_mask: Tensor | tuple[Tensor, ...] | None = None,
        n_designs: int = 1536,
        grid_size: GridSize | None = None,
        sampler: str = "lhs",
        input_kernel: str = "binary",
        p_keep: float = 0.5,
        estimator_batch_size: int = 4,
        smooth_map: bool = True,
        seed: int | None = None,
        **execution: Unpack[ExecutionOptions],
    ) -> tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""First-order HSIC maps and pairwise interactions, from one set of forwards.

        Arguments are those of :meth:`attribute`. The interactions follow the
        paper's ANOVA decomposition (:func:`hsic_interactions`): a large value
        for cells ``i`` and ``j`` means the output depends on the two
        together beyond what each explains alone (e.g. ``f = a * b``).
        Memory is bounded by ``estimator_batch_size`` cells' Gram matrices.

        Returns:
            ``(attributions, interactions)``: the attributions of
            :meth:`attribute`, and ``(B, V, V)`` symmetric interactions, 0 on
            the diagonal, between the ``V`` grid cells (row-major over the
            grid, as ``torch.arange(V).reshape(grid)``) or the ``V``
            ``feature_mask`` groups (in increasing order of their ids, without
            :data:`captum_rise.masks.ALWAYS_KEPT`).
        """
        run = self._run(
            inputs, baselines, target, additional_forward_args, feature_mask, n_designs,
            grid_size, sampler, input_kernel, p_keep, estimator_batch_size, seed, execution,
        )  # fmt: skip
        importance = run.per_example(hsic_scores, input_kernel, estimator_batch_size)
        interactions = run.per_example(hsic_interactions, input_kernel, estimator_batch_size)
        return run.attributions(importance, smooth_map), interactions

    def _run(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType,
        target: TargetType,
        additional_forward_args: object | None,
        feature_mask: Tensor | tuple[Tensor, ...] | None,
        n_designs: int,
        grid_size: GridSize | None,
        sampler: str,
        input_kernel: str,
        p_keep: float,
        estimator_batch_size: int,
        seed: int | None,
        execution: ExecutionOptions,
    ) -> DesignRun:
        """HSIC's sampler (binary designs of grid cells or groups) handed to one
        pipeline run, after checking the arguments: the designs and their scores."""
        call = AttributionCall.of(
            self, inputs, baselines, target, additional_forward_args, execution
        )
        n_designs = check_int("n_designs", n_designs, minimum=2)
        check_int("estimator_batch_size", estimator_batch_size)
        # p_keep = 1 keeps every cell in every design: no dependence to measure.
        p_keep = check_probability("p_keep", p_keep, include_one=False)
        if input_kernel not in INPUT_KERNELS:
            raise ValueError(f"input_kernel must be one of {INPUT_KERNELS}, got {input_kernel!r}")
        dtype = attribution_dtype(call.inputs[0])
        coverage = choose_coverage(call.inputs, feature_mask, grid_size, DEFAULT_GRID_SIZE)
        masks = design_sampler(call.inputs, coverage, p_keep, call.device, dtype)
        points = sample_designs(n_designs, masks.n_params, sampler, call.seed(seed))
        params = torch.as_tensor(points, dtype=torch.float32, device=call.device)
        scores = call.scores(lambda lo, hi: masks.render(params[lo:hi]), n_designs, "design")
        return call.design_run(masks, masks.keep(params), scores)
