"""captum_rise on deployed models: torch eager, ONNX Runtime and OpenVINO side by side, a model
server, and OpenVINO XAI's black-box methods at equal forwards.

Three sections, each printing its table (issue 32):

1. ``speed``: MobileNetV2 (ImageNet weights, softmax) on Grace Hopper's photo, RISE with N
   masks, each runtime in ``--processes`` fresh processes. A process is warmed up first
   (one forward of the model, and RISE on a small other model: library loading and thread
   pools, which whatever ran first would pay), then runs, in this order: the limit (bare
   forwards of the N masked images made beforehand, batches of 32; it runs first because
   freeing its 1.2 GB raises glibc's threshold for allocating with mmap, which makes every
   later variant about 4 % faster: fewer page faults), captum_rise's defaults (the model's
   first RISE call: it measures its chunk sizes), then fixed chunks of ``--sizes``, then
   the fastest of them once more. Printed per process: the ratios default / limit and
   default / best fixed chunk, the best fixed chunk's time taken as its second run (the
   minimum of several noisy runs is biased low: on this machine one variant's runs in
   one process differ by up to 8 %; the minimum of both runs is printed too); then their
   spread over the processes. OpenVINO runs as ``openvino`` (through
   :class:`~captum_rise.runtimes.OpenVINOForward`) and ``openvino-direct`` (the compiled
   model called on the masked images' numpy array), each with the current release or, as
   ``openvino2025`` and ``openvino2025-direct``, with 2025.3 from ``benchmarks/.peers``
   (installed on first use). Targets: OpenVINO
   and ONNX Runtime at most 1.15x the limit and 1.10x the best fixed chunk in every
   process; torch eager within 1.10x of the best fixed chunk.
2. ``server``: a model server on the loopback address (:class:`captum_rise.testing.
   ModelServer`: 20 ms a request, at most 8 images a request and 8 requests at a time;
   a small convnet on 64x64 images, so the latency dominates), RISE N=2000 one call at
   a time and with ``concurrent_calls=8``: seconds, speed-up (target >= 5x) and whether
   the maps are equal.
3. ``faithfulness``: OpenVINO XAI 1.1's AISE at its three presets and its RISE, against
   captum_rise's RISE at the same number of forwards, on the compiled MobileNetV2, over
   the shipped photos: deletion and insertion AUCs (scored by the same compiled model,
   one pixel row per step) and seconds per image. OpenVINO XAI imports
   ``openvino.runtime`` (gone in OpenVINO 2026), so this section runs in a process with
   OpenVINO 2025.3 and OpenVINO XAI installed with ``--no-deps`` into
   ``benchmarks/.peers/openvino-2025`` (done on first use).

Threads: torch 2, OpenVINO ``INFERENCE_NUM_THREADS`` 2, ONNX Runtime 2 intra-op threads
(``onnxruntime-nospin``: with ``session.intra_op.allow_spinning`` 0). Each run also prints our own
time outside the forward, per mask (the run's time less the time inside the forward).

Usage: ``python benchmarks/runtimes.py [speed|server|faithfulness ...] [--processes 5]
[--runtimes openvino,openvino-direct,...] [--n-masks 2000] [--torch-masks 1000]``
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import (
    bundled_photos,
    compile_openvino,
    convert_for_openvino,
    export_onnxruntime,
    run_child,
)

from captum_rise import RISE, deletion, insertion
from captum_rise._forward import blend
from captum_rise.imagenet import ImageClassifier, demo_image_path, load_classifier, load_image
from captum_rise.masks import GridMaskSampler, make_generator
from captum_rise.runtimes import OnnxRuntimeForward, OpenVINOForward
from captum_rise.testing import ModelServer, ServerForward

HERE = Path(__file__).resolve().parent
OPENVINO_2025 = HERE / ".peers" / "openvino-2025"
OPENVINO_2025_PACKAGES = ["openvino==2025.3.0", "openvino-telemetry", "openvino-xai==1.1.0"]
THREADS = 2
LIMIT_BATCH = 32
SECTIONS = ("speed", "server", "faithfulness")


def classifier_and_photo() -> tuple[ImageClassifier, torch.nn.Module, torch.Tensor]:
    """MobileNetV2 with its normalisation and a softmax, and the preprocessed demo photo."""
    classifier = load_classifier("mobilenet_v2")
    probabilities = torch.nn.Sequential(classifier.model, torch.nn.Softmax(dim=-1)).eval()
    return classifier, probabilities, classifier.preprocess(load_image(demo_image_path()))


def make_forward(runtime: str, model: torch.nn.Module):
    """The forward of ``runtime`` for ``model``: the module itself, an adapter, or (``-direct``)
    the compiled model called on the masked images' numpy array, as a user might write it."""
    if runtime == "torch":
        return model
    if runtime.startswith("openvino"):
        compiled = compile_openvino(convert_for_openvino(model), THREADS)
        if runtime.endswith("-direct"):
            return lambda pixels: torch.from_numpy(compiled(pixels.numpy())[0])
        return OpenVINOForward(compiled)
    spinning = not runtime.endswith("-nospin")
    return OnnxRuntimeForward(export_onnxruntime(model, THREADS, spinning))


