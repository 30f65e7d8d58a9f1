"""Score adapters (detection, similarity) and HSIC interactions, against known answers."""

import numpy as np
import pytest
import torch

from captum_rise import RISE, DetectionScore, HSICAttribution, SimilarityScore
from captum_rise.scores import box_iou

SIZE = 32
LEFT = (2, 2, 12, 12)  # (x0, y0, x1, y1)
RIGHT = (18, 14, 30, 28)
GRID = 8  # D-RISE's 16x16 default is for detector-sized images; these are 32x32


def _brightness(images: torch.Tensor, box) -> torch.Tensor:
    x0, y0, x1, y1 = box
    return images[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3))


def _inside(saliency: torch.Tensor, box) -> bool:
    """Whether the map's maximum is in the box."""
    flat = int(saliency.reshape(-1, SIZE, SIZE)[0].argmax())
    y, x = divmod(flat, SIZE)
    return box[0] <= x < box[2] and box[1] <= y < box[3]


class TwoObjects:
    """Proposes both boxes, each scored by the brightness inside it; counts the images it sees."""

    def __init__(self) -> None:
        self.images_seen = 0

    def __call__(self, images):
        self.images_seen += images.shape[0]
        boxes = torch.tensor([LEFT, RIGHT], dtype=torch.float32)
        scores = torch.stack([_brightness(images, LEFT), _brightness(images, RIGHT)], dim=1)
        return [{"boxes": boxes, "scores": s, "labels": torch.tensor([3, 5])} for s in scores]


def test_box_iou_by_hand():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    others = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(boxes, others), torch.tensor([[1 / 7, 1.0, 0.0]]))


