"""The model of an evaluation run, from what ``captum-rise evaluate --model`` names.

``--model`` takes:

* a torchvision classifier name (``mobilenet_v2``, with ``--weights``);
* ``package.module:factory``: a function, called with no arguments, that
  returns the model or any forward function (it may load its own weights), or
  a :class:`ModelSpec` that also says how images are preprocessed;
* an ONNX file (``.onnx``), run by ONNX Runtime
  (:class:`captum_rise.runtimes.OnnxRuntimeForward`);
* a TorchScript file (``torch.jit.save``), loaded with ``torch.jit.load``.

No file is ever unpickled: a ``torch.save`` checkpoint or any other pickle can
run code stored in it when loaded, so it is refused with a message that says
what to do instead. Images are explained as pixels in [0, 1] (a baseline of
0 is black): for a model that expects normalised inputs, ``--mean`` and
``--std`` put the normalisation in front of it.
"""

import dataclasses
import functools
import importlib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from captum_rise.imagenet import (
    DEFAULT_WEIGHTS,
    ModelLoadError,
    Normalize,
    load_classifier,
    resize_and_crop,
)
from captum_rise.runtimes import OnnxRuntimeForward

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pth", ".ckpt", ".bin", ".joblib", ".npy", ".npz")
"""File suffixes of formats that unpickle (refused unless the file is a TorchScript archive)."""

PICKLE_PROTOCOL_BYTE = 0x80
"""The first byte of a pickle of protocol 2 and later."""


@dataclass
class ModelSpec:
    """What a ``package.module:factory`` may return beside a bare model.

    Attributes:
        model: an ``nn.Module`` or any forward ``(B, C, H, W) -> (B, classes)``
            scores (tensors, numpy arrays or array-likes).
        preprocess: a PIL image to ``(1, C, H, W)`` or ``(C, H, W)`` pixels in
            [0, 1]; None: resize and centre crop by the command's options.
        gradcam_layer: Grad-CAM's layer (default: the last ``Conv2d``).
        class_names: the class names by index, shown in the run's report.
        memory_format: of the images given to the model: ``torch.channels_last``
            for a convolutional network converted with
            ``model.to(memory_format=torch.channels_last)`` (about 1.4 to 1.9
            times faster forwards for MobileNetV2 and EfficientNet-Lite0 on a
            2-core CPU).
    """

    model: Callable[..., Any]
    preprocess: Callable[[Image.Image], Tensor] | None = None
    gradcam_layer: nn.Module | None = None
    class_names: Sequence[str] | None = None
    memory_format: torch.memory_format = torch.contiguous_format


@dataclass
class LoadedModel:
    """The model of a run, its preprocessing, and what the run records.

    Attributes:
        forward: takes ``(B, C, H, W)`` pixels in [0, 1] on :attr:`device`.
        preprocess: a PIL image to ``(1, C, H, W)``.
        resize_size, crop_size: the resize and centre crop of
            :attr:`preprocess` (for the pointing game's boxes).
        gradcam_layer: Grad-CAM's layer, or None for the last ``Conv2d``.
        name: recorded in the rows and in the summary.
        memory_format: of the images given to the methods.
        class_names: the class names by index, or None where unknown.
    """

    forward: Callable[..., Any]
    preprocess: Callable[[Image.Image], Tensor]
    resize_size: int
    crop_size: int
    gradcam_layer: nn.Module | None
    name: str
    memory_format: torch.memory_format = torch.contiguous_format
    class_names: Sequence[str] | None = None


