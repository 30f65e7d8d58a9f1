"""Score adapters: models that are not classifiers, turned into ``(N, K)`` score functions.

Each adapter is a ``forward_func`` for :class:`captum_rise.RISE`,
:class:`captum_rise.HSICAttribution` or any Captum perturbation method: it
takes a batch of (masked) inputs and returns one score per input and target,
``(N, K)``. ``RISE(adapter).attribute_classes(x)`` then explains all ``K``
targets from one set of forwards, and ``attribute(x, target=k)`` one of them
(with ``K = 1``, ``target=None`` works too).

A model whose output already is the scalar to explain (a captioner's
probability of the next word, a regression) needs no adapter: return ``(N,)``
and call ``attribute(x)`` with ``target=None``.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from captum_rise.runtimes import as_output_tensor

Detections = Sequence[Any]

D_RISE_GRID_SIZE = 16


def box_iou(boxes: Tensor, others: Tensor) -> Tensor:
    """``(K, M)`` intersection over union of ``(K, 4)`` and ``(M, 4)`` boxes
    ``(x0, y0, x1, y1)``."""
    top_left = torch.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = (bottom_right - top_left).clamp_min(0).prod(dim=2)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp_min(0).prod(dim=1)
    other_area = (others[:, 2:] - others[:, :2]).clamp_min(0).prod(dim=1)
    union = area[:, None] + other_area[None, :] - intersection
    return intersection / union.clamp_min(torch.finfo(union.dtype).tiny)


class DetectionScore:
    r"""D-RISE scores (Petsiuk et al., CVPR 2021): how well each masked image still
    shows each target detection, ``(N, K)``.

    For a target detection ``t`` and the detector's proposals ``j`` on a masked
    image, the score is

    .. math::
        s_t = \max_j \; \mathrm{IoU}(L_t, L_j) \cdot \mathrm{sim}(c_t, P_j) \cdot O_j

    This is the variant taken here, among those published (Xplique,
    XAITK's ``DRISEScoring`` and Microsoft's ``DRISE_saliency`` differ on the
    last two terms):

    * ``O_j`` is the proposal's detection score: torchvision detectors and
      MTCNN report no objectness separate from it, so it stands for the
      paper's objectness (its confidence that there is an object);
    * ``sim`` is the cosine similarity of the target's one-hot class with the
      proposal's class probabilities when the detector returns them
      (``"probs"``, the paper's term), else 1 if the proposal's label is the
      target's and 0 otherwise; without ``target_labels`` it is 1
      (class-agnostic detectors, such as a face detector).

    An image with no proposal scores 0. Masks follow D-RISE: an adapter
    advertises :attr:`default_grid_size` (16), which :class:`captum_rise.RISE`
    uses when ``grid_size`` is not given, and :attr:`default_apply_softmax`
    False: deletion and insertion take the scores as they are.

    Args:
        detector: called with a batch of images ``(N, C, H, W)``, it returns
            one entry per image: a dict with ``"boxes"`` ``(M, 4)`` as
            ``(x0, y0, x1, y1)`` in pixels, ``"scores"`` ``(M,)`` and
            optionally ``"labels"`` ``(M,)`` or ``"probs"`` ``(M, classes)``
            (torchvision detectors in eval mode return this), or a tuple
            ``(boxes, scores)`` / ``(boxes, scores, probs)``. Tensors, numpy
            arrays or lists; None or empty boxes mean no detection.
        target_boxes: ``(4,)`` one box, ``(K, 4)`` boxes shared by every
            explained example, or ``(B, K, 4)`` boxes per example.
        target_labels: the targets' classes, ``(K,)`` or ``(B, K)``, or None
            (class-agnostic).

    Returns (when called):
        ``(N, K)`` scores, in [0, 1] for scores and probabilities in [0, 1].
        Rows follow Captum's perturbed batches: row ``r`` is masked example
        ``r % B``.
    """

    default_grid_size = D_RISE_GRID_SIZE
    default_apply_softmax = False

    def __init__(
        self,
        detector: Callable[..., Detections],
        target_boxes: Tensor | np.ndarray | Sequence[Sequence[float]],
        target_labels: Tensor | np.ndarray | Sequence[int] | None = None,
    ) -> None:
        if not callable(detector):
            raise TypeError(f"detector must be callable, got {type(detector).__name__}")
        boxes = torch.as_tensor(np.asarray(target_boxes, dtype=np.float64), dtype=torch.float32)
        if boxes.dim() == 1:
            boxes = boxes[None]
        if boxes.dim() == 2:
            boxes = boxes[None]
        if boxes.dim() != 3 or boxes.shape[-1] != 4 or boxes.shape[1] == 0:
            raise ValueError(
                f"target_boxes must have shape (4,), (K, 4) or (B, K, 4), got {tuple(boxes.shape)}"
            )
        if not bool((boxes[..., 2:] > boxes[..., :2]).all()):
            raise ValueError("target_boxes must be (x0, y0, x1, y1) with x0 < x1 and y0 < y1")
        self.detector = detector
        self.target_boxes = boxes
        self.target_labels: Tensor | None = None
        if target_labels is not None:
            labels = torch.as_tensor(np.asarray(target_labels))
            if labels.is_floating_point() or labels.numel() == 0 or bool((labels < 0).any()):
                raise ValueError(f"target_labels must be class indices >= 0, got {target_labels!r}")
            labels = labels[None] if labels.dim() < 2 else labels
            if labels.shape[1] != boxes.shape[1] or labels.shape[0] not in (1, boxes.shape[0]):
                raise ValueError(
                    f"target_labels of shape {tuple(labels.shape)} do not match target_boxes of "
                    f"shape {tuple(boxes.shape)}: one label per target box"
                )
            self.target_labels = labels.long()

    @property
    def n_targets(self) -> int:
        """``K``."""
        return self.target_boxes.shape[1]

    def __call__(self, images: Tensor, *additional_args: Any) -> Tensor:
        detections = self.detector(images, *additional_args)
        if len(detections) != images.shape[0]:
            raise ValueError(
                f"detector must return one entry per image: {images.shape[0]} images gave "
                f"{len(detections)} entries"
            )
        n_examples = self.target_boxes.shape[0]
        scores = torch.zeros(images.shape[0], self.n_targets)
        for row, detection in enumerate(detections):
            example = row % n_examples
            scores[row] = self._score(detection, example)
        return scores.to(images.device)

    def _score(self, detection: Any, example: int) -> Tensor:
        proposals = _proposals(detection)
        if proposals is None:
            return torch.zeros(self.n_targets)
        boxes, confidence, labels, probs = proposals
        score = box_iou(self.target_boxes[example], boxes) * confidence[None, :]
        if self.target_labels is not None:
            target_labels = self.target_labels[example % self.target_labels.shape[0]]
            if probs is not None:
                norms = probs.norm(dim=1).clamp_min(torch.finfo(probs.dtype).tiny)
                score = score * (probs[:, target_labels].T / norms[None, :])
            elif labels is not None:
                score = score * (labels[None, :] == target_labels[:, None])
            else:
                raise ValueError(
                    "target_labels were given but the detector returns neither labels nor probs"
                )
        return score.max(dim=1).values


def _proposals(
    detection: Any,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None] | None:
    """``(boxes (M, 4), scores (M,), labels or None, probs or None)`` as float32/long
    CPU tensors, or None when there is no proposal."""
    if detection is None:
        return None
    if isinstance(detection, dict):
        fields: dict[str, Any] = detection
    elif isinstance(detection, (tuple, list)) and len(detection) in (2, 3):
        fields = dict(zip(("boxes", "scores", "probs"), detection))
    else:
        raise TypeError(
            "each detection must be a dict with 'boxes' and 'scores' (and 'labels' or "
            f"'probs'), or a tuple (boxes, scores[, probs]); got {type(detection).__name__}"
        )
    if "boxes" not in fields or "scores" not in fields:
        raise ValueError("a detection dict needs the keys 'boxes' and 'scores'")
    if fields["boxes"] is None:
        return None
    boxes = _as_float(fields["boxes"]).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return None
    confidence = _as_float(fields["scores"]).reshape(-1)
    labels = fields.get("labels")
    probs = fields.get("probs")
    return (
        boxes,
        confidence,
        None if labels is None else torch.as_tensor(np.asarray(_cpu(labels))).long().reshape(-1),
        None if probs is None else _as_float(probs).reshape(boxes.shape[0], -1),
    )


def _cpu(value: Any) -> Any:
    return value.detach().cpu() if isinstance(value, Tensor) else value


def _as_float(value: Any) -> Tensor:
    """A detection's numbers as a float32 CPU tensor (:func:`as_float_tensor`)."""
    return as_float_tensor(value, "a detection's boxes, scores and probs").detach().cpu().float()


SIMILARITY_METRICS = ("cosine", "dot", "euclidean")
"""Named similarities of :class:`SimilarityScore`; higher always means more alike."""

SimilarityMetric = str | Callable[[Tensor, Tensor], Tensor]


def as_float_tensor(value: object, name: str) -> Tensor:
    """``value`` as a floating tensor: a tensor as it is (integers become float32); a numpy
    array, anything numpy reads (lists, objects with ``__array__``), or a sequence of
    those (dlib's ``vectors``: one ``vector`` per image) as float32 on the CPU
    (:func:`captum_rise.runtimes.as_output_tensor`).

    Raises:
        TypeError: naming ``name``, when ``value`` holds no numbers.
    """
    tensor = as_output_tensor(value, name)
    return tensor if isinstance(value, Tensor) and tensor.is_floating_point() else tensor.float()


class SimilarityScore(torch.nn.Module):
    """The similarity of each (masked) input's embedding to reference embeddings, ``(N, K)``.

    Explains face verification ("why is this the same person"), image
    retrieval, sentence similarity and, in general, "why are these two
    alike": RISE weights every mask by how similar the masked input stays to
    the reference. It is a :class:`torch.nn.Module`, so it is also a model for
    Quantus (``quantus.evaluate(..., model=SimilarityScore(...))``) and for
    :func:`captum_rise.metrics.deletion`.

    Args:
        embedder: a callable from a batch ``(N, ...)`` to embeddings ``(N, D)``
            (trailing dims are flattened): a tensor on any device, a numpy
            array, or any array-like (dlib's ``vectors``; :func:`as_float_tensor`).
        reference: ``(D,)`` one reference embedding or ``(K, D)`` several,
            e.g. ``embedder(other_images)``, in any of those forms; it is
            detached and moved to the embeddings' device and dtype.
        metric: ``"cosine"`` (default), ``"dot"`` (the inner product),
            ``"euclidean"`` (minus the distance, so higher means more
            similar: dlib and FaceNet decide on the distance), or a callable
            from embeddings ``(N, D)`` and references ``(K, D)`` to ``(N, K)``
            similarities.

    Returns (when called):
        ``(N, K)`` similarities on the inputs' device; with one reference
        ``K = 1`` and ``target=None`` works.

    Similarities of masked inputs vary little around a large mean (0.91 for
    a face against a view of itself), so RISE's paper normalisation (by
    ``N * p_keep``) would carry that mean times the masks' uneven coverage
    into the map (every map peaked at the same pixels, whatever the
    reference, on MobileNetV2). The adapter advertises
    :attr:`default_normalization` ``"centred"`` (the mean score as a control
    variate), which :class:`captum_rise.RISE` uses when ``normalization`` is
    not given; ``normalization="difference"`` gives the signed view. It also
    advertises :attr:`default_apply_softmax` False: deletion and insertion
    take the similarity as it is.
    """

    default_normalization = "centred"
    default_apply_softmax = False
    is_score_adapter = True

    def __init__(
        self,
        embedder: Callable[..., object],
        reference: object,
        metric: SimilarityMetric = "cosine",
    ) -> None:
        super().__init__()
        if not callable(embedder):
            raise TypeError(f"embedder must be callable, got {type(embedder).__name__}")
        if not callable(metric) and metric not in SIMILARITY_METRICS:
            raise ValueError(
                f"metric must be one of {SIMILARITY_METRICS} or a callable, got {metric!r}"
            )
        references = as_float_tensor(reference, "reference").detach()
        if references.dim() not in (1, 2) or references.numel() == 0:
            raise ValueError(
                f"reference must be (D,) or (K, D) embeddings, got shape {tuple(references.shape)}"
            )
        self.embedder = embedder
        self.reference = references.reshape(-1, references.shape[-1])
        self.metric = metric

    @property
    def n_targets(self) -> int:
        """``K``, the number of references."""
        return self.reference.shape[0]

    def forward(self, inputs: Tensor, *additional_args: Any) -> Tensor:
        embeddings = as_float_tensor(
            self.embedder(inputs, *additional_args), "the embedder's output"
        )
        if embeddings.dim() == 1 and inputs.shape[0] == 1:
            embeddings = embeddings[None]  # one embedding for a single input
        embeddings = embeddings.reshape(embeddings.shape[0], -1)
        if embeddings.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"embedder must return one embedding per input: {inputs.shape[0]} inputs gave "
                f"{embeddings.shape[0]}"
            )
        if embeddings.shape[1] != self.reference.shape[1]:
            raise ValueError(
                f"embedder returned {embeddings.shape[1]}-dim embeddings; the reference has "
                f"{self.reference.shape[1]} dims"
            )
        reference = self.reference.to(embeddings.device, embeddings.dtype)
        if callable(self.metric):
            similarity = self.metric(embeddings, reference)
        elif self.metric == "euclidean":
            similarity = -torch.cdist(embeddings, reference)
        else:
            if self.metric == "cosine":
                embeddings = torch.nn.functional.normalize(embeddings, dim=1)
                reference = torch.nn.functional.normalize(reference, dim=1)
            similarity = embeddings @ reference.T
        if not isinstance(similarity, Tensor) or similarity.shape != (
            embeddings.shape[0],
            reference.shape[0],
        ):
            raise ValueError(
                f"metric must return (N, K) = ({embeddings.shape[0]}, {reference.shape[0]}) "
                f"similarities, got {getattr(similarity, 'shape', type(similarity).__name__)}"
            )
        return similarity.to(inputs.device)
