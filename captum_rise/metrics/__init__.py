"""Evaluation metrics: deletion/insertion (functions and Quantus metrics), pointing game."""

from captum_rise.metrics.causal import CausalCurve, causal_curve, deletion, insertion, pixel_rank
from captum_rise.metrics.pointing import pointing_game
from captum_rise.metrics.quantus_metrics import Deletion, Insertion, register_with_quantus

__all__ = [
    "CausalCurve",
    "Deletion",
    "Insertion",
    "causal_curve",
    "deletion",
    "insertion",
    "pixel_rank",
    "pointing_game",
    "register_with_quantus",
]
