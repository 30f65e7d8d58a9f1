"""captum_rise.RISE against a naive RISE in the style of the original code (issue 5).

The naive reference makes all N masks up front with numpy and a per-mask
``skimage.transform.resize`` loop, holds them in memory, then forwards the
masked images in batches and takes ``scores.T @ masks``. Both run at equal N
and batch size on MobileNetV2, each in a fresh process, and report:

* wall time, the time inside the model's forward, and the time outside it;
* peak memory (resident-set high-water mark on CPU, allocator peak on CUDA);
* for captum_rise, all-1000-classes time (``attribute_classes``) against
  one-target time (``attribute``).

Usage: ``python benchmarks/speed.py [--n-masks 1000] [--batch 4] [--device cpu]``
"""

import argparse
import json
import time

import torch
import torchvision
from _common import ForwardTimer, naive_rise, peak_memory_bytes, run_child, synchronize

from captum_rise import RISE


def child(variant: str, device: str, n_masks: int, batch: int) -> None:
    network = torchvision.models.mobilenet_v2(weights=None).eval().to(device)
    model = ForwardTimer(network)
    image = torch.rand(1, 3, 224, 224, device=device)
    probabilities = lambda x: torch.softmax(model(x), dim=1)
    synchronize(torch.device(device))
    start = time.perf_counter()
    if variant == "naive":
        naive_rise(model, image, 0, n_masks, batch, seed=0)
    elif variant == "captum_rise":
        RISE(probabilities).attribute(
            image, target=0, n_masks=n_masks, perturbations_per_eval=batch, seed=0
        )
    elif variant == "captum_rise_all_classes":
        RISE(probabilities).attribute_classes(
            image, n_masks=n_masks, perturbations_per_eval=batch, seed=0
        )
    synchronize(torch.device(device))
    wall = time.perf_counter() - start
    print(
        json.dumps(
            {
                "variant": variant,
                "wall_s": wall,
                "forward_s": model.seconds,
                "outside_forward_s": wall - model.seconds,
                "peak_bytes": peak_memory_bytes(device),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-masks", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch = args.batch or (4 if args.device == "cpu" else 64)
    if args.child:
        child(args.child, args.device, args.n_masks, batch)
        return
    common = ["--device", args.device, "--n-masks", str(args.n_masks), "--batch", str(batch)]
    results = {
        variant: run_child(__file__, ["--child", variant, *common])
        for variant in ("naive", "captum_rise", "captum_rise_all_classes")
    }
    print(
        f"device: {args.device}, N={args.n_masks}, batch {batch}, MobileNetV2 224x224, "
        f"torch {torch.__version__}"
    )
    print("| implementation | wall s | model forward s | outside forward s | peak memory MiB |")
    print("|---|---|---|---|---|")
    for variant, r in results.items():
        print(
            f"| {variant} | {r['wall_s']:.1f} | {r['forward_s']:.1f} "
            f"| {r['outside_forward_s']:.2f} "
            f"| {r['peak_bytes'] / 2**20:.0f} |"
        )
    naive, ours, every = (
        results["naive"],
        results["captum_rise"],
        results["captum_rise_all_classes"],
    )
    print(f"\nwall time, naive / captum_rise: {naive['wall_s'] / ours['wall_s']:.2f}")
    print(
        f"time outside the forward, naive / captum_rise: "
        f"{naive['outside_forward_s'] / max(ours['outside_forward_s'], 1e-9):.1f}"
    )
    print(f"peak memory, naive / captum_rise: {naive['peak_bytes'] / ours['peak_bytes']:.2f}")
    print(f"all 1000 classes / one target (captum_rise): {every['wall_s'] / ours['wall_s']:.3f}")


if __name__ == "__main__":
    main()
