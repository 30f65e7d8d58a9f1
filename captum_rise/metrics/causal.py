"""Deletion and insertion, the causal metrics of Petsiuk et al. (2018, section 4.1).

Pixels are moved from a *start* image to an *end* image in the order of their
saliency, a fixed number per step, and the model's score for the target is
recorded after every step:

* **deletion** starts from the image and ends at a substrate (a constant 0 in
  model-input space by default): a sharp drop, a *low* AUC, is good;
* **insertion** starts from a blurred canvas (Gaussian, kernel 11, sigma 5)
  and ends at the image: a fast rise, a *high* AUC, is good.

Token ids and other ``(B, T)`` inputs work the same way, a position (or, with
``feature_mask``, a word) at a time: deleted tokens become the substrate id
(``substrate=pad_token_id``), never blended, and
:data:`captum_rise.masks.ALWAYS_KEPT` positions (special tokens, padding) never
move. A score adapter's ``default_apply_softmax`` (False for
:class:`captum_rise.SimilarityScore` and :class:`captum_rise.DetectionScore`)
is used when ``apply_softmax`` is None, so a similarity is taken as it is.

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

from captum_rise._forward import (
    fill_padding,
    forward_output,
    memory_format_of,
    needs_softmax,
    warn_if_training,
)
from captum_rise.batching import check_chunk_size, run_in_chunks, sizer_for
from captum_rise.masks import ALWAYS_KEPT

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
    feature_mask: Tensor | None = None,
) -> CausalCurve:
    """Deletion curve: the most salient pixels are replaced by ``substrate`` first.

    Args:
        model: any callable from ``(N, C, H, W)`` (or ``(N, T)``) to ``(N, K)``
            or ``(N,)`` scores, e.g. a :class:`captum_rise.SimilarityScore`.
        inputs: ``(B, C, H, W)`` images, in the model's input space, or
            ``(B, T)`` token ids (or features).
        attributions: saliency broadcastable to ``inputs`` (e.g. ``(B, 1, H, W)``
            or ``(B, H, W)``); channels are summed for the ranking, and ties
            are broken by pixel index (row-major), deterministically. For
            ``(B, T)`` inputs, ``(B, T)``.
        target: class per example: int, list or ``(B,)`` tensor; None for
            models that return one score per example.
        substrate: what deleted pixels become: a number (default 0, the
            paper's constant), ``"mean"`` (per-image, per-channel mean),
            ``"blur"`` (Gaussian, kernel 11, sigma 5) or a tensor broadcastable
            to ``inputs``. For token ids, the id of a deleted token (e.g.
            :attr:`captum_rise.text.SentenceEncoder.deletion_baseline`).
        step: pixels moved per step (default: one image row, ``W``; one
            position or word for ``(B, T)`` inputs).
        n_steps: alternatively, the number of steps; ``step = ceil(H*W / n_steps)``.
        apply_softmax: softmax over the model's ``(N, K)`` output before taking
            the target. None (default) applies it unless the rows already sum
            to 1 (a model ending in softmax) or the model returns one score per
            example.
        batch_size: perturbed images per forward call; None (default) chooses
            it while the curve is computed, as ``perturbations_per_eval=None``
            does in :meth:`captum_rise.RISE.attribute`.
        feature_mask: ``(B, T)`` or ``(1, T)`` groups of a ``(B, T)`` input
            that move together (words: :class:`captum_rise.text.WordGroups`),
            ranked by their mean attribution;
            :data:`captum_rise.masks.ALWAYS_KEPT` positions never move.

    Returns:
        :class:`CausalCurve` with ``S = ceil(H*W / step)`` steps (``(B, T)``
        inputs: ``ceil(G / step)`` for ``G`` positions or groups; an example
        with fewer groups than the batch's most moves them in proportion).
    """
    end = _always_kept_from(inputs, make_substrate(inputs, substrate), feature_mask)
    return causal_curve(
        model, inputs, end, attributions, target, step, n_steps, apply_softmax, batch_size,
        feature_mask,
    )  # fmt: skip


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
    feature_mask: Tensor | None = None,
) -> CausalCurve:
    """Insertion curve: the most salient pixels of the image are put on a canvas first.

    Arguments are those of :func:`deletion`; ``substrate`` is the starting
    canvas, a blur of the image (kernel 11, sigma 5) by default.
    """
    start = _always_kept_from(inputs, make_substrate(inputs, substrate), feature_mask)
    return causal_curve(
        model, start, inputs, attributions, target, step, n_steps, apply_softmax, batch_size,
        feature_mask,
    )  # fmt: skip


def _always_kept_from(inputs: Tensor, substrate: Tensor, feature_mask: Tensor | None) -> Tensor:
    """``substrate`` with the :data:`ALWAYS_KEPT` positions of ``feature_mask`` taken from
    ``inputs``: special tokens stay in every step of both curves."""
    if feature_mask is None or inputs.dim() != 2:
        return substrate
    return torch.where(_token_groups(feature_mask, inputs) == ALWAYS_KEPT, inputs, substrate)


def _token_groups(feature_mask: Tensor, inputs: Tensor) -> Tensor:
    """``feature_mask``'s group ids broadcast to the ``(B, T)`` inputs, checked."""
    if not isinstance(feature_mask, Tensor) or feature_mask.is_floating_point():
        raise TypeError("feature_mask must be an integer tensor of group ids")
    return _broadcast_to_inputs(feature_mask.to(inputs.device), inputs, "feature_mask")


def make_substrate(inputs: Tensor, substrate: SubstrateType) -> Tensor:
    """The ``(B, C, H, W)`` image (or ``(B, T)`` tokens) that pixels are taken from or put on.

    Token ids take a token id or an integer tensor of ids, never blended values."""
    _check_inputs(inputs)
    is_tokens = not inputs.is_floating_point()
    if isinstance(substrate, Tensor) and not (is_tokens and substrate.is_floating_point()):
        return _broadcast_to_inputs(substrate.to(inputs), inputs, "substrate")
    is_number = isinstance(substrate, numbers.Real) and not isinstance(substrate, bool)
    if is_tokens:
        if is_number and float(substrate).is_integer():
            return torch.full_like(inputs, int(substrate))
        raise ValueError(
            "for token ids, substrate must be a token id (e.g. the tokenizer's pad_token_id) "
            f"or an integer tensor of ids, got {substrate!r}"
        )
    if is_number:
        return torch.full_like(inputs, float(substrate))
    if substrate == "mean":
        features = (2, 3) if inputs.dim() == 4 else (1,)
        return inputs.mean(dim=features, keepdim=True).expand_as(inputs)
    if substrate == "blur" and inputs.dim() == 4:
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
    feature_mask: Tensor | None = None,
) -> CausalCurve:
    """Scores while pixels move from ``start`` to ``end`` in decreasing saliency.

    After step ``k`` the ``k * step`` most salient pixels come from ``end``
    and the others from ``start`` (all channels of a pixel move together).
    :func:`deletion` and :func:`insertion` are this with a substrate as
    ``end`` or ``start``. Shapes and arguments are those of :func:`deletion`.
    """
    _check_inputs(start)
    warn_if_training(model)
    if apply_softmax is None:
        apply_softmax = getattr(model, "default_apply_softmax", None)
    batch = start.shape[0]
    rank, units, default_step = _ranked_units(start, attributions, feature_mask)
    n_units = int(units.max())
    step = _resolve_step(step, n_steps, n_units, default_step)
    batch_size = check_chunk_size("batch_size", batch_size)
    targets = _format_target(target, batch, start.device)
    total_steps = math.ceil(n_units / step)
    fractions = torch.clamp(torch.arange(total_steps + 1) * step / n_units, max=1.0)
    # (B, S + 1) units moved after each step: every example reaches all of its own units
    moved = torch.round(fractions.to(start.device, torch.float64)[None] * units[:, None]).long()

    jobs_sample = torch.arange(batch, device=start.device).repeat_interleave(total_steps + 1)
    jobs_step = torch.arange(total_steps + 1, device=start.device).repeat(batch)
    scores = torch.empty(batch * (total_steps + 1), device=start.device)
    blend = _Mover(start, end)
    softmax_flag = apply_softmax
    checked = False

    def begin(lo: int, hi: int, padded_size: int) -> Callable[[], Tensor]:
        return lambda: evaluate(lo, hi, padded_size)

    def evaluate(lo: int, hi: int, padded_size: int) -> Tensor:
        nonlocal softmax_flag, checked
        sample = jobs_sample[lo:hi]
        from_end = rank[sample] < moved[sample, jobs_step[lo:hi], None]
        output = forward_output(model(blend(sample, from_end, padded_size)), start.device)
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
            jobs_sample.numel(), begin, consume, batch_size,
            lambda: sizer_for(model, (start[:1],)), start.device, NullProgress(),
        )  # fmt: skip
    scores = scores.reshape(batch, total_steps + 1)
    fractions = fractions.to(scores)
    return CausalCurve(fractions, scores, torch.trapezoid(scores, fractions, dim=1))


