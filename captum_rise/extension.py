"""Your own perturbation method on the shared pipeline: the extension API (stable from 0.3).

A method is what it perturbs and how it estimates; the pipeline run owns the rest
(formatting Captum's inputs and targets, chunks, calls in flight, retries, process
groups, stopping at a tolerance, progress), as :class:`ExecutionOptions` says. The
parts, in the order a method uses them (guide: ``docs/guide/extending.md``; a whole
example in 45 lines: ``examples/grid_kernel_shap.py``):

* **the call**: :class:`AttributionCall` ``.of(method, inputs, baselines, target,
  additional_forward_args, execution)`` checks and formats Captum's arguments and the
  ``**execution`` keywords, once; the method asks it for its seed
  (:meth:`AttributionCall.seed`, :meth:`AttributionCall.generator`: every rank of a
  process group draws alike) and to run perturbations.
* **sampler**: :func:`choose_coverage` picks the grid or the ``feature_mask``
  groups; :func:`design_sampler` makes one binary variable per cell or group
  (:meth:`~captum_rise.masks.DesignMaskSampler.keep`,
  :meth:`~captum_rise.masks.DesignMaskSampler.expand` to masks);
  :class:`ParamStream` draws the variables of perturbations ``0, 1, 2, ...`` from
  the seeded stream RISE uses, the same whatever the chunks.
* **run and sink**: :meth:`AttributionCall.scores` runs perturbations through the
  model and returns their ``(n, B)`` scores (a :class:`ScoreTable`); for a method
  that sums as it goes instead, any :class:`Sink` (``block``, ``__call__(lo, hi,
  chunk)``, ``gathered(process_group)``) goes to :meth:`AttributionCall.run`, which
  can also stop after a round whose gathered result is good enough.
* **estimator**: :meth:`AttributionCall.design_run` holds the designs and their scores
  (a :class:`DesignRun`);
  :meth:`DesignRun.per_example` applies an estimator ``(designs, scores_b) ->
  (V,)`` to each example and :meth:`DesignRun.attributions` upsamples the values
  per cell or group to maps with the inputs' shapes.

Subclass :class:`MaskAttribution` (a Captum ``PerturbationAttribution``) for
Captum's conventions.
"""

from captum_rise._base import MaskAttribution
from captum_rise._coverage import DEFAULT_GRID_SIZE, choose_coverage
from captum_rise._pipeline import (
    AttributionCall,
    Chunk,
    DesignRun,
    Execution,
    ExecutionOptions,
    Perturbations,
    ScoreTable,
    Sink,
    design_sampler,
    format_inputs,
)
from captum_rise.distributed import agree_on_seed
from captum_rise.masks import ParamStream, make_generator

__all__ = [
    "DEFAULT_GRID_SIZE",
    "AttributionCall",
    "Chunk",
    "DesignRun",
    "Execution",
    "ExecutionOptions",
    "MaskAttribution",
    "ParamStream",
    "Perturbations",
    "ScoreTable",
    "Sink",
    "agree_on_seed",
    "choose_coverage",
    "design_sampler",
    "format_inputs",
    "make_generator",
]
