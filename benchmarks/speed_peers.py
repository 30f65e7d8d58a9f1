"""captum_rise's RISE, with its defaults, against the RISE implementations users would pick instead.

One model, one photo, one N, every variant in a fresh process (for its peak
memory), all in one run:

* ``captum_rise default``: ``RISE(probs).attribute(x, target=t, n_masks=N, seed=0)``;
* ``captum_rise fixed``: the same at the best fixed ``perturbations_per_eval``,
  found by a sweep over ``--sizes`` on ``--sweep-masks`` masks in the same run;
* ``limit``: bare forwards of the N masked images, made beforehand, at the
  batch size that the same kind of sweep finds fastest: no mask making, no sums;
* ``captum-rise 1.0`` (PyPI): one forward per mask from a Python loop;
* ``TorchRay rise`` (PyPI ``torchray``): masks on the device, batch 32 (its
  default), sigmoid of the logits, all classes;
* ``naive (official)``: the official algorithm, all N masks made up front
  with numpy and held in memory, batch 100 (the official default); timed on
  at most ``--naive-max-masks`` masks (its time grows linearly in N) and
  scaled to N, so that it cannot hold up the run;
* ``captum_rise default (channels_last)``: model and photo in ``channels_last``;
* on CUDA, ``captum_rise default (bf16, channels_last)`` and ``limit (bf16,
  channels_last)``: model and photo in bfloat16 and ``channels_last``, where
  the model is fastest and the time outside it shows most.

captum_rise's variants and the limits run first, in interleaved rounds, and
their table is printed; then each peer runs (at most ``--peer-timeout``
seconds) and its row is printed as soon as it is done.

The peers are installed on first use, with ``--no-deps``, into
``benchmarks/.peers`` (ignored by git), outside the environment's
site-packages. Defaults: MobileNetV2 with ImageNet weights and N=2000 on the
CPU; ResNet-50 with random weights and N=8000 on CUDA. The photo is Grace
Hopper's portrait from matplotlib; the target is the model's top class.

Targets (issues 9 and 19): on the CPU, default within 1.10x of the best fixed
size and of the limit; on CUDA, within 1.05x of the limit in float32 and 1.10x
in bfloat16 channels_last, at least 10x faster than captum-rise 1.0, memory
flat in N (see ``overhead.py``).

Usage: ``python benchmarks/speed_peers.py [--device cpu|cuda] [--n-masks N] [--model NAME]``
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torchvision
import torchvision.transforms.functional as TF
from _common import naive_rise, peak_memory_bytes, reset_peak_memory, run_child, synchronize

from captum_rise import RISE
from captum_rise._forward import blend
from captum_rise.imagenet import demo_image_path, load_classifier, load_image
from captum_rise.masks import GridMaskSampler, make_generator

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
PEER_PACKAGES = ["captum-rise==1.0", "torchray==1.0.0.2"]
TORCHRAY_BATCH = 32
OFFICIAL_BATCH = 100

VARIANTS = [
    "captum_rise default",
    "captum_rise fixed",
    "limit",
    "captum_rise default (channels_last)",
    "captum-rise 1.0",
    "TorchRay rise",
    "naive (official)",
]
BF16_VARIANTS = ["captum_rise default (bf16, channels_last)", "limit (bf16, channels_last)"]
"""Added on CUDA: bfloat16 convolutions are slow on a CPU."""


def install_peers() -> None:
    """Installs the PyPI peers into :data:`PEERS_DIR` unless they are there."""
    if (PEERS_DIR / "rise.py").exists() and (PEERS_DIR / "torchray").exists():
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(PEERS_DIR),
            *PEER_PACKAGES,
        ],
        check=True,
    )


def setting(
    device: str, model_name: str, channels_last: bool = False, dtype: torch.dtype = torch.float32
):
    """The model (logits), its softmax, the photo ``(1, 3, 224, 224)`` and the target."""
    if model_name == "mobilenet_v2":
        model = load_classifier("mobilenet_v2", "IMAGENET1K_V1", device).model
    else:  # random weights: only the speed matters
        model = torchvision.models.get_model(model_name, weights=None).eval().to(device)
    photo = TF.center_crop(TF.resize(load_image(demo_image_path()), 256), 224)
    x = TF.to_tensor(photo).unsqueeze(0).to(device)
    model, x = model.to(dtype), x.to(dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        target = int(model(x).argmax())

    def probabilities(inputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(inputs), dim=1)

    return model, probabilities, x, target


def masked_images(x: torch.Tensor, n_masks: int) -> torch.Tensor:
    """The N masked images of captum_rise's masks (seed 0), made beforehand."""
    sampler = GridMaskSampler([x.shape], 7, 0.5, x.device)
    return torch.cat(
        [blend((x,), (0.0,), m)[0] for m in sampler.chunks(n_masks, 256, make_generator(0))]
    )


