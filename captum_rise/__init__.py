"""captum_rise: black-box perturbation attribution for Captum, and causal metrics for Quantus.

Importing the package registers :class:`~captum_rise.metrics.Deletion` and
:class:`~captum_rise.metrics.Insertion` in ``quantus.AVAILABLE_METRICS``
under "Faithfulness".
"""

from captum_rise._pipeline import ExecutionOptions
from captum_rise.accumulator import SaliencyAccumulator
from captum_rise.batching import ForwardError
from captum_rise.extremal_perturbation import ExtremalPerturbation
from captum_rise.hsic import HSICAttribution
from captum_rise.masks import (
    ALWAYS_KEPT,
    CellMaskSampler,
    GridMaskSampler,
    GroupIndex,
    GroupMaskSampler,
    MaskSampler,
)
from captum_rise.meaningful_perturbation import MeaningfulPerturbation
from captum_rise.metrics import (
    Deletion,
    Insertion,
    deletion,
    insertion,
    pointing_game,
    register_with_quantus,
)
from captum_rise.plotting import overlay_saliency, plot_causal_curves
from captum_rise.quantus_explain import explain, make_explain_func
from captum_rise.rise import RISE
from captum_rise.scores import DetectionScore, SimilarityScore
from captum_rise.sobol import SobolAttribution

register_with_quantus()

__version__ = "1.0.0"

__all__ = [
    "ALWAYS_KEPT",
    "RISE",
    "CellMaskSampler",
    "Deletion",
    "DetectionScore",
    "ExecutionOptions",
    "ExtremalPerturbation",
    "ForwardError",
    "GridMaskSampler",
    "GroupIndex",
    "GroupMaskSampler",
    "HSICAttribution",
    "Insertion",
    "MaskSampler",
    "MeaningfulPerturbation",
    "SaliencyAccumulator",
    "SimilarityScore",
    "SobolAttribution",
    "deletion",
    "explain",
    "insertion",
    "make_explain_func",
    "overlay_saliency",
    "plot_causal_curves",
    "pointing_game",
]
