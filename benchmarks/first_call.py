"""What a user's first calls cost: RISE's automatic chunk against fixed chunks (issue 19).

On a GPU every batch size a model meets for the first time costs a one-off
plan (about 1.4 s on an H200), so the first call of a perturbation method
depends on how many sizes it makes the model meet. For every variant, a fresh
Python process loads the model, runs it once on the photo (batch 1, as a user
does to find the target), then times, one after the other:

* ``first``: ``RISE(probs).attribute(x, target=t, n_masks=N, seed=0)``, the
  first call in the process;
* ``second``: the same forward function, ``seed=1``;
* ``new function``: a new closure over the same model, ``seed=2`` (a dataset
  loop makes one per image);
* ``curves``: deletion and insertion of the map, after RISE;
* ``HSIC first``: ``HSICAttribution(probs).attribute(x, target=t)`` after all that.

It also counts the distinct batch sizes the model met. Variants: the default
(``perturbations_per_eval=None``) and fixed sizes (``--sizes``); the ratios
compare the default with the best fixed size of each column.

``--stand-in`` runs the same table without a GPU, in this process, on
:class:`captum_rise.testing.GPUShapedClassifier` (a model with a GPU's costs,
scaled from the H200 measurements, on a fake clock; 32x32 inputs whose first
chunk holds 512 of them, as 512 ImageNet images on a GPU). The CPU (and any
machine without CUDA) gets the stand-in by default.

Usage: ``python benchmarks/first_call.py [--device cuda] [--model mobilenet_v2] [--n-masks 8000]
[--sizes 250,500,512,1000] [--stand-in]``
"""

import argparse
import json
import sys
import time

import torch
import torchvision
from _common import run_child, synchronize

from captum_rise import RISE, HSICAttribution, deletion, insertion
from captum_rise.testing import GPUShapedClassifier, simulate_accelerator

COLUMNS = ("first", "second", "new function", "curves", "HSIC first")


def time_calls(model, x: torch.Tensor, n_masks: int, size: int | None, clock) -> dict:
    """Seconds of the calls of :data:`COLUMNS` on ``clock``, and the batch sizes met."""
    sizes: set[int] = set()
    model.register_forward_pre_hook(lambda module, args: sizes.add(args[0].shape[0]))

    def probabilities(inputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(inputs), dim=1)

    with torch.no_grad():
        target = int(model(x).argmax())
    kwargs = dict(target=target, n_masks=n_masks, perturbations_per_eval=size)

    def timed(work) -> float:
        synchronize(x.device)
        start = clock()
        work()
        synchronize(x.device)
        return clock() - start

    seconds = {}
    saliency = None

    def first() -> None:
        nonlocal saliency
        saliency = RISE(probabilities).attribute(x, seed=0, **kwargs)

    seconds["first"] = timed(first)
    seconds["second"] = timed(lambda: RISE(probabilities).attribute(x, seed=1, **kwargs))
    seconds["new function"] = timed(
        lambda: RISE(lambda inputs: probabilities(inputs)).attribute(x, seed=2, **kwargs)
    )
    seconds["curves"] = timed(
        lambda: (
            deletion(model, x, saliency, target, batch_size=size),
            insertion(model, x, saliency, target, batch_size=size),
        )
    )
    seconds["HSIC first"] = timed(
        lambda: HSICAttribution(probabilities).attribute(
            x, target=target, seed=0, perturbations_per_eval=size
        )
    )
    return {"seconds": seconds, "batch sizes": len(sizes)}


def cuda_child(args: argparse.Namespace, size: int | None) -> dict:
    device = torch.device(args.device)
    model = torchvision.models.get_model(args.model, weights=None).eval().to(device)
    x = torch.rand(1, 3, 224, 224, device=device)
    return time_calls(model, x, args.n_masks, size, time.perf_counter)


def stand_in_run(n_masks: int, size: int | None) -> dict:
    """One 'fresh process' on the GPU-shaped stand-in: a new model and fake clock."""
    x = torch.rand(1, 3, 32, 32)
    clock = simulate_accelerator(x)
    model = GPUShapedClassifier(clock, n_classes=1000)
    return time_calls(model, x, n_masks, size, clock)


def print_table(results: dict[str, dict], title: str) -> None:
    print(f"\n{title}")
    print("| perturbations_per_eval | " + " | ".join(f"{c} s" for c in COLUMNS) + " | sizes met |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for label, r in results.items():
        cells = " | ".join(f"{r['seconds'][c]:.2f}" for c in COLUMNS)
        print(f"| {label} | {cells} | {r['batch sizes']} |")
    default = results.get("auto")
    fixed = [r for label, r in results.items() if label != "auto"]
    if default and fixed:
        ratios = []
        for column in COLUMNS:
            best = min(r["seconds"][column] for r in fixed)
            ratios.append(f"{column} {default['seconds'][column] / best:.2f}")
        print("default / best fixed: " + ", ".join(ratios), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="mobilenet_v2", help="a torchvision model name")
    parser.add_argument("--n-masks", type=int, default=8000)
    parser.add_argument("--sizes", default="250,500,512,1000", help="fixed sizes compared")
    parser.add_argument("--stand-in", action="store_true", help="the GPU-shaped stand-in")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        size = None if args.child == "auto" else int(args.child)
        print(json.dumps(cuda_child(args, size)))
        return
    labels = ["auto", *args.sizes.split(",")]
    stand_in = args.stand_in or not args.device.startswith("cuda")
    results: dict[str, dict] = {}
    for label in labels:
        size = None if label == "auto" else int(label)
        if stand_in:
            results[label] = stand_in_run(args.n_masks, size)
        else:
            common = ["--device", args.device, "--model", args.model]
            common += ["--n-masks", str(args.n_masks), "--child", label]
            results[label] = run_child(__file__, common)
        print(f"{label}: {results[label]}", file=sys.stderr, flush=True)
    if stand_in:
        title = (
            f"GPU-shaped stand-in (fake clock), N={args.n_masks}, one 32x32 image, "
            "each row a fresh model"
        )
    else:
        title = (
            f"{args.model}, N={args.n_masks}, one 224x224 image, "
            f"{torch.cuda.get_device_name()}, torch {torch.__version__}, each row a fresh process"
        )
    print_table(results, title)


if __name__ == "__main__":
    main()
