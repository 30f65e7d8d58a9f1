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

Where the inputs sit (``--inputs``):

* ``device`` (default): the model and the inputs on ``--device``. Without a GPU
  (or with ``--stand-in``) the table is made in this process on
  :class:`captum_rise.testing.GPUShapedClassifier` (the H200's costs, fake
  clock; 32x32 inputs whose first chunk holds 512 of them, as 512 ImageNet
  images on a GPU).
* ``cpu``: the inputs stay on the CPU and the forward moves them to the GPU
  model, ``lambda x: model(x.to("cuda")).cpu()`` (Quantus and many data
  pipelines keep data on the CPU). The automatic chunk starts at one item, as
  for any CPU inputs, and must find large chunks from the calls' costs.
  Without a GPU: the ``gpu-shaped`` costs of
  :data:`captum_rise.testing.COST_SHAPES` (3.5 ms per call + 0.05 ms per item,
  0.5 s per new size) on a fake clock, or with ``--sleep`` slept in real time
  (each row a fresh process, RISE's own work included).

Usage: ``python benchmarks/first_call.py [--device cuda] [--inputs device|cpu] [--sleep]
[--model mobilenet_v2] [--n-masks 8000] [--sizes 250,500,512,1000] [--stand-in]``
"""

import argparse
import json
import sys
import time

import torch
import torchvision
from _common import run_child, synchronize

from captum_rise import RISE, HSICAttribution, deletion, insertion
from captum_rise.testing import (
    COST_SHAPES,
    FakeClock,
    GPUShapedClassifier,
    SleepingClock,
    simulate_accelerator,
)

COLUMNS = ("first", "second", "new function", "curves", "HSIC first")


def time_calls(
    model: torch.nn.Module, x: torch.Tensor, n_masks: int, size: int | None, clock
) -> dict:
    """Seconds of the calls of :data:`COLUMNS` on ``clock``, and the batch sizes met.
    ``x`` may sit on another device than ``model``: the forward moves it there."""
    sizes: set[int] = set()
    model.register_forward_pre_hook(lambda module, args: sizes.add(args[0].shape[0]))
    model_device = next(model.parameters()).device

    def logits(inputs: torch.Tensor) -> torch.Tensor:
        return model(inputs.to(model_device)).to(inputs.device)

    def probabilities(inputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits(inputs), dim=1)

    with torch.no_grad():
        target = int(logits(x).argmax())
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
            deletion(logits, x, saliency, target, batch_size=size),
            insertion(logits, x, saliency, target, batch_size=size),
        )
    )
    seconds["HSIC first"] = timed(
        lambda: HSICAttribution(probabilities).attribute(
            x, target=target, seed=0, perturbations_per_eval=size
        )
    )
    return {"seconds": seconds, "batch sizes": len(sizes)}


def child(args: argparse.Namespace, size: int | None) -> dict:
    """One row in a fresh process: a real model on ``--device``, or with ``--sleep``
    the ``gpu-shaped`` costs slept in real time (CPU inputs)."""
    if args.sleep:
        shape = COST_SHAPES["gpu-shaped"]
        x = torch.rand(1, 3, shape.image_size, shape.image_size)
        return time_calls(
            shape.model(SleepingClock(), 1000), x, args.n_masks, size, time.perf_counter
        )
    device = torch.device(args.device)
    model = torchvision.models.get_model(args.model, weights=None).eval().to(device)
    x = torch.rand(1, 3, 224, 224, device=device if args.inputs == "device" else "cpu")
    return time_calls(model, x, args.n_masks, size, time.perf_counter)


def stand_in_run(inputs: str, n_masks: int, size: int | None) -> dict:
    """One 'fresh process' on a stand-in with a GPU's costs: a new model and fake clock;
    ``inputs="device"`` sizes chunks as on an accelerator, ``"cpu"`` as for CPU inputs."""
    if inputs == "device":
        x = torch.rand(1, 3, 32, 32)
        clock = simulate_accelerator(x)
        return time_calls(GPUShapedClassifier(clock, n_classes=1000), x, n_masks, size, clock)
    from captum_rise import batching

    shape = COST_SHAPES["gpu-shaped"]
    x = torch.rand(1, 3, shape.image_size, shape.image_size)
    clock = FakeClock()
    batching.clock = clock
    return time_calls(shape.model(clock, 1000), x, n_masks, size, clock)


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
    parser.add_argument("--inputs", choices=("device", "cpu"), default="device")
    parser.add_argument("--sizes", default=None, help="fixed sizes compared (default: by variant)")
    parser.add_argument("--stand-in", action="store_true", help="a stand-in with a GPU's costs")
    parser.add_argument("--sleep", action="store_true", help="CPU inputs, GPU costs slept")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        size = None if args.child == "auto" else int(args.child)
        print(json.dumps(child(args, size)))
        return
    if args.sleep:
        args.inputs = "cpu"
    cpu_inputs = args.inputs == "cpu"
    default_sizes = ",".join(str(2**k) for k in range(4, 13)) if cpu_inputs else "250,500,512,1000"
    labels = ["auto", *(args.sizes or default_sizes).split(",")]
    stand_in = not args.sleep and (args.stand_in or not args.device.startswith("cuda"))
    results: dict[str, dict] = {}
    for label in labels:
        size = None if label == "auto" else int(label)
        if stand_in:
            results[label] = stand_in_run(args.inputs, args.n_masks, size)
        else:
            common = ["--device", args.device, "--model", args.model, "--inputs", args.inputs]
            common += ["--n-masks", str(args.n_masks), "--child", label]
            common += ["--sleep"] if args.sleep else []
            results[label] = run_child(__file__, common)
        print(f"{label}: {results[label]}", file=sys.stderr, flush=True)
    where = "CPU inputs" if cpu_inputs else "inputs on the device"
    if stand_in or args.sleep:
        clock = "slept in real time, each row a fresh process" if args.sleep else "fake clock"
        costs = "3.5 ms/call + 0.05 ms/item, 0.5 s/new size" if cpu_inputs else "the H200's"
        title = (
            f"GPU-shaped stand-in ({costs}; {clock}), {where}, N={args.n_masks}, "
            "one 32x32 image, each row a fresh model"
        )
    else:
        title = (
            f"{args.model}, {where}, N={args.n_masks}, one 224x224 image, "
            f"{torch.cuda.get_device_name()}, torch {torch.__version__}, each row a fresh process"
        )
    print_table(results, title)


if __name__ == "__main__":
    main()
