"""Faithfulness per forward: deletion and insertion AUCs of the black-box methods at equal
budgets of forward passes (issue 26), with Grad-CAM and Integrated Gradients as references.

Setting: torchvision's MobileNetV2 with ImageNet weights (IMAGENET1K_V1, offline),
``channels_last``, on the photos bundled with scikit-image, scikit-learn and
matplotlib, each explained for its predicted class (softmax probability).
Curves as in ``faithfulness.py`` but with 56 steps (4 rows of 224 pixels per
step): deletion to black, insertion from a blur.

Budgets are the forwards of Sobol' attribution on its 8x8 grid, ``N (64 + 2)``
for ``N`` = 4, 16 and 64 designs (264, 1,056 and 4,224), and 8,448 (``N`` = 128) for RISE
with Sobol' masks; every black-box method runs at each budget:

* ``RISE random`` / ``RISE sobol``: RISE with that many masks (7x7 grid, ``p_keep``
  0.5), random masks (the paper's) or this project's default Sobol' masks;
* ``RISE sobol centred``: the same with ``normalization="centred"`` (the mean
  score as a control variate);
* ``HSIC``: that many designs (7x7 grid, LHS, binary kernel), plus the paper's 1,536;
  ``HSIC signed``: the same designs with ``signed=True`` (each cell given the sign of
  ``E[f | kept] - E[f | dropped]``);
* ``Sobol'``: ``N`` designs on the 8x8 grid, inpainting towards 0.

Results are saved after every (method, budget, photo) to a JSON file, and a run
resumes from it. The table gives the mean AUC over photos per method and budget;
``--figure`` draws AUC against forwards (log scale).

Usage: ``python benchmarks/faithfulness_per_forward.py [--photos chelsea,coffee]
[--seed 0] [--threads 1] [--out benchmarks/results/faithfulness_per_forward.json]
[--figure PATH] [--table-only FILE,FILE]`` (photos can run in parallel processes, one
result file each, read together by ``--table-only``).
"""

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import bundled_photos

from captum_rise import RISE, HSICAttribution, SobolAttribution, deletion, insertion
from captum_rise.comparison import gradcam_map, integrated_gradients_map
from captum_rise.imagenet import load_classifier
from captum_rise.quantus_explain import probabilities

SOBOL_GRID = 8
DESIGNS = (4, 16, 64)
BUDGETS = tuple(n * (SOBOL_GRID**2 + 2) for n in DESIGNS)  # 264 .. 4224
EXTRA_BUDGETS = {"RISE sobol": (8448,), "HSIC": (1536,)}
CURVE_STEPS = 56
BLACK_BOX = ("RISE random", "RISE sobol", "RISE sobol centred", "HSIC", "HSIC signed", "Sobol'")
REFERENCES = ("Grad-CAM", "Integrated Gradients")


def black_box(name: str, probs: Callable, x: torch.Tensor, target: int, budget: int, seed: int):
    """The ``(1, 1, H, W)`` map of method ``name`` at ``budget`` forwards."""
    if name.startswith("RISE"):
        sampling = "random" if name == "RISE random" else "sobol"
        normalization = "centred" if name.endswith("centred") else "expectation"
        rise = RISE(probs)
        return rise.attribute(
            x, target=target, n_masks=budget, seed=seed, mask_sampling=sampling,
            normalization=normalization,
        )[:, :1]  # fmt: skip
    if name.startswith("HSIC"):
        return HSICAttribution(probs).attribute(
            x, target=target, n_designs=budget, seed=seed, signed=name.endswith("signed")
        )[:, :1]
    n_designs = budget // (SOBOL_GRID**2 + 2)
    return SobolAttribution(probs).attribute(
        x, target=target, n_designs=n_designs, grid_size=SOBOL_GRID, seed=seed
    )[:, :1]


