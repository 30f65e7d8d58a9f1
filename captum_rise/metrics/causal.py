"""Deletion and insertion, the causal metrics of Petsiuk et al. (2018, section 4.1).

Pixels are moved from a *start* image to an *end* image in the order of their
saliency, a fixed number per step, and the model's score for the target is
recorded after every step:

* **deletion** starts from the image and ends at a substrate (a constant 0 in
  model-input space by default): a sharp drop, a *low* AUC, is good;
* **insertion** starts from a blurred canvas (Gaussian, kernel 11, sigma 5)
  and ends at the image: a fast rise, a *high* AUC, is good.

The perturbed images of all steps and samples are built on the inputs' device,
in their dtype and memory layout, and sent through the model ``batch_size`` at
a time (chosen automatically by default), so memory is bounded by the batch
size, not by the number of steps.
"""

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision.transforms.functional as TF
from captum._utils.progress import NullProgress
from torch import Tensor

from captum_rise._forward import fill_padding, memory_format_of, needs_softmax, warn_if_training
from captum_rise.batching import check_chunk_size, run_in_chunks, sizer_for

SubstrateType = str | float | Tensor

BLUR_KERNEL_SIZE = 11
BLUR_SIGMA = 5.0


@dataclass
class CausalCurve:
    """A deletion or insertion result.

    Attributes:
        fractions: ``(S + 1,)`` fraction of pixels moved after each step, 0 to 1.
        scores: ``(B, S + 1)`` the target's score after each step.
        auc: ``(B,)`` area under ``scores`` over ``fractions`` (trapezoid rule).
    """

    fractions: Tensor
    scores: Tensor
    auc: Tensor


def deletion(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    attributions: Tensor,
    target: int | Tensor | list[int] | None = None,
    substrate: SubstrateType = 0.0,
    step: int | None = None,
    n_steps: int | None = None,
    apply_softmax: bool | None = None,
    batch_size: int | None = None,
) -> CausalCurve:
    """Deletion curve: the most salient pixels are replaced by ``substrate`` first.

    Args:
        model: any callable from ``(N, C, H, W)`` to ``(N, K)`` or ``(N,)`` scores.
        inputs: ``(B, C, H, W)`` images, in the model's input space.
        attributions: saliency broadcastable to ``inputs`` (e.g. ``(B, 1, H, W)``
            or ``(B, H, W)``); channels are summed for the ranking, and ties
            are broken by pixel index (row-major), deterministically.
        target: class per example: int, list or ``(B,)`` tensor; None for
            models that return one score per example.
        substrate: what deleted pixels become: a number (default 0, the
            paper's constant), ``"mean"`` (per-image, per-channel mean),
            ``"blur"`` (Gaussian, kernel 11, sigma 5) or a tensor broadcastable
            to ``inputs``.
        step: pixels moved per step (default: one image row, ``W``).
        n_steps: alternatively, the number of steps; ``step = ceil(H*W / n_steps)``.
        apply_softmax: softmax over the model's ``(N, K)`` output before taking
            the target. None (default) applies it unless the rows already sum
            to 1 (a model ending in softmax) or the model returns one score per
            example.
        batch_size: perturbed images per forward call; None (default) chooses
            it while the curve is computed, as ``perturbations_per_eval=None``
            does in :meth:`captum_rise.RISE.attribute`.

    Returns:
        :class:`CausalCurve` with ``S = ceil(H*W / step)`` steps.
    """
    end = make_substrate(inputs, substrate)
    return causal_curve(
        model, inputs, end, attributions, target, step, n_steps, apply_softmax, batch_size
    )


def insertion(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    attributions: Tensor,
    target: int | Tensor | list[int] | None = None,
    substrate: SubstrateType = "blur",
    step: int | None = None,
    n_steps: int | None = None,
    apply_softmax: bool | None = None,
    batch_size: int | None = None,
) -> CausalCurve:
    """Insertion curve: the most salient pixels of the image are put on a canvas first.

    Arguments are those of :func:`deletion`; ``substrate`` is the starting
    canvas, a blur of the image (kernel 11, sigma 5) by default.
    """
    start = make_substrate(inputs, substrate)
    return causal_curve(
        model, start, inputs, attributions, target, step, n_steps, apply_softmax, batch_size
    )


def make_substrate(inputs: Tensor, substrate: SubstrateType) -> Tensor:
    """The ``(B, C, H, W)`` image that pixels are taken from or put on."""
    _check_images(inputs)
    if isinstance(substrate, Tensor):
        try:
            return torch.broadcast_to(substrate.to(inputs), inputs.shape)
        except RuntimeError:
            raise ValueError(
                f"substrate of shape {tuple(substrate.shape)} cannot be broadcast to the "
                f"inputs of shape {tuple(inputs.shape)}"
            ) from None
    if isinstance(substrate, numbers.Real) and not isinstance(substrate, bool):
        return torch.full_like(inputs, float(substrate))
    if substrate == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    if substrate == "blur":
        return TF.gaussian_blur(inputs, kernel_size=[BLUR_KERNEL_SIZE] * 2, sigma=[BLUR_SIGMA] * 2)
    raise ValueError(f"substrate must be a number, 'mean', 'blur' or a tensor, got {substrate!r}")


