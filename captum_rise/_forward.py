"""Blending inputs with masks and scoring the perturbed copies with the model."""

import functools
import inspect
import threading
import warnings
import weakref
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

from captum_rise._validation import check_target_in_range, is_integer_input
from captum_rise.runtimes import RuntimeForward, as_output_tensor

MODEL_SEARCH_DEPTH = 3
"""How many references deep :func:`model_of` looks for the model in a forward function."""

RANDOM_IN_TRAINING = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)
"""Modules whose output is random (dropout) or batch-dependent (batch norm) in training mode."""

_WARNED_IN_TRAINING: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


def model_of(forward_func: object) -> object:
    """The :class:`torch.nn.Module` (or :class:`captum_rise.runtimes.RuntimeForward`)
    that ``forward_func`` runs, else ``forward_func``.

    Looked for breadth first, up to :data:`MODEL_SEARCH_DEPTH` references deep:
    a bound method's object, a ``functools.partial``'s function and arguments,
    a function's closure and the globals it names (``lambda x:
    torch.softmax(model(x), dim=1)`` in a notebook), a callable object's
    attributes (the detector of :class:`captum_rise.scores.DetectionScore`;
    score adapters that are modules themselves, marked ``is_score_adapter``,
    are looked into). The first module found is the key; a forward function that runs two
    models is keyed by the one found first.
    """
    frontier = [forward_func]
    visited: set[int] = set()
    for _ in range(MODEL_SEARCH_DEPTH + 1):
        deeper = []
        for candidate in frontier:
            if isinstance(candidate, RuntimeForward) or (
                isinstance(candidate, torch.nn.Module)
                and not getattr(candidate, "is_score_adapter", False)
            ):
                return candidate
            if id(candidate) not in visited:
                visited.add(id(candidate))
                deeper.extend(_references(candidate))
        frontier = deeper
    return forward_func


def _references(candidate: object) -> list[object]:
    """What a callable refers to, where :func:`model_of` looks for a model."""
    if isinstance(candidate, functools.partial):
        return [candidate.func, *candidate.args, *candidate.keywords.values()]
    if inspect.ismethod(candidate):
        return [candidate.__self__, candidate.__func__]
    if inspect.isfunction(candidate):
        cells = []
        for cell in candidate.__closure__ or ():
            try:
                cells.append(cell.cell_contents)
            except ValueError:  # a cell not yet filled
                continue
        names = candidate.__code__.co_names
        named = [candidate.__globals__[n] for n in names if n in candidate.__globals__]
        return cells + [g for g in named if callable(g) and not inspect.isclass(g)]
    if isinstance(candidate, torch.nn.Module):  # a score adapter: the model it wraps
        return [*candidate.children(), *vars(candidate).values()]
    if callable(candidate) and not inspect.isclass(candidate) and hasattr(candidate, "__dict__"):
        return list(vars(candidate).values())
    return []


def device_of(model: object) -> torch.device:
    """Where a torch model's parameters are; the CPU for any other forward."""
    parameters = model.parameters() if isinstance(model, torch.nn.Module) else iter(())
    return next(parameters, torch.empty(0)).device


def warn_if_training(forward_func: object) -> None:
    """Warns, once per model, when the model of ``forward_func`` (:func:`model_of`) is
    in training mode with dropout or batch norm: every perturbed forward would then
    be random or depend on its batch, and the attributions noise. Names the module."""
    model = model_of(forward_func)
    if not isinstance(model, torch.nn.Module) or model in _WARNED_IN_TRAINING:
        return
    for name, module in model.named_modules():
        if module.training and isinstance(module, RANDOM_IN_TRAINING):
            _WARNED_IN_TRAINING.add(model)
            where = f"its {type(module).__name__} {name!r}" if name else type(module).__name__
            warnings.warn(
                f"the model ({type(model).__name__}) is in training mode, so {where} makes "
                "every perturbed forward random or batch-dependent: call model.eval() first",
                UserWarning,
                stacklevel=2,
            )
            return


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


def pad_batch(tensor: Tensor, rows: int, group: int) -> Tensor:
    """``tensor`` ``(n, ...)`` grown to ``rows`` rows with copies of its last ``group`` rows.

    ``rows - n`` must be a multiple of ``group``: a padded item repeats the
    last item's ``group`` rows (e.g. its ``B`` examples), so per-example
    arguments and targets, repeated per item, still line up. The memory layout
    is kept; ``tensor`` itself is returned when it has ``rows`` rows. Used to
    run a short last chunk at a batch size the model has met (see
    :mod:`captum_rise.batching`).
    """
    n = tensor.shape[0]
    if rows == n:
        return tensor
    out = torch.empty(
        (rows, *tensor.shape[1:]),
        dtype=tensor.dtype,
        device=tensor.device,
        memory_format=memory_format_of(tensor),
    )
    out[:n] = tensor
    fill_padding(out, n, group)
    return out


