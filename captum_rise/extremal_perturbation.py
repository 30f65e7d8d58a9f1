"""Extremal perturbation (Fong, Patrick & Vedaldi, ICCV 2019): the best mask of a fixed area."""

import math
from collections.abc import Sequence

import torch
from captum._utils.common import _format_additional_forward_args
from captum._utils.typing import TargetType
from torch import Tensor

from captum_rise._base import MaskAttribution, log_usage
from captum_rise._forward import ModelScorer, needs_softmax
from captum_rise._validation import check_int, check_positive, check_target
from captum_rise.meaningful_perturbation import (
    VARIANTS,
    descend_clamped,
    gaussian_blur,
    perturb,
)


class SmoothMaxMask:
    r"""Smooth masks ``(N, 1, H, W)`` from parameters ``(N, 1, h, w)`` in [0, 1].

    Parameters sit on a grid of stride ``step`` pixels; a pixel ``u`` takes
    the smooth maximum over the parameters ``p_v`` within ``2 sigma`` of it of
    ``k(u - v) p_v``, with ``k`` a Gaussian of width ``sigma`` (the paper's
    smooth max-convolution): masks are smooth, reach 1 where a parameter is 1,
    and a blob has a minimum size of about ``sigma``. The smooth maximum is
    ``sum_i z_i softmax(z / T)_i`` with temperature ``T``. It is evaluated
    every ``max(1, step // 2)`` pixels and upsampled bilinearly (the mask is
    smooth on the scale of ``sigma``), which costs about ``step^2 / 4`` times
    less than every pixel.
    """

    def __init__(
        self,
        height: int,
        width: int,
        step: int,
        sigma: float,
        temperature: float,
        device: torch.device,
    ) -> None:
        self.height, self.width, self.temperature = height, width, temperature
        self.grid = (math.ceil(height / step) + 1, math.ceil(width / step) + 1)
        self.radius = max(1, math.ceil(2 * sigma / step))
        padded_width = self.grid[1] + 2 * self.radius
        stride = max(1, step // 2)
        ys = torch.arange(0, height, stride, device=device, dtype=torch.float32)
        xs = torch.arange(0, width, stride, device=device, dtype=torch.float32)
        self.coarse = (ys.numel(), xs.numel())
        offsets = torch.arange(-self.radius, self.radius + 1, device=device)
        rows = torch.round(ys / step).long()[:, None] + offsets[None, :]  # (H, w_r)
        cols = torch.round(xs / step).long()[:, None] + offsets[None, :]  # (W, w_r)
        dy = (ys[:, None] - rows * step) ** 2
        dx = (xs[:, None] - cols * step) ** 2
        distance = dy[:, None, :, None] + dx[None, :, None, :]  # (H, W, w_r, w_r)
        self.weights = torch.exp(-distance / (2 * sigma**2)).flatten(0, 1).flatten(1)
        index = (rows[:, None, :, None] + self.radius) * padded_width + (
            cols[None, :, None, :] + self.radius
        )
        self.index = index.flatten(0, 1).flatten(1)

    def __call__(self, params: Tensor) -> Tensor:
        padded = torch.nn.functional.pad(params, [self.radius] * 4).flatten(1)
        candidates = padded[:, self.index] * self.weights.to(params.dtype)  # (N, pixels, window)
        weights = torch.softmax(candidates / self.temperature, dim=2)
        masks = (candidates * weights).sum(dim=2).reshape(params.shape[0], 1, *self.coarse)
        return torch.nn.functional.interpolate(
            masks, size=(self.height, self.width), mode="bilinear", align_corners=False
        ).clamp(0.0, 1.0)


def area_penalty(masks: Tensor, areas: Tensor) -> Tensor:
    """``(N,)`` mean squared distance of each mask's sorted values to the sorted
    mask of area ``areas[n]`` (ones on that fraction of pixels, zeros elsewhere):
    the paper's ranking form of the area constraint."""
    values = masks.flatten(1).sort(dim=1, descending=True).values
    n_pixels = values.shape[1]
    ranks = torch.arange(n_pixels, device=masks.device)
    reference = (ranks[None, :] < torch.round(areas[:, None] * n_pixels)).to(values.dtype)
    return (values - reference).pow(2).mean(dim=1)


class ExtremalPerturbation(MaskAttribution):
    r"""Extremal perturbation (Fong, Patrick & Vedaldi, ICCV 2019). White box.

    For each example and each area ``a``, a smooth mask ``m`` (see
    :class:`SmoothMaxMask`) is learned by gradient descent so that the
    perturbed image ``x * m + blur(x) * (1 - m)`` (*preserve*: the region
    kept) scores as high as possible for the target, or ``x * (1 - m) +
    blur(x) * m`` (*delete*: the region blurred) as low as possible, while
    ``m`` covers a fraction ``a`` of the image. The area is not a tuned
    penalty weight as in meaningful perturbation but a constraint, enforced
    by the ranking penalty :func:`area_penalty` with a large weight: the
    result answers "which ``a`` of the image matters most".

    Defaults from the paper: 800 iterations; parameters every 7 pixels, a
    Gaussian smoothing of 21 pixels (for 224x224 inputs); blur perturbation
    (sigma 10, as :class:`captum_rise.MeaningfulPerturbation`; the paper blends a
    pyramid of blurs); area weight 300. Departures: the area weight grows
    geometrically from ``area_coeff / 100`` to ``area_coeff`` over the
    iterations (with the full weight from the start, the constraint set the
    mask's area before the reward could place it: on a model whose score
    depends on one 64x64 box, the mask ended outside it); Adam with learning
    rate 0.05 (parameters clipped to [0, 1] after every step); smooth-max
    temperature 0.1; the target's softmax probability as the score
    (``apply_softmax`` as in :func:`captum_rise.metrics.deletion`).

    The model's parameters, their ``requires_grad`` flags and ``.grad``, and
    its train/eval mode are left as found. Put the model in eval mode.
    """

    method_name = "ExtremalPerturbation"

    @log_usage
    def attribute(
        self,
        inputs: Tensor,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        areas: float | Sequence[float] = (0.1,),
        variant: str = "preserve",
        n_iter: int = 800,
        learning_rate: float = 0.05,
        step: int = 7,
        sigma: float = 21.0,
        blur_sigma: float = 10.0,
        area_coeff: float = 300.0,
        temperature: float = 0.1,
        apply_softmax: bool | None = None,
        show_progress: bool = False,
    ) -> Tensor:
        """Learn one mask per example and area; return it as the attribution.

        Args:
            inputs: ``(B, C, H, W)`` images.
            target, additional_forward_args: as in Captum.
            areas: fractions of the image in (0, 1), one mask each.
            variant: ``"preserve"`` (default) or ``"delete"``.
            n_iter, learning_rate: Adam iterations and step size.
            step, sigma: parameter stride and Gaussian width, in pixels.
            blur_sigma: Gaussian blur of the perturbation, in pixels.
            area_coeff: weight of the area constraint.
            temperature: of the smooth max.
            apply_softmax: softmax over ``(B, classes)`` outputs; None decides
                from the first output.
            show_progress: progress bar over iterations.

        Returns:
            The masks in the inputs' dtype, higher = the region kept
            (preserve) or removed (delete): ``(B, C, H, W)`` for one area,
            ``(B, n_areas, C, H, W)`` for several (broadcast over channels).
            The masks are learned in float32; the model sees perturbed images
            in the inputs' dtype.
        """
        area_list = _checked_areas(inputs, target, areas, variant)
        n_iter = check_int("n_iter", n_iter)
        step = check_int("step", step)
        for name, value in (
            ("sigma", sigma),
            ("blur_sigma", blur_sigma),
            ("temperature", temperature),
        ):
            check_positive(name, value)
        batch, _, height, width = inputs.shape

        n_areas = len(area_list)
        inputs = inputs.detach()
        blurred = gaussian_blur(inputs, blur_sigma)
        # Rows are area-major (area k, example b at k * B + b), Captum's perturbation layout.
        area_of_row = torch.tensor(area_list, device=inputs.device).repeat_interleave(batch)
        args = _format_additional_forward_args(additional_forward_args)
        scorer = ModelScorer(self.forward_func, batch, args, target=target)
        generator = SmoothMaxMask(height, width, step, sigma, temperature, inputs.device)
        params = torch.full(
            (n_areas * batch, 1, *generator.grid), 0.5, device=inputs.device, requires_grad=True
        )
        optimizer = torch.optim.Adam([params], lr=learning_rate)
        images, canvas = inputs.repeat(n_areas, 1, 1, 1), blurred.repeat(n_areas, 1, 1, 1)
        softmax = apply_softmax
        bar = self._progress(show_progress, n_iter)
        with torch.enable_grad():
            for iteration in range(n_iter):
                # The area weight grows geometrically from area_coeff / 100 to area_coeff:
                # the reward places the mask first, the constraint then sets its area.
                weight = area_coeff * 100.0 ** (iteration / max(1, n_iter - 1) - 1.0)
                masks = generator(params)
                kept = masks if variant == "preserve" else 1 - masks
                perturbed = perturb(images, canvas, kept)
                raw = scorer.forward_raw((perturbed,), n_areas)
                if softmax is None:
                    softmax = needs_softmax(raw.detach())
                score = scorer.select(torch.softmax(raw, dim=1) if softmax else raw, n_areas)
                reward = score.reshape(-1) if variant == "preserve" else -score.reshape(-1)
                loss = (weight * area_penalty(masks, area_of_row) - reward).sum()
                descend_clamped(optimizer, params, loss)
                bar.update()
        bar.close()
        with torch.no_grad():
            final = generator(params).reshape(n_areas, batch, 1, height, width).transpose(0, 1)
        final = final.to(inputs.dtype).expand(batch, n_areas, *inputs.shape[1:]).contiguous()
        return final[:, 0] if n_areas == 1 else final


def _checked_areas(
    inputs: Tensor, target: TargetType, areas: float | Sequence[float], variant: str
) -> list[float]:
    """The areas as a list, after checking the arguments of
    :meth:`ExtremalPerturbation.attribute` that shape the run."""
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        raise ValueError("inputs must be a (B, C, H, W) tensor")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    area_list = [areas] if not isinstance(areas, Sequence) else list(areas)
    if not area_list or not all(
        isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a < 1 for a in area_list
    ):
        raise ValueError(f"areas must be fractions in (0, 1), got {areas!r}")
    check_target(target, inputs.shape[0])
    return area_list
