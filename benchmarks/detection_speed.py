"""D-RISE on a real face detector (MTCNN, CPU): K targets cost N detector forwards, not N x K.

Side by side in one run, on scikit-image's astronaut (128x128), N masks:

* captum_rise, ``RISE(DetectionScore(...)).attribute_classes`` for K target boxes
  (automatic masks per forward);
* captum_rise for one target box (``attribute``);
* a one-forward-per-mask loop, as the existing D-RISE implementations run:
  each mask is rendered, its masked image detected alone, and the K scores added.

Reports seconds, images the detector saw, and the ratios.

Usage: ``python benchmarks/detection_speed.py [--n-masks 300] [--targets 3]``
(needs ``facenet-pytorch``; ``make`` installs it).
"""

import argparse
import time

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image
from skimage import data

from captum_rise import RISE, DetectionScore
from captum_rise.masks import GridMaskSampler, ParamStream, make_generator


class CountingDetector:
    """MTCNN as a batch detector for DetectionScore; counts the images it sees."""

    def __init__(self) -> None:
        self.mtcnn = MTCNN(keep_all=True, device="cpu")
        self.images = 0

    def __call__(self, images: torch.Tensor):
        self.images += images.shape[0]
        boxes, probs = self.mtcnn.detect(images.permute(0, 2, 3, 1) * 255)
        return list(zip(boxes, probs))


def one_forward_per_mask(score: DetectionScore, x: torch.Tensor, n_masks: int) -> torch.Tensor:
    """The loop of existing D-RISE code: one detector call per masked image."""
    sampler = GridMaskSampler([x.shape], 16, 0.5, x.device)
    stream = ParamStream(sampler, make_generator(0))
    total = torch.zeros(score.n_targets, *x.shape[2:])
    for k in range(n_masks):
        (mask,) = sampler.render(stream.params(k, k + 1))
        scores = score(x * mask[0])[0]  # (K,)
        total += scores[:, None, None] * mask[0, 0, 0]
    return total / (n_masks * 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-masks", type=int, default=300)
    parser.add_argument("--targets", type=int, default=3)
    args = parser.parse_args()
    photo = Image.fromarray(data.astronaut()).resize((128, 128))
    x = torch.tensor(np.array(photo), dtype=torch.float32).permute(2, 0, 1)[None] / 255
    detector = CountingDetector()
    (face,), _ = detector.mtcnn.detect(x.permute(0, 2, 3, 1) * 255)
    boxes = [face[0]] + [face[0] + [8 * k, 8 * k, 8 * k, 8 * k] for k in range(1, args.targets)]
    score = DetectionScore(detector, target_boxes=np.stack(boxes))
    rows = []
    for name, run in (
        (
            f"captum_rise, {args.targets} targets",
            lambda: RISE(score).attribute_classes(x, n_masks=args.n_masks, seed=0),
        ),
        (
            "captum_rise, 1 target",
            lambda: RISE(score).attribute(x, target=0, n_masks=args.n_masks, seed=0),
        ),
        (
            f"one forward per mask, {args.targets} targets",
            lambda: one_forward_per_mask(score, x, args.n_masks),
        ),
    ):
        detector.images = 0
        start = time.perf_counter()
        run()
        rows.append((name, time.perf_counter() - start, detector.images))
    print(
        f"MTCNN on the astronaut (128x128), N={args.n_masks} masks, 16x16 grid, CPU, "
        f"{torch.get_num_threads()} threads"
    )
    print("| variant | seconds | images detected | / captum_rise K targets |")
    print("|---|---|---|---|")
    for name, seconds, images in rows:
        print(f"| {name} | {seconds:.1f} | {images} | {seconds / rows[0][1]:.2f} |")


if __name__ == "__main__":
    main()