def test_detection_score_terms_by_hand():
    """IoU x class similarity x detection score, max over proposals."""
    detections = [
        {  # proposal 0 overlaps target 0 by IoU 1/7; proposal 1 is target 1 exactly
            "boxes": np.array([[1.0, 1.0, 3.0, 3.0], [10.0, 10.0, 12.0, 12.0]]),
            "scores": np.array([0.7, 0.9]),
            "probs": np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]),
        },
        None,  # no detection
        (torch.tensor([[10.0, 10.0, 12.0, 12.0]]), torch.tensor([0.5])),  # no probs: labels needed
    ]
    score = DetectionScore(
        lambda images: detections[: images.shape[0]],
        target_boxes=[[0, 0, 2, 2], [10, 10, 12, 12]],
        target_labels=[1, 2],
    )
    out = score(torch.zeros(2, 3, 4, 4))
    # target 0 (class 1): IoU 1/7 x cos(onehot(1), [.6, .8, 0]) = 0.8 x 0.7; target 1: 1 x 1 x 0.9
    torch.testing.assert_close(out, torch.tensor([[0.8 * 0.7 / 7, 0.9], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="neither labels nor probs"):
        score(torch.zeros(3, 3, 4, 4))
    agnostic = DetectionScore(lambda images: detections[2:3], target_boxes=[10, 10, 12, 12])
    torch.testing.assert_close(agnostic(torch.zeros(1, 3, 4, 4)), torch.tensor([[0.5]]))


def test_two_objects_give_two_maps_each_on_its_box():
    """One set of N forwards (not N x K) explains both detections."""
    detector = TwoObjects()
    score = DetectionScore(detector, target_boxes=[LEFT, RIGHT], target_labels=[3, 5])
    x = torch.ones(1, 3, SIZE, SIZE)
    maps = RISE(score).attribute_classes(
        x, n_masks=500, grid_size=GRID, seed=0, perturbations_per_eval=50
    )
    assert maps.shape == (1, 2, 3, SIZE, SIZE)
    assert detector.images_seen == 500  # (an automatic chunk may pad its last call)
    assert _inside(maps[:, 0], LEFT) and _inside(maps[:, 1], RIGHT)
    # Labels matter: asking for the left box with the right object's class scores 0 everywhere.
    wrong = DetectionScore(TwoObjects(), target_boxes=[LEFT], target_labels=[5])
    assert RISE(wrong).attribute(torch.ones(1, 3, SIZE, SIZE), n_masks=50, seed=0).abs().max() == 0


def test_detector_needing_both_halves_rewards_the_whole_object():
    box = (4, 8, 28, 24)
    halves = ((4, 8, 16, 24), (16, 8, 28, 24))

    def detector(images):
        both = torch.minimum(_brightness(images, halves[0]), _brightness(images, halves[1]))
        return [(torch.tensor([box], dtype=torch.float32), s[None]) for s in both]

    saliency = RISE(DetectionScore(detector, target_boxes=box)).attribute(
        torch.ones(1, 3, SIZE, SIZE), n_masks=2000, grid_size=GRID, seed=0
    )[0, 0]
    left, right = (saliency[y0:y1, x0:x1].mean() for x0, y0, x1, y1 in halves)
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[box[1] : box[3], box[0] : box[2]] = False
    excess = sorted(float(half - saliency[outside].mean()) for half in (left, right))
    assert excess[0] > 0.5 * excess[1] > 0  # both halves are rewarded, alike


def test_default_grid_for_detection_is_d_rise():
    x = torch.ones(1, 3, SIZE, SIZE)
    rise = RISE(DetectionScore(TwoObjects(), target_boxes=[LEFT]))
    default = rise.attribute(x, n_masks=20, seed=1)
    assert torch.equal(default, rise.attribute(x, n_masks=20, seed=1, grid_size=16))
    assert not torch.equal(default, rise.attribute(x, n_masks=20, seed=1, grid_size=7))


def test_per_example_target_boxes():
    """(B, K, 4) boxes: example b's rows are scored against its own boxes."""
    x = torch.ones(2, 3, SIZE, SIZE)
    score = DetectionScore(TwoObjects(), target_boxes=[[LEFT], [RIGHT]], target_labels=[[3], [5]])
    maps = RISE(score).attribute(x, n_masks=500, grid_size=GRID, seed=0)
    assert _inside(maps[0:1], LEFT) and _inside(maps[1:2], RIGHT)


def test_similarity_to_an_embedder_that_sees_one_region():
    region = (20, 4, 30, 14)

    def embedder(images):
        x0, y0, x1, y1 = region
        return images[:, :, y0:y1, x0:x1].mean(dim=(2, 3))  # (N, C)

    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) + 0.5
    for metric in ("dot", "cosine"):
        score = SimilarityScore(embedder, embedder(x)[0], metric=metric)
        assert score(x).shape == (1, 1)
        saliency = RISE(score).attribute(x, n_masks=500, seed=0)
        if metric == "dot":
            assert _inside(saliency, region)
    references = torch.stack([embedder(x)[0], -embedder(x)[0]])
    torch.testing.assert_close(
        SimilarityScore(embedder, references)(x), torch.tensor([[1.0, -1.0]])
    )


def test_adapters_reject_bad_arguments():
    with pytest.raises(ValueError, match="target_boxes must have shape"):
        DetectionScore(TwoObjects(), target_boxes=[1, 2, 3])
    with pytest.raises(ValueError, match="x0 < x1"):
        DetectionScore(TwoObjects(), target_boxes=[4, 4, 2, 8])
    with pytest.raises(ValueError, match="one label per target box"):
        DetectionScore(TwoObjects(), target_boxes=[LEFT, RIGHT], target_labels=[1, 2, 3])
    with pytest.raises(TypeError, match="detector must be callable"):
        DetectionScore("yolo", target_boxes=LEFT)
    with pytest.raises(ValueError, match="one entry per image"):
        DetectionScore(lambda images: [], target_boxes=LEFT)(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"reference must be \(D,\) or \(K, D\)"):
        SimilarityScore(lambda x: x, torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="metric must be one of"):
        SimilarityScore(lambda x: x, torch.zeros(3), metric="l2")
    with pytest.raises(ValueError, match="4-dim embeddings; the reference has 3"):
        SimilarityScore(lambda x: x.flatten(1), torch.zeros(3))(torch.zeros(2, 4))


def test_hsic_interactions_find_the_product_pair():
    """f = a * b with a, b the mean intensities of cells 2 and 6 of a 3x3 grid: that pair
    interacts most, and the other cells' first-order indices are near 0."""
    cells = {2: (2, 0), 6: (0, 2)}  # cell id -> (column, row) on the 3x3 grid

    def model(images):
        a, b = (
            images[:, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].mean(dim=(1, 2, 3))
            for c, r in cells.values()
        )
        return a * b

    hsic = HSICAttribution(model)
    x = torch.ones(1, 3, 12, 12)
    maps, interactions = hsic.attribute_interactions(
        x, n_designs=1024, grid_size=3, seed=0, smooth_map=False
    )
    assert interactions.shape == (1, 9, 9)
    torch.testing.assert_close(interactions, interactions.transpose(1, 2))
    flat = int(interactions[0].argmax())
    assert sorted(divmod(flat, 9)) == [2, 6]
    first_order = maps[0, 0, ::4, ::4].reshape(9)
    others = [i for i in range(9) if i not in cells]
    assert first_order[others].abs().max() < 0.05 * first_order[[2, 6]].min()
    # The same designs and forwards as attribute():
    assert torch.equal(
        maps, hsic.attribute(x, n_designs=1024, grid_size=3, seed=0, smooth_map=False)
    )


def _photo(name: str, size: int) -> torch.Tensor:
    """A scikit-image photo, ``(1, 3, size, size)`` in [0, 1]."""
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(getattr(data, name)()).convert("RGB").resize((size, size))
    return torch.tensor(np.array(photo), dtype=torch.float32).permute(2, 0, 1)[None] / 255


@pytest.mark.slow  # CI runs it (make test-slow)
def test_real_face_detector_mtcnn_points_at_the_face():
    """MTCNN (weights inside the facenet-pytorch wheel) on the astronaut photo: the D-RISE
    map of its face detection peaks inside the face box."""
    facenet = pytest.importorskip("facenet_pytorch", reason="make installs facenet-pytorch")
    mtcnn = facenet.MTCNN(keep_all=True, device="cpu")

    def faces(images):
        boxes, probs = mtcnn.detect(images.permute(0, 2, 3, 1) * 255)
        return list(zip(boxes, probs))

    x = _photo("astronaut", 128)
    ((boxes, _),) = faces(x)
    assert boxes.shape == (1, 4)
    face = tuple(float(v) for v in boxes[0])
    saliency = RISE(DetectionScore(faces, target_boxes=face)).attribute(x, n_masks=300, seed=0)
    flat = int(saliency[0, 0].argmax())
    y, x_peak = divmod(flat, 128)
    assert face[0] <= x_peak <= face[2] and face[1] <= y <= face[3]


@pytest.mark.slow  # CI runs it (make test-slow)
def test_real_embedder_finds_where_each_crop_comes_from():
    """MobileNetV2's pooled features: why does the whole photo match each of its
    quarters? Each quarter's map is higher on that quarter than elsewhere, and
    peaks in it (3 of 4 at least)."""
    from captum_rise.imagenet import load_classifier

    classifier = load_classifier()
    network, normalize = classifier.network, classifier.model[0]

    def embedder(images):
        return network.features(normalize(images)).mean(dim=(2, 3))

    photo = _photo("astronaut", 224)
    corners = [(0, 0), (0, 112), (112, 0), (112, 112)]
    with torch.no_grad():
        references = torch.cat([embedder(photo[..., y : y + 112, x : x + 112]) for y, x in corners])
        maps = RISE(SimilarityScore(embedder, references)).attribute_classes(
            photo, n_masks=500, seed=0
        )[0, :, 0]
    peaks_inside = 0
    for saliency, (y, x) in zip(maps, corners):
        inside = torch.zeros(224, 224, dtype=torch.bool)
        inside[y : y + 112, x : x + 112] = True
        assert saliency[inside].mean() > saliency[~inside].mean()
        peak_y, peak_x = divmod(int(saliency.argmax()), 224)
        peaks_inside += bool(inside[peak_y, peak_x])
    assert peaks_inside >= 3