def runs(methods: list[str]) -> list[tuple[str, int]]:
    """(method, budget) pairs, references with budget 0."""
    pairs = []
    for name in methods:
        if name in REFERENCES:
            pairs.append((name, 0))
            continue
        budgets = sorted({*BUDGETS, *EXTRA_BUDGETS.get(name, ())})
        pairs += [(name, budget) for budget in budgets]
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--photos", default=None, help="comma-separated subset")
    parser.add_argument("--methods", default=",".join((*REFERENCES, *BLACK_BOX)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/faithfulness_per_forward.json")
    parser.add_argument("--figure", default=None, help="write the figure (PNG) here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    parser.add_argument(
        "--table-only", default=None, help="comma-separated result files: print (and draw) them"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = json.loads(out.read_text()) if out.exists() else {}
    for path in (args.table_only or "").split(","):
        results |= json.loads(Path(path).read_text()) if path else {}
    methods = args.methods.split(",")
    if not args.table_only:
        classifier = load_classifier("mobilenet_v2", "IMAGENET1K_V1", "cpu")
        model = classifier.model.to(memory_format=torch.channels_last)
        probs = probabilities(model)
        photos = bundled_photos()
        if args.photos:
            photos = {name: photos[name] for name in args.photos.split(",")}
        for photo_name, photo in photos.items():  # photo by photo: a partial run covers all
            x = classifier.preprocess(photo).contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                target = int(model(x).argmax())
            for name, budget in runs(methods):
                key = f"{name}|{budget}|{args.seed}|{photo_name}"
                if key in results:
                    continue
                start = time.perf_counter()
                if name == "Grad-CAM":
                    saliency = gradcam_map(model, x, target, classifier.gradcam_layer())
                elif name == "Integrated Gradients":
                    saliency = integrated_gradients_map(model, x, target)
                else:
                    saliency = black_box(name, probs, x, target, budget, args.seed)
                seconds = time.perf_counter() - start
                saliency = saliency.detach().float().contiguous()
                deleted = deletion(model, x, saliency, target, n_steps=CURVE_STEPS)
                inserted = insertion(model, x, saliency, target, n_steps=CURVE_STEPS)
                results[key] = {
                    "method": name,
                    "forwards": budget,
                    "photo": photo_name,
                    "deletion": float(deleted.auc),
                    "insertion": float(inserted.auc),
                    "seconds": seconds,
                }
                out.write_text(json.dumps(results, indent=1))
                print(f"{key}: deletion {float(deleted.auc):.4f} insertion "
                      f"{float(inserted.auc):.4f} ({seconds:.1f} s)", flush=True)  # fmt: skip
    table = summarise(results, methods)
    print_table(table)
    if args.figure:
        draw(table, args.figure)


def summarise(results: dict[str, dict], methods: list[str]) -> dict[tuple[str, int], dict]:
    """(method, forwards) -> mean AUCs over the photos that every pair of the method has."""
    table = {}
    for name, budget in runs(methods):
        rows = [r for r in results.values() if r["method"] == name and r["forwards"] == budget]
        if rows:
            table[name, budget] = {
                "deletion": float(np.mean([r["deletion"] for r in rows])),
                "insertion": float(np.mean([r["insertion"] for r in rows])),
                "photos": len(rows),
                "seconds": float(np.mean([r["seconds"] for r in rows])),
            }
    return table


def print_table(table: dict[tuple[str, int], dict]) -> None:
    print("\n| method | forwards | deletion ↓ | insertion ↑ | photos | s per map |")
    print("|---|---|---|---|---|---|")
    for (name, budget), row in table.items():
        forwards = {"Grad-CAM": "1 + backward", "Integrated Gradients": "50 + backward"}.get(
            name, budget
        )
        print(f"| {name} | {forwards} | {row['deletion']:.4f} | {row['insertion']:.4f} | "
              f"{row['photos']} | {row['seconds']:.1f} |")  # fmt: skip


def draw(table: dict[tuple[str, int], dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for axis, metric, better in zip(axes, ("deletion", "insertion"), ("lower", "higher")):
        for name in BLACK_BOX:
            points = sorted((b, r[metric]) for (n, b), r in table.items() if n == name)
            if points:
                axis.plot(*zip(*points), marker="o", label=name)
        for name, style in zip(REFERENCES, ("--", ":")):
            if (name, 0) in table:
                axis.axhline(table[name, 0][metric], color="gray", linestyle=style, label=name)
        axis.set_xscale("log")
        axis.set_xlabel("forward passes per image")
        axis.set_ylabel(f"{metric} AUC ({better} is better)")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    photos = max(r["photos"] for r in table.values())
    figure.suptitle(f"MobileNetV2, {photos} bundled photos: faithfulness per forward")
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
