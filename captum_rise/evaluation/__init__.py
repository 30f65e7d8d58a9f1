"""Explain and score whole datasets, on one process or across ``torch.distributed`` ranks.

:func:`evaluate_dataset` runs attribution methods over a dataset and writes
deletion/insertion AUCs (and the pointing game, given boxes) per image and
method to ``results.csv``, with a ``summary.md``, a ``summary.png`` and an HTML
report, ``report/index.html`` (:func:`write_report`); the
``captum-rise evaluate`` command runs it on a folder of images, with a torchvision
classifier, the user's own model (``package.module:factory``), an ONNX or a
TorchScript file (:func:`load_model`). :func:`compare_runs` (``captum-rise compare``)
compares two runs over the same images: how much the explanations drifted between two
models, runtimes, seeds or methods, with its own report (:func:`write_comparison_report`).
"""

from captum_rise.evaluation.data import ImageFiles, image_ids_of, read_boxes, read_class_map
from captum_rise.evaluation.drift import (
    Comparison,
    RunMismatchError,
    compare_runs,
    write_comparison,
)
from captum_rise.evaluation.drift_report import write_comparison_report
from captum_rise.evaluation.methods import METHOD_NAMES, make_methods
from captum_rise.evaluation.models import ModelSpec, load_model
from captum_rise.evaluation.report import write_report
from captum_rise.evaluation.results import COLUMNS, ResultsWriteError
from captum_rise.evaluation.runner import (
    DEFAULT_METHODS,
    RunInProgressError,
    evaluate_dataset,
    image_seed,
)
from captum_rise.evaluation.summary import bootstrap_interval

__all__ = [
    "COLUMNS",
    "DEFAULT_METHODS",
    "METHOD_NAMES",
    "Comparison",
    "ImageFiles",
    "ModelSpec",
    "ResultsWriteError",
    "RunInProgressError",
    "RunMismatchError",
    "bootstrap_interval",
    "compare_runs",
    "evaluate_dataset",
    "image_ids_of",
    "image_seed",
    "load_model",
    "make_methods",
    "read_boxes",
    "read_class_map",
    "write_comparison",
    "write_comparison_report",
    "write_report",
]