class TimedForward:
    """``forward`` with the seconds spent inside it counted (``inside``), so that a run's
    time splits into the runtime's and ours. The sizer finds the model inside it."""

    def __init__(self, forward) -> None:
        self.forward, self.inside = forward, 0.0

    def __call__(self, *inputs):
        start = time.perf_counter()
        output = self.forward(*inputs)
        self.inside += time.perf_counter() - start
        return output


def speed_child(runtime: str, n_masks: int, sizes: list[int]) -> dict:
    """One fresh process: the defaults first, then the limit, then the fixed chunks."""
    torch.set_num_threads(THREADS)
    _, model, x = classifier_and_photo()
    with torch.no_grad():
        forward = make_forward(runtime, model)
        target = int(torch.as_tensor(forward(x)).argmax())
        warm_up = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten()).eval()
        RISE(warm_up).attribute(torch.rand(1, 3, 32, 32), target=0, n_masks=256, seed=0)

        outside = {}

        def rise(chunk: int | None) -> float:
            timed = TimedForward(forward)
            start = time.perf_counter()
            RISE(timed).attribute(
                x, target=target, n_masks=n_masks, seed=0, perturbations_per_eval=chunk
            )
            seconds = time.perf_counter() - start
            outside[chunk] = (seconds - timed.inside) / n_masks * 1000
            return seconds

        sampler = GridMaskSampler([x.shape], 7, 0.5, torch.device("cpu"))
        chunks = sampler.chunks(n_masks, LIMIT_BATCH, make_generator(0))
        masked = [blend((x,), (0.0,), m)[0] for m in chunks]
        start = time.perf_counter()
        for chunk in masked:
            forward(chunk)
        limit = time.perf_counter() - start
        del masked
        default = rise(None)
        fixed = {size: rise(size) for size in sizes}
        best = min(fixed, key=fixed.__getitem__)
        again = rise(best)
    version = runtime_version(runtime)
    return {
        "default": default, "limit": limit, "fixed": fixed, "best": best, "best_again": again,
        "version": version, "outside_ms": outside[None], "outside_best_ms": outside[best],
    }  # fmt: skip


def runtime_version(runtime: str) -> str:
    """The version of the package that runs ``runtime``'s forwards in this process."""
    import importlib

    package = "openvino" if runtime.startswith("openvino") else runtime.split("-")[0]
    return importlib.import_module(package).__version__.split("-")[0]


def child_environment(runtime: str) -> dict[str, str] | None:
    """The environment of a child for ``runtime``: OpenVINO 2025.3 from the peers folder for
    ``openvino2025`` and ``openvino2025-direct``, else this one (``None``)."""
    if not runtime.startswith("openvino2025"):
        return None
    install_openvino_2025()
    return {**os.environ, "PYTHONPATH": str(OPENVINO_2025)}


