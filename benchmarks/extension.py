"""The extension example against Captum: KernelSHAP on grid cells built on captum_rise's
pipeline (``examples/grid_kernel_shap.py``) and Captum's ``KernelShap`` on the same grid, at
equal samples, side by side in one process with pinned threads.

MobileNetV2 (random weights: the time does not depend on them) on a 224x224 image, a 7x7
grid (49 cells), ``--samples`` coalitions each. Captum runs with its default
``perturbations_per_eval=1`` and with the chunk given (``--captum-chunk``); ours with its
defaults (the automatic chunk). Each variant runs ``--rounds`` times, alternating; printed:
the median seconds and the ratios to ours.

Usage: ``python benchmarks/extension.py [--samples 512] [--rounds 3] [--threads 2]``
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision
from captum.attr import KernelShap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from grid_kernel_shap import GridKernelShap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--captum-chunk", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = torchvision.models.mobilenet_v2(weights=None).eval()
    probabilities = lambda x: torch.softmax(model(x), dim=1)
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    side = torch.arange(224) * 7 // 224
    cells = (side[:, None] * 7 + side[None, :])[None, None]
    variants = {
        "ours (defaults)": lambda: GridKernelShap(probabilities).attribute(
            x, target=1, feature_mask=cells, n_samples=args.samples, seed=0
        ),
        "Captum KernelShap (perturbations_per_eval=1)": lambda: KernelShap(probabilities).attribute(
            x, target=1, feature_mask=cells.expand(1, 3, 224, 224), n_samples=args.samples + 2
        ),
        f"Captum KernelShap (perturbations_per_eval={args.captum_chunk})": lambda: KernelShap(
            probabilities
        ).attribute(
            x, target=1, feature_mask=cells.expand(1, 3, 224, 224), n_samples=args.samples + 2,
            perturbations_per_eval=args.captum_chunk,
        ),
    }  # fmt: skip
    with torch.no_grad():
        model(x)  # warm-up: thread pools, allocations
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    ours = statistics.median(seconds["ours (defaults)"])
    print(
        f"MobileNetV2 224x224, 7x7 grid, {args.samples} samples (+ the empty and full "
        f"coalitions), {args.threads} threads, {args.rounds} rounds\n"
    )
    print("| variant | median s | runs s | / ours |")
    print("|---|---|---|---|")
    for name, runs in seconds.items():
        median = statistics.median(runs)
        runs_text = ", ".join(f"{s:.2f}" for s in runs)
        print(f"| {name} | {median:.2f} | {runs_text} | {median / ours:.2f} |")


if __name__ == "__main__":
    main()
