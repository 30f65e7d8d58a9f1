"""RISE time per mask against ``perturbations_per_eval``, to choose batch-size defaults.

On a small CPU, small forward batches are fastest per image; on a GPU, large
ones. The last row is the default, ``perturbations_per_eval=None``, which
chooses the size while the masks are used (see ``captum_rise.batching``).

Usage: ``python benchmarks/batch_size.py [--device cpu] [--n-masks 128]``
"""

import argparse
import time

import torch
import torchvision
from _common import synchronize

from captum_rise import RISE


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-masks", type=int, default=128)
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64")
    args = parser.parse_args()
    device = torch.device(args.device)
    network = torchvision.models.mobilenet_v2(weights=None).eval().to(device)
    rise = RISE(lambda x: torch.softmax(network(x), dim=1))
    image = torch.rand(1, 3, 224, 224, device=device)
    rise.attribute(image, target=0, n_masks=8, perturbations_per_eval=8, seed=0)  # warm-up
    print(
        f"device: {args.device}, MobileNetV2 224x224, N={args.n_masks}, "
        f"threads {torch.get_num_threads()}"
    )
    print("| perturbations_per_eval | ms per mask |")
    print("|---|---|")
    for size in [int(s) for s in args.sizes.split(",")] + [None]:
        synchronize(device)
        start = time.perf_counter()
        RISE(rise.forward_func).attribute(
            image, target=0, n_masks=args.n_masks, perturbations_per_eval=size, seed=0
        )
        synchronize(device)
        label = "None (automatic, probing included)" if size is None else size
        print(f"| {label} | {1000 * (time.perf_counter() - start) / args.n_masks:.1f} |")


if __name__ == "__main__":
    main()
