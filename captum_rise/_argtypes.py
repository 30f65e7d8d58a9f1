"""argparse types of the command line: each rejects a bad value before any work starts."""

import argparse

import torch


def _whole_number(text: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = _whole_number(text, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def float_list(text: str) -> list[float]:
    """argparse type: numbers separated by commas (``0.485,0.456,0.406``)."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def class_target(text: str) -> int | str:
    """argparse type: ``"top"`` or a class index >= 0 (its upper bound is the model's)."""
    if text == "top":
        return text
    value = _whole_number(text, "a class index or 'top'")
    if value < 0:
        raise argparse.ArgumentTypeError(f"a class index must be >= 0, got {value}")
    return value


def device_name(text: str) -> str:
    """argparse type: a torch device (``cpu``, ``cuda``, ``cuda:1``) that this machine has."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected cpu or cuda[:index], got {text!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"expected cpu or cuda[:index], got {text!r}")
    return text
