"""Deletion and insertion against closed forms, a reference loop, and bad input."""

import math

import pytest
import torch

from captum_rise.metrics import causal_curve, deletion, insertion, pixel_rank

H = W = 8
REGION = torch.zeros(1, 1, H, W)
REGION[..., :4, :4] = 1.0  # r = 16 of P = 64 pixels


def kept_fraction_of_region(images):
    """Fraction of the region that still shows the (all-ones) image."""
    return (images[:, 0] * REGION[0, 0]).sum(dim=(1, 2)) / REGION.sum()


R, P = 16, 64


@pytest.mark.parametrize(
    "saliency, expected_deletion, expected_insertion",
    [
        (REGION, R / (2 * P), 1 - R / (2 * P)),  # perfect ranking
        (1 - REGION, 1 - R / (2 * P), R / (2 * P)),  # worst ranking
    ],
)
def test_closed_form_aucs(saliency, expected_deletion, expected_insertion):
    image = torch.ones(1, 3, H, W)
    delete = deletion(kept_fraction_of_region, image, saliency, substrate=0.0)
    insert = insertion(kept_fraction_of_region, image, saliency, substrate=0.0)
    assert math.isclose(float(delete.auc), expected_deletion, abs_tol=1e-6)
    assert math.isclose(float(insert.auc), expected_insertion, abs_tol=1e-6)
    assert delete.scores.shape == (1, P // W + 1)
    assert float(delete.scores[0, 0]) == 1.0 and float(delete.scores[0, -1]) == 0.0
    torch.testing.assert_close(delete.fractions, torch.linspace(0, 1, P // W + 1))


def _reference_curve(model, start, end, saliency, target, step):
    """One step at a time, one image at a time, softmax probabilities."""
    scores = []
    order = torch.argsort(-saliency.sum(0).reshape(-1), stable=True)
    n_pixels = order.numel()
    for k in range(math.ceil(n_pixels / step) + 1):
        take = torch.zeros(n_pixels)
        take[order[: k * step]] = 1.0
        take = take.reshape(1, *start.shape[1:])
        image = start * (1 - take) + end * take
        with torch.no_grad():
            scores.append(float(torch.softmax(model(image[None]), dim=1)[0, target]))
    return torch.tensor(scores)


@pytest.mark.parametrize("step", [8, 5, 64])
def test_batched_curve_matches_reference_loop(tiny_convnet, step):
    logits_model = lambda x: torch.log(tiny_convnet(x))
    images = torch.rand(3, 3, H, W)
    saliency = torch.rand(3, 1, H, W)
    targets = [0, 3, 1]
    curve = deletion(logits_model, images, saliency, targets, step=step, batch_size=7)
    for b in range(3):
        reference = _reference_curve(
            logits_model, images[b], torch.zeros(3, H, W), saliency[b], targets[b], step
        )
        torch.testing.assert_close(curve.scores[b], reference, rtol=1e-5, atol=1e-6)


def test_results_do_not_depend_on_batch_size(tiny_convnet):
    images = torch.rand(2, 3, 12, 10)
    saliency = torch.rand(2, 3, 12, 10)
    curves = [
        insertion(tiny_convnet, images, saliency, [1, 2], batch_size=size).scores
        for size in (1, 4, 13, 1000)
    ]
    for other in curves[1:]:
        torch.testing.assert_close(other, curves[0])


def test_ties_are_broken_by_pixel_index():
    rank = pixel_rank(torch.zeros(1, 1, 2, 3), torch.zeros(1, 2, 2, 3))
    assert rank.tolist() == [[0, 1, 2, 3, 4, 5]]
    rank = pixel_rank(torch.tensor([[[[0.0, 1.0], [1.0, 0.5]]]]), torch.zeros(1, 1, 2, 2))
    assert rank.tolist() == [[3, 0, 1, 2]]


def test_substrates_and_step_options(tiny_convnet):
    images = torch.rand(2, 3, 16, 16)
    saliency = torch.rand(2, 16, 16)  # (B, H, W) is broadcast over channels
    for substrate in (0.0, 0.5, "mean", "blur", torch.zeros(1, 3, 1, 1)):
        curve = deletion(tiny_convnet, images, saliency, 1, substrate=substrate)
        assert curve.scores.shape == (2, 17) and torch.isfinite(curve.auc).all()
    by_steps = deletion(tiny_convnet, images, saliency, 1, n_steps=4)
    by_pixels = deletion(tiny_convnet, images, saliency, 1, step=64)
    torch.testing.assert_close(by_steps.scores, by_pixels.scores)
    # the insertion canvas defaults to the blurred image, which is what a 'blur' substrate gives
    blurred = insertion(tiny_convnet, images, saliency, 1)
    torch.testing.assert_close(
        blurred.scores, insertion(tiny_convnet, images, saliency, 1, substrate="blur").scores
    )
    assert not torch.allclose(
        blurred.scores[:, 0],
        insertion(tiny_convnet, images, saliency, 1, substrate=0.0).scores[:, 0],
    )


def test_softmax_applied_to_logits_not_to_probabilities(tiny_convnet):
    images = torch.rand(1, 3, 8, 8)
    saliency = torch.rand(1, 1, 8, 8)
    from_probs = deletion(tiny_convnet, images, saliency, 2)
    from_logits = deletion(lambda x: torch.log(tiny_convnet(x)), images, saliency, 2)
    torch.testing.assert_close(from_probs.scores, from_logits.scores, rtol=1e-5, atol=1e-6)
    raw = deletion(lambda x: torch.log(tiny_convnet(x)), images, saliency, 2, apply_softmax=False)
    assert (raw.scores < 0).all()


def test_any_image_size_and_channel_count():
    model = lambda x: x.mean(dim=(1, 2, 3))
    for shape in [(1, 1, 5, 7), (2, 4, 9, 3)]:
        images = torch.rand(shape)
        curve = deletion(model, images, torch.rand(shape))
        assert curve.scores.shape == (shape[0], math.ceil(shape[2] * shape[3] / shape[3]) + 1)
        torch.testing.assert_close(curve.scores[:, -1], torch.zeros(shape[0]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(attributions=torch.rand(2, 2, 8, 8)), ValueError, "attributions"),
        (dict(attributions=torch.full((1, 1, 8, 8), float("nan"))), ValueError, "NaN"),
        (dict(step=0), ValueError, "step"),
        (dict(n_steps=0), ValueError, "n_steps"),
        (dict(step=4, n_steps=4), ValueError, "not both"),
        (dict(substrate="gray"), ValueError, "substrate"),
        (dict(inputs=torch.rand(3, 8, 8)), ValueError, "inputs"),
        (dict(target=7), ValueError, "target"),
        (dict(target=None), ValueError, "target"),
        (dict(batch_size=0), ValueError, "batch_size"),
    ],
)
def test_bad_inputs(tiny_convnet, kwargs, error, match):
    arguments = dict(
        model=tiny_convnet,
        inputs=torch.rand(1, 3, 8, 8),
        attributions=torch.rand(1, 1, 8, 8),
        target=0,
    )
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        deletion(**arguments)


def test_causal_curve_moves_from_start_to_end():
    start, end = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    curve = causal_curve(
        lambda x: x.mean(dim=(1, 2, 3)), start, end, torch.rand(1, 1, 4, 4), step=1
    )
    torch.testing.assert_close(curve.scores[0], torch.linspace(0, 1, 17))
    assert math.isclose(float(curve.auc), 0.5, abs_tol=1e-6)
