"""The RISE paper's table on 100 labelled ImageNet photos (issue 38).

Every photo of ``--data`` (default ``../shared/data/imagenet-sample-100``: one photo for every
tenth ImageNet class, its true class in ``labels.csv``; read its README, the photos are never
copied into the project) is explained for its **true class** by each method and scored with the
paper's protocol: 224x224 centre crop (shorter side resized to 256 first), deletion to black and
insertion from a blur, one pixel row a step, AUCs of the softmax probability.

Each model runs ``captum-rise evaluate`` three times, with a report each, under
``--out/<model>/``:

- ``black-box``: RISE (4,000 masks), HSIC (1,536 designs), Sobol' attribution (its defaults),
  Occlusion and KernelShap on superpixels, on the model exported to ONNX Runtime
  (``--runtime openvino`` runs them on the model compiled by OpenVINO, ``--runtime torch`` on
  the torch module);
- ``rise-2000``: RISE with 2,000 masks, on the same runtime;
- ``white-box``: Grad-CAM, Integrated Gradients and extremal perturbation, on the torch module
  (``channels_last``).

The photos are linked into an ImageFolder (one folder per class index) with a class map, so
the runs explain the true class. Then the table: per model and method, the mean deletion and
insertion AUCs with 95 % bootstrap intervals and seconds of attribution per image; before it,
the model's top-1 accuracy on the photos; after it, each method's AUCs less RISE (4,000)'s,
paired over the photos (95 % bootstrap intervals of the differences). The pointing game does
not apply: there are no boxes.

``--check-runtime K`` also compares RISE's maps (N=500) on the torch module and on the
runtime for K photos: the largest difference relative to the map's range and the
Spearman correlation of the maps, so that the runtime's maps can stand for the model's.

``--device cuda`` runs every method on the torch module on the GPU, and ``--processes K`` runs
each ``captum-rise evaluate`` as K processes under torchrun that share the photos (on one GPU
too: they keep a small model's GPU busy).

Usage: ``python benchmarks/imagenet_sample.py [--data DIR] [--out DIR] [--models
mobilenet_v2,efficientnet_lite0] [--n-images K] [--runtime onnxruntime|openvino|torch]
[--check-runtime 3] [--device cpu|cuda] [--processes K]``.
A rerun resumes every run (``captum-rise evaluate`` resumes its folder). ``--table-only``
prints the table of the rows kept in the project (``--kept``) and runs nothing; with
``--compare DIR``, also the kept AUCs less those of DIR on the same photos (rows of another
machine: ``benchmarks/measured/imagenet-sample-h200`` holds both models' rows from an H200).

The table takes longer than a working session on a 2-core host (about 4 minutes a photo for
MobileNetV2 here), so its rows are kept in the project: after each run, its ``results.csv``
and ``run.json`` (numbers only: the AUCs, curves and seconds of each photo and method; never
the photos or their maps) are copied to ``--kept/<model>/<run>/``, and a run folder that has no
results yet starts from them. After an interrupted run, ``--keep-only`` merges and copies what
it finished. The reports of a run so resumed show the photos and maps of its own session only.
"""

import argparse
import contextlib
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import imagenet_models  # this folder's: the script's own directory is on sys.path
import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr

from captum_rise import RISE
from captum_rise.evaluation.results import (
    CONFIG_FILE,
    RESULTS_FILE,
    is_success,
    merge_parts,
    read_rows,
)
from captum_rise.evaluation.summary import bootstrap_interval, summarise
from captum_rise.imagenet import resize_and_crop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "imagenet-sample-100"
DEFAULT_KEPT = HERE / "measured" / "imagenet-sample"
MODELS = ("mobilenet_v2", "efficientnet_lite0")
RUNS = {  # run folder: (methods, extra options, black box)
    "black-box": ("rise,hsic,sobol,occlusion,kernelshap", ["--n-masks", "4000"], True),
    "rise-2000": ("rise", ["--n-masks", "2000"], True),
    "white-box": ("gradcam,ig,extremal_perturbation", [], False),
}
CLASS_MAP = "classes.json"
PAPER = {  # the RISE paper, Table 1: ResNet-50 on ImageNet, each photo's top class
    "rise": (0.1076, 0.7267),
    "gradcam": (0.1232, 0.6766),
}


