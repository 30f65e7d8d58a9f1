"""The attribution methods an evaluation run compares, each with fixed, documented settings.

Every method maps one image ``(1, C, H, W)``, its target class and a seed to a
saliency map ``(1, 1, H, W)`` (higher = more important for the class):

=============================  ==============================================================
``rise``                       :class:`captum_rise.RISE` on the softmax probability,
                               ``n_masks`` masks (default 4000), 7x7 grid, ``p_keep`` 0.5,
                               Sobol' masks
``hsic``                       :class:`captum_rise.HSICAttribution` on the softmax
                               probability, ``n_designs`` (default 1536), 7x7 grid, LHS
``sobol``                      :class:`captum_rise.SobolAttribution` on the softmax
                               probability, 32 designs, 8x8 grid (2,112 forwards),
                               inpainting towards 0
``meaningful_perturbation``    :class:`captum_rise.MeaningfulPerturbation`, deletion game,
                               its defaults (300 Adam iterations, blur sigma 10)
``extremal_perturbation``      :class:`captum_rise.ExtremalPerturbation`, preservation game,
                               areas 2.5, 5, 10 and 20 % (the masks summed, as TorchRay's
                               pointing-game protocol does), 300 iterations
``gradcam``                    Captum ``LayerGradCam`` on the last convolutional layer,
                               ReLU, upsampled bilinearly
``ig``                         Captum ``IntegratedGradients`` from a zero (black) baseline,
                               50 steps, summed over channels
``occlusion``                  Captum ``Occlusion`` on the softmax probability: a zero
                               square of 1/7 of the shorter side (32 px at 224) over all
                               channels, stride half the window
``kernelshap``                 Captum ``KernelShap`` on the softmax probability over SLIC
                               superpixels (scikit-image; 50 segments, compactness 10),
                               500 samples, zero baseline
=============================  ==============================================================

The seed reaches the methods that draw random numbers (RISE, HSIC, Sobol', meaningful
perturbation's jitter, KernelShap's coalitions).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import KernelShap, Occlusion
from torch import Tensor, nn

from captum_rise.comparison import gradcam_map, integrated_gradients_map, rise_map
from captum_rise.extremal_perturbation import ExtremalPerturbation
from captum_rise.hsic import HSICAttribution
from captum_rise.masks import DEFAULT_MASK_SAMPLING
from captum_rise.meaningful_perturbation import MeaningfulPerturbation
from captum_rise.quantus_explain import probabilities
from captum_rise.sobol import SobolAttribution

Explain = Callable[[Tensor, int, int], Tensor]
EXTREMAL_AREAS = (0.025, 0.05, 0.1, 0.2)
EXTREMAL_ITERATIONS = 300

METHOD_NAMES = (
    "rise",
    "hsic",
    "sobol",
    "meaningful_perturbation",
    "extremal_perturbation",
    "gradcam",
    "ig",
    "occlusion",
    "kernelshap",
)


@dataclass(frozen=True)
class Method:
    """An attribution method of a run.

    Attributes:
        name: one of :data:`METHOD_NAMES`.
        settings: what fixes its result, recorded with every row.
        explain: ``explain(image (1, C, H, W), target, seed) -> (1, 1, H, W)``.
    """

    name: str
    settings: dict[str, object]
    explain: Explain


def check_method_names(names: Sequence[str]) -> list[str]:
    """``names`` without repeats, or a ``ValueError`` naming the unknown ones."""
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown or not names:
        raise ValueError(
            f"methods must be some of {', '.join(METHOD_NAMES)}; got {', '.join(names) or 'none'}"
        )
    return list(dict.fromkeys(names))


def last_convolution(model: nn.Module) -> nn.Module:
    """The model's last ``Conv2d``, the usual Grad-CAM layer."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise ValueError("gradcam needs a convolutional layer: the model has no Conv2d")
    return convolutions[-1]


WHITE_BOX_METHODS = ("meaningful_perturbation", "extremal_perturbation", "gradcam", "ig")
"""Methods that take gradients (Grad-CAM also a layer's activations): torch models only."""


def check_model_for_methods(names: Sequence[str], model: object) -> None:
    """Raises a ValueError when a white-box method is asked of a model it cannot run on:
    a forward that is not a torch module (an ONNX Runtime session, a server), or
    Grad-CAM on a TorchScript module (which takes no forward hooks)."""
    white_box = [n for n in names if n in WHITE_BOX_METHODS]
    if white_box and not isinstance(model, nn.Module):
        raise ValueError(
            f"{', '.join(white_box)} need the gradients of a torch model; this model "
            f"({type(model).__name__}) is a black box: use "
            f"{', '.join(n for n in METHOD_NAMES if n not in WHITE_BOX_METHODS)}"
        )
    scripted = isinstance(model, nn.Module) and any(
        isinstance(m, torch.jit.ScriptModule) for m in model.modules()
    )
    if "gradcam" in names and scripted:
        raise ValueError("gradcam needs forward hooks, which a TorchScript model does not take")


def make_methods(
    names: Sequence[str],
    model: Callable[..., Any],
    n_masks: int = 4000,
    n_designs: int = 1536,
    gradcam_layer: nn.Module | None = None,
) -> list[Method]:
    """The methods ``names`` for a classifier ``model`` returning ``(B, classes)`` logits
    (or probabilities): a torch module, or any forward for the black-box methods
    (:func:`check_model_for_methods`). ``gradcam_layer`` defaults to
    :func:`last_convolution`."""
    check_model_for_methods(check_method_names(names), model)
    explainers = {
        **_black_box_explainers(model, n_masks, n_designs),
        **_white_box_explainers(model, gradcam_layer),
    }
    settings = _settings(n_masks, n_designs, gradcam_layer)
    return [Method(name, settings[name], explainers[name]) for name in check_method_names(names)]


