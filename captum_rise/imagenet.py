"""Pretrained torchvision classifiers and photos, loaded the usual torchvision way.

Weights come from ``torchvision.models.get_model(name, weights=...)``, which
reads ``torch.hub.get_dir()/checkpoints`` first and downloads otherwise.
Images are explained in pixel space ([0, 1], after resize and centre crop);
the ImageNet normalisation is the first layer of the model, so a baseline or
substrate of 0 is a black pixel, the paper's dimming.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torch import nn

DEFAULT_MODEL = "mobilenet_v2"
DEFAULT_WEIGHTS = "IMAGENET1K_V1"


class ModelLoadError(RuntimeError):
    """A model name that torchvision does not know, or weights that cannot be loaded."""


class ImageLoadError(RuntimeError):
    """A missing or unreadable image file."""


@dataclass
class ImageClassifier:
    """A pretrained classifier that takes ``(B, 3, 224, 224)`` pixels in [0, 1].

    Attributes:
        model: ``Sequential(normalize, network)``, returning ``(B, 1000)`` logits.
        network: the torchvision network itself.
        categories: class names, by index.
        resize_size, crop_size: preprocessing of :meth:`preprocess`.
        name: the torchvision model name.
    """

    model: nn.Module
    network: nn.Module
    categories: list[str]
    resize_size: int
    crop_size: int
    name: str

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """``(1, 3, crop, crop)`` pixels in [0, 1] from a PIL image."""
        return resize_and_crop(image, self.resize_size, self.crop_size)

    def gradcam_layer(self) -> nn.Module:
        """The last convolutional stage, the usual Grad-CAM layer."""
        features = getattr(self.network, "features", None)
        if isinstance(features, nn.Sequential):
            return features[-1]
        layer4 = getattr(self.network, "layer4", None)
        if isinstance(layer4, nn.Module):
            return layer4
        convolutions = [m for m in self.network.modules() if isinstance(m, nn.Conv2d)]
        if not convolutions:
            raise ModelLoadError(f"{self.name} has no convolution for Grad-CAM")
        return convolutions[-1]


def resize_and_crop(image: Image.Image, resize_size: int, crop_size: int) -> torch.Tensor:
    """``(1, 3, crop_size, crop_size)`` pixels in [0, 1]: the RGB image's shorter side
    resized to ``resize_size``, then centre-cropped (torchvision's classification
    preprocessing, without its normalisation)."""
    image = TF.resize(image.convert("RGB"), resize_size)
    image = TF.center_crop(image, crop_size)
    return TF.to_tensor(image).unsqueeze(0)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel of ``(B, C, H, W)`` inputs."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def load_classifier(
    name: str = DEFAULT_MODEL,
    weights: str = DEFAULT_WEIGHTS,
    device: str | torch.device = "cpu",
) -> ImageClassifier:
    """A torchvision classification model with pretrained ImageNet weights, in eval mode.

    Raises:
        ModelLoadError: unknown model or weights, or weights that cannot be
            loaded (e.g. not in the hub cache and no internet).
    """
    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ModelLoadError(
            f"unknown model {name!r}; torchvision classification models include "
            f"{', '.join(sorted(available)[:8])}, ... (torchvision.models.list_models())"
        )
    try:
        weights_enum = torchvision.models.get_model_weights(name)[weights]
    except KeyError:
        raise ModelLoadError(f"model {name!r} has no weights {weights!r}") from None
    try:
        network = torchvision.models.get_model(name, weights=weights_enum)
    except Exception as error:  # a download that fails offline raises URLError, OSError...
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise ModelLoadError(
            f"could not load the {weights} weights of {name} ({error}). Without internet, "
            f"place the file {Path(weights_enum.url).name} in {cache}"
        ) from None
    transforms = weights_enum.transforms()
    model = nn.Sequential(Normalize(transforms.mean, transforms.std), network)
    return ImageClassifier(
        model=model.eval().to(device),
        network=network,
        categories=list(weights_enum.meta["categories"]),
        resize_size=int(transforms.resize_size[0]),
        crop_size=int(transforms.crop_size[0]),
        name=name,
    )


def load_image(path: str | Path) -> Image.Image:
    """An RGB PIL image, or :class:`ImageLoadError` with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"no such image file: {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ImageLoadError(f"cannot read {path} as an image: {error}") from None


def demo_image_path() -> Path:
    """Grace Hopper's portrait, shipped with matplotlib's sample data."""
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
