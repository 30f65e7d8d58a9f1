"""Faces: dlib's ResNet face descriptor as an embedder, with its 5-point alignment.

Face verification asks why two photos show the same person. dlib's descriptor
(a ResNet trained for verification, 128-d, two faces are the same person when
their distance is below 0.6) works on an aligned 150 x 150 face chip:

.. code-block:: python

    models = load_dlib_models()
    chip = align_face(photo, models)            # (150, 150, 3) uint8
    other = align_face(other_photo, models)
    descriptor = DlibFaceDescriptor(models)
    score = SimilarityScore(descriptor, descriptor(chip_tensor(other)), metric="euclidean")
    saliency = RISE(score).attribute(chip_tensor(chip), n_masks=1000)

RISE masks the chip, so the map lives in the aligned face's coordinates.
The descriptor costs about 75 ms per chip on one CPU core and gains nothing
from batching; RISE's automatic chunk settles at one chip per call.

dlib is an optional dependency (``pip install 'captum-perturbation[faces]'``:
``dlib-bin`` and ``face-recognition-models``, whose files hold the models);
it is imported only when :func:`load_dlib_models`, :func:`align_face` or
:func:`facial_features_mask` is called, never by ``import captum_rise``.
"""

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

CHIP_SIZE = 150
"""The side of dlib's aligned face chip, in pixels."""

CHIP_PADDING = 0.25
"""dlib's default padding around the landmarks of a chip."""

MODEL_FILES = {
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
    "landmarks_5": "shape_predictor_5_face_landmarks.dat",
    "landmarks_68": "shape_predictor_68_face_landmarks.dat",
}

FACIAL_FEATURES_68 = tuple(range(27, 68))
"""The 68-point landmarks of the eyes, nose and mouth (dlib's numbering: brows are
17-26, nose 27-35, eyes 36-47, mouth 48-67)."""


def _dlib() -> Any:
    try:
        return importlib.import_module("dlib")
    except ImportError:
        raise ImportError(
            "captum_rise.faces needs dlib: pip install 'captum-perturbation[faces]' "
            "(dlib-bin and face-recognition-models)"
        ) from None


@dataclass
class DlibModels:
    """dlib's frontal face detector, landmark predictors and face descriptor."""

    detector: Any
    landmarks_5: Any
    landmarks_68: Any
    descriptor: Any


def model_folder() -> Path:
    """The folder of ``face-recognition-models``' files (found without importing the
    package, whose ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "dlib's models come from face-recognition-models: "
            "pip install 'captum-perturbation[faces]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def load_dlib_models() -> DlibModels:
    """dlib's HOG face detector, the 5- and 68-point landmark models and the ResNet
    descriptor, from the files of ``face-recognition-models``."""
    dlib = _dlib()
    folder = model_folder()
    return DlibModels(
        detector=dlib.get_frontal_face_detector(),
        landmarks_5=dlib.shape_predictor(str(folder / MODEL_FILES["landmarks_5"])),
        landmarks_68=dlib.shape_predictor(str(folder / MODEL_FILES["landmarks_68"])),
        descriptor=dlib.face_recognition_model_v1(str(folder / MODEL_FILES["descriptor"])),
    )


def align_face(image: np.ndarray, models: DlibModels, size: int = CHIP_SIZE) -> np.ndarray:
    """The largest face of ``image``, aligned on its 5 landmarks as dlib's descriptor
    expects: ``(size, size, 3)`` uint8.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        models: from :func:`load_dlib_models`.

    Raises:
        ValueError: no face was found, or ``image`` is not ``(H, W, 3)`` uint8.
    """
    image = _check_rgb(image, "image")
    dlib = _dlib()
    faces = models.detector(image, 1)
    if len(faces) == 0:
        raise ValueError("no face found in image")
    face = max(faces, key=lambda box: box.area())
    shape = models.landmarks_5(image, face)
    return np.asarray(dlib.get_face_chip(image, shape, size=size, padding=CHIP_PADDING))


def facial_features_mask(chip: np.ndarray, models: DlibModels) -> np.ndarray:
    """``(H, W)`` bool: the convex hull of the eyes, nose and mouth (68-point landmarks)
    of an aligned chip, the region a face descriptor should rely on."""
    chip = _check_rgb(chip, "chip")
    dlib = _dlib()
    height, width = chip.shape[:2]
    shape = models.landmarks_68(chip, dlib.rectangle(0, 0, width - 1, height - 1))
    points = np.array([(shape.part(i).x, shape.part(i).y) for i in FACIAL_FEATURES_68], float)
    from scipy.spatial import Delaunay

    hull = Delaunay(points)
    ys, xs = np.mgrid[0:height, 0:width]
    inside = hull.find_simplex(np.stack([xs.ravel(), ys.ravel()], axis=1)) >= 0
    return inside.reshape(height, width)


def chip_tensor(chip: np.ndarray) -> Tensor:
    """``(1, 3, H, W)`` float32 in [0, 1] from an ``(H, W, 3)`` uint8 chip."""
    chip = _check_rgb(chip, "chip")
    return torch.from_numpy(chip).permute(2, 0, 1)[None].float() / 255.0


class DlibFaceDescriptor:
    """dlib's face descriptor as an embedder: ``(N, 3, H, W)`` chips in [0, 1] ->
    ``(N, 128)`` numpy float32 descriptors (a :class:`captum_rise.SimilarityScore`
    takes them as they are).

    Args:
        models: from :func:`load_dlib_models` (or any object with a
            ``descriptor``: a ``dlib.face_recognition_model_v1``).
        num_jitters: dlib's re-sampling of the chip (0: the chip as it is).
    """

    def __init__(self, models: Any, num_jitters: int = 0) -> None:
        if not hasattr(models, "descriptor"):
            raise TypeError(
                "models must hold dlib's descriptor (load_dlib_models()), got "
                f"{type(models).__name__}"
            )
        self.descriptor = models.descriptor
        self.num_jitters = num_jitters

    def __call__(self, chips: Tensor) -> np.ndarray:
        if not isinstance(chips, Tensor) or chips.dim() != 4 or chips.shape[1] != 3:
            raise ValueError(
                "chips must be a (N, 3, H, W) tensor of RGB chips in [0, 1], got "
                f"{getattr(chips, 'shape', type(chips).__name__)}"
            )
        pixels = (chips.detach().clamp(0, 1) * 255).round().to(torch.uint8)
        arrays = [np.ascontiguousarray(p) for p in pixels.permute(0, 2, 3, 1).cpu().numpy()]
        vectors = self.descriptor.compute_face_descriptor(arrays, self.num_jitters)
        return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)


def _check_rgb(image: object, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"{name} must be an (H, W, 3) uint8 RGB array, got {array.dtype} {array.shape}"
        )
    return np.ascontiguousarray(array)