def fastest(sizes: list[int], run) -> int:
    """The size whose ``run(size)`` (seconds per item, after a warm-up) is lowest."""
    timings = {}
    for size in sizes:
        run(size)  # warm-up at this shape
        timings[size] = min(run(size) for _ in range(2))
    return min(timings, key=timings.get)


def timed(device: torch.device, work) -> float:
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def child(variant: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    dtype = torch.bfloat16 if "bf16" in variant else torch.float32
    model, probabilities, x, target = setting(
        args.device, args.model, "channels_last" in variant, dtype
    )
    n, sizes = args.n_masks, [int(s) for s in args.sizes.split(",")]
    info: dict[str, object] = {}
    scale = 1.0  # the naive variant's time is scaled from fewer masks to N

    def rise(**kwargs):
        return lambda: RISE(probabilities).attribute(x, target=target, n_masks=n, seed=0, **kwargs)

    if variant.startswith("captum_rise default"):
        work = rise()
    elif variant == "captum_rise fixed":
        sweep = args.sweep_masks

        def per_mask(size):
            attribute = RISE(probabilities).attribute
            return (
                timed(
                    device,
                    lambda: attribute(
                        x, target=target, n_masks=sweep, perturbations_per_eval=size, seed=0
                    ),
                )
                / sweep
            )

        best = args.fixed_size or fastest([s for s in sizes if s <= sweep], per_mask)
        info["perturbations_per_eval"] = best
        work = rise(perturbations_per_eval=best)
    elif variant.startswith("limit"):
        images = masked_images(x, n)

        def per_image(size, count=None):
            def forwards():
                with torch.no_grad():
                    for lo in range(0, count or args.sweep_masks, size):
                        probabilities(images[lo : lo + size])[:, target]

            return timed(device, forwards) / (count or args.sweep_masks)

        best = args.limit_batch or fastest([s for s in sizes if s <= args.sweep_masks], per_image)
        info["batch"] = best

        def work():
            per_image(best, n)

    elif variant == "captum-rise 1.0":
        sys.path.insert(0, str(PEERS_DIR))
        from rise import RISE as PeerRISE  # PyPI captum-rise 1.0 installs a top-level ``rise``

        torch.manual_seed(0)

        def work():
            PeerRISE(probabilities).attribute(
                x, n_masks=n, initial_mask_shapes=((7, 7),), target=target
            )

    elif variant == "TorchRay rise":
        sys.path.insert(0, str(PEERS_DIR))
        from torchray.attribution.rise import rise as torchray_rise

        def work():
            torchray_rise(model, x, seed=0, num_masks=n, num_cells=7, batch_size=TORCHRAY_BATCH)

        info["batch"] = TORCHRAY_BATCH
    elif variant == "naive (official)":
        timed_masks = min(n, args.naive_max_masks)

        def work():
            naive_rise(model, x, target, timed_masks, OFFICIAL_BATCH, seed=0)

        info["batch"] = OFFICIAL_BATCH
        scale = n / timed_masks
        if timed_masks < n:
            info["batch"] = f"{OFFICIAL_BATCH} (timed on {timed_masks} masks, scaled to N)"
    else:
        raise ValueError(f"unknown variant {variant!r}")
    reset_peak_memory(args.device)
    seconds = timed(device, work) * scale
    return {
        "variant": variant,
        "seconds": seconds,
        "peak_bytes": peak_memory_bytes(args.device),
        **info,
    }


def print_row(variant: str, r: dict, ours: float | None) -> None:
    ratio = f"{r['seconds'] / ours:.2f}" if ours else "-"
    batch = r.get("perturbations_per_eval", r.get("batch", "auto" if "default" in variant else 1))
    print(
        f"| {variant} | {r['seconds']:.2f} | {ratio} | {r['peak_bytes'] / 2**20:.0f} | {batch} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--model", default=None, help="mobilenet_v2 (CPU default) or a torchvision name"
    )
    parser.add_argument(
        "--n-masks", type=int, default=None, help="N (default 2000 on CPU, 8000 on CUDA)"
    )
    parser.add_argument("--sizes", default=None, help="sizes swept for the best fixed batch")
    parser.add_argument("--sweep-masks", type=int, default=None, help="masks per sweep point")
    parser.add_argument("--variants", default=None, help="comma-separated subset")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of the captum_rise variants and the limit, interleaved",
    )
    parser.add_argument("--naive-max-masks", type=int, default=2000, help="see naive (official)")
    parser.add_argument("--peer-timeout", type=float, default=180, help="seconds per peer")
    parser.add_argument("--fixed-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--limit-batch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    on_cuda = args.device.startswith("cuda")
    args.model = args.model or ("resnet50" if on_cuda else "mobilenet_v2")
    args.n_masks = args.n_masks or (8000 if on_cuda else 2000)
    args.sizes = args.sizes or ("16,32,64,128,256,512" if on_cuda else "1,2,4,8,16,32")
    args.sweep_masks = args.sweep_masks or (1024 if on_cuda else 64)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return

    install_peers()
    common = ["--device", args.device, "--model", args.model, "--n-masks", str(args.n_masks)]
    common += ["--sizes", args.sizes, "--sweep-masks", str(args.sweep_masks)]
    common += ["--naive-max-masks", str(args.naive_max_masks)]
    chosen = (
        args.variants.split(",") if args.variants else VARIANTS + (BF16_VARIANTS if on_cuda else [])
    )
    repeated = [v for v in chosen if v.startswith(("captum_rise", "limit"))]
    results: dict[str, dict] = {}
    rounds: list[dict[str, float]] = []
    # The machine's speed drifts: the variants compared within 10% run interleaved,
    # round after round; each keeps its fastest round, and the ratios of runs next
    # to each other in time are printed too.
    for round_index in range(args.rounds):
        rounds.append({})
        for variant in repeated:
            extra = []
            if variant == "captum_rise fixed" and variant in results:
                extra = ["--fixed-size", str(results[variant]["perturbations_per_eval"])]
            if variant.startswith("limit") and variant in results:
                extra = ["--limit-batch", str(results[variant]["batch"])]
            run = run_child(__file__, ["--child", variant, *common, *extra])
            print(
                f"round {round_index + 1}, {variant}: {run['seconds']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            rounds[-1][variant] = run["seconds"]
            if variant not in results or run["seconds"] < results[variant]["seconds"]:
                results[variant] = run

    name = torch.cuda.get_device_name() if on_cuda else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"\n{args.model}, N={args.n_masks}, one 224x224 photo, {name}, torch {torch.__version__}; "
        f"captum_rise and limit: fastest of {args.rounds} interleaved rounds"
    )
    print("| implementation | seconds | / captum_rise default | peak memory MiB | batch |")
    print("|---|---|---|---|---|")
    ours = results.get("captum_rise default", {}).get("seconds")
    for variant in repeated:
        print_row(variant, results[variant], ours)
    pairs = [
        (f"captum_rise default{suffix}", f"limit{suffix}")
        for suffix in ("", " (bf16, channels_last)")
    ]
    pairs += [("captum_rise default", "captum_rise fixed")]
    for mine, other in pairs:
        if mine in results and other in results:
            ratio = results[mine]["seconds"] / results[other]["seconds"]
            paired = [r[mine] / r[other] for r in rounds if mine in r and other in r]
            print(
                f"{mine} / {other}: {ratio:.3f} (fastest runs); per round: "
                + ", ".join(f"{p:.3f}" for p in paired),
                flush=True,
            )
    for variant in chosen:
        if variant in repeated:
            continue
        try:
            results[variant] = run_child(
                __file__, ["--child", variant, *common], timeout=args.peer_timeout
            )
        except subprocess.TimeoutExpired:
            print(f"| {variant} | over {args.peer_timeout:.0f} s (stopped) | | | |", flush=True)
            continue
        print_row(variant, results[variant], ours)
    if ours and "captum-rise 1.0" in results:
        peer = results["captum-rise 1.0"]["seconds"]
        print(f"captum-rise 1.0 / captum_rise default: {peer / ours:.1f}")


if __name__ == "__main__":
    main()
