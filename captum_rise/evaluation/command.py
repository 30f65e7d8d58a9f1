"""``captum-rise evaluate``: the dataset runner on a folder of images and a classifier.

    captum-rise evaluate DATA --out DIR [--model NAME|package.module:factory|FILE.onnx|FILE.pt]
        [--methods rise,hsic,...] [--input-size N] [--resize-size N] [--mean M,M,M --std S,S,S]
        [--n-images K] [--n-masks N] [--n-designs N] [--seed S] [--class-map FILE]
        [--boxes FILE] [--curve-steps S] [--save-maps] [--no-report] [--device cpu|cuda]

    captum-rise report DIR [--open]

    captum-rise compare RUN_A RUN_B --out DIR [--methods rise,rise:hsic] [--force] [--open]

The run writes the HTML report ``DIR/report/index.html``; ``captum-rise report``
rebuilds it from a results folder (after a resumed or multi-process run).

``captum-rise compare`` compares two runs image by image
(:mod:`captum_rise.evaluation.drift`): it prints the agreement summary and writes
``DIR/comparison.csv``, ``DIR/summary.md`` and the report ``DIR/report/index.html``.

``--model`` is a torchvision name, a factory, an ONNX file or a TorchScript file
(:mod:`captum_rise.evaluation.models`; pickles are refused).

The same command under ``torchrun --nproc-per-node P -m captum_rise evaluate ...``
deals the images out to P processes (gloo on the CPU, NCCL with one GPU per
process). Every argument is checked before the model is loaded.
"""

import argparse
import os
import webbrowser
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from PIL import Image

from captum_rise._argtypes import device_name, float_list, positive_int
from captum_rise.evaluation.data import (
    Box,
    ImageFiles,
    read_boxes,
    read_class_map,
    resize_crop_boxes,
)
from captum_rise.evaluation.drift import compare_runs, write_comparison
from captum_rise.evaluation.drift_report import write_comparison_report
from captum_rise.evaluation.methods import check_method_names
from captum_rise.evaluation.models import check_normalization, load_model
from captum_rise.evaluation.report import write_report
from captum_rise.evaluation.runner import DEFAULT_METHODS, evaluate_dataset
from captum_rise.evaluation.thumbnails import REPORT_DIR
from captum_rise.imagenet import DEFAULT_MODEL, DEFAULT_WEIGHTS


def method_list(text: str) -> list[str]:
    """argparse type: comma-separated method names."""
    try:
        return check_method_names([name.strip() for name in text.split(",") if name.strip()])
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_evaluate_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="explain and score a folder of images (deletion, insertion, pointing game)",
        description="Explain every image of DATA with each method and score the maps with "
        "deletion and insertion AUCs; writes DIR/results.csv, summary.md, summary.png and the "
        "HTML report DIR/report/index.html. "
        "Under torchrun, the images are shared by the processes.",
    )
    evaluate.add_argument(
        "data", help="folder of images, searched recursively (ImageFolder layout works)"
    )
    evaluate.add_argument("--out", required=True, help="results folder (a rerun resumes it)")
    _add_model_arguments(evaluate)
    _add_run_arguments(evaluate)
    _add_output_arguments(evaluate)


def _add_model_arguments(evaluate: argparse.ArgumentParser) -> None:
    """The model and what its images need (weights, crop, normalisation)."""
    evaluate.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="a torchvision classifier name, package.module:factory (a function returning the "
        "model, a forward or a captum_rise.evaluation.ModelSpec), an ONNX file (.onnx, run by "
        "ONNX Runtime) or a TorchScript file (torch.jit.save); pickles are refused",
    )
    evaluate.add_argument(
        "--weights", default=DEFAULT_WEIGHTS, help="torchvision weights name (torchvision names)"
    )
    evaluate.add_argument(
        "--input-size",
        type=positive_int,
        default=224,
        help="other models: centre crop of this size (224)",
    )
    evaluate.add_argument(
        "--resize-size",
        type=positive_int,
        default=None,
        help="other models: resize the shorter side to this first (input size * 256/224)",
    )
    evaluate.add_argument(
        "--mean",
        type=float_list,
        default=None,
        help="other models: per-channel mean the model expects, e.g. 0.485,0.456,0.406 "
        "(images are explained as pixels in [0, 1]; the normalisation goes in front of the model)",
    )
    evaluate.add_argument("--std", type=float_list, default=None, help="with --mean")