def speed(args: argparse.Namespace) -> None:
    print(f"\n## speed: RISE on MobileNetV2, {THREADS} threads, fresh processes\n", flush=True)
    print("| runtime | N | process | default s | limit s | best fixed (size): sweep, again s "
          "| default / limit | default / best fixed (again; min of both) "
          "| ours outside the forward, ms a mask: default, best fixed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for runtime in args.runtimes:
        n = args.torch_masks if runtime == "torch" else args.n_masks
        to_limit, to_fixed = [], []
        for process in range(1, args.processes + 1):
            arguments = ["--child", "speed", "--runtime", runtime, "--n-masks", str(n)]
            arguments += ["--sizes", ",".join(map(str, args.sizes))]
            result = run_child(__file__, arguments, env=child_environment(runtime))
            best_size = result["best"]
            swept, again = result["fixed"][str(best_size)], result["best_again"]
            to_limit.append(result["default"] / result["limit"])
            to_fixed.append(result["default"] / again)
            print(
                f"| {runtime} {result['version']} | {n} | {process} | {result['default']:.2f} "
                f"| {result['limit']:.2f} "
                f"| ({best_size}): {swept:.2f}, {again:.2f} | {to_limit[-1]:.3f} "
                f"| {to_fixed[-1]:.3f}; {result['default'] / min(swept, again):.3f} "
                f"| {result['outside_ms']:.3f}, {result['outside_best_ms']:.3f} |",
                flush=True,
            )
        print(
            f"| {runtime} | {n} | spread | | | | {min(to_limit):.3f} to {max(to_limit):.3f} "
            f"(median {statistics.median(to_limit):.3f}) | {min(to_fixed):.3f} to "
            f"{max(to_fixed):.3f} (median {statistics.median(to_fixed):.3f}) | |",
            flush=True,
        )


def server(args: argparse.Namespace) -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(128, 10),
        torch.nn.Softmax(dim=-1),
    ).eval()
    x = torch.rand(1, 3, 64, 64)
    host = ModelServer(model, latency=0.02, max_batch=8, max_requests=8).start()
    try:
        forward = ServerForward(host.url, max_batch_size=8)
        maps, seconds = {}, {}
        for calls in (1, 8):
            start = time.perf_counter()
            maps[calls] = RISE(forward).attribute(
                x, target=3, n_masks=args.n_masks, seed=0, perturbations_per_eval=8,
                concurrent_calls=calls,
            )  # fmt: skip
            seconds[calls] = time.perf_counter() - start
    finally:
        host.stop()
    print("\n## server: 20 ms a request, <= 8 images a request, <= 8 requests at a time\n")
    print("| N | one call at a time s | concurrent_calls=8 s | speed-up | maps equal |")
    print("|---|---|---|---|---|")
    print(
        f"| {args.n_masks} | {seconds[1]:.2f} | {seconds[8]:.2f} | {seconds[1] / seconds[8]:.1f}x "
        f"| {bool(torch.equal(maps[1], maps[8]))} |",
        flush=True,
    )


def install_openvino_2025() -> None:
    if not (OPENVINO_2025 / "openvino_xai").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(OPENVINO_2025), *OPENVINO_2025_PACKAGES],
            check=True,
        )  # fmt: skip


