"""Blending inputs with masks and scoring the perturbed copies with the model."""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _run_forward,
    _select_targets,
)
from captum._utils.typing import TargetType
from torch import Tensor

from captum_rise._validation import check_target_in_range


def memory_format_of(x: Tensor) -> torch.memory_format:
    """``channels_last`` (or ``channels_last_3d``) for a 4-D (5-D) tensor laid out so
    and not also contiguous, else ``contiguous_format``."""
    if x.is_contiguous():
        return torch.contiguous_format
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


class Blender:
    """``baseline + (input - baseline) * M`` for chunks of masks.

    ``input - baseline`` is computed once; every chunk is then one fused
    multiply-add written straight into a batch in the input's dtype and memory
    layout (a ``channels_last`` input gives ``channels_last`` batches).

    Args:
        inputs: ``(B, *rest_i)`` each.
        baselines: a number or a tensor broadcastable to each input.
    """

    def __init__(self, inputs: tuple[Tensor, ...], baselines: tuple[Tensor | float, ...]) -> None:
        self.inputs = tuple(x.detach() for x in inputs)
        self.baselines = [
            torch.as_tensor(b, dtype=x.dtype, device=x.device).detach()
            for x, b in zip(self.inputs, baselines)
        ]
        self.differences = [x - b for x, b in zip(self.inputs, self.baselines)]
        self.formats = [memory_format_of(x) for x in self.inputs]

    def __call__(self, masks: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Perturbed inputs for ``n`` masks.

        Args:
            masks: ``(n, Bm, ...)`` each, broadcastable to ``(n, B, *rest_i)``.

        Returns:
            ``(n * B, *rest_i)`` per input, mask-major: row ``k * B + b`` is
            example ``b`` under mask ``k``.
        """
        perturbed = []
        for x, baseline, difference, layout, mask in zip(
            self.inputs, self.baselines, self.differences, self.formats, masks
        ):
            n = mask.shape[0]
            out = torch.empty(
                (n * x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=layout
            )
            torch.addcmul(baseline, difference, mask.to(x.dtype), out=out.view(n, *x.shape))
            perturbed.append(out)
        return tuple(perturbed)


def blend(
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor | float, ...],
    masks: tuple[Tensor, ...],
) -> tuple[Tensor, ...]:
    """``input * M + baseline * (1 - M)`` for ``n`` masks: one call of :class:`Blender`.

    Args:
        inputs: ``(B, *rest_i)`` each.
        baselines: a number or a tensor broadcastable to each input.
        masks: ``(n, Bm, ...)`` each, broadcastable to ``(n, B, *rest_i)``.

    Returns:
        ``(n * B, *rest_i)`` per input, mask-major.
    """
    return Blender(inputs, baselines)(masks)


def check_finite_scores(scores: Tensor) -> None:
    """Raises a ValueError when the model's scores hold NaN or infinite values.

    It reads a flag back from the device, so callers check once per batch of
    chunks, not per forward call.
    """
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(
            "forward_func returned NaN or infinite scores for perturbed inputs; "
            "check the model on masked inputs (e.g. normalisation by zero)"
        )


class ModelScorer:
    """Runs ``forward_func`` on ``n`` perturbed copies of a batch of ``B`` examples.

    It expands ``target`` and ``additional_forward_args`` as Captum does
    (repeated ``n`` times, mask-major), checks the output, and returns scores
    of shape ``(n, B, 1)``.

    Args:
        forward_func: the model or any callable.
        batch_size: ``B``.
        additional_forward_args: formatted as a tuple, or None.
        target: any Captum target form.
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        batch_size: int,
        additional_forward_args: tuple[Any, ...] | None,
        target: TargetType = None,
    ) -> None:
        self.forward_func = forward_func
        self.batch_size = batch_size
        self.additional_forward_args = additional_forward_args
        self.target = target
        self._checked = False

    def __call__(self, perturbed: Sequence[Tensor], n: int) -> Tensor:
        """Scores ``(n, B, K)`` of the ``n * B`` perturbed inputs."""
        return self.select(self.forward_raw(perturbed, n), n)

    def forward_raw(self, perturbed: Sequence[Tensor], n: int) -> Tensor:
        """The model's output for ``n * B`` perturbed inputs, checked to have one row each."""
        rows = n * self.batch_size
        output = _run_forward(
            self.forward_func,
            tuple(perturbed),
            None,
            _expand_additional_forward_args(self.additional_forward_args, n),
        )
        if not isinstance(output, Tensor):
            raise TypeError(f"forward_func must return a torch.Tensor, got {type(output).__name__}")
        if output.dim() == 0 or output.shape[0] != rows:
            raise ValueError(
                f"forward_func must return one row per example: for {rows} perturbed "
                f"inputs it returned shape {tuple(output.shape)}"
            )
        return output

    def select(self, output: Tensor, n: int) -> Tensor:
        """Scores ``(n, B, K)`` from an output of ``n * B`` rows.

        Their finiteness is not checked here (that would wait for the device
        on every call): see :func:`check_finite_scores`.
        """
        scores = self._select(output, n)
        self._checked = True
        return scores.reshape(n, self.batch_size, -1)

    def target_columns(self, output: Tensor, n: int) -> Tensor:
        """The column the target picks in each row of an ``(n * B, C)`` output: ``(n * B,)`` long.

        Any Captum target form works: the columns' indices are selected as the
        scores would be.
        """
        columns = torch.arange(output.shape[1], device=output.device).expand(output.shape[0], -1)
        return self._select(columns, n)

    def _select(self, output: Tensor, n: int) -> Tensor:
        """``(n * B,)`` or ``(n * B, K)`` scores from the raw output."""
        if not self._checked:
            check_target_in_range(self.target, output.shape)
        selected = _select_targets(output, _expand_target(self.target, n))
        while selected.dim() > 1 and selected.shape[-1] == 1:
            selected = selected.squeeze(-1)
        if selected.shape != (output.shape[0],):
            raise ValueError(
                f"forward_func output of shape {tuple(output.shape)} with target="
                f"{self.target!r} gives scores of shape {tuple(selected.shape)}; one "
                f"score per example is needed: pass a target for (N, C) outputs"
            )
        return selected


class ClassScorer(ModelScorer):
    """A :class:`ModelScorer` that keeps several classes: scores ``(n, B, K)``.

    Args:
        classes: ``(K,)`` indices into the output's second dim, or None for all.
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        batch_size: int,
        additional_forward_args: tuple[Any, ...] | None,
        classes: Tensor | None = None,
    ) -> None:
        super().__init__(forward_func, batch_size, additional_forward_args)
        self.classes = classes

    def _select(self, output: Tensor, n: int) -> Tensor:
        if output.dim() != 2:
            raise ValueError(
                f"explaining several classes needs (N, C) scores, forward_func returned "
                f"shape {tuple(output.shape)}"
            )
        if self.classes is None:
            return output
        if not self._checked and int(self.classes.max()) >= output.shape[1]:
            raise ValueError(
                f"classes must be in [0, {output.shape[1]}), got max {int(self.classes.max())}"
            )
        return output[:, self.classes.to(output.device)]


def needs_softmax(output: Tensor) -> bool:
    """Whether ``(N, K)`` outputs are logits: not one score per example, and rows
    that are not already probabilities (non-negative, summing to 1)."""
    if output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1):
        return False
    sums = output.sum(dim=1)
    is_probability = bool((output >= 0).all()) and bool(
        torch.allclose(sums, torch.ones_like(sums), atol=1e-3)
    )
    return not is_probability