def read_labels(data: Path) -> list[dict[str, str]]:
    """The rows of ``data/labels.csv`` (``file``, ``wnid``, ``class_index``, ``name``)."""
    with open(data / "labels.csv", newline="") as file:
        labels = list(csv.DictReader(file))
    if not labels:
        raise ValueError(f"--data {data}: labels.csv lists no photos")
    return labels


def link_image_folder(data: Path, folder: Path, files: list[str] | None = None) -> None:
    """``folder/images/<class index>/<photo>`` links to ``data``'s photos (those named in
    ``files``, or all), and the class map ``folder/``:data:`CLASS_MAP` (``{"<class index>":
    class index}``) that makes each photo's true class its target."""
    classes = {}
    for label in read_labels(data):
        if files is not None and label["file"] not in files:
            continue
        photo = data / label["file"]
        if not photo.is_file():
            raise ValueError(f"--data {data}: {label['file']} is in labels.csv but not there")
        target = folder / "images" / label["class_index"] / label["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # linked before, or by a run beside this
            target.symlink_to(photo.resolve())
        classes[label["class_index"]] = int(label["class_index"])
    written = folder / f"{CLASS_MAP}.{os.getpid()}"
    written.write_text(json.dumps(classes))
    written.replace(folder / CLASS_MAP)  # atomic: runs started side by side read it whole


def restore(out: Path, kept: Path) -> None:
    """Starts the run folder ``out`` from the rows kept in ``kept``, unless it has results."""
    if (kept / RESULTS_FILE).exists() and not (out / RESULTS_FILE).exists():
        out.mkdir(parents=True, exist_ok=True)
        for name in (RESULTS_FILE, CONFIG_FILE):
            shutil.copyfile(kept / name, out / name)


def keep(out: Path, kept: Path) -> None:
    """Merges the run folder ``out``'s rows (an interrupted run leaves part files) and copies
    its ``results.csv`` and ``run.json`` to ``kept``."""
    if not (out / CONFIG_FILE).exists():
        return
    merge_parts(out)
    kept.mkdir(parents=True, exist_ok=True)
    for name in (RESULTS_FILE, CONFIG_FILE):
        shutil.copyfile(out / name, kept / name)
    print(f"kept {len(read_rows(out))} rows of {out} in {kept}", flush=True)


def evaluate(model: str, runtime: str, run: str, folder: Path, args: argparse.Namespace) -> Path:
    """One ``captum-rise evaluate`` run of :data:`RUNS`, started from the kept rows and kept
    after; returns its results folder."""
    methods, options, black_box = RUNS[run]
    factory = f"imagenet_models:{model}" + (
        f"_{runtime}" if black_box and runtime != "torch" else ""
    )
    out = args.out / model / run
    restore(out, args.kept / model / run)
    launch = [sys.executable, "-m"]
    if args.processes > 1:  # the runner shares the photos among them (gloo, any device)
        launch += ["torch.distributed.run", "--standalone",
                   f"--nproc-per-node={args.processes}", "-m"]  # fmt: skip
    command = [
        *launch, "captum_rise", "evaluate", str(folder / "images"),
        "--out", str(out), "--model", factory, "--methods", methods,
        "--class-map", str(folder / CLASS_MAP), "--seed", "0", "--device", args.device,
        *options,
    ]  # fmt: skip
    if args.n_images:
        command += ["--n-images", str(args.n_images)]
    paths = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=environment)
    keep(out, args.kept / model / run)
    print(
        f"{model} {run}: {time.perf_counter() - start:.0f} s, report {out}/report/index.html",
        flush=True,
    )
    return out


def labelled_photos(
    data: Path, n_photos: int | None = None
) -> Iterator[tuple[str, torch.Tensor, int]]:
    """``(file, (1, 3, 224, 224) pixels in [0, 1], true class)`` of the first ``n_photos``."""
    for label in read_labels(data)[:n_photos]:
        with Image.open(data / label["file"]) as photo:
            yield label["file"], resize_and_crop(photo, 256, 224), int(label["class_index"])