def _ranked_units(
    start: Tensor, attributions: Tensor, feature_mask: Tensor | None
) -> tuple[Tensor, Tensor, int]:
    """What moves, in order: ``(rank, units, default_step)``, each unit's rank by
    decreasing saliency (:func:`pixel_rank` for images, groups of ``feature_mask`` or
    single features for ``(B, T)`` inputs), the ``(B,)`` units of each example, and the
    default units per step (a row of pixels for images, else 1)."""
    if start.dim() == 4:
        if feature_mask is not None:
            raise ValueError("feature_mask is for (B, T) inputs; images move pixel by pixel")
        rank = pixel_rank(attributions, start)
        units = torch.full((start.shape[0],), rank.shape[1], device=start.device)
        return rank, units, start.shape[3]
    rank, units = _group_rank(attributions, start, feature_mask)
    return rank, units, 1


class _Mover:
    """Inputs with the features marked ``from_end`` taken from ``end``, the rest from
    ``start``: blended for images, replaced for token ids; in the inputs' layout."""

    def __init__(self, start: Tensor, end: Tensor) -> None:
        self.start, self.end = start, end
        self.difference = None if not start.is_floating_point() else end - start
        self.layout = memory_format_of(start)

    def __call__(self, sample: Tensor, from_end: Tensor, padded_size: int) -> Tensor:
        """``(padded_size, ...)``: rows past ``len(sample)`` repeat the last one."""
        n = sample.shape[0]
        out = torch.empty(
            (padded_size, *self.start.shape[1:]),
            dtype=self.start.dtype,
            device=self.start.device,
            memory_format=self.layout,
        )
        if self.difference is None:
            torch.where(from_end, self.end[sample], self.start[sample], out=out[:n])
        else:
            weights = from_end.to(self.start.dtype)
            if self.start.dim() == 4:
                weights = weights.reshape(-1, 1, *self.start.shape[2:])
            torch.addcmul(self.start[sample], self.difference[sample], weights, out=out[:n])
        fill_padding(out, n, 1)
        return out