def load_model(
    spec: str,
    device: torch.device,
    weights: str = DEFAULT_WEIGHTS,
    crop_size: int = 224,
    resize_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> LoadedModel:
    """The model ``spec`` names (see the module's docstring), on ``device``.

    Args:
        spec: a torchvision name, ``package.module:factory``, or a path.
        weights: torchvision weights (torchvision names only).
        crop_size, resize_size: preprocessing of other models: resize the
            shorter side to ``resize_size`` (default ``crop_size * 256 / 224``),
            then centre crop ``crop_size``.
        mean, std: per-channel normalisation put in front of other models.

    Raises:
        ModelLoadError: a spec that names nothing loadable, a pickle, a missing
            runtime; the message says why and what to do.
    """
    if ":" in spec and not Path(spec).exists():
        built = _from_factory(spec)
    elif spec.endswith(".onnx") or Path(spec).is_file():
        built = ModelSpec(_from_file(Path(spec), device))
    else:
        classifier = load_classifier(spec, weights, device)
        return LoadedModel(
            classifier.model.to(memory_format=torch.channels_last),
            classifier.preprocess,
            classifier.resize_size,
            classifier.crop_size,
            classifier.gradcam_layer(),
            f"{spec}/{weights}",
            torch.channels_last,
            classifier.categories,
        )
    resize_size = resize_size or round(crop_size * 256 / 224)
    model = built.model
    if isinstance(model, nn.Module):
        model = model.eval().to(device)
    check_normalization(mean, std)
    if mean is not None and std is not None:
        model = _normalized(model, mean, std, device)
    return LoadedModel(
        model,
        built.preprocess
        or functools.partial(resize_and_crop, resize_size=resize_size, crop_size=crop_size),
        resize_size,
        crop_size,
        built.gradcam_layer,
        spec,
        built.memory_format,
        built.class_names,
    )


def check_normalization(mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    """Raises a :class:`ModelLoadError` unless ``mean`` and ``std`` are given together."""
    if (mean is None) != (std is None):
        raise ModelLoadError("--mean and --std go together")


def _from_factory(spec: str) -> ModelSpec:
    """What ``package.module:factory`` returns, its preprocessing giving ``(1, C, H, W)``."""
    module_name, _, factory_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise ModelLoadError(
            f"--model {spec}: cannot import {factory_name!r} from {module_name!r} ({error}); "
            "give package.module:function, importable from the current directory or "
            "the environment"
        ) from None
    built = factory()
    if isinstance(built, ModelSpec):
        return dataclasses.replace(built, preprocess=_with_batch_dim(built.preprocess))
    if not callable(built):
        raise ModelLoadError(
            f"--model {spec}: the factory returned {type(built).__name__}; it must return "
            "a model, a forward function or a captum_rise.evaluation.ModelSpec"
        )
    return ModelSpec(built)


def _from_file(path: Path, device: torch.device) -> Callable[..., Any]:
    """An ONNX or TorchScript file as a forward; pickles are refused."""
    if not path.is_file():
        raise ModelLoadError(f"--model {path}: no such file")
    if path.suffix == ".onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ModelLoadError(
                f"--model {path} needs ONNX Runtime: pip install 'captum-perturbation[runtimes]'"
            ) from None
        return OnnxRuntimeForward(onnxruntime.InferenceSession(str(path)))
    if _is_torchscript(path):
        return torch.jit.load(str(path), map_location=device)
    with path.open("rb") as file:
        first = file.read(1)
    if (
        zipfile.is_zipfile(path)
        or first == bytes([PICKLE_PROTOCOL_BYTE])
        or (path.suffix in PICKLE_SUFFIXES)
    ):
        raise ModelLoadError(
            f"--model {path} is a pickle (a torch.save checkpoint or similar): loading it can "
            "run any code stored in the file, so captum-rise never unpickles a file. Save the "
            "model with torch.jit.save or export it with torch.onnx.export, or give a factory "
            "package.module:function that builds the model and loads its weights (e.g. "
            "torch.load(path, weights_only=True))"
        )
    raise ModelLoadError(
        f"--model {path}: not an ONNX file (.onnx) or a TorchScript file (torch.jit.save)"
    )


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive: a zip with the compiled ``code/``
    (a ``torch.save`` zip holds only pickled data)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any("/code/" in name for name in names) and any(
        name.endswith("constants.pkl") for name in names
    )


def _normalized(
    model: Callable[..., Any], mean: Sequence[float], std: Sequence[float], device: torch.device
) -> Callable[..., Any]:
    """``model`` behind ``(x - mean) / std``: a module stays a module (Grad-CAM, IG)."""
    normalize = Normalize(list(mean), list(std)).to(device)
    if isinstance(model, nn.Module):
        return nn.Sequential(normalize, model).eval()
    return lambda x: model(normalize(x))


def _with_batch_dim(
    preprocess: Callable[[Image.Image], Tensor] | None,
) -> Callable[[Image.Image], Tensor] | None:
    """A factory's preprocessing, returning ``(1, C, H, W)`` whether it gives 3 or 4 dims."""
    if preprocess is None:
        return None

    def batched(image: Image.Image) -> Tensor:
        x = preprocess(image)
        return x if x.dim() == 4 else x.unsqueeze(0)

    return batched
