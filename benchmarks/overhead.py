"""RISE overhead over the model itself, and peak memory against the number of masks.

Prints two figures (issue 3), then where RISE's time goes (issue 19):

1. time ratio: ``RISE.attribute`` wall time divided by the time of the bare
   forwards of the same N masked inputs (made beforehand, same batch size).
   Target: <= 1.05 on CPU.
2. memory ratio: peak memory of a RISE run with N=8000 masks divided by the
   peak with N=500, at 224x224 with a torchvision model (random weights). Each
   run is a fresh subprocess; on CPU the peak is the resident set high-water
   mark, on CUDA ``torch.cuda.max_memory_allocated``. Target: <= 1.1.
3. stages: each step of RISE's pipeline run alone over the same ``--n-stages``
   masks at the same chunk (``--stage-model``, ``--stage-dtype``,
   ``channels_last`` on CUDA): drawing the masks' numbers, rendering the
   masks, blending them into the photo, the bare forwards, and selecting and
   accumulating the scores; then ``RISE.attribute`` itself. What the stages
   outside the forwards add up to is the most the pipeline can cost over the
   model (on a GPU some of it overlaps the model's kernels).
4. our own work per mask (issue 32): RISE with a forward that costs nothing (a
   constant output), 224x224, N=``--n-free`` masks, in microseconds per mask:
   the defaults as a fresh process's first call (its chunk sizes measured) and
   second call, and a fixed chunk of 32. Target on 2 CPU cores: at most 150 us
   with the defaults. Only this figure: ``--free-only``.

Usage: ``python benchmarks/overhead.py [--device cpu|cuda] [--n-time 256] [--n-stages 8000]
[--free-only]``
"""

import argparse
import json
import time

import torch
import torchvision
from _common import peak_memory_bytes, run_child, synchronize

from captum_rise import RISE, SaliencyAccumulator
from captum_rise._forward import Blender, ModelScorer, blend
from captum_rise.masks import DEFAULT_MASK_SAMPLING, GridMaskSampler, ParamStream, make_generator


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


def stage_times(args: argparse.Namespace) -> dict[str, float]:
    """Seconds of each pipeline stage alone over ``args.n_stages`` masks, and of RISE."""
    device = torch.device(args.device)
    dtype = getattr(torch, args.stage_dtype)
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = _model(args.stage_model, args.device).to(dtype=dtype, memory_format=layout)
    x = torch.rand(1, 3, 224, 224, device=device, dtype=dtype).contiguous(memory_format=layout)
    n, batch = args.n_stages, args.stage_batch or (512 if device.type == "cuda" else 4)
    bounds = [(lo, min(lo + batch, n)) for lo in range(0, n, batch)]

    def probabilities(inp: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(inp), dim=1)

    sampler = GridMaskSampler([x.shape], 7, 0.5, device, dtype)
    blender = Blender((x,), (0.0,))

    def timed(work) -> float:
        with torch.no_grad():
            work()  # warm-up: new shapes, allocator
            synchronize(device)
            start = time.perf_counter()
            work()
            synchronize(device)
        return time.perf_counter() - start

    def stream() -> ParamStream:
        return ParamStream(sampler, make_generator(0), DEFAULT_MASK_SAMPLING)

    def draw() -> None:
        numbers = stream()
        for lo, hi in bounds:
            numbers.params(lo, hi)

    params = stream().params(0, n).clone()
    masks = sampler.render(params[:batch])  # one full chunk, reused by the later stages
    perturbed = blender(masks)
    with torch.no_grad():
        outputs = probabilities(perturbed[0])

    def render() -> None:
        for lo, hi in bounds:
            sampler.render(params[lo:hi])

    def blend_all() -> None:
        for lo, hi in bounds:
            blender(tuple(m[: hi - lo] for m in masks))

    def forward() -> None:
        for lo, hi in bounds:
            probabilities(perturbed[0][: hi - lo])

    def accumulate() -> None:
        scorer = ModelScorer(probabilities, 1, None, target=0)
        accumulator = SaliencyAccumulator(1, 1, sampler.mask_shapes, device)
        for lo, hi in bounds:
            scores = scorer.select(outputs[: hi - lo], hi - lo)
            accumulator.add(scores, tuple(m[: hi - lo] for m in masks))
        accumulator.saliency(0.5)

    def rise() -> None:
        RISE(probabilities).attribute(x, target=0, n_masks=n, seed=0)

    return {
        "draw numbers": timed(draw),
        "render masks": timed(render),
        "blend": timed(blend_all),
        "select + accumulate": timed(accumulate),
        "forwards (the limit)": timed(forward),
        "RISE.attribute (default chunk)": timed(rise),
    }


