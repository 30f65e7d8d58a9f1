r"""Sobol' attribution (Fel, Cadène, Chalvidal, Cord, Vigouroux & Serre, NeurIPS 2021).

The model's score is seen as a function of ``d`` random mask variables
``M_i`` in ``[0, 1]``, one per grid cell or ``feature_mask`` group; the
importance of region ``i`` is its **total-order Sobol' index**, the share of
the score's variance that involves ``M_i`` alone or with other regions:

.. math::
    S_{T_i} = \frac{\mathbb{E}_{M_{\sim i}}\left[\operatorname{Var}_{M_i}(f \mid M_{\sim i})\right]}
                   {\operatorname{Var}(f)}

It is estimated on a Saltelli design (:class:`SaltelliDesign`): two ``N x d``
matrices ``A`` and ``B`` of a scrambled Sobol' sequence in ``[0, 1]^{2d}``,
and for every region the matrix ``C_i``, ``A`` with its column ``i`` taken
from ``B``; the model runs on ``A``, ``B`` and every ``C_i``, ``N (d + 2)``
forwards, and Jansen's estimator gives (:func:`jansen_total_indices`)

.. math::
    \hat S_{T_i} = \frac{1}{2 \widehat{\operatorname{Var}}(f)}
                   \frac{1}{N} \sum_k \left(f(A_k) - f(C_{i,k})\right)^2
"""

from dataclasses import replace

import torch
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from scipy.stats import qmc
from torch import Tensor
from typing_extensions import Unpack

from captum_rise._base import MaskAttribution, log_usage
from captum_rise._coverage import choose_coverage
from captum_rise._pipeline import (
    AttributionCall,
    ExecutionOptions,
    design_sampler,
)
from captum_rise._validation import (
    attribution_dtype,
    check_int,
    check_positive,
    is_integer_input,
)
from captum_rise.masks import DesignMaskSampler, GridSize
from captum_rise.meaningful_perturbation import gaussian_blur

DEFAULT_GRID_SIZE = 8
"""Cells per side of the grid when neither ``grid_size`` nor ``feature_mask`` is given
(Xplique's default, the paper's choice for ImageNet models)."""

PERTURBATIONS = ("inpainting", "blur", "amplitude")
"""How a mask value ``m`` in ``[0, 1]`` perturbs a feature ``x``: towards the baseline
(``x m + b (1 - m)``), towards the blurred input, or towards the input's mean."""

DEFAULT_BLUR_SIGMA = 10.0
"""Standard deviation in pixels of the blur that ``perturbation="blur"`` moves towards."""


class SaltelliDesign:
    """The mask values of a Saltelli design: ``N (d + 2)`` rows of ``d`` numbers in ``[0, 1]``.

    Row ``k`` of block ``j`` (``k = 0 .. N - 1``) is ``A_k`` for ``j = 0``, ``B_k``
    for ``j = 1`` and ``C_{j - 2, k}`` after; ``A`` and ``B`` are the halves of
    ``N`` points of a scrambled Sobol' sequence in ``[0, 1]^{2d}`` (``N`` is a
    power of two, where Sobol' points are balanced). Rows are made on demand.

    Args:
        n_designs: ``N``, a power of two.
        n_variables: ``d``, the regions.
        seed: seeds the scrambling.
        device: where the rows are made.
    """

    def __init__(
        self, n_designs: int, n_variables: int, seed: int | None, device: torch.device
    ) -> None:
        self.n_designs, self.n_variables = n_designs, n_variables
        points = qmc.Sobol(d=2 * n_variables, scramble=True, rng=seed).random(n_designs)
        points = torch.as_tensor(points, dtype=torch.float32, device=device)
        self.a, self.b = points[:, :n_variables], points[:, n_variables:]

    @property
    def n_rows(self) -> int:
        """``N (d + 2)``: the forwards per example."""
        return self.n_designs * (self.n_variables + 2)

    def rows(self, lo: int, hi: int) -> Tensor:
        """``(hi - lo, d)``: rows ``lo .. hi - 1`` of the design."""
        index = torch.arange(lo, hi, device=self.a.device)
        block, k = index // self.n_designs, index % self.n_designs
        rows = torch.where((block == 1)[:, None], self.b[k], self.a[k])
        swapped = block >= 2  # C_i: column i from B
        column = (block - 2).clamp(min=0)
        rows[swapped, column[swapped]] = self.b[k[swapped], column[swapped]]
        return rows


def jansen_total_indices(scores: Tensor, n_designs: int) -> Tensor:
    """Jansen's estimator of the total-order Sobol' indices.

    Args:
        scores: ``(N (d + 2), B)`` scores of the rows of a :class:`SaltelliDesign`.
        n_designs: ``N``.

    Returns:
        ``(B, d)`` float64 total indices; 0 for an example whose score does not vary.
    """
    scores = scores.to(torch.float64)
    f_a, f_b = scores[:n_designs], scores[n_designs : 2 * n_designs]
    f_c = scores[2 * n_designs :].reshape(-1, n_designs, scores.shape[1])  # (d, N, B)
    variance = torch.cat([f_a, f_b]).var(dim=0, correction=0)  # (B,)
    squared = ((f_a[None] - f_c) ** 2).mean(dim=1)  # (d, B)
    total = squared / (2 * variance)
    return torch.where(variance > 0, total, torch.zeros_like(total)).T


