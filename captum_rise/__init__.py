"""captum_rise: black-box perturbation attribution for Captum, and causal metrics for Quantus."""

from captum_rise.accumulator import SaliencyAccumulator
from captum_rise.masks import GridMaskSampler, GroupIndex, GroupMaskSampler, MaskSampler
from captum_rise.rise import RISE

__version__ = "0.1.0"

__all__ = [
    "RISE",
    "SaliencyAccumulator",
    "MaskSampler",
    "GridMaskSampler",
    "GroupMaskSampler",
    "GroupIndex",
]
