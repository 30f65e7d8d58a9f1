"""Property-based tests (hypothesis) of the black-box attributions and the mask samplers.

Inputs of rank 2 (tables) to 5 (volumes), odd and size-1 dims, batch sizes 1-3,
float32/float64/bfloat16, grids, keep probabilities, every Captum target form, tuple
inputs and feature masks that broadcast or are per example. The number of examples
comes from the hypothesis profile (tests/conftest.py): small in CI, larger with
``HYPOTHESIS_PROFILE=thorough``.
"""

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from captum_rise import (
    RISE,
    CellMaskSampler,
    ExtremalPerturbation,
    GridMaskSampler,
    HSICAttribution,
    MeaningfulPerturbation,
)
from captum_rise.masks import MASK_SAMPLINGS, ParamStream, make_generator

# Random rank-3 shapes often look like token embeddings; that warning is tested elsewhere.
pytestmark = pytest.mark.filterwarnings(r"ignore:input \d+ of shape .* is masked as a \(B, C, L\)")

DTYPES = (torch.float32, torch.float64, torch.bfloat16)
N_CLASSES = 3


@st.composite
def input_shapes(draw, batch=None):
    """``(B, *rest)`` of rank 2-5: channels 1-3 for ranks >= 3, other dims 1-9."""
    rank = draw(st.integers(2, 5))
    batch = batch if batch is not None else draw(st.integers(1, 3))
    if rank == 2:
        return (batch, draw(st.integers(1, 9)))
    channels = draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, 9), min_size=rank - 2, max_size=rank - 2))
    return (batch, channels, *spatial)


class LinearModel:
    """``(B, ...)`` inputs (one or several) to ``(B, N_CLASSES)`` scores.

    Its weights have the inputs' dtype, and a matmul refuses mixed dtypes: a method
    that hands the model perturbed inputs in another dtype fails here, as it would
    with a real half-precision model.
    """

    def __init__(self, shapes, seed, dtype):
        generator = torch.Generator().manual_seed(seed)
        self.weights = [
            torch.randn(math.prod(shape[1:]), N_CLASSES, generator=generator).to(dtype)
            for shape in shapes
        ]

    def __call__(self, *inputs):
        return sum(inp.flatten(1) @ w for inp, w in zip(inputs, self.weights))


@st.composite
def problems(draw, max_inputs=2):
    """Inputs (a tensor or a tuple), a model, a target in a Captum form, a feature mask."""
    batch = draw(st.integers(1, 3))
    n_inputs = draw(st.integers(1, max_inputs))
    shapes = [draw(input_shapes(batch=batch)) for _ in range(n_inputs)]
    dtype = draw(st.sampled_from(DTYPES))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    inputs = tuple(torch.rand(shape, generator=generator).to(dtype) for shape in shapes)
    target_form = draw(st.sampled_from(["int", "tuple", "list", "tensor", "tensor0"]))
    classes = draw(st.lists(st.integers(0, N_CLASSES - 1), min_size=batch, max_size=batch))
    target = {
        "int": classes[0],
        "tuple": (classes[0],),
        "list": classes,
        "tensor": torch.tensor(classes),
        "tensor0": torch.tensor(classes[0]),
    }[target_form]
    mask_form = draw(st.sampled_from(["none", "broadcast", "per-example"]))
    feature_mask = None
    if mask_form != "none":
        masks = []
        for shape in shapes:
            mask_shape = (1 if mask_form == "broadcast" else batch, *shape[1:])
            masks.append(torch.randint(0, 4, mask_shape, generator=generator))
        feature_mask = tuple(masks)
    # Grids must fit every input of a tuple (a default grid shrinks to each one).
    smallest = min(min(shape[2:] or shape[1:]) for shape in shapes)
    grid_size = draw(st.one_of(st.none(), st.integers(1, smallest)))
    if n_inputs == 1:
        inputs = inputs[0]
        feature_mask = None if feature_mask is None else feature_mask[0]
    return {
        "inputs": inputs,
        "model": LinearModel(shapes, seed=draw(st.integers(0, 100)), dtype=dtype),
        "target": target,
        "feature_mask": feature_mask,
        "grid_size": grid_size,
        "p_keep": draw(st.floats(0.1, 0.9)),
    }


def as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def check_matches_inputs(attributions, inputs):
    assert isinstance(attributions, tuple) == isinstance(inputs, tuple)
    for attribution, inp in zip(as_tuple(attributions), as_tuple(inputs)):
        assert attribution.shape == inp.shape
        assert attribution.dtype == inp.dtype
        assert torch.isfinite(attribution.float()).all()


def tolerance(dtype):
    return {"atol": 1e-2, "rtol": 1e-2} if dtype == torch.bfloat16 else {"atol": 1e-5, "rtol": 1e-4}