def free_forward_overhead(device: str, n_masks: int) -> dict[str, float]:
    """Microseconds per mask of RISE around a forward that costs nothing, 224x224."""
    x = torch.rand(1, 3, 224, 224, device=device)
    scores = torch.full((4096, 10), 0.1, device=device)

    def free(inputs: torch.Tensor) -> torch.Tensor:
        return scores[: inputs.shape[0]]

    def per_mask(chunk: int | None) -> float:
        synchronize(torch.device(device))
        start = time.perf_counter()
        RISE(free).attribute(x, target=0, n_masks=n_masks, seed=0, perturbations_per_eval=chunk)
        synchronize(torch.device(device))
        return (time.perf_counter() - start) / n_masks * 1e6

    return {
        "defaults, first call": per_mask(None),
        "defaults, second call": per_mask(None),
        "fixed chunk of 32": per_mask(32),
    }


def print_free_forward_overhead(device: str, n_masks: int) -> None:
    figures = free_forward_overhead(device, n_masks)
    print(f"\nour own work per mask: a forward that costs nothing, 224x224, N={n_masks}, {device}")
    print("| variant | us per mask | target |")
    print("|---|---|---|")
    for variant, micros in figures.items():
        target = "<= 150 (2 CPU cores)" if variant.startswith("defaults") else ""
        print(f"| {variant} | {micros:.0f} | {target} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-time", type=int, default=256, help="masks for the time ratio")
    parser.add_argument("--batch", type=int, default=None, help="perturbations_per_eval")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-stages", type=int, default=None, help="masks (8000 CUDA, 256 CPU)")
    parser.add_argument("--stage-model", default=None, help="resnet50 (CUDA), mobilenet_v2 (CPU)")
    parser.add_argument("--stage-dtype", default=None, help="bfloat16 (CUDA), float32 (CPU)")
    parser.add_argument("--stage-batch", type=int, default=None, help="masks per chunk")
    parser.add_argument("--n-free", type=int, default=2000, help="masks, free forward")
    parser.add_argument("--free-only", action="store_true", help="only the free-forward figure")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.free_only:
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
        print_free_forward_overhead(args.device, args.n_free)
        return
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
        f"({large / 2**20:.0f} MiB / {small / 2**20:.0f} MiB) | <= 1.1 |",
        flush=True,
    )
    on_cuda = args.device.startswith("cuda")
    args.n_stages = args.n_stages or (8000 if on_cuda else 256)
    args.stage_model = args.stage_model or ("resnet50" if on_cuda else "mobilenet_v2")
    args.stage_dtype = args.stage_dtype or ("bfloat16" if on_cuda else "float32")
    stages = stage_times(args)
    limit = stages["forwards (the limit)"]
    outside = sum(v for k, v in stages.items() if k != "forwards (the limit)" and "RISE" not in k)
    print(
        f"\nstages, {args.stage_model} {args.stage_dtype}, N={args.n_stages}, one 224x224 photo, "
        f"chunk {args.stage_batch or (512 if on_cuda else 4)}"
    )
    print("| stage | seconds | / forwards |")
    print("|---|---|---|")
    for stage, seconds in stages.items():
        print(f"| {stage} | {seconds:.3f} | {seconds / limit:.3f} |")
    print(f"| stages outside the forwards, summed | {outside:.3f} | {outside / limit:.3f} |")
    print_free_forward_overhead(args.device, args.n_free)


if __name__ == "__main__":
    main()
