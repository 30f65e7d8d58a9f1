"""RISE overhead over the model itself, and peak memory against the number of masks.

Prints two figures (issue 3):

1. time ratio: ``RISE.attribute`` wall time divided by the time of the bare
   forwards of the same N masked inputs (made beforehand, same batch size).
   Target: <= 1.05 on CPU.
2. memory ratio: peak memory of a RISE run with N=8000 masks divided by the
   peak with N=500, at 224x224 with a torchvision model (random weights). Each
   run is a fresh subprocess; on CPU the peak is the resident set high-water
   mark, on CUDA ``torch.cuda.max_memory_allocated``. Target: <= 1.1.

Usage: ``python benchmarks/overhead.py [--device cpu|cuda] [--n-time 256]``
"""

import argparse
import json
import time

import torch
import torchvision
from _common import peak_memory_bytes, run_child, synchronize

from captum_rise import RISE
from captum_rise._forward import blend
from captum_rise.masks import GridMaskSampler, make_generator


def _model(name: str, device: str) -> torch.nn.Module:
    model = getattr(torchvision.models, name)(weights=None).eval().to(device)
    return model


def time_ratio(device: str, n_masks: int, batch: int, repeats: int) -> dict:
    model = _model("mobilenet_v2", device)
    x = torch.rand(1, 3, 224, 224, device=device)
    sampler = GridMaskSampler([x.shape], 7, 0.5, torch.device(device))
    masked = [
        blend((x,), (0.0,), masks)[0]
        for masks in sampler.chunks(n_masks, batch, make_generator(0, torch.device(device)))
    ]
    rise = RISE(lambda inp: torch.softmax(model(inp), dim=1))
    with torch.no_grad():
        rise.attribute(x, target=0, n_masks=batch * 2, perturbations_per_eval=batch, seed=0)
    bare, full = [], []
    for _ in range(repeats):  # interleaved, so drifts hit both alike
        synchronize(torch.device(device))
        start = time.perf_counter()
        with torch.no_grad():
            for chunk in masked:
                torch.softmax(model(chunk), dim=1)[:, 0]
        synchronize(torch.device(device))
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        rise.attribute(x, target=0, n_masks=n_masks, perturbations_per_eval=batch, seed=0)
        synchronize(torch.device(device))
        full.append(time.perf_counter() - start)
    return {
        "n_masks": n_masks,
        "perturbations_per_eval": batch,
        "bare_forward_s": min(bare),
        "rise_s": min(full),
        "time_ratio": min(full) / min(bare),
    }


def peak_memory_child(device: str, n_masks: int, batch: int) -> None:
    model = _model("mobilenet_v3_small", device)
    x = torch.rand(1, 3, 224, 224, device=device)
    rise = RISE(lambda inp: torch.softmax(model(inp), dim=1))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rise.attribute(x, target=0, n_masks=n_masks, perturbations_per_eval=batch, seed=0)
    print(json.dumps({"n_masks": n_masks, "peak_bytes": peak_memory_bytes(device)}))


def peak_memory(device: str, n_masks: int, batch: int) -> int:
    arguments = ["--child", str(n_masks), "--device", device, "--batch", str(batch)]
    return run_child(__file__, arguments)["peak_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-time", type=int, default=256, help="masks for the time ratio")
    parser.add_argument("--batch", type=int, default=None, help="perturbations_per_eval")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch = args.batch or (4 if args.device == "cpu" else 64)
    if args.child is not None:
        peak_memory_child(args.device, args.child, batch)
        return

    timing = time_ratio(args.device, args.n_time, batch, args.repeats)
    small, large = peak_memory(args.device, 500, batch), peak_memory(args.device, 8000, batch)
    print(f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| figure | value | target |")
    print("|---|---|---|")
    print(
        f"| RISE / bare forward time (MobileNetV2, N={timing['n_masks']}, batch {batch}) "
        f"| {timing['time_ratio']:.3f} "
        f"({timing['rise_s']:.2f} s / {timing['bare_forward_s']:.2f} s) "
        f"| <= 1.05 |"
    )
    print(
        f"| peak memory N=8000 / N=500 (MobileNetV3-small, 224x224) | {large / small:.3f} "
        f"({large / 2**20:.0f} MiB / {small / 2**20:.0f} MiB) | <= 1.1 |"
    )


if __name__ == "__main__":
    main()