def _group_rank(
    attributions: Tensor, inputs: Tensor, feature_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """For ``(B, T)`` inputs: ``(B, T)`` rank of every position's group (0: the most
    salient; positions of a group share it, :data:`ALWAYS_KEPT` ones rank last and never
    move) and ``(B,)`` the number of groups of each example."""
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    if attributions.shape != inputs.shape:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} must match the (B, T) inputs "
            f"of shape {tuple(inputs.shape)}"
        )
    if not bool(torch.isfinite(attributions).all()):
        raise ValueError("attributions contain NaN or infinite values")
    batch, length = inputs.shape
    if feature_mask is None:
        groups = torch.arange(length, device=inputs.device).expand(batch, length)
    else:
        groups = _token_groups(feature_mask, inputs)
    ranks, counts = [], []
    for b in range(batch):
        moving = groups[b] != ALWAYS_KEPT
        ids, inverse = torch.unique(groups[b][moving], return_inverse=True)
        values = attributions[b][moving].double()
        mean = torch.zeros(ids.numel(), dtype=torch.float64, device=inputs.device)
        mean.index_add_(0, inverse, values)
        mean /= torch.bincount(inverse, minlength=ids.numel())
        order = torch.sort(mean, descending=True, stable=True).indices
        group_rank = torch.empty_like(order)
        group_rank[order] = torch.arange(order.numel(), device=order.device)
        rank = torch.full((length,), length + 1, dtype=torch.long, device=inputs.device)
        rank[moving] = group_rank[inverse]
        ranks.append(rank)
        counts.append(ids.numel())
    if min(counts) == 0:
        raise ValueError("every position of an example is ALWAYS_KEPT: nothing to move")
    return torch.stack(ranks), torch.tensor(counts, device=inputs.device)


def pixel_rank(attributions: Tensor, inputs: Tensor) -> Tensor:
    """``(B, H*W)`` rank of every pixel, 0 for the most salient.

    Channels are summed; ties go to the lower (row-major) pixel index.
    """
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    if attributions.dim() == 3:
        attributions = attributions.unsqueeze(1)
    saliency = _broadcast_to_inputs(attributions.to(inputs.device), inputs, "attributions")
    if not torch.isfinite(saliency).all():
        raise ValueError("attributions contain NaN or infinite values")
    flat = saliency.sum(dim=1).reshape(inputs.shape[0], -1).double()
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank.scatter_(1, order, positions)
    return rank


def _broadcast_to_inputs(value: Tensor, inputs: Tensor, name: str) -> Tensor:
    """``value`` broadcast to the shape of ``inputs``, or a ValueError naming ``name``."""
    try:
        return torch.broadcast_to(value, inputs.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} cannot be broadcast to the inputs of shape "
            f"{tuple(inputs.shape)}"
        ) from None


def _check_inputs(inputs: Tensor) -> None:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() not in (2, 4) or inputs.shape[0] < 1:
        raise ValueError(
            f"inputs must have shape (B, C, H, W) or (B, T), got {tuple(inputs.shape)}"
        )
    if inputs.dim() == 4 and not inputs.is_floating_point():
        raise TypeError(f"images must be a floating tensor, got {inputs.dtype}")


def _resolve_step(step: int | None, n_steps: int | None, n_units: int, default_step: int) -> int:
    if step is not None and n_steps is not None:
        raise ValueError("give either step (pixels per step) or n_steps, not both")
    if n_steps is not None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
        return math.ceil(n_units / n_steps)
    if step is None:
        return default_step
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