def check_model(model: str, runtime: str, data: Path, n_photos: int | None, n_checked: int) -> None:
    """The torch module's top-1 accuracy on the photos; then RISE's maps (N=500) on the torch
    module and on ``runtime`` (``onnxruntime`` or ``openvino``) for ``n_checked`` of them."""
    module = getattr(imagenet_models, f"{model}_module")()
    with torch.no_grad():
        hits = [
            int(module(x).argmax()) == target for _, x, target in labelled_photos(data, n_photos)
        ]
    print(f"\n{model}: top-1 accuracy on the {len(hits)} photos {statistics.mean(hits):.2f} "
          "(they may be training images: this is no measure of the model)")  # fmt: skip
    if not n_checked:
        return
    converted = {"onnxruntime": imagenet_models.exported, "openvino": imagenet_models.compiled}
    black_box = converted[runtime](module)
    forwards = {
        "torch": lambda x: torch.softmax(module(x), dim=1),
        runtime: lambda x: torch.softmax(torch.as_tensor(black_box(x)), dim=1),
    }
    print(f"RISE (N=500) on the torch module against {runtime}, {n_checked} photos")
    print("| photo | max difference / map range | Spearman |\n|---|---|---|")
    for name, x, target in labelled_photos(data, n_checked):
        with torch.no_grad():
            maps = [
                RISE(f).attribute(x, target=target, n_masks=500, seed=0)[0, 0].numpy()
                for f in forwards.values()
            ]
        difference = np.abs(maps[0] - maps[1]).max() / (maps[0].max() - maps[0].min())
        rho = spearmanr(maps[0].ravel(), maps[1].ravel()).statistic
        print(f"| {name} | {difference:.1e} | {rho:.6f} |", flush=True)


def table(model: str, outs: dict[str, Path]) -> None:
    """Per run and method: the means and 95 % bootstrap intervals of ``summary.md``; before
    them, the model's top-1 accuracy on the photos of the first run (from its rows)."""
    print(f"\n## {model}\n")
    if outs:
        rows = read_rows(next(iter(outs.values()))).values()
        hits = {row["image"]: row["predicted"] == row["target"] for row in rows}
        print(f"{len(hits)} photos, the true class on top for {sum(hits.values())}\n")
    print("| method | images | deletion AUC (95 % CI) ↓ | insertion AUC (95 % CI) ↑ | s / image |")
    print("|---|---|---|---|---|")
    for run, out in outs.items():
        for summary in summarise(list(read_rows(out).values())):
            cells = [f"{mean:.4f} ({low:.4f} to {high:.4f})" for mean, low, high in
                     (summary.deletion, summary.insertion)]  # fmt: skip
            name = summary.method
            if name == "rise":
                name = {"black-box": "rise (4000)", "rise-2000": "rise (2000)"}.get(run, name)
            print(f"| {name} | {summary.n_images} | {cells[0]} | {cells[1]} "
                  f"| {summary.seconds_per_image:.1f} |", flush=True)  # fmt: skip


def read_aucs(outs: dict[str, Path]) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """``{(run, method): {photo: (deletion AUC, insertion AUC)}}`` of the runs' successful rows."""
    aucs: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for run, out in outs.items():
        for (image, method), row in read_rows(out).items():
            if is_success(row):
                auc = (float(row["deletion_auc"]), float(row["insertion_auc"]))
                aucs.setdefault((run, method), {})[image] = auc
    return aucs


def differences(
    aucs: dict[str, tuple[float, float]], base: dict[str, tuple[float, float]], images: list[str]
) -> list[tuple[float, float, float, float]]:
    """Deletion, then insertion: ``(mean, low, high, largest)`` of ``aucs`` less ``base`` over
    ``images`` (95 % bootstrap interval; the largest difference on one photo, signed)."""
    summaries = []
    for k in (0, 1):
        each = [aucs[i][k] - base[i][k] for i in images]
        summaries.append((statistics.mean(each), *bootstrap_interval(each), max(each, key=abs)))
    return summaries


def compare(model: str, outs: dict[str, Path], others: dict[str, Path]) -> None:
    """Per run and method: the AUCs of ``outs`` less those of ``others`` (the same runs made
    elsewhere: another device or runtime) on the photos both hold, their mean with a 95 %
    bootstrap interval and the largest on one photo, so that two machines' tables can stand
    for each other."""
    mine, theirs = read_aucs(outs), read_aucs(others)
    print(f"\n{model}: these rows less the compared rows, on the photos both hold\n")
    print("| run | method | photos | deletion: mean (95 % CI), largest "
          "| insertion: mean (95 % CI), largest |\n|---|---|---|---|---|")  # fmt: skip
    for key in sorted(set(mine) & set(theirs)):
        images = sorted(set(mine[key]) & set(theirs[key]))
        cells = [
            f"{mean:+.4f} ({low:+.4f} to {high:+.4f}), {largest:+.4f}"
            for mean, low, high, largest in differences(mine[key], theirs[key], images)
        ]
        print(f"| {key[0]} | {key[1]} | {len(images)} | {cells[0]} | {cells[1]} |", flush=True)


