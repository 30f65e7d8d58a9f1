"""An ``explain_func`` for Quantus that knows captum_rise's methods.

``explain(model, inputs, targets, method="RISE", **kwargs)`` follows the
signature of ``quantus.explain``: numpy ``(B, C, H, W)`` inputs and ``(B,)``
targets in, numpy ``(B, 1, H, W)`` attributions out (the channel mean; RISE
maps are the same on every channel). Names it does not know are passed on to
``quantus.explain``, so one function can serve every entry of a
``quantus.evaluate`` run::

    xai_methods = {
        "RISE": make_explain_func("RISE", n_masks=2000, seed=0),
        "IntegratedGradients": make_explain_func("IntegratedGradients"),
        "LayerGradCam": make_explain_func(
            "LayerGradCam", gc_layer="model.features[-1]", interpolate=(224, 224)
        ),
    }
    quantus.evaluate(metrics=..., xai_methods=xai_methods, explain_func_kwargs={}, ...)

Quantus pitfalls this design avoids:

* ``quantus.evaluate`` passes ``method=<the dict key>`` to a callable entry;
  :func:`make_explain_func` binds its own method and kwargs, which win.
* An entry given as a dict (``{"IntegratedGradients": {...}}``) replaces the
  shared ``explain_func_kwargs`` for the entries after it, so its kwargs leak
  into them; keep every entry a callable made here, and pass
  ``explain_func_kwargs={}`` (Quantus asserts it is not None for callables).
* Quantus' keys that captum_rise's methods do not take (``gc_layer``,
  ``interpolate``, ``reduce_axes``, ...) are dropped before calling them.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import quantus
import torch
from captum.attr import Attribution

from captum_rise._forward import device_of, forward_output, needs_softmax
from captum_rise.hsic import HSICAttribution
from captum_rise.meaningful_perturbation import MeaningfulPerturbation
from captum_rise.rise import RISE
from captum_rise.sobol import SobolAttribution

METHODS: dict[str, type[Attribution]] = {
    "RISE": RISE,
    "HSIC": HSICAttribution,
    "Sobol": SobolAttribution,
    "MeaningfulPerturbation": MeaningfulPerturbation,
}
"""captum_rise methods known to :func:`explain`, by name."""

_QUANTUS_ONLY_KEYS = {
    "device",
    "softmax",
    "gc_layer",
    "interpolate",
    "interpolate_mode",
    "reduce_axes",
    "keepdims",
    "xai_lib",
    "xai_lib_kwargs",
    "channel_first",
    "abs",
    "normalise",
    "pos_only",
    "neg_only",
}


def probabilities(
    model: Callable[..., Any],
) -> Callable[..., torch.Tensor]:
    """Wraps ``model`` so that it returns softmax probabilities.

    Outputs that already are probabilities (rows summing to 1) or one score
    per example are returned unchanged. The first output decides, once: the
    check reads values back from the device, which on a GPU would stall
    every forward call of a perturbation method.
    """
    softmax: bool | None = None

    def forward(*args: Any) -> torch.Tensor:
        nonlocal softmax
        output = forward_output(model(*args), args[0].device)
        if softmax is None:
            softmax = needs_softmax(output)
        return torch.softmax(output, dim=1) if softmax else output

    return forward


def explain(model: torch.nn.Module, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
    """Attributions for Quantus, from captum_rise's methods or ``quantus.explain``.

    Args:
        model: a torch model, or any forward (numpy outputs work too).
        inputs: ``(B, C, H, W)`` numpy array or tensor; or ``(B, T)`` integer
            token ids or category codes (captum_rise methods).
        targets: ``(B,)`` class indices.
        kwargs: ``method`` (default "RISE"); ``softmax`` (default True: explain
            the class probability, as the RISE paper does); ``device``; the
            rest go to the method's ``attribute`` (``n_masks``, ``seed``, ...).

    Returns:
        ``(B, 1, H, W)`` float numpy array for captum_rise methods (``(B, T)``
        for ``(B, T)`` inputs), or what ``quantus.explain`` returns for other
        names.
    """
    method = kwargs.pop("method", "RISE")
    if method not in METHODS:
        return quantus.explain(model, inputs, targets, method=method, **kwargs)
    softmax = kwargs.get("softmax", True)
    device = kwargs.get("device") or device_of(model)
    attribute_kwargs = {k: v for k, v in kwargs.items() if k not in _QUANTUS_ONLY_KEYS}
    x = torch.as_tensor(np.asarray(inputs), device=device)
    if x.is_floating_point():
        x = x.float()  # token ids and category codes stay integers
    target = torch.as_tensor(np.asarray(targets), device=device).long().reshape(-1)
    forward = probabilities(model) if softmax else model
    attributions = METHODS[method](forward).attribute(x, target=target, **attribute_kwargs)
    if attributions.dim() > 2:  # images: one map, the mean over channels
        attributions = attributions.mean(dim=1, keepdim=True)
    return attributions.detach().cpu().numpy()


def make_explain_func(method: str = "RISE", **bound_kwargs: Any) -> Callable[..., np.ndarray]:
    """An ``explain_func`` with ``method`` and keyword arguments bound.

    The bound values win over what Quantus passes at call time (it passes
    ``method=<dict key>``), so the callable behaves the same under any key.
    """

    def explain_func(
        model: torch.nn.Module, inputs: Any, targets: Any, **kwargs: Any
    ) -> np.ndarray:
        return explain(model, inputs, targets, **{**kwargs, **bound_kwargs, "method": method})

    explain_func.__name__ = f"explain_{method}"
    return explain_func
