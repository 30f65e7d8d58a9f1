"""Bad input to RISE gets a clear error that names the argument."""

import pytest
import torch

from captum_rise import RISE, HSICAttribution

X = torch.rand(2, 3, 8, 8)


def _model(inp):
    return torch.softmax(inp.flatten(1)[:, :4], dim=-1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_masks=0), ValueError, "n_masks"),
        (dict(n_masks=2.5), TypeError, "n_masks"),
        (dict(p_keep=0.0), ValueError, "p_keep"),
        (dict(p_keep=1.5), ValueError, "p_keep"),
        (dict(grid_size=0), ValueError, "grid_size"),
        (dict(grid_size=9), ValueError, "grid_size"),
        (dict(grid_size=(2, 2, 2, 2)), ValueError, "grid_size"),
        (dict(perturbations_per_eval=0), ValueError, "perturbations_per_eval"),
        (dict(feature_mask=torch.zeros(1, 3, 7, 8, dtype=torch.long)), ValueError, "feature_mask"),
        (dict(feature_mask=torch.zeros(1, 1, 8, 8)), TypeError, "feature_mask"),
        (dict(baselines=torch.zeros(3, 3, 8, 8)), ValueError, "baselines"),
        (dict(baselines="black"), TypeError, "baselines"),
        (dict(target=4), ValueError, "target"),
        (dict(target=[0, 1, 2]), ValueError, "target"),
        (dict(target=torch.tensor([0, 9])), ValueError, "target"),
        (dict(target=1.5), TypeError, "target"),
        (dict(normalization="max"), ValueError, "normalization"),
        (dict(seed="zero"), TypeError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = dict(target=0, n_masks=4)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        RISE(_model).attribute(X, **arguments)


def test_bad_inputs():
    with pytest.raises(TypeError, match="inputs"):
        RISE(_model).attribute(torch.ones(2, 3, 8, 8, dtype=torch.complex64), target=0)
    with pytest.raises(ValueError, match="feature_mask"):  # integer images: no smooth grid masks
        RISE(_model).attribute(torch.ones(2, 3, 8, 8, dtype=torch.long), target=0)
    with pytest.raises(ValueError, match="inputs"):
        RISE(_model).attribute(torch.rand(5), target=0)
    with pytest.raises(ValueError, match="batch size"):
        RISE(lambda a, b: a.sum((1, 2, 3))).attribute((torch.rand(2, 3, 8, 8), torch.rand(3, 2)))


def test_model_output_of_wrong_shape():
    with pytest.raises(ValueError, match="one row per example"):
        RISE(lambda inp: inp.sum().reshape(1)).attribute(X, n_masks=4)
    with pytest.raises(ValueError, match="pass a target"):
        HSICAttribution(_model).attribute(X, n_designs=4)  # (B, C) scores need a target
    with pytest.raises(ValueError, match="target=None"):
        RISE(lambda inp: inp.sum((1, 2, 3))).attribute(X, target=0, n_masks=4)
    with pytest.raises(ValueError, match="one row per example"):  # a number for many rows
        RISE(lambda inp: inp.sum().item()).attribute(X, n_masks=4)
    with pytest.raises(TypeError, match="a tensor, a numpy array or an array-like"):
        RISE(lambda inp: "positive").attribute(X, n_masks=4)


def test_nan_and_inf_scores():
    def nan_model(inp):
        return inp.flatten(1)[:, :2] / 0.0 * 0.0

    def inf_model(inp):
        return inp.flatten(1)[:, :2] / 0.0 + 1.0

    for model in (nan_model, inf_model):
        with pytest.raises(ValueError, match="NaN or infinite"):
            RISE(model).attribute(X, target=0, n_masks=4)


def test_attribute_classes_bad_classes():
    with pytest.raises(ValueError, match="classes"):
        RISE(_model).attribute_classes(X, classes=[0, 7], n_masks=4)
    with pytest.raises(ValueError, match="classes"):
        RISE(_model).attribute_classes(X, classes=[-1], n_masks=4)
    with pytest.raises(ValueError, match="several classes"):
        RISE(lambda inp: inp.sum((1, 2, 3))).attribute_classes(X, n_masks=4)


def test_a_model_in_training_mode_is_named_once_by_every_method():
    import warnings

    from captum_rise import ExtremalPerturbation, MeaningfulPerturbation, deletion

    def model_in_training():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.BatchNorm2d(4),
            torch.nn.Flatten(),
            torch.nn.LazyLinear(3),
        ).train()

    x = torch.rand(1, 3, 8, 8)
    calls = [
        lambda m: RISE(lambda inp: torch.softmax(m(inp), 1)).attribute(x, target=0, n_masks=4),
        lambda m: HSICAttribution(m).attribute(x, target=0, n_designs=4),
        lambda m: MeaningfulPerturbation(m).attribute(x, target=0, n_iter=1),
        lambda m: ExtremalPerturbation(m).attribute(x, target=0, areas=[0.1], n_iter=1),
        lambda m: deletion(m, x, torch.rand(1, 1, 8, 8), target=0),
    ]
    for call in calls:
        model = model_in_training()
        model(x)  # materialise the lazy layer
        with pytest.warns(UserWarning, match=r"training mode.*BatchNorm2d '1'.*eval\(\)"):
            call(model)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            call(model)  # once per model
    quiet = model_in_training().eval()
    quiet(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RISE(quiet).attribute(x, target=0, n_masks=4)