def paired(model: str, outs: dict[str, Path], reference: tuple[str, str]) -> None:
    """Per method: its AUCs less the ``reference`` method's (``(run, method)``) on the same
    photos, means with 95 % bootstrap intervals over the photos: the pairing takes out what
    the photos share (how easy each one is), which the intervals of the table keep in."""
    aucs = read_aucs(outs)
    if reference not in aucs:
        return
    print(f"\n{model}: each method less {reference[1]} ({reference[0]}), paired over photos\n")
    print(
        "| run | method | photos | deletion difference (95 % CI) | insertion difference (95 % CI) |"
    )
    print("|---|---|---|---|---|")
    base = aucs[reference]
    for (run, method), by_image in aucs.items():
        images = sorted(set(by_image) & set(base))
        if (run, method) == reference or not images:
            continue
        cells = [
            f"{mean:+.4f} ({low:+.4f} to {high:+.4f})"
            for mean, low, high, _ in differences(by_image, base, images)
        ]
        print(f"| {run} | {method} | {len(images)} | {cells[0]} | {cells[1]} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "imagenet-sample")
    parser.add_argument("--kept", type=Path, default=DEFAULT_KEPT, help="the rows kept")
    parser.add_argument(
        "--keep-only", action="store_true", help="keep what the runs in --out finished, then stop"
    )
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of the rows kept, run nothing"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --table-only: the kept rows' AUCs less those kept in DIR (another machine's)",
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", default=",".join(RUNS), help=f"some of {', '.join(RUNS)}")
    parser.add_argument("--n-images", type=int, default=None, help="the first K photos only")
    parser.add_argument(
        "--runtime", choices=("onnxruntime", "openvino", "torch"), default="onnxruntime"
    )
    parser.add_argument("--check-runtime", type=int, default=3, metavar="K")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: every method on the torch module on the GPU (--runtime does not apply)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="processes per run, sharing the photos (torchrun)"
    )
    args = parser.parse_args()
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, got {args.processes}")
    if args.compare is not None and not args.table_only:
        parser.error("--compare goes with --table-only")
    if args.device == "cuda":
        args.runtime = "torch"
    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS] + [
        r for r in args.runs.split(",") if r not in RUNS
    ]
    if unknown:
        parser.error(f"unknown models or runs: {', '.join(unknown)}")
    if args.keep_only:
        for model in models:
            for run in args.runs.split(","):
                keep(args.out / model / run, args.kept / model / run)
        return
    if args.table_only:
        for model in models:
            runs = [run for run in args.runs.split(",") if (args.kept / model / run).is_dir()]
            kept = {run: args.kept / model / run for run in runs}
            table(model, kept)
            paired(model, kept, ("black-box", "rise"))
            if args.compare is not None:
                others = [(run, args.compare / model / run) for run in runs]
                compare(model, kept, {run: other for run, other in others if other.is_dir()})
        print_paper()
        return
    torch.set_num_threads(2)
    folder = args.out / "data"
    link_image_folder(args.data, folder)
    for model in models:
        checked = args.check_runtime if args.runtime != "torch" else 0
        check_model(model, args.runtime, args.data, args.n_images, checked)
        outs = {
            run: evaluate(model, args.runtime, run, folder, args) for run in args.runs.split(",")
        }
        table(model, outs)
        paired(model, outs, ("black-box", "rise"))
    print_paper()


def print_paper() -> None:
    """The RISE paper's own figures, for the table's reader."""
    print("\nThe RISE paper (ResNet-50, 8,000 masks, each photo's top class): RISE deletion "
          f"{PAPER['rise'][0]}, insertion {PAPER['rise'][1]}; Grad-CAM {PAPER['gradcam'][0]}, "
          f"{PAPER['gradcam'][1]}.")  # fmt: skip


if __name__ == "__main__":
    main()