def _add_run_arguments(evaluate: argparse.ArgumentParser) -> None:
    """What the run explains: the methods, the images, their classes and boxes, the seed."""
    evaluate.add_argument(
        "--methods",
        type=method_list,
        default=list(DEFAULT_METHODS),
        help=f"comma-separated (default {','.join(DEFAULT_METHODS)})",
    )
    evaluate.add_argument("--n-images", type=positive_int, default=None, help="first K images only")
    evaluate.add_argument("--n-masks", type=positive_int, default=4000, help="RISE masks (4000)")
    evaluate.add_argument(
        "--n-designs", type=positive_int, default=1536, help="HSIC designs (1536)"
    )
    evaluate.add_argument(
        "--seed", type=int, default=0, help="run seed (images get their own from it)"
    )
    evaluate.add_argument(
        "--class-map",
        default=None,
        help="JSON {folder: class index}: explain each folder's class (default: the top class)",
    )
    evaluate.add_argument(
        "--boxes",
        default=None,
        help="CSV image,x0,y0,x1,y1 of object boxes in original-image pixels (pointing game)",
    )


def _add_output_arguments(evaluate: argparse.ArgumentParser) -> None:
    """What the run writes and where it runs."""
    evaluate.add_argument(
        "--curve-steps",
        type=positive_int,
        default=None,
        help="steps of the deletion/insertion curves (default: one pixel row per step)",
    )
    evaluate.add_argument("--save-maps", action="store_true", help="save maps as .npz")
    evaluate.add_argument(
        "--no-report",
        action="store_true",
        help="do not save thumbnails or write the HTML report DIR/report/index.html",
    )
    evaluate.add_argument(
        "--device", type=device_name, default=None, help="cpu or cuda (default: cuda if available)"
    )


def run_evaluate(args: argparse.Namespace) -> None:
    class_map = read_class_map(args.class_map) if args.class_map else None
    boxes = read_boxes(args.boxes) if args.boxes else None
    images = ImageFiles(args.data, transform=lambda image: image, class_map=class_map)
    check_normalization(args.mean, args.std)
    device, created_group = _set_up_processes(args.device)
    try:
        loaded = load_model(
            args.model,
            device,
            args.weights,
            args.input_size,
            args.resize_size,
            args.mean,
            args.std,
        )
        files = images.with_transform(lambda image: loaded.preprocess(image)[0])
        rows = evaluate_dataset(
            loaded.forward,
            files,
            args.out,
            args.methods,
            n_images=args.n_images,
            n_masks=args.n_masks,
            n_designs=args.n_designs,
            seed=args.seed,
            gradcam_layer=loaded.gradcam_layer,
            boxes=_input_boxes(files, boxes, loaded.resize_size, loaded.crop_size),
            curve_steps=args.curve_steps,
            save_maps=args.save_maps,
            memory_format=loaded.memory_format,
            model_name=loaded.name,
            class_names=loaded.class_names,
            report=not args.no_report,
        )
    finally:
        if created_group:
            dist.destroy_process_group()
    if rows is not None:
        print((Path(args.out) / "summary.md").read_text())
        print(
            f"results: {Path(args.out) / 'results.csv'}, figure: {Path(args.out) / 'summary.png'}"
        )
        if not args.no_report:
            print(f"report: {(Path(args.out) / REPORT_DIR / 'index.html').resolve().as_uri()}")