def faithfulness(args: argparse.Namespace) -> None:
    install_openvino_2025()
    environment = {**os.environ, "PYTHONPATH": str(OPENVINO_2025)}
    child = subprocess.run(
        [sys.executable, __file__, "--child", "faithfulness", "--photos", str(args.photos)],
        capture_output=True,
        text=True,
        env=environment,
    )
    if child.returncode:
        raise RuntimeError(f"the faithfulness process failed:\n{child.stderr[-3000:]}")
    out = child.stdout
    result = json.loads(out.strip().splitlines()[-1])
    print(f"\n## faithfulness at equal forwards: OpenVINO {result['openvino']}, "
          f"{len(result['photos'])} photos ({', '.join(result['photos'])})\n")  # fmt: skip
    print("| preset | forwards | method | deletion AUC (lower is better) | insertion AUC "
          "(higher is better) | s / image |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for row in result["rows"]:
        print(
            f"| {row['preset']} | {row['forwards']:.0f} | {row['method']} | "
            f"{row['deletion']:.4f} | {row['insertion']:.4f} | {row['seconds']:.2f} |"
        )


def faithfulness_child(n_photos: int) -> dict:
    import openvino as ov
    from openvino_xai.methods.black_box.aise.classification import AISEClassification
    from openvino_xai.methods.black_box.base import Preset
    from openvino_xai.methods.black_box.rise import RISE as OpenVINOXAIRISE

    torch.set_num_threads(THREADS)
    classifier, model, _ = classifier_and_photo()
    converted = convert_for_openvino(model)
    forward = OpenVINOForward(compile_openvino(converted, THREADS))
    counted = {"images": 0}

    def postprocess(output) -> np.ndarray:
        scores = output[0]
        counted["images"] += scores.shape[0]
        return scores

    aise = AISEClassification(converted, postprocess_fn=postprocess)
    ov_rise = OpenVINOXAIRISE(converted, postprocess_fn=postprocess)
    photos = dict(list(bundled_photos().items())[:n_photos])
    rows: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {}
    for photo in photos.values():
        x = classifier.preprocess(photo)
        target = int(forward(x).argmax())
        for preset in (Preset.SPEED, Preset.BALANCE, Preset.QUALITY):
            counted["images"], start = 0, time.perf_counter()
            aise_map = aise.generate_saliency_map(
                x.numpy(), target_indices=[target], preset=preset, scale_output=False
            )[target]
            seconds, forwards = time.perf_counter() - start, counted["images"]
            maps = {"OpenVINO XAI AISE": (torch.as_tensor(aise_map), seconds)}
            start = time.perf_counter()
            ov_map = ov_rise.generate_saliency_map(
                x.numpy(), target_indices=[target], num_masks=forwards, scale_output=False
            )
            ov_map = ov_map[target] if isinstance(ov_map, dict) else ov_map[0, target]
            maps["OpenVINO XAI RISE"] = (torch.as_tensor(ov_map), time.perf_counter() - start)
            start = time.perf_counter()
            ours = RISE(forward).attribute(x, target=target, n_masks=forwards, seed=0)
            maps["captum_rise RISE"] = (ours[0, 0], time.perf_counter() - start)
            for method, (saliency, seconds) in maps.items():
                saliency = saliency.float().reshape(1, 1, 224, 224)
                scores = (
                    float(deletion(forward, x, saliency, target).auc),
                    float(insertion(forward, x, saliency, target).auc),
                )
                rows.setdefault((preset.name, method), []).append((*scores, seconds, forwards))
    return {
        "openvino": ov.__version__,
        "photos": list(photos),
        "rows": [
            {
                "preset": preset,
                "method": method,
                "forwards": statistics.mean(v[3] for v in values),
                "deletion": statistics.mean(v[0] for v in values),
                "insertion": statistics.mean(v[1] for v in values),
                "seconds": statistics.mean(v[2] for v in values),
            }
            for (preset, method), values in rows.items()
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("sections", nargs="*", help=f"some of {', '.join(SECTIONS)} (all)")
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument(
        "--runtimes",
        default="openvino,openvino-direct,openvino2025,openvino2025-direct,onnxruntime,torch",
        help="openvino[2025][-direct]: the current OpenVINO or 2025.3, through OpenVINOForward "
        "or the compiled model called directly; onnxruntime[-nospin]: a session whose threads "
        "spin between calls (its default) or not; torch",
    )
    parser.add_argument("--n-masks", type=int, default=2000)
    parser.add_argument("--torch-masks", type=int, default=1000, help="N for torch eager")
    parser.add_argument("--sizes", default="4,8,16,32", help="fixed chunks to compare")
    parser.add_argument("--photos", type=int, default=4, help="photos for faithfulness")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--runtime", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sections = args.sections or list(SECTIONS)
    if set(args.sections) - set(SECTIONS):
        parser.error(f"sections are some of {', '.join(SECTIONS)}")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.runtimes = args.runtimes.split(",")
    if args.child == "speed":
        print(json.dumps(speed_child(args.runtime, args.n_masks, args.sizes)))
        return
    if args.child == "faithfulness":
        print(json.dumps(faithfulness_child(args.photos)))
        return
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {THREADS} threads")
    for section in args.sections:
        {"speed": speed, "server": server, "faithfulness": faithfulness}[section](args)


if __name__ == "__main__":
    main()