class SobolAttribution(MaskAttribution):
    r"""Sobol' attribution (Fel et al., NeurIPS 2021), black box: the total-order Sobol'
    index of every grid cell (default 8x8) or ``feature_mask`` group.

    Masks are real-valued, one number per region from a Saltelli design of a
    scrambled Sobol' sequence (:class:`SaltelliDesign`), upsampled by nearest
    neighbour and applied as ``input * M + reference * (1 - M)``: the reference is
    ``baselines`` (``perturbation="inpainting"``, the default; 0 by default), the
    input blurred by a Gaussian of ``blur_sigma`` pixels (``"blur"``), or the
    input's mean over its features (``"amplitude"``). Integer inputs (token
    ids, categories) are kept where the mask value is at least 0.5 and
    replaced by the baseline elsewhere. The indices come from Jansen's
    estimator (:func:`jansen_total_indices`), in ``[0, 1]`` up to estimation
    noise; the per-cell map is upsampled bicubically (``smooth_map=False``
    keeps constant cells).

    Conventions are those of :class:`captum_rise.RISE`: targets, baselines,
    ``additional_forward_args``, tuple inputs (sharing one grid),
    ``feature_mask`` (with :data:`captum_rise.masks.ALWAYS_KEPT` features never
    masked, attribution 0), ``seed``, the execution options
    (:class:`captum_rise.ExecutionOptions`: ``process_group``, every rank runs
    its share of the forwards), float16/bfloat16 and ``channels_last`` inputs.
    Results do not depend on ``perturbations_per_eval``.
    """

    method_name = "Sobol"

    @log_usage
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        feature_mask: Tensor | tuple[Tensor, ...] | None = None,
        n_designs: int = 32,
        grid_size: GridSize | None = None,
        perturbation: str = "inpainting",
        blur_sigma: float = DEFAULT_BLUR_SIGMA,
        smooth_map: bool = True,
        seed: int | None = None,
        **execution: Unpack[ExecutionOptions],
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""Total-order Sobol' index of every grid cell (or feature group) for ``target``.

        Args:
            inputs: as in :meth:`captum_rise.RISE.attribute`, and so are
                ``baselines`` (with ``perturbation="inpainting"``), ``target``,
                ``additional_forward_args``, ``feature_mask`` and
                ``**execution`` (:class:`captum_rise.ExecutionOptions`).
            n_designs: ``N``, a power of two: the model runs ``N (d + 2)``
                times per example for ``d`` regions (paper: 32, so 2,112
                forwards on an 8x8 grid).
            grid_size: int or per-axis tuple. None: one group per feature for
                ``(B, F)`` tables, else 8 (the paper's), shrunk on an axis
                shorter than that.
            perturbation: ``"inpainting"``, ``"blur"`` or ``"amplitude"`` (see
                the class docstring).
            blur_sigma: the blur's standard deviation in pixels (``"blur"``).
            smooth_map: upsample the per-cell indices bicubically (grids only).
            seed: seeds the scrambling of the Sobol' sequence; None takes one draw
                from torch's global generator (``torch.manual_seed`` reproduces it).

        Returns:
            Attributions with the shape and tuple-ness of ``inputs``.
        """
        call = AttributionCall.of(
            self, inputs, baselines, target, additional_forward_args, execution
        )
        n_designs = check_int("n_designs", n_designs, minimum=2)
        if n_designs & (n_designs - 1):
            raise ValueError(f"n_designs must be a power of two (Sobol' points), got {n_designs}")
        references = _references(call.inputs, baselines, perturbation, blur_sigma)
        call = replace(call, baselines=references)
        seed = call.seed(seed)
        dtype = attribution_dtype(call.inputs[0])
        coverage = choose_coverage(call.inputs, feature_mask, grid_size, DEFAULT_GRID_SIZE)
        sampler = design_sampler(call.inputs, coverage, 0.5, call.device, dtype)
        design = SaltelliDesign(n_designs, sampler.n_params, seed, call.device)
        binary = any(is_integer_input(inp) for inp in call.inputs)
        scores = call.scores(
            lambda lo, hi: _masks(sampler, design.rows(lo, hi), binary), design.n_rows, "forward"
        )
        run = call.design_run(sampler, None, scores)
        return run.attributions(jansen_total_indices(scores, n_designs), smooth_map)


def _masks(sampler: DesignMaskSampler, values: Tensor, binary: bool) -> tuple[Tensor, ...]:
    """The masks of design rows ``values`` ``(n, d)``: the values themselves, upsampled
    (kept where at least 0.5 for integer inputs); features of no region are kept."""
    if binary:
        values = (values >= 0.5).to(values.dtype)
    return sampler.expand(values.to(sampler.dtype), fill=1.0)


def _references(
    inputs: tuple[Tensor, ...], baselines: BaselineType, perturbation: str, blur_sigma: float
) -> BaselineType:
    """What a mask value of 0 moves each input to, as baselines (Captum's forms)."""
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {perturbation!r}")
    if perturbation == "inpainting":
        return baselines
    if baselines is not None:
        raise ValueError(f"baselines apply to perturbation='inpainting', not {perturbation!r}")
    if any(is_integer_input(inp) for inp in inputs):
        raise ValueError(
            f"perturbation={perturbation!r} needs float inputs; token ids and "
            "categories are replaced by baselines (perturbation='inpainting')"
        )
    if perturbation == "blur":
        blur_sigma = check_positive("blur_sigma", blur_sigma)
        if any(inp.dim() != 4 for inp in inputs):
            raise ValueError("perturbation='blur' needs (B, C, H, W) images")
        return tuple(gaussian_blur(inp, blur_sigma) for inp in inputs)
    dims = [tuple(range(1, inp.dim())) for inp in inputs]
    return tuple(inp.mean(dim=d, keepdim=True).expand_as(inp) for inp, d in zip(inputs, dims))
