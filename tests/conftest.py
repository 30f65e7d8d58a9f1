import os

import pytest
import torch
from hypothesis import settings

from captum_rise.meaningful_perturbation import gaussian_blur


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


class TinyConvNet(torch.nn.Module):
    """A small image classifier with softmax outputs, (B, 3, H, W) -> (B, n_classes)."""

    def __init__(self, n_classes: int = 5) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 6, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(),
        )
        self.head = torch.nn.Linear(24, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.features(x)), dim=-1)


class BoxEnergy(torch.nn.Module):
    """Two classes; class 0's logit grows with the high-frequency energy inside one box.

    The box is 64x64 of a 224x224 image, scaled with ``size`` (rows
    ``y0:y1``, columns ``x0:x1`` in :attr:`box`). On a uniform random texture
    class 0's softmax probability is about 0.997 at any size (issue 12's test
    case: a confident prediction that depends on one known region).
    """

    def __init__(self, size: int = 224) -> None:
        super().__init__()
        self.size = size
        self.box = tuple(round(v * size / 224) for v in (80, 144, 40, 104))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = self.box
        detail = x - gaussian_blur(x, 2.0)
        energy = detail[:, :, y0:y1, x0:x1].pow(2).mean(dim=(1, 2, 3))
        logit = 5.8 * energy / 0.0774
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)

    def box_mask(self) -> torch.Tensor:
        """``(size, size)`` bool, True inside the box."""
        y0, y1, x0, x1 = self.box
        inside = torch.zeros(self.size, self.size, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        return inside

    def top_region_iou(self, saliency: torch.Tensor, area: float) -> float:
        """IoU with the box of the top ``area`` fraction of ``(size, size)`` saliency."""
        flat = saliency.flatten()
        top = torch.zeros_like(flat, dtype=torch.bool)
        top[flat.argsort(descending=True)[: round(area * flat.numel())]] = True
        top, inside = top.reshape(self.size, self.size), self.box_mask()
        return float((top & inside).sum() / (top | inside).sum())


@pytest.fixture
def tiny_convnet() -> TinyConvNet:
    torch.manual_seed(1)
    return TinyConvNet().eval()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped cleanly where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Hypothesis profiles: "ci" (the default) keeps the property tests to seconds on two cores;
# HYPOTHESIS_PROFILE=thorough runs many more examples.
settings.register_profile("ci", max_examples=25, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=400, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
