"""Argument checks that raise clear errors naming the argument."""

import numbers

import torch
from captum._utils.typing import BaselineType, TargetType
from torch import Tensor


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, else TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_probability(name: str, value: object, include_one: bool = True) -> float:
    """``value`` as a float in (0, 1], or in (0, 1) without ``include_one``."""
    interval = "(0, 1]" if include_one else "(0, 1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in {interval}, got {type(value).__name__}")
    if not (0.0 < float(value) <= 1.0 if include_one else 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return float(value)


def check_positive(name: str, value: object) -> float:
    """``value`` as a float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float > 0, got {type(value).__name__}")
    if not float(value) > 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def resolve_seed(seed: object) -> int:
    """``seed`` as an int; None: one seed drawn from torch's global CPU generator, as
    Captum's sampling methods draw theirs, so that after ``torch.manual_seed(s)`` a
    ``seed=None`` run is reproducible and two global seeds give two draws."""
    if seed is None:
        return int(torch.randint(2**62, (1,)).item())
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    return int(seed)


def is_integer_input(x: Tensor) -> bool:
    """Token ids, category codes, bools: features that a mask keeps or replaces, never blends."""
    return not x.is_floating_point() and not x.is_complex()


def attribution_dtype(x: Tensor) -> torch.dtype:
    """The dtype of masks and maps for input ``x``: its own when floating, else the
    default float (integer inputs get float maps)."""
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def check_inputs(inputs: tuple[Tensor, ...]) -> None:
    """Every input is a real tensor (floating, or integer ids) with a batch dim >= 1, all
    with one batch size."""
    if len(inputs) == 0:
        raise ValueError("inputs must hold at least one tensor")
    for i, inp in enumerate(inputs):
        if not isinstance(inp, Tensor):
            raise TypeError(f"inputs[{i}] must be a torch.Tensor, got {type(inp).__name__}")
        if inp.dim() < 2 or inp.shape[0] < 1:
            raise ValueError(
                f"inputs[{i}] must be batch first with batch >= 1 and at least one "
                f"feature dim, got shape {tuple(inp.shape)}"
            )
        if inp.is_complex():
            raise TypeError(f"inputs[{i}] must be a real tensor, got {inp.dtype}")
    batch_sizes = {inp.shape[0] for inp in inputs}
    if len(batch_sizes) > 1:
        raise ValueError(f"all inputs must have the same batch size, got {sorted(batch_sizes)}")


def check_one_per_input(name: str, values: tuple[object, ...], inputs: tuple[Tensor, ...]) -> None:
    """A ``ValueError`` unless ``values`` (an argument named ``name``) has one entry per input."""
    if len(values) != len(inputs):
        raise ValueError(
            f"{name} must have one entry per input: got {len(values)} for {len(inputs)} inputs"
        )


def format_baselines(
    baselines: BaselineType, inputs: tuple[Tensor, ...]
) -> tuple[Tensor | float, ...]:
    """One baseline per input: a number, or a tensor that broadcasts to the input.

    For integer inputs (token ids, category codes) the baseline replaces a
    masked feature: it must be an integer (e.g. a pad or mask token id) or an
    integer tensor, and None means 0.
    """
    if baselines is None:
        return tuple(0 if is_integer_input(inp) else 0.0 for inp in inputs)
    if not isinstance(baselines, tuple):
        baselines = (baselines,)
    check_one_per_input("baselines", baselines, inputs)
    formatted = []
    for i, (baseline, inp) in enumerate(zip(baselines, inputs)):
        integer = is_integer_input(inp)
        if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
            if integer and not isinstance(baseline, numbers.Integral):
                raise TypeError(
                    f"baselines[{i}] must be an integer (e.g. a pad token id) for the "
                    f"integer input {i} ({inp.dtype}): its masked features are replaced, "
                    f"not blended; got {baseline!r}"
                )
            formatted.append(int(baseline) if integer else float(baseline))
            continue
        if not isinstance(baseline, Tensor):
            raise TypeError(
                f"baselines[{i}] must be a number or a tensor, got {type(baseline).__name__}"
            )
        if integer and not is_integer_input(baseline):
            raise TypeError(
                f"baselines[{i}] must be an integer tensor (token ids, category codes) for "
                f"the integer input {i} ({inp.dtype}), got {baseline.dtype}"
            )
        try:
            torch.broadcast_shapes(baseline.shape, inp.shape)
        except RuntimeError:
            raise ValueError(
                f"baselines[{i}] of shape {tuple(baseline.shape)} cannot be broadcast to "
                f"its input of shape {tuple(inp.shape)}"
            ) from None
        if torch.broadcast_shapes(baseline.shape, inp.shape) != inp.shape:
            raise ValueError(
                f"baselines[{i}] of shape {tuple(baseline.shape)} is larger than its input "
                f"of shape {tuple(inp.shape)}"
            )
        formatted.append(baseline.to(device=inp.device, dtype=inp.dtype))
    return tuple(formatted)


def check_target(target: TargetType, batch_size: int) -> None:
    """Checks the type of ``target`` and, for per-example forms, its length."""
    if target is None or (isinstance(target, (int, tuple)) and not isinstance(target, bool)):
        return
    if isinstance(target, Tensor):
        if target.is_floating_point():
            raise TypeError(f"target must hold integer class indices, got {target.dtype}")
        if target.numel() != 1 and (target.dim() != 1 or target.numel() != batch_size):
            raise ValueError(
                f"a target tensor must be a scalar or have one entry per example "
                f"({batch_size}), got shape {tuple(target.shape)}"
            )
        return
    if isinstance(target, list):
        if len(target) != batch_size:
            raise ValueError(
                f"a target list must have one entry per example ({batch_size}), got {len(target)}"
            )
        return
    raise TypeError(
        f"target must be None, an int, a tuple, a list or a tensor, got {type(target).__name__}"
    )


def check_target_in_range(target: TargetType, output_shape: torch.Size) -> None:
    """Every index in ``target`` addresses an existing output of shape ``(N, ...)``."""
    if target is None:
        return
    if len(output_shape) < 2:
        raise ValueError(
            f"target={_short(target)} was given, but forward_func returns one score per "
            f"example (output shape {tuple(output_shape)}); use target=None"
        )
    if isinstance(target, Tensor):
        indices: list[tuple[int, ...]] = [(int(t),) for t in target.reshape(-1).tolist()]
    elif isinstance(target, list):
        indices = [t if isinstance(t, tuple) else (t,) for t in target]
    else:
        indices = [target if isinstance(target, tuple) else (target,)]
    for index in indices:
        if len(index) > len(output_shape) - 1:
            raise ValueError(
                f"target {index} has more indices than the output of shape "
                f"{tuple(output_shape)} has dims after the batch"
            )
        for position, value in enumerate(index):
            size = output_shape[position + 1]
            if not 0 <= int(value) < size:
                raise ValueError(
                    f"target {_short(target)} is out of range for forward_func output of "
                    f"shape {tuple(output_shape)}: indices must be in [0, {size})"
                )


def _short(target: TargetType) -> str:
    text = repr(target)
    return text if len(text) <= 60 else text[:57] + "..."
