"""RISE next to Grad-CAM and Integrated Gradients on an image classifier, with causal metrics."""

from collections.abc import Callable
from typing import Any

from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from torch import Tensor, nn

from captum_rise.metrics.causal import CausalCurve, deletion, insertion
from captum_rise.quantus_explain import probabilities
from captum_rise.rise import RISE

TargetType = int | Tensor

IG_MAX_BATCH = 25
"""Integrated Gradients' steps per call, at most (each holds activations for the backward pass)."""


def rise_map(
    model: Callable[..., Any], x: Tensor, target: TargetType, **rise_kwargs: Any
) -> Tensor:
    """RISE on the class probability (as in the paper): ``(B, 1, H, W)``."""
    attributions = RISE(probabilities(model)).attribute(x, target=target, **rise_kwargs)
    return attributions[:, :1]


def gradcam_map(model: nn.Module, x: Tensor, target: TargetType, layer: nn.Module) -> Tensor:
    """Grad-CAM (ReLU of the class-weighted activations), upsampled bilinearly: ``(B, 1, H, W)``."""
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(
        cam, tuple(x.shape[2:]), interpolate_mode="bilinear"
    ).detach()


def integrated_gradients_map(
    model: nn.Module, x: Tensor, target: TargetType, n_steps: int = 50
) -> Tensor:
    """Integrated Gradients from a black image, summed over channels: ``(B, 1, H, W)``.

    The steps run in equal calls of at most :data:`IG_MAX_BATCH` (25 of the
    default 50), so the model meets one batch size, not two (a GPU plans every
    new size once, see :mod:`captum_rise.batching`)."""
    steps_per_call = max(d for d in range(1, IG_MAX_BATCH + 1) if n_steps % d == 0)
    # Captum's untyped usage-logging decorator hides the method's type from mypy.
    attributions = IntegratedGradients(model).attribute(  # type: ignore[has-type]
        x, target=target, n_steps=n_steps, internal_batch_size=steps_per_call
    )
    return attributions.sum(dim=1, keepdim=True).detach()


def compare_methods(
    model: nn.Module,
    gradcam_layer: nn.Module,
    x: Tensor,
    target: TargetType,
    n_masks: int = 4000,
    perturbations_per_eval: int | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> dict[str, Tensor]:
    """Saliency maps ``(B, 1, H, W)`` of RISE, Grad-CAM and Integrated Gradients."""
    methods: dict[str, Callable[[], Tensor]] = {
        "RISE": lambda: rise_map(
            model,
            x,
            target,
            n_masks=n_masks,
            perturbations_per_eval=perturbations_per_eval,
            seed=seed,
            show_progress=show_progress,
        ),
        "Grad-CAM": lambda: gradcam_map(model, x, target, gradcam_layer),
        "Integrated Gradients": lambda: integrated_gradients_map(model, x, target),
    }
    return {name: make() for name, make in methods.items()}


def causal_curves(
    model: nn.Module,
    x: Tensor,
    maps: dict[str, Tensor],
    target: TargetType,
    batch_size: int | None = None,
) -> dict[str, tuple[CausalCurve, CausalCurve]]:
    """Deletion and insertion curves (paper protocol) for every map."""
    return {
        name: (
            deletion(model, x, saliency, target, batch_size=batch_size),
            insertion(model, x, saliency, target, batch_size=batch_size),
        )
        for name, saliency in maps.items()
    }
