"""Matplotlib figures: deletion/insertion curves and saliency overlays."""

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from captum_rise.metrics.causal import CausalCurve

ArrayLike = np.ndarray | torch.Tensor


def plot_causal_curves(
    curves: dict[str, tuple[CausalCurve, CausalCurve]],
    index: int = 0,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Deletion and insertion curves of one or several methods, AUC shaded.

    Args:
        curves: method name -> ``(deletion_curve, insertion_curve)``.
        index: which example of the batch to draw.
        axes: two axes to draw into; a new ``1 x 2`` figure when None.

    Returns:
        The figure; every legend entry gives the method's AUC.
    """
    if axes is None:
        figure = Figure(figsize=(9, 3.6), layout="constrained")
        axes = figure.subplots(1, 2)
    figure = _root_figure(axes[0])
    titles = ("Deletion (lower is better)", "Insertion (higher is better)")
    for column, (ax, title) in enumerate(zip(axes, titles)):
        for name, pair in curves.items():
            curve = pair[column]
            x = curve.fractions.detach().cpu().numpy()
            y = curve.scores[index].detach().cpu().numpy()
            (line,) = ax.plot(x, y, label=f"{name} (AUC {float(curve.auc[index]):.3f})")
            ax.fill_between(x, y, alpha=0.15, color=line.get_color())
        ax.set_title(title)
        ax.set_xlabel("fraction of pixels " + ("removed" if column == 0 else "inserted"))
        ax.set_ylabel("score of the target")
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small")
    return figure


def overlay_saliency(
    image: ArrayLike,
    saliency: ArrayLike,
    ax: Axes | None = None,
    title: str | None = None,
    alpha: float = 0.5,
    cmap: str | None = None,
    clip_percentile: float = 99.5,
    colorbar: bool = False,
) -> Figure:
    """The image with its saliency map drawn over it.

    A map of one sign is drawn from its minimum to its ``clip_percentile``-th
    percentile with ``"jet"``; a signed map (Integrated Gradients, HSIC
    differences) with the diverging ``"RdBu_r"`` centred at 0, limits at the
    ``clip_percentile``-th percentile of its absolute value, so that a few
    extreme pixels do not wash out the rest.

    Args:
        image: ``(C, H, W)`` or ``(H, W, C)`` or ``(H, W)``, values in [0, 1]
            (min-max scaled otherwise).
        saliency: ``(H, W)``, or ``(C, H, W)``/``(1, H, W)`` (channels summed).
        ax: axes to draw into; a new figure when None.
        title: axes title.
        alpha: opacity of the saliency layer.
        cmap: colour map of the saliency layer; None chooses by sign (above).
        clip_percentile: values beyond this percentile share the end colour.
        colorbar: add a colour bar beside the axes.

    Returns:
        The figure.
    """
    if not 0.0 < clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile must be in (0, 100], got {clip_percentile}")
    picture = _to_numpy(image)
    if picture.ndim == 3 and picture.shape[0] in (1, 3) and picture.shape[-1] not in (1, 3):
        picture = picture.transpose(1, 2, 0)
    if picture.ndim == 3 and picture.shape[-1] == 1:
        picture = picture[..., 0]
    if picture.min() < 0 or picture.max() > 1:
        picture = (picture - picture.min()) / max(float(picture.max() - picture.min()), 1e-12)
    heat = _to_numpy(saliency)
    if heat.ndim == 3:
        heat = heat.sum(axis=0)
    if heat.shape != picture.shape[:2]:
        raise ValueError(
            f"saliency of shape {heat.shape} does not match the image's {picture.shape[:2]}"
        )
    if ax is None:
        figure = Figure(figsize=(4, 4), layout="constrained")
        ax = figure.subplots()
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
    signed = bool(heat.min() < 0 < heat.max())
    if signed:
        limit = float(np.percentile(np.abs(heat), clip_percentile)) or 1e-12
        low, high = -limit, limit
    else:
        low = float(heat.min())
        high = max(float(np.percentile(heat, clip_percentile)), low + 1e-12)
    layer = ax.imshow(
        heat,
        cmap=cmap or ("RdBu_r" if signed else "jet"),
        alpha=alpha,
        vmin=low,
        vmax=high,
    )
    figure = _root_figure(ax)
    if colorbar:
        figure.colorbar(layer, ax=ax, shrink=0.8)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return figure


def _root_figure(ax: Axes) -> Figure:
    figure = ax.get_figure(root=True)
    if figure is None:
        raise ValueError("the axes given must belong to a figure")
    return figure


def _to_numpy(array: ArrayLike) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)
