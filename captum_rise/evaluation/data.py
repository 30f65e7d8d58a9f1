"""The images of an evaluation run: a folder of image files, their ids, targets and boxes.

An image's *id* is its path relative to the data folder (POSIX separators), or
its index for a plain :class:`torch.utils.data.Dataset`; results, seeds and
resumption are keyed by it.
"""

import copy
import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from captum_rise.imagenet import load_image

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")

Box = tuple[float, float, float, float]
Item = TypeVar("Item")
NewItem = TypeVar("NewItem")


class ImageFiles(Dataset[tuple[Item, int | None]]):
    """The image files under ``root`` (recursively), sorted by relative path.

    Items are ``(image, target)``: ``transform(PIL image)``, a ``(C, H, W)``
    tensor, and the class of the image's top-level folder under ``class_map``
    (ImageFolder layout, ``root/<folder>/.../<file>``), or None without one (the
    runner then explains the model's top class). A file that cannot be read
    raises :class:`captum_rise.imagenet.ImageLoadError` when its item is
    taken, so that the runner records it as a failure and goes on.

    Args:
        root: the data folder.
        transform: PIL image to ``(C, H, W)`` model input.
        class_map: folder name to class index.

    Raises:
        ValueError: ``root`` is not a folder, holds no image files (suffixes
            :data:`IMAGE_SUFFIXES`), or has images in folders that ``class_map``
            does not name.
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Image.Image], Item],
        class_map: Mapping[str, int] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"DATA must be a folder of images, but {self.root} is not a folder")
        self.paths = sorted(
            (p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )
        if not self.paths:
            raise ValueError(
                f"DATA folder {self.root} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        self.ids = [p.relative_to(self.root).as_posix() for p in self.paths]
        self.transform = transform
        self.class_map = dict(class_map) if class_map is not None else None
        if self.class_map is not None:
            unmapped = sorted({self._folder(i) for i in self.ids} - set(self.class_map))
            if unmapped:
                raise ValueError(
                    f"class map names no class for the folders {unmapped[:5]} of {self.root}"
                )

    @staticmethod
    def _folder(image_id: str) -> str:
        return image_id.split("/")[0] if "/" in image_id else ""

    def __len__(self) -> int:
        return len(self.paths)

    def with_transform(self, transform: Callable[[Image.Image], NewItem]) -> "ImageFiles[NewItem]":
        """The same files and targets, items made by ``transform`` (no rescan)."""
        other = cast(ImageFiles[NewItem], copy.copy(self))
        other.transform = transform
        return other

    def __getitem__(self, index: int) -> tuple[Item, int | None]:
        image = self.transform(load_image(self.paths[index]))
        target = None if self.class_map is None else self.class_map[self._folder(self.ids[index])]
        return image, target


def image_ids_of(dataset: Dataset[Any]) -> list[str]:
    """Ids of a dataset's items: :attr:`ImageFiles.ids`, the paths of a torchvision
    ``DatasetFolder`` (``samples``) relative to its ``root``, or the indices."""
    if isinstance(dataset, ImageFiles):
        return list(dataset.ids)
    samples = getattr(dataset, "samples", None)
    root = getattr(dataset, "root", None)
    if samples is not None and root is not None:
        return [Path(path).relative_to(root).as_posix() for path, _ in samples]
    return [str(i) for i in range(len(dataset))]  # type: ignore[arg-type]


def read_class_map(path: str | Path) -> dict[str, int]:
    """A JSON object mapping folder names to class indices, checked."""
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the class map {path}: {error}") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in mapping.values()
    ):
        raise ValueError(f"class map {path} must be a JSON object of folder name: class index")
    return mapping


BOXES_HEADER = ("image", "x0", "y0", "x1", "y1")


def read_boxes(path: str | Path) -> dict[str, list[Box]]:
    """Object boxes per image id, from a CSV file with the header ``image,x0,y0,x1,y1``.

    ``image`` is the path relative to the data folder; ``x0, y0`` (top left,
    inclusive) and ``x1, y1`` (bottom right, exclusive) are pixels of the
    original image file, x to the right and y down. One row per box; an image
    with several rows has several objects (a hit on any counts).
    """
    try:
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            if tuple(reader.fieldnames or ()) != BOXES_HEADER:
                raise ValueError(
                    f"header must be {','.join(BOXES_HEADER)}, got {reader.fieldnames}"
                )
            boxes: dict[str, list[Box]] = {}
            for line, row in enumerate(reader, start=2):
                try:
                    box = tuple(float(row[k]) for k in BOXES_HEADER[1:])
                except (TypeError, ValueError):
                    raise ValueError(
                        f"line {line}: coordinates must be numbers, got {row}"
                    ) from None
                if not (box[0] < box[2] and box[1] < box[3]):
                    raise ValueError(f"line {line}: need x0 < x1 and y0 < y1, got {box}")
                boxes.setdefault(row["image"], []).append(box)  # type: ignore[arg-type]
    except OSError as error:
        raise ValueError(f"cannot read the boxes file {path}: {error}") from None
    except ValueError as error:
        raise ValueError(f"boxes file {path}: {error}") from None
    return boxes


def resize_crop_boxes(
    boxes: Sequence[Box], image_size: tuple[int, int], resize_size: int, crop_size: int
) -> list[Box]:
    """Boxes of an original ``(width, height)`` image in the pixels of its
    torchvision ``resize(resize_size)`` + ``center_crop(crop_size)``, clipped to
    the crop; boxes left outside the crop are dropped."""
    width, height = image_size
    scale = resize_size / min(width, height)
    new_width, new_height = (
        (resize_size, int(resize_size * height / width))
        if width <= height
        else (int(resize_size * width / height), resize_size)
    )
    left = round((new_width - crop_size) / 2.0)
    top = round((new_height - crop_size) / 2.0)
    moved = []
    for x0, y0, x1, y1 in boxes:
        box = (
            min(max(x0 * scale - left, 0.0), crop_size),
            min(max(y0 * scale - top, 0.0), crop_size),
            min(max(x1 * scale - left, 0.0), crop_size),
            min(max(y1 * scale - top, 0.0), crop_size),
        )
        if box[0] < box[2] and box[1] < box[3]:
            moved.append(box)
    return moved


def box_region(boxes: Sequence[Box], height: int, width: int) -> Tensor:
    """``(H, W)`` boolean union of the boxes; a pixel is in when its centre is."""
    region = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        cols = slice(max(0, math.ceil(x0 - 0.5)), max(0, math.ceil(x1 - 0.5)))
        rows = slice(max(0, math.ceil(y0 - 0.5)), max(0, math.ceil(y1 - 0.5)))
        region[rows, cols] = True
    return region
