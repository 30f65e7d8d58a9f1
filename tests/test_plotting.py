import numpy as np
import pytest
import torch

from captum_rise import deletion, insertion, overlay_saliency, plot_causal_curves


def test_plot_causal_curves_shows_auc_in_legend():
    model = lambda x: x.mean(dim=(1, 2, 3))
    images = torch.rand(2, 3, 8, 8)
    curves = {
        name: (deletion(model, images, sal), insertion(model, images, sal, substrate=0.0))
        for name, sal in {"a": torch.rand(2, 1, 8, 8), "b": images}.items()
    }
    figure = plot_causal_curves(curves, index=1)
    left, right = figure.axes
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert labels == [
        f"a (AUC {float(curves['a'][0].auc[1]):.3f})",
        f"b (AUC {float(curves['b'][0].auc[1]):.3f})",
    ]
    assert len(right.collections) == 2  # one shaded area per method
    np.testing.assert_allclose(left.lines[1].get_ydata(), curves["b"][0].scores[1].numpy())


def test_overlay_saliency_accepts_channel_first_and_last():
    figure = overlay_saliency(torch.rand(3, 10, 12), torch.rand(1, 10, 12), title="RISE")
    assert figure.axes[0].get_title() == "RISE"
    assert len(figure.axes[0].images) == 2
    rng = np.random.default_rng(0)
    overlay_saliency(rng.random((10, 12, 3)) * 255, rng.random((10, 12)))


def test_signed_maps_get_a_diverging_scale_centred_at_zero():
    saliency = torch.linspace(-1.0, 3.0, 2000).reshape(40, 50)
    saliency[0, 0] = 100.0  # one outlier must not set the scale
    figure = overlay_saliency(torch.rand(3, 40, 50), saliency, colorbar=True)
    layer = figure.axes[0].images[1]
    low, high = layer.get_clim()
    assert low == -high
    assert 2.9 < high < 3.0
    assert layer.get_cmap().name == "RdBu_r"
    assert len(figure.axes) == 2  # the map's axes and its colour bar


def test_one_signed_maps_keep_a_sequential_scale_from_their_minimum():
    saliency = torch.linspace(0.2, 1.0, 120).reshape(10, 12)
    layer = overlay_saliency(torch.rand(3, 10, 12), saliency).axes[0].images[1]
    assert layer.get_clim()[0] == pytest.approx(0.2)
    assert layer.get_cmap().name == "jet"
    with pytest.raises(ValueError, match="clip_percentile"):
        overlay_saliency(torch.rand(3, 10, 12), saliency, clip_percentile=0)