def attribute(method, problem, **kwargs):
    """``method`` on ``problem`` with 24 masks or designs and seed 0, unless overridden."""
    budget = {"n_masks": 24} if method is RISE else {"n_designs": 24}
    return method(problem["model"]).attribute(
        problem["inputs"],
        target=problem["target"],
        feature_mask=problem["feature_mask"],
        grid_size=problem["grid_size"] if problem["feature_mask"] is None else None,
        p_keep=problem["p_keep"],
        **{**budget, "seed": 0, **kwargs},
    )


def rise(problem, **kwargs):
    return attribute(RISE, problem, **kwargs)


def hsic(problem, **kwargs):
    return attribute(HSICAttribution, problem, **kwargs)


def first_dtype(problem):
    return as_tuple(problem["inputs"])[0].dtype


def hsic_applies(problem):
    """HSIC shares one grid across a tuple: tuples need a feature mask or equal grids."""
    inputs = as_tuple(problem["inputs"])
    return len(inputs) == 1 or problem["feature_mask"] is not None


@given(problems(), st.sampled_from(MASK_SAMPLINGS))
def test_rise_output_matches_the_inputs(problem, mask_sampling):
    check_matches_inputs(rise(problem, mask_sampling=mask_sampling), problem["inputs"])


@given(problems())
def test_hsic_output_matches_the_inputs(problem):
    if hsic_applies(problem):
        check_matches_inputs(hsic(problem), problem["inputs"])
        return
    # A tuple on a grid: one shared grid when the inputs' grids agree, else a clear error.
    try:
        attributions = hsic(problem)
    except ValueError as error:
        assert "feature_mask" in str(error)
    else:
        check_matches_inputs(attributions, problem["inputs"])


@st.composite
def image_problems(draw):
    """``(B, C, H, W)`` images with odd and size-1 sides, a model and a target."""
    batch, channels = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    dtype = draw(st.sampled_from(DTYPES))
    shape = (batch, channels, height, width)
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    return {
        "inputs": torch.rand(shape, generator=generator).to(dtype),
        "model": LinearModel([shape], seed=draw(st.integers(0, 100)), dtype=dtype),
        "target": draw(st.integers(0, N_CLASSES - 1)),
    }


@given(image_problems(), st.sampled_from(["delete", "preserve"]))
def test_meaningful_perturbation_output_matches_the_images(problem, variant):
    masks = MeaningfulPerturbation(problem["model"]).attribute(
        problem["inputs"], target=problem["target"], variant=variant, n_iter=2, seed=0
    )
    check_matches_inputs(masks, problem["inputs"])


@given(image_problems(), st.sampled_from(["delete", "preserve"]))
def test_extremal_perturbation_output_matches_the_images(problem, variant):
    masks = ExtremalPerturbation(problem["model"]).attribute(
        problem["inputs"], target=problem["target"], variant=variant, n_iter=2
    )
    check_matches_inputs(masks, problem["inputs"])


@given(problems(), st.integers(1, 30))
def test_rise_does_not_depend_on_perturbations_per_eval(problem, perturbations_per_eval):
    one = rise(problem, perturbations_per_eval=1)
    other = rise(problem, perturbations_per_eval=perturbations_per_eval)
    for a, b in zip(as_tuple(one), as_tuple(other)):
        torch.testing.assert_close(a, b, **tolerance(first_dtype(problem)))


@given(problems(), st.integers(1, 30))
def test_hsic_does_not_depend_on_perturbations_per_eval(problem, perturbations_per_eval):
    assume(hsic_applies(problem))
    one = hsic(problem, perturbations_per_eval=1)
    other = hsic(problem, perturbations_per_eval=perturbations_per_eval)
    for a, b in zip(as_tuple(one), as_tuple(other)):
        torch.testing.assert_close(a, b, **tolerance(first_dtype(problem)))


def split_problem(problem, rows):
    """The same problem on examples ``rows`` only (targets and per-example masks follow)."""
    part = dict(problem)
    inputs = tuple(inp[rows] for inp in as_tuple(problem["inputs"]))
    part["inputs"] = inputs if isinstance(problem["inputs"], tuple) else inputs[0]
    target = problem["target"]
    if isinstance(target, list) or (isinstance(target, torch.Tensor) and target.dim() == 1):
        part["target"] = target[rows]
    if problem["feature_mask"] is not None:
        masks = tuple(m if m.shape[0] == 1 else m[rows] for m in as_tuple(problem["feature_mask"]))
        part["feature_mask"] = masks if isinstance(problem["feature_mask"], tuple) else masks[0]
    return part


