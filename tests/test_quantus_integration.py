"""Deletion/Insertion as Quantus metrics, and the explain_func adapter in quantus.evaluate."""

import math

import numpy as np
import pytest
import quantus
import torch
import torchvision

import captum_rise
from captum_rise import Deletion, Insertion, deletion, insertion, make_explain_func
from captum_rise.quantus_explain import explain


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(weights=None, num_classes=10).eval()


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 32, 32), dtype=np.float32)
    y = np.array([1, 7])
    return x, y


def test_registered_under_faithfulness():
    faithfulness = quantus.AVAILABLE_METRICS["Faithfulness"]
    assert faithfulness["Deletion"] is Deletion and faithfulness["Insertion"] is Insertion
    assert Deletion.score_direction == quantus.helpers.enums.ScoreDirection.LOWER
    assert Insertion.score_direction == quantus.helpers.enums.ScoreDirection.HIGHER
    assert quantus.helpers.enums.DataType.IMAGE in Deletion.data_applicability
    assert Deletion.evaluation_category == quantus.helpers.enums.EvaluationCategory.FAITHFULNESS


def test_quantus_metrics_equal_the_functions(small_model, batch):
    x, y = batch
    a = np.random.default_rng(1).random((2, 1, 32, 32)).astype(np.float32)
    for metric_cls, function in ((Deletion, deletion), (Insertion, insertion)):
        metric = metric_cls(n_steps=16, disable_warnings=True)
        scores = metric(model=small_model, x_batch=x, y_batch=y, a_batch=a, softmax=True)
        direct = function(
            small_model, torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(y), n_steps=16
        )
        assert isinstance(scores, list) and len(scores) == 2
        np.testing.assert_allclose(scores, direct.auc.numpy(), rtol=1e-5, atol=1e-6)


def test_explain_adapter_returns_quantus_layout(small_model, batch):
    x, y = batch
    a = explain(small_model, x, y, method="RISE", n_masks=16, perturbations_per_eval=8, seed=0)
    assert isinstance(a, np.ndarray) and a.shape == (2, 1, 32, 32)
    bound = make_explain_func("RISE", n_masks=16, perturbations_per_eval=8, seed=0)
    np.testing.assert_allclose(bound(small_model, x, y, method="whatever key"), a)
    # Quantus-only keys leaked from other entries are ignored by captum_rise methods
    leaked = bound(small_model, x, y, gc_layer="model.features[-1]", interpolate=(32, 32))
    np.testing.assert_allclose(leaked, a)
    with pytest.raises(TypeError, match="n_mask"):
        explain(small_model, x, y, method="RISE", n_mask=3)


def evaluate_suite(model, x, y, xai_methods, capsys):
    """``quantus.evaluate`` of Deletion and Insertion (8 steps) for every method: each
    result a finite AUC in [0, 1], and no error printed by Quantus."""
    metrics = {
        "Deletion": Deletion(n_steps=8, disable_warnings=True),
        "Insertion": Insertion(n_steps=8, disable_warnings=True),
    }
    results = quantus.evaluate(
        metrics=metrics,
        xai_methods=xai_methods,
        model=model,
        x_batch=x,
        y_batch=y,
        explain_func_kwargs={},
        agg_func=np.mean,
    )
    assert "Error" not in capsys.readouterr().out
    for method in xai_methods:
        for metric in metrics:
            value = results[method][metric]
            assert isinstance(value, float) and 0.0 <= value <= 1.0 and math.isfinite(value), (
                method,
                metric,
                value,
            )


def test_quantus_evaluate_runs_every_pair(small_model, batch, capsys):
    x, y = batch
    xai_methods = {
        "RISE": make_explain_func("RISE", n_masks=32, perturbations_per_eval=16, seed=0),
        "IntegratedGradients": make_explain_func("IntegratedGradients"),
        "LayerGradCam": make_explain_func(
            "LayerGradCam", gc_layer="model.features[-1]", interpolate=(32, 32)
        ),
    }
    evaluate_suite(small_model, x, y, xai_methods, capsys)


def test_sobol_attribution_runs_in_a_quantus_suite(tiny_convnet, capsys):
    # (the untrained MobileNetV3 above scores every input 0.1: no variance for Sobol' to split)
    x = np.random.default_rng(2).random((2, 3, 16, 16), dtype=np.float32)
    sobol = make_explain_func("Sobol", n_designs=8, grid_size=4, seed=0)
    evaluate_suite(tiny_convnet, x, np.array([1, 3]), {"Sobol": sobol}, capsys)


def test_package_import_registers_metrics():
    assert captum_rise.Deletion in quantus.AVAILABLE_METRICS["Faithfulness"].values()