def add_report_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    report = commands.add_parser(
        "report",
        help="(re)build the HTML report of an evaluation run",
        description="Build DIR/report/index.html from the results folder DIR of captum-rise "
        "evaluate: the run, each method's AUCs, and every image with its maps and curves. "
        "It opens from file:// and from a copied folder.",
    )
    report.add_argument("dir", help="the results folder (--out of captum-rise evaluate)")
    report.add_argument("--open", action="store_true", help="open the report in a web browser")


def run_report(args: argparse.Namespace) -> None:
    if not Path(args.dir).is_dir():
        raise ValueError(f"DIR must be a results folder, but {args.dir} is not a folder")
    index = write_report(args.dir).resolve()
    print(f"report: {index.as_uri()}")
    if args.open:
        webbrowser.open(index.as_uri())


def add_compare_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    compare = commands.add_parser(
        "compare",
        help="compare two evaluation runs image by image: did the explanations drift?",
        description="Compare two runs of captum-rise evaluate over the same images (a model and "
        "its compressed version, two runtimes, two seeds, two methods): per image, the Spearman "
        "correlation of the maps and the overlap of their top 10 %% blocks, the change of the "
        "deletion and insertion AUCs and of the predicted class. Prints the summary; writes "
        "DIR/comparison.csv, DIR/summary.md and the report DIR/report/index.html. Runs of other "
        "images, targets or settings are refused, saying which, unless --force.",
    )
    compare.add_argument("run_a", help="results folder of the first run (A)")
    compare.add_argument("run_b", help="results folder of the second run (B)")
    compare.add_argument("--out", required=True, help="folder for the comparison and its report")
    compare.add_argument(
        "--methods",
        default=None,
        help="comma-separated: METHOD (in both runs) or A_METHOD:B_METHOD (default: every method "
        "of both runs)",
    )
    compare.add_argument(
        "--force", action="store_true", help="compare even runs of other images or settings"
    )
    compare.add_argument("--open", action="store_true", help="open the report in a web browser")


def run_compare(args: argparse.Namespace) -> None:
    for name in ("run_a", "run_b"):
        folder = getattr(args, name)
        if not Path(folder).is_dir():
            raise ValueError(f"{name.upper()} must be a results folder, but {folder} is not")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    comparison = compare_runs(args.run_a, args.run_b, methods, force=args.force)
    print(write_comparison(comparison, args.out).read_text())
    index = write_comparison_report(comparison, args.out).resolve()
    print(f"comparison: {Path(args.out) / 'comparison.csv'}\nreport: {index.as_uri()}")
    if args.open:
        webbrowser.open(index.as_uri())


def _set_up_processes(device_arg: str | None) -> tuple[torch.device, bool]:
    """This process's device, after joining the torchrun group when there is one.

    Returns the device and whether the process group was created here."""
    use_cuda = torch.cuda.is_available() if device_arg is None else device_arg.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1 or dist.is_initialized():
        return torch.device(device_arg or ("cuda" if use_cuda else "cpu")), False
    # The run's one collective is a barrier, which gloo gives whatever the device; NCCL would
    # refuse two ranks on one GPU, and several processes per GPU keep a small model's GPU busy.
    dist.init_process_group("gloo")
    if use_cuda:
        # One GPU per process; more processes than GPUs share them in turn.
        gpu = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        torch.cuda.set_device(gpu)
        return torch.device("cuda", gpu), True
    return torch.device("cpu"), True


def _input_boxes(
    files: ImageFiles[Any], boxes: dict[str, list[Box]] | None, resize_size: int, crop_size: int
) -> dict[str, list[Box]] | None:
    """The boxes of the files, moved from original-image pixels into the model input's."""
    if boxes is None:
        return None
    unknown = sorted(set(boxes) - set(files.ids))
    if unknown:
        raise ValueError(f"the boxes file names images that are not in DATA: {unknown[:5]}")
    moved = {}
    for image_id, path in zip(files.ids, files.paths):
        if image_id in boxes:
            try:
                with Image.open(path) as image:
                    size = image.size
            except OSError:
                continue  # unreadable: the runner writes its failure rows
            moved[image_id] = resize_crop_boxes(boxes[image_id], size, resize_size, crop_size)
    return moved
