"""Did INT8 quantization change what MobileNetV2 looks at? (issue 39)

MobileNetV2 (pixels in [0, 1], its normalisation inside) is exported to ONNX and quantized to
INT8 by ONNX Runtime's post-training static quantization (its pre-processing first, then QDQ,
weights per channel, MinMax calibration; weights on 7 bits, ``reduce_range``, as ONNX Runtime
advises for x86 processors without VNNI, where 8-bit products can saturate),
calibrated on the first ``--calibration`` photos of ``--data`` (default
``../shared/data/imagenet-sample-100``, read its README: the photos are never copied into the
project). The other photos are explained for their true class by RISE (``--n-masks``) with
``captum-rise evaluate --model FILE.onnx``, three times:

- ``float``: the float model, seed 0;
- ``float-seed-1``: the float model, seed 1: the control, whose drift is the noise floor
  (other masks, the same model);
- ``int8``: the INT8 model, seed 0 (the same masks as ``float``);
- ``int8-full-range``: the INT8 model quantized without ``reduce_range`` (on this project's
  AVX2 host its accuracy falls: the drift of a damaged quantization), seed 0.

Then ``captum-rise compare`` three times (float against each INT8 model, and against
float-seed-1), each with
its report, and the table: accuracy on the explained photos, top-1 agreement, map agreement,
AUC changes and seconds per image, for the quantized model and for the control.

Usage: ``python benchmarks/int8_drift.py [--data DIR] [--out DIR] [--calibration 60]
[--n-masks 2000]``; a rerun resumes the runs.
"""

import argparse
import csv
import multiprocessing
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imagenet_models  # this folder's
import numpy as np
import torch
from imagenet_sample import DEFAULT_DATA, labelled_photos, link_image_folder, read_labels

from captum_rise.evaluation.drift import compare_runs, write_comparison
from captum_rise.evaluation.drift_report import write_comparison_report
from captum_rise.evaluation.results import read_rows

ROOT = Path(__file__).resolve().parent.parent
RUNS = {  # run: (model, seed)
    "float": ("float", 0),
    "float-seed-1": ("float", 1),
    "int8": ("int8", 0),
    "int8-full-range": ("int8-full-range", 0),
}
COMPARISONS = {
    "int8": ("float", "int8"),
    "int8-full-range": ("float", "int8-full-range"),
    "control": ("float", "float-seed-1"),
}


def export_models(out: Path, data: Path, calibration: int) -> dict[str, Path]:
    """``out/mobilenet_v2.onnx`` and its INT8 versions ``mobilenet_v2_int8.onnx`` (weights on
    7 bits) and ``mobilenet_v2_int8_full_range.onnx``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    paths = {
        "float": out / "mobilenet_v2.onnx",
        "int8": out / "mobilenet_v2_int8.onnx",
        "int8-full-range": out / "mobilenet_v2_int8_full_range.onnx",
    }
    if not paths["float"].exists():
        module = imagenet_models.mobilenet_v2_module()
        torch.onnx.export(
            module, (torch.rand(1, 3, 224, 224),), str(paths["float"]), dynamo=False,
            input_names=["pixels"], dynamic_axes={"pixels": {0: "batch"}}, opset_version=17,
        )  # fmt: skip

    class Photos(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.photos = ({"pixels": x.numpy()} for _, x, _ in labelled_photos(data, calibration))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.photos, None)

    prepared = out / "mobilenet_v2_prepared.onnx"  # shapes inferred, graph optimised
    if not prepared.exists():
        quant_pre_process(str(paths["float"]), str(prepared))
    for name, reduce_range in (("int8", True), ("int8-full-range", False)):
        if not paths[name].exists():
            quantize_static(
                str(prepared), str(paths[name]), Photos(), quant_format=QuantFormat.QDQ,
                per_channel=True, reduce_range=reduce_range, weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
            )  # fmt: skip
    return paths


def evaluate(model: Path, seed: int, folder: Path, out: Path, n_masks: int) -> None:
    command = [
        sys.executable, "-m", "captum_rise", "evaluate", str(folder / "images"), "--out",
        str(out), "--model", str(model), "--methods", "rise", "--n-masks", str(n_masks),
        "--class-map", str(folder / "classes.json"), "--seed", str(seed), "--device", "cpu",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"{out.name}: {time.perf_counter() - start:.0f} s", flush=True)


def accuracy(rows: dict, labels: dict[str, str]) -> float:
    """The share of the run's photos whose predicted class is their label."""
    return statistics.mean(
        row["predicted"] == labels[Path(image).name] for (image, _), row in rows.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "int8-drift")
    parser.add_argument("--calibration", type=int, default=60, help="photos to calibrate on")
    parser.add_argument("--n-masks", type=int, default=2000)
    args = parser.parse_args()
    labels = read_labels(args.data)
    if not 0 < args.calibration < len(labels):
        parser.error(f"--calibration must be in [1, {len(labels) - 1}]")
    args.out.mkdir(parents=True, exist_ok=True)
    # in a child process: the threads quantization leaves behind in this one took the CPU
    # from the runs (measured: RISE 3 times slower)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        models = child.submit(export_models, args.out, args.data, args.calibration).result()
    explained = [label["file"] for label in labels[args.calibration :]]
    folder = args.out / "data"
    link_image_folder(args.data, folder, explained)
    for run, (model, seed) in RUNS.items():
        evaluate(models[model], seed, folder, args.out / run, args.n_masks)
    truth = {label["file"]: label["class_index"] for label in labels}
    rows = {run: read_rows(args.out / run) for run in RUNS}
    print(f"\nMobileNetV2, float and INT8 (ONNX Runtime), {len(explained)} photos, RISE "
          f"N={args.n_masks}; calibrated on {args.calibration} other photos\n")  # fmt: skip
    print("| run | accuracy | s / image (RISE) |\n|---|---|---|")
    for run in RUNS:
        seconds = statistics.mean(float(row["seconds"]) for row in rows[run].values())
        print(f"| {run} | {accuracy(rows[run], truth):.3f} | {seconds:.2f} |")
    print()
    for name, (a, b) in COMPARISONS.items():
        comparison = compare_runs(args.out / a, args.out / b)
        text = write_comparison(comparison, args.out / f"compare-{name}").read_text()
        write_comparison_report(comparison, args.out / f"compare-{name}")
        print(f"## {a} against {b}\n")
        print(text.split("\n", 2)[2])
    with open(args.out / "compare-int8" / "comparison.csv", newline="") as file:  # 7-bit weights
        worst = sorted(csv.DictReader(file), key=lambda r: float(r["spearman"]))[:5]
    print("Maps that changed most under INT8: " + ", ".join(
        f"{Path(r['image']).name} ({float(r['spearman']):.3f})" for r in worst))  # fmt: skip


if __name__ == "__main__":
    main()
