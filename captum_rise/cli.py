"""Command line: explain a photo with RISE, Grad-CAM and Integrated Gradients.

    captum-rise explain IMAGE [--model NAME] [--target CLASS|top] [--n-masks N] [--out FILE]
    captum-rise demo [--out FILE]            # Grace Hopper's portrait, MobileNetV2
    captum-rise evaluate DATA --out DIR [--methods rise,gradcam,...]   # a whole folder
    captum-rise report DIR [--open]          # its HTML report, rebuilt
    captum-rise compare RUN_A RUN_B --out DIR [--methods rise,rise:hsic] [--force]  # drift

The figure shows the photo, the three saliency overlays and the deletion and
insertion curves with their AUCs; the AUCs are also printed as a table.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from captum_rise._argtypes import class_target, device_name, positive_int
from captum_rise._progress import is_terminal, progress_bar
from captum_rise.comparison import causal_curves, compare_methods
from captum_rise.evaluation.command import (
    add_compare_parser,
    add_evaluate_parser,
    add_report_parser,
    run_compare,
    run_evaluate,
    run_report,
)
from captum_rise.evaluation.results import ResultsWriteError
from captum_rise.evaluation.runner import RunInProgressError
from captum_rise.imagenet import (
    DEFAULT_MODEL,
    DEFAULT_WEIGHTS,
    ImageLoadError,
    ModelLoadError,
    demo_image_path,
    load_classifier,
    load_image,
)
from captum_rise.metrics.causal import CausalCurve
from captum_rise.plotting import overlay_saliency, plot_causal_curves

DEMO_N_MASKS = 2000
ONE_PHOTO_NOTE = (
    "These AUCs are one photo's, not a benchmark: a single image's deletion and insertion "
    "AUCs vary a lot with the map's details (docs/figures.md: the methods over a set of "
    "photos, python benchmarks/faithfulness.py)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captum-rise",
        description="Explain an ImageNet classifier's decision with RISE, Grad-CAM and "
        "Integrated Gradients, and score each map with deletion and insertion.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="explain one image file")
    explain.add_argument("image", help="path to a photo (any format PIL reads)")
    demo = commands.add_parser("demo", help="explain a built-in photo (Grace Hopper, matplotlib)")
    add_evaluate_parser(commands)
    add_report_parser(commands)
    add_compare_parser(commands)
    for sub, n_masks in ((explain, 4000), (demo, DEMO_N_MASKS)):
        sub.add_argument("--model", default=DEFAULT_MODEL, help="torchvision model name")
        sub.add_argument("--weights", default=DEFAULT_WEIGHTS, help="torchvision weights name")
        sub.add_argument(
            "--target", type=class_target, default="top", help="class index, or 'top' (default)"
        )
        sub.add_argument(
            "--n-masks", type=positive_int, default=n_masks, help=f"RISE masks (default {n_masks})"
        )
        sub.add_argument(
            "--batch",
            type=positive_int,
            default=None,
            help="masks per forward call (default: automatic)",
        )
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument(
            "--device",
            type=device_name,
            default=None,
            help="cpu or cuda (default: cuda if available)",
        )
        sub.add_argument("--out", default=None, help="figure file (default: rise_<image>.png)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "evaluate":
            run_evaluate(args)
        elif args.command == "report":
            run_report(args)
        elif args.command == "compare":
            run_compare(args)
        else:
            run(args, Path(args.image) if args.command == "explain" else demo_image_path())
    except (
        ModelLoadError,
        ImageLoadError,
        ValueError,
        RunInProgressError,
        ResultsWriteError,
    ) as error:
        print(f"captum-rise: error: {error}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace, image_path: Path) -> None:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    image = load_image(image_path)
    classifier = load_classifier(args.model, args.weights, device)
    # channels_last: the convolutions run faster (RISE on MobileNetV2, 2-core CPU:
    # benchmarks/speed_peers.py), and RISE keeps the layout in its masked batches.
    classifier.model.to(memory_format=torch.channels_last)
    x = classifier.preprocess(image).to(device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        probabilities = torch.softmax(classifier.model(x), dim=1)[0]
    target = _parse_target(args.target, probabilities)
    label = (
        f"{classifier.categories[target]} (class {target}, p={float(probabilities[target]):.2f})"
    )
    print(f"{classifier.name} on {image_path.name}: explaining {label} on {device}")

    stages = progress_bar("three maps, then their deletion/insertion curves", 2, unit="stage")
    maps = compare_methods(
        classifier.model,
        classifier.gradcam_layer(),
        x,
        target,
        n_masks=args.n_masks,
        perturbations_per_eval=args.batch,
        seed=args.seed,
        show_progress=is_terminal(),  # a bar inside the stages bar: not in a log
    )
    stages.update()
    curves = causal_curves(classifier.model, x, maps, target)
    stages.update()
    stages.close()

    print(format_table(curves))
    print(ONE_PHOTO_NOTE)
    out = Path(args.out or f"rise_{image_path.stem}.png")
    figure = draw_figure(x[0], maps, curves, title=f"{classifier.name}: {label}")
    figure.savefig(out, dpi=110)
    print(f"figure written to {out}")


def _parse_target(target: int | str, probabilities: torch.Tensor) -> int:
    """The class to explain: the top one, or ``target`` within the model's classes."""
    if target == "top":
        return int(probabilities.argmax())
    assert isinstance(target, int)  # argparse's class_target gives "top" or an int
    if not target < probabilities.numel():
        raise ValueError(f"--target must be in [0, {probabilities.numel()}), got {target}")
    return target


def format_table(curves: dict[str, tuple[CausalCurve, CausalCurve]]) -> str:
    """A markdown table of deletion and insertion AUCs per method."""
    rows: list[str] = [
        "| method | deletion AUC (lower is better) | insertion AUC (higher is better) |",
        "|---|---|---|",
    ]
    for name, (deleted, inserted) in curves.items():
        rows.append(f"| {name} | {float(deleted.auc[0]):.4f} | {float(inserted.auc[0]):.4f} |")
    return "\n".join(rows)


def draw_figure(
    image: torch.Tensor,
    maps: dict[str, torch.Tensor],
    curves: dict[str, tuple[CausalCurve, CausalCurve]],
    title: str,
) -> Figure:
    """Photo and overlays (with colour bars) on top, deletion and insertion curves below."""
    figure = Figure(figsize=(3.6 * (len(maps) + 1), 7.2), layout="constrained")
    top, bottom = figure.subfigures(2, 1, squeeze=False, height_ratios=[1.0, 1.0])[:, 0]
    image_axes = top.subplots(1, len(maps) + 1)
    image_axes[0].imshow(image.permute(1, 2, 0).cpu().numpy())
    image_axes[0].set_title("input")
    image_axes[0].set_axis_off()
    for ax, (name, saliency) in zip(image_axes[1:], maps.items()):
        overlay_saliency(image.cpu(), saliency[0, 0].cpu(), ax=ax, title=name, colorbar=True)
    plot_causal_curves(curves, axes=bottom.subplots(1, 2))
    figure.suptitle(title)
    return figure


if __name__ == "__main__":
    sys.exit(main())