@given(problems(), st.data())
def test_rise_does_not_depend_on_how_the_batch_is_split(problem, data):
    batch = as_tuple(problem["inputs"])[0].shape[0]
    assume(batch >= 2)
    if problem["feature_mask"] is not None:
        # Groups are numbered by the batch's ids (documented): the property holds when
        # every example uses the same ids.
        masks = as_tuple(problem["feature_mask"])
        ids = [
            torch.cat([m[min(i, m.shape[0] - 1)].unique() for m in masks]).unique()
            for i in range(batch)
        ]
        assume(all(torch.equal(ids[0], other) for other in ids[1:]))
    cut = data.draw(st.integers(1, batch - 1))
    whole = rise(problem)
    parts = [rise(split_problem(problem, rows)) for rows in (slice(0, cut), slice(cut, None))]
    for i, full in enumerate(as_tuple(whole)):
        joined = torch.cat([as_tuple(part)[i] for part in parts])
        torch.testing.assert_close(full, joined, **tolerance(first_dtype(problem)))


@given(
    input_shapes(),
    st.integers(1, 9),
    st.floats(0.1, 0.9),
    st.sampled_from(MASK_SAMPLINGS),
    st.sampled_from([GridMaskSampler, CellMaskSampler]),
)
def test_masks_are_in_the_unit_interval_with_mean_p_keep(
    shape, grid_size, p_keep, sampling, sampler_class
):
    sampler = sampler_class(
        [torch.Size(shape)], grid_size, p_keep, torch.device("cpu"), fit_grid=True
    )
    stream = ParamStream(sampler, make_generator(0), sampling)
    (masks,) = sampler.render(stream.params(0, 1024))
    assert masks.shape == (1024, *sampler.mask_shapes[0])
    assert masks.min() >= 0 and masks.max() <= 1
    # Every mask value has expectation p_keep; the mean of 1024 masks is within a few
    # standard errors (sqrt(p (1 - p) / 1024) < 0.016 per value, less on average).
    assert abs(float(masks.mean()) - p_keep) < 0.06


INVALID = [
    ("n_masks", 0),
    ("n_masks", -3),
    ("n_masks", 2.5),
    ("p_keep", 0.0),
    ("p_keep", 1.5),
    ("p_keep", float("nan")),
    ("grid_size", 0),
    ("grid_size", 1000),
    ("grid_size", "7"),
    ("grid_size", (2, 2, 2, 2)),
    ("perturbations_per_eval", 0),
    ("mask_sampling", "halton"),
    ("normalization", "max"),
    ("seed", 1.5),
    ("target", 99),
    ("target", [0]),
    ("target", 0.5),
    ("baselines", "zero"),
    ("feature_mask", [[0, 1]]),
    ("feature_mask", "cells"),
    ("tolerance", -0.1),
]


INVALID_HSIC = [
    ("n_designs", 1),
    ("n_designs", 2.5),
    ("p_keep", 1.0),
    ("grid_size", 0),
    ("grid_size", 1000),
    ("sampler", "halton"),
    ("input_kernel", "cosine"),
    ("perturbations_per_eval", 0),
    ("estimator_batch_size", 0),
    ("seed", "zero"),
    ("target", 99),
    ("baselines", "zero"),
    ("feature_mask", [[0, 1]]),
]


def budget_for(method):
    return {"n_masks": 8} if method is RISE else {"n_designs": 8}


@given(
    problems(max_inputs=1),
    st.one_of(
        st.tuples(st.just(RISE), st.sampled_from(INVALID)),
        st.tuples(st.just(HSICAttribution), st.sampled_from(INVALID_HSIC)),
    ),
)
def test_invalid_arguments_raise_an_error_that_names_them(problem, method_and_invalid):
    method, (name, value) = method_and_invalid
    inputs = problem["inputs"]
    if name == "target" and value == [0]:
        assume(inputs.shape[0] > 1)  # one entry is a valid list for a batch of one
    arguments = {"target": problem["target"], **budget_for(method), name: value}
    with pytest.raises((ValueError, TypeError), match=name):
        method(problem["model"]).attribute(inputs, **arguments)


INVALID_IMAGE_METHODS = [
    (MeaningfulPerturbation, "n_iter", 0),
    (MeaningfulPerturbation, "variant", "keep"),
    (MeaningfulPerturbation, "mask_shape", (0, 1)),
    (MeaningfulPerturbation, "max_jitter", -1),
    (MeaningfulPerturbation, "target", 99),
    (ExtremalPerturbation, "n_iter", 0),
    (ExtremalPerturbation, "variant", "keep"),
    (ExtremalPerturbation, "areas", 1.5),
    (ExtremalPerturbation, "areas", []),
    (ExtremalPerturbation, "sigma", 0.0),
    (ExtremalPerturbation, "target", 99),
]


@given(image_problems(), st.sampled_from(INVALID_IMAGE_METHODS))
def test_invalid_image_method_arguments_raise_an_error_that_names_them(problem, invalid):
    method, name, value = invalid
    arguments = {"target": problem["target"], "n_iter": 1, name: value}
    with pytest.raises((ValueError, TypeError), match=name):
        method(problem["model"]).attribute(problem["inputs"], **arguments)
