import pytest
import torch


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