def causal_curve(
    model: Callable[[Tensor], Tensor],
    start: Tensor,
    end: Tensor,
    attributions: Tensor,
    target: int | Tensor | list[int] | None = None,
    step: int | None = None,
    n_steps: int | None = None,
    apply_softmax: bool | None = None,
    batch_size: int | None = None,
) -> CausalCurve:
    """Scores while pixels move from ``start`` to ``end`` in decreasing saliency.

    After step ``k`` the ``k * step`` most salient pixels come from ``end``
    and the others from ``start`` (all channels of a pixel move together).
    :func:`deletion` and :func:`insertion` are this with a substrate as
    ``end`` or ``start``. Shapes and arguments are those of :func:`deletion`.
    """
    _check_images(start)
    warn_if_training(model)
    batch, _, height, width = start.shape
    n_pixels = height * width
    step = _resolve_step(step, n_steps, n_pixels, width)
    batch_size = check_chunk_size("batch_size", batch_size)
    rank = pixel_rank(attributions, start)
    targets = _format_target(target, batch, start.device)
    total_steps = math.ceil(n_pixels / step)
    moved = torch.clamp(torch.arange(total_steps + 1, device=start.device) * step, max=n_pixels)

    jobs_sample = torch.arange(batch, device=start.device).repeat_interleave(total_steps + 1)
    jobs_step = torch.arange(total_steps + 1, device=start.device).repeat(batch)
    scores = torch.empty(batch * (total_steps + 1), device=start.device)
    difference = end - start
    layout = memory_format_of(start)
    softmax_flag = apply_softmax
    checked = False

    def evaluate(lo: int, hi: int, padded_size: int) -> Tensor:
        nonlocal softmax_flag, checked
        sample = jobs_sample[lo:hi]
        from_end = (rank[sample] < moved[jobs_step[lo:hi], None]).to(start.dtype)
        images = torch.empty(
            (padded_size, *start.shape[1:]),
            dtype=start.dtype,
            device=start.device,
            memory_format=layout,
        )
        from_end = from_end.reshape(-1, 1, height, width)
        torch.addcmul(start[sample], difference[sample], from_end, out=images[: hi - lo])
        fill_padding(images, hi - lo, 1)
        output = model(images)
        if padded_size > hi - lo:  # rows that only kept the batch size the model has met
            output = output[: hi - lo]
        if not checked:  # the first output settles the checks and the softmax
            _check_output(output, targets)
            if softmax_flag is None:
                softmax_flag = needs_softmax(output)
            checked = True
        assert softmax_flag is not None  # settled by the first output
        return _target_scores(output, sample, targets, softmax_flag)

    def consume(lo: int, hi: int, chunk_scores: Tensor) -> None:
        scores[lo:hi] = chunk_scores

    with torch.no_grad():
        run_in_chunks(
            jobs_sample.numel(),
            evaluate,
            consume,
            batch_size,
            lambda: sizer_for(model, (start[:1],)),
            start.device,
            NullProgress(),
        )
    scores = scores.reshape(batch, total_steps + 1)
    fractions = moved.to(scores.dtype) / n_pixels
    return CausalCurve(fractions, scores, torch.trapezoid(scores, fractions, dim=1))


def pixel_rank(attributions: Tensor, inputs: Tensor) -> Tensor:
    """``(B, H*W)`` rank of every pixel, 0 for the most salient.

    Channels are summed; ties go to the lower (row-major) pixel index.
    """
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    if attributions.dim() == 3:
        attributions = attributions.unsqueeze(1)
    try:
        saliency = torch.broadcast_to(attributions.to(inputs.device), inputs.shape)
    except RuntimeError:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} cannot be broadcast to the "
            f"inputs of shape {tuple(inputs.shape)}"
        ) from None
    if not torch.isfinite(saliency).all():
        raise ValueError("attributions contain NaN or infinite values")
    flat = saliency.sum(dim=1).reshape(inputs.shape[0], -1).double()
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank.scatter_(1, order, positions)
    return rank


def _check_images(inputs: Tensor) -> None:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() != 4 or inputs.shape[0] < 1:
        raise ValueError(f"inputs must have shape (B, C, H, W), got {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating tensor, got {inputs.dtype}")


def _resolve_step(step: int | None, n_steps: int | None, n_pixels: int, width: int) -> int:
    if step is not None and n_steps is not None:
        raise ValueError("give either step (pixels per step) or n_steps, not both")
    if n_steps is not None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
        return math.ceil(n_pixels / n_steps)
    if step is None:
        return width
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be an int >= 1 (pixels per step), got {step!r}")
    return step


def _format_target(
    target: int | Tensor | list[int] | None, batch: int, device: torch.device
) -> Tensor | None:
    if target is None:
        return None
    targets = torch.as_tensor(target, device=device).reshape(-1)
    if targets.is_floating_point():
        raise TypeError(f"target must hold integer class indices, got {targets.dtype}")
    if targets.numel() == 1:
        targets = targets.expand(batch)
    if targets.numel() != batch:
        raise ValueError(f"target must be an int or have one entry per example ({batch})")
    return targets


def _check_output(output: Tensor, targets: Tensor | None) -> None:
    """The model's output has a supported shape, and the targets address it."""
    if output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1):
        if targets is not None and bool((targets != 0).any()):
            raise ValueError("the model returns one score per example: use target=None")
        return
    if output.dim() != 2:
        raise ValueError(f"the model must return (N, K) or (N,) scores, got {tuple(output.shape)}")
    if targets is None:
        raise ValueError(f"the model returns (N, {output.shape[1]}) scores: give a target")
    if bool((targets < 0).any()) or bool((targets >= output.shape[1]).any()):
        raise ValueError(f"target is out of range for {output.shape[1]} classes")


def _target_scores(
    output: Tensor, sample: Tensor, targets: Tensor | None, apply_softmax: bool
) -> Tensor:
    """``(N,)`` float32 scores of the targets (checked by :func:`_check_output`)."""
    if output.dim() == 2 and output.shape[1] == 1:
        output = output[:, 0]
    if output.dim() == 1:
        return output.float()
    if apply_softmax:
        output = torch.softmax(output.float(), dim=1)
    assert targets is not None
    return output.gather(1, targets[sample, None])[:, 0].float()