def fill_padding(batch: Tensor, n: int, group: int) -> None:
    """Writes copies of rows ``n - group .. n - 1`` of ``batch`` into its rows ``n ..``
    (in place; see :func:`pad_batch`), for code that makes a padded batch itself."""
    if batch.shape[0] > n:
        batch[n:].view(-1, group, *batch.shape[1:])[:] = batch[n - group : n]


class Blender:
    """``baseline + (input - baseline) * M`` for chunks of masks.

    ``input - baseline`` is computed once; every chunk is then one fused
    multiply-add written straight into a batch in the input's dtype and memory
    layout (a ``channels_last`` input gives ``channels_last`` batches).
    Integer inputs (token ids, category codes) are never blended: a feature is
    kept where its (binary) mask is nonzero and replaced by the baseline
    elsewhere, ``where(M != 0, input, baseline)``.

    **Batches are reused.** Once a call is done with its batches,
    :meth:`release` keeps them for the next chunk of the same shape: every
    element is written again, so the values are those of a fresh batch. A fresh
    batch of perturbed images is fresh memory from the operating system on the
    CPU (a 224x224 image's copies take 600 kB each), and its page faults cost
    5 times the blend itself (measured: 117 against 22 us a copy, 2 threads).
    Only the batches of the latest shape are kept, at most as many as calls
    were in flight at once.

    Args:
        inputs: ``(B, *rest_i)`` each.
        baselines: a number or a tensor broadcastable to each input.
    """

    def __init__(
        self, inputs: tuple[Tensor, ...], baselines: tuple[Tensor | float | int, ...]
    ) -> None:
        self.inputs = tuple(x.detach() for x in inputs)
        self.baselines = [
            torch.as_tensor(b, dtype=x.dtype, device=x.device).detach()
            for x, b in zip(self.inputs, baselines)
        ]
        self.differences = [
            None if is_integer_input(x) else x - b for x, b in zip(self.inputs, self.baselines)
        ]
        self.formats = [memory_format_of(x) for x in self.inputs]
        self._free: list[tuple[Tensor, ...]] = []  # released batches of one shape
        self._lock = threading.Lock()  # calls in flight release from worker threads

    def __call__(self, masks: tuple[Tensor, ...], batch: int | None = None) -> tuple[Tensor, ...]:
        """Perturbed inputs for ``n`` masks.

        Args:
            masks: ``(n, Bm, ...)`` each, broadcastable to ``(n, B, *rest_i)``.
            batch: ``>= n``: the output holds ``batch`` perturbations, the last
                mask's repeated (:func:`fill_padding`): a padded chunk made
                in place, without the copy :func:`pad_batch` would make.

        Returns:
            ``(batch * B, *rest_i)`` per input (``batch`` defaults to ``n``),
            mask-major: row ``k * B + b`` is example ``b`` under mask ``k``.
        """
        perturbed = []
        outs = self._batches(batch or masks[0].shape[0])
        for x, baseline, difference, out, mask in zip(
            self.inputs, self.baselines, self.differences, outs, masks
        ):
            n, examples = mask.shape[0], x.shape[0]
            blended = out[: n * examples].view(n, *x.shape)
            if difference is None:
                torch.where(mask != 0, x, baseline, out=blended)
            else:
                torch.addcmul(baseline, difference, mask.to(x.dtype), out=blended)
            fill_padding(out, n * examples, examples)
            perturbed.append(out)
        return tuple(perturbed)

    def release(self, perturbed: tuple[Tensor, ...], kept: Tensor) -> None:
        """The call that ``perturbed`` (a result of this blender) fed is done: its
        batches may be written again, unless ``kept`` (what the call returned, e.g.
        scores) shares their memory."""
        if any(
            kept.untyped_storage().data_ptr() == p.untyped_storage().data_ptr() for p in perturbed
        ):
            return
        with self._lock:
            if self._free and self._free[0][0].shape != perturbed[0].shape:
                self._free.clear()
            self._free.append(perturbed)

    def _batches(self, items: int) -> tuple[Tensor, ...]:
        """One batch per input for ``items`` perturbations: released ones of that
        shape, else fresh (in the input's dtype and memory layout)."""
        rows = items * self.inputs[0].shape[0]
        with self._lock:
            if self._free and self._free[-1][0].shape[0] == rows:
                return self._free.pop()
        return tuple(
            torch.empty((rows, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=layout)
            for x, layout in zip(self.inputs, self.formats)
        )


def blend(
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor | float | int, ...],
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


def forward_output(output: object, device: torch.device) -> Tensor:
    """A forward's output (a tensor, a numpy array or an array-like:
    :func:`captum_rise.runtimes.as_output_tensor`) as a tensor on ``device``."""
    tensor = as_output_tensor(output)
    return tensor if tensor.device == device else tensor.to(device)


def check_finite_scores(scores: Tensor) -> None:
    """Raises a ValueError when the model's scores hold NaN or infinite values
    (given a bool tensor of flags instead: when one of them is False).

    It reads a flag back from the device, so callers check once when the
    results are read, never per forward call.
    """
    finite = scores if scores.dtype == torch.bool else torch.isfinite(scores)
    if not bool(finite.all()):
        raise ValueError(
            "forward_func returned NaN or infinite scores for perturbed inputs; "
            "check the model on masked inputs (e.g. normalisation by zero)"
        )


class ModelScorer:
    """Runs ``forward_func`` on ``n`` perturbed copies of a batch of ``B`` examples.

    It expands ``target`` and ``additional_forward_args`` as Captum does
    (repeated ``n`` times, mask-major), checks the output, and returns scores
    of shape ``(n, B, 1)``, or ``(n, B, K)`` with ``multi_output``.

    As with Captum's ``FeatureAblation``, the forward may return one row per
    perturbed input, or a 0-d scalar when it is given a single one (one
    example, one perturbation per call).

    Args:
        forward_func: the model or any callable.
        batch_size: ``B``.
        additional_forward_args: formatted as a tuple, or None.
        target: any Captum target form.
        multi_output: with ``target=None``, ``(N, K)`` outputs give ``K``
            scores per example (e.g. an answer's per-token log-probabilities)
            instead of an error.
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        batch_size: int,
        additional_forward_args: tuple[Any, ...] | None,
        target: TargetType = None,
        multi_output: bool = False,
    ) -> None:
        warn_if_training(forward_func)
        self.forward_func = forward_func
        self.batch_size = batch_size
        self.additional_forward_args = additional_forward_args
        self.target = target
        self.multi_output = multi_output
        self._checked = False

    def __call__(self, perturbed: Sequence[Tensor], n: int, batch: int | None = None) -> Tensor:
        """Scores ``(n, B, K)`` of the ``n * B`` perturbed inputs (``batch``: see
        :meth:`forward_raw`)."""
        return self.select(self.forward_raw(perturbed, n, batch), n)

    def forward_raw(self, perturbed: Sequence[Tensor], n: int, batch: int | None = None) -> Tensor:
        """The model's output for ``n * B`` perturbed inputs, checked to have one row each.

        With ``batch > n`` the model sees ``batch * B`` rows, the last
        perturbation's rows repeated (:func:`pad_batch`), and the padded
        rows' outputs are dropped: a short chunk runs at a size the model has
        already met.
        """
        rows = n * self.batch_size
        padded_rows = (batch or n) * self.batch_size
        output = _run_forward(
            self.forward_func,
            tuple(pad_batch(p, padded_rows, self.batch_size) for p in perturbed),
            None,
            _expand_additional_forward_args(self.additional_forward_args, batch or n),
        )
        output = forward_output(output, perturbed[0].device)
        if output.dim() == 0 and padded_rows == 1:  # a scalar for a single perturbed input
            output = output.reshape(1)
        if output.dim() == 0 or output.shape[0] != padded_rows:
            raise ValueError(
                f"forward_func must return one row per example: for {padded_rows} perturbed "
                f"inputs it returned shape {tuple(output.shape)}"
            )
        return output[:rows]

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
            self.target = _target_on_device(self.target, output.device)
        selected = _select_targets(output, _expand_target(self.target, n))
        while selected.dim() > 1 and selected.shape[-1] == 1:
            selected = selected.squeeze(-1)
        if self.multi_output and self.target is None and selected.dim() == 2:
            return selected
        if selected.shape != (output.shape[0],):
            raise ValueError(
                f"forward_func output of shape {tuple(output.shape)} with target="
                f"{self.target!r} gives scores of shape {tuple(selected.shape)}; one "
                f"score per example is needed: pass a target for (N, C) outputs"
            )
        return selected


def _target_on_device(target: TargetType, device: torch.device) -> TargetType:
    """``target`` in the form Captum selects without reading the device every call:
    a one-element tensor as an int, per-example class indices as a tensor on
    ``device`` (a list, or a tensor elsewhere, would be copied there per call)."""
    if isinstance(target, list) and target and isinstance(target[0], int):
        target = torch.tensor(target)
    if isinstance(target, Tensor):
        return int(target.item()) if target.numel() == 1 else target.to(device)
    return target


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
