"""The pictures of an evaluation run's report, saved by the run as each image is explained.

For every image, ``DIR/report/assets/<shard>/<key>.jpg`` holds the model's
input as a photo, and ``<key>.<method>.png`` each method's map, quantised to 8
bits over its own range (kept in the PNG's text chunk ``captum_rise:range``; a
signed map, with values on both sides of 0, over a range symmetric about 0, so
that 0 is the middle gray and the page can draw it on a diverging scale), both
at most :data:`THUMBNAIL_SIDE` pixels on their longer side. The browser
colours the maps itself, so a map is stored once, small, and drawn with any
colour scale. The key is a hash of the image id: every rank names an image's
files the same, whatever characters the id holds.
"""

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, PngImagePlugin
from torch import Tensor

REPORT_DIR = "report"
ASSETS_DIR = "assets"
THUMBNAIL_SIDE = 224
JPEG_QUALITY = 85
RANGE_KEY = "captum_rise:range"


def image_key(image_id: str) -> str:
    """A file-name-safe key of an image id: 16 hex digits of its SHA-1."""
    return hashlib.sha1(image_id.encode()).hexdigest()[:16]


def sharded_path(folder: Path, image_id: str, suffix: str) -> Path:
    """``folder/<shard>/<key><suffix>``: the shard, the key's first two hex digits, keeps
    a large run's folders to a few hundred files each (report.js builds the same paths)."""
    key = image_key(image_id)
    return folder / key[:2] / f"{key}{suffix}"


def photo_path(report_dir: Path, image_id: str) -> Path:
    return sharded_path(report_dir / ASSETS_DIR, image_id, ".jpg")


def map_path(report_dir: Path, image_id: str, method: str) -> Path:
    return sharded_path(report_dir / ASSETS_DIR, image_id, f".{method}.png")


def _shrink(image: Tensor) -> Tensor:
    """``(C, H, W)`` area-averaged down to at most :data:`THUMBNAIL_SIDE` on the longer side."""
    height, width = image.shape[1:]
    scale = THUMBNAIL_SIDE / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return torch.nn.functional.interpolate(image[None], size=size, mode="area")[0]


def save_photo(report_dir: Path, image_id: str, image: Tensor) -> None:
    """Saves the model input ``(C, H, W)`` as a JPEG thumbnail.

    Pixels in [0, 1] are shown as they are; an input outside that range (a
    normalised image) is stretched to its own minimum and maximum. Three
    channels are RGB, other counts their mean, in gray."""
    pixels = _shrink(image.detach().float().cpu())
    pixels = pixels if pixels.shape[0] == 3 else pixels.mean(dim=0, keepdim=True)
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 1:
        pixels = (pixels - low) / (high - low) if high > low else torch.zeros_like(pixels)
    array = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    photo = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    _save(photo, photo_path(report_dir, image_id), format="JPEG", quality=JPEG_QUALITY)


def save_map(report_dir: Path, image_id: str, method: str, saliency: Tensor) -> tuple[float, float]:
    """Saves a ``(H, W)`` map as an 8-bit gray PNG over its range, the range in its text;
    returns the range as written (6 significant digits, as :func:`read_map` gives it).

    The range is the map's ``[min, max]``, or ``[-m, m]`` with ``m`` its largest magnitude
    when it has values on both sides of 0.
    """
    values = _shrink(saliency.detach().float().cpu()[None])[0]
    low, high = float(values.min()), float(values.max())
    if low < 0 < high:
        magnitude = max(-low, high)
        low, high = -magnitude, magnitude
    scaled = (values - low) / (high - low) if high > low else torch.zeros_like(values)
    info = PngImagePlugin.PngInfo()
    written = f"{low:.6g} {high:.6g}"
    info.add_text(RANGE_KEY, written)
    array = (scaled * 255).round().to(torch.uint8).numpy()
    _save(
        Image.fromarray(array), map_path(report_dir, image_id, method), format="PNG", pnginfo=info
    )
    low_written, high_written = (float(v) for v in written.split())
    return low_written, high_written


def _save(image: Image.Image, path: Path, **options: Any) -> None:
    """Writes a temporary file and renames it: a killed run never leaves half a picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    image.save(temporary, **options)
    temporary.replace(path)


def read_map(path: Path) -> tuple[np.ndarray, float, float]:
    """A map saved by :func:`save_map`: its 8-bit ``(H, W)`` values and its range."""
    with Image.open(path) as image:
        low, high = (float(v) for v in image.text[RANGE_KEY].split())
        return np.asarray(image), low, high