def _black_box_explainers(
    model: Callable[..., Any], n_masks: int, n_designs: int
) -> dict[str, Explain]:
    """The methods that only call ``model`` (on its softmax, but RISE's own scores)."""
    probs = probabilities(model)

    def rise(x: Tensor, target: int, seed: int) -> Tensor:
        return rise_map(
            model, x, target, n_masks=n_masks, seed=seed, mask_sampling=DEFAULT_MASK_SAMPLING
        )

    def hsic(x: Tensor, target: int, seed: int) -> Tensor:
        return HSICAttribution(probs).attribute(x, target=target, n_designs=n_designs, seed=seed)[
            :, :1
        ]

    def sobol(x: Tensor, target: int, seed: int) -> Tensor:
        return SobolAttribution(probs).attribute(x, target=target, seed=seed)[:, :1]

    def occlusion(x: Tensor, target: int, seed: int) -> Tensor:
        window = max(1, round(min(x.shape[2:]) / 7))
        attributions = Occlusion(probs).attribute(
            x,
            target=target,
            sliding_window_shapes=(x.shape[1], window, window),
            strides=(x.shape[1], max(1, window // 2), max(1, window // 2)),
            perturbations_per_eval=16,
        )
        return attributions[:, :1]

    def kernelshap(x: Tensor, target: int, seed: int) -> Tensor:
        segments = superpixels(x[0])
        # KernelShap draws its coalitions from the global generator: seed it, then restore it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            attributions = KernelShap(probs).attribute(
                x,
                target=target,
                feature_mask=segments.expand_as(x[0]).unsqueeze(0),
                n_samples=500,
                perturbations_per_eval=16,
            )
        return attributions[:, :1]

    return {
        "rise": rise,
        "hsic": hsic,
        "sobol": sobol,
        "occlusion": occlusion,
        "kernelshap": kernelshap,
    }


def _white_box_explainers(
    model: Callable[..., Any], gradcam_layer: nn.Module | None
) -> dict[str, Explain]:
    """The methods that need ``model``'s gradients (a torch module, checked when chosen)."""

    def white_box() -> nn.Module:
        """The torch model of the white-box methods (checked above)."""
        assert isinstance(model, nn.Module)
        return model

    def meaningful(x: Tensor, target: int, seed: int) -> Tensor:
        return MeaningfulPerturbation(white_box()).attribute(x, target=target, seed=seed)[:, :1]

    def extremal(x: Tensor, target: int, seed: int) -> Tensor:
        masks = ExtremalPerturbation(white_box()).attribute(
            x, target=target, areas=EXTREMAL_AREAS, n_iter=EXTREMAL_ITERATIONS
        )
        return masks[:, :, :1].sum(dim=1)

    def gradcam(x: Tensor, target: int, seed: int) -> Tensor:
        layer = gradcam_layer if gradcam_layer is not None else last_convolution(white_box())
        return gradcam_map(white_box(), x, target, layer)

    def integrated_gradients(x: Tensor, target: int, seed: int) -> Tensor:
        return integrated_gradients_map(white_box(), x, target, n_steps=50)

    return {
        "meaningful_perturbation": meaningful,
        "extremal_perturbation": extremal,
        "gradcam": gradcam,
        "ig": integrated_gradients,
    }


def _settings(
    n_masks: int, n_designs: int, gradcam_layer: nn.Module | None
) -> dict[str, dict[str, object]]:
    """Each method's settings, as recorded in ``run.json`` and the summary."""
    return {
        "rise": {
            "n_masks": n_masks,
            "grid_size": 7,
            "p_keep": 0.5,
            "mask_sampling": DEFAULT_MASK_SAMPLING,
            "score": "softmax",
        },
        "hsic": {"n_designs": n_designs, "grid_size": 7, "sampler": "lhs", "score": "softmax"},
        "sobol": {
            "n_designs": 32,
            "grid_size": 8,
            "perturbation": "inpainting",
            "score": "softmax",
        },
        "meaningful_perturbation": {"variant": "delete", "n_iter": 300, "class_term": "log"},
        "extremal_perturbation": {
            "variant": "preserve",
            "areas": list(EXTREMAL_AREAS),
            "n_iter": EXTREMAL_ITERATIONS,
        },
        "gradcam": {
            "layer": "last conv" if gradcam_layer is None else type(gradcam_layer).__name__
        },
        "ig": {"n_steps": 50, "baseline": 0},
        "occlusion": {"window": "1/7 side", "stride": "1/2 window", "baseline": 0},
        "kernelshap": {"n_samples": 500, "superpixels": "slic 50", "baseline": 0},
    }


def superpixels(image: Tensor) -> Tensor:
    """``(1, H, W)`` SLIC superpixel ids (50 segments, compactness 10) of a ``(C, H, W)`` image."""
    try:
        from skimage.segmentation import slic
    except ImportError:
        raise ImportError(
            "the kernelshap method needs scikit-image for its superpixels: pip install scikit-image"
        ) from None
    array = image.detach().float().cpu().permute(1, 2, 0).numpy()
    segments = slic(array, n_segments=50, compactness=10, start_label=0, channel_axis=-1)
    if segments.max() < 1:
        raise ValueError(
            "SLIC found a single superpixel in this image: nothing for KernelShap to rank"
        )
    return torch.as_tensor(segments, device=image.device).unsqueeze(0)
