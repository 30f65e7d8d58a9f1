"""Deletion and insertion AUCs of attribution methods on a real ImageNet model (issues 5, 6).

Setting: torchvision's MobileNetV2 with ImageNet weights (IMAGENET1K_V1, loaded
offline from the torch hub cache), the real photos that ship with
scikit-image, scikit-learn and matplotlib, each explained for its predicted
class. Metrics follow the RISE paper: one row (224 pixels) per step, deletion
to a constant 0 (black), insertion from a blur (kernel 11, sigma 5), softmax
probability of the class.

Methods: RISE (N random masks, default 4000), RISE at N=1000 with each mask
sampling (random, antithetic, Sobol'), anytime RISE with random masks at two
tolerances (at most 8000 masks; the masks used are reported), HSIC at 1536 and 768 designs,
Grad-CAM, Integrated Gradients, Occlusion, KernelShap on SLIC superpixels,
meaningful perturbation and extremal perturbation (area 0.1, preserve).
Stochastic methods run with several seeds; the table gives the mean AUC over
photos, +- the standard deviation of that mean over seeds, and seconds per
image for the attribution alone.

Results are saved after every (method, seed, photo) to a JSON file, and a run
resumes from it.

Usage: ``python benchmarks/faithfulness.py [--seeds 2] [--rise-masks 4000]
[--methods RISE,Grad-CAM,...] [--out benchmarks/results/faithfulness.json]``
"""

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import bundled_photos
from captum.attr import KernelShap, Occlusion
from skimage.segmentation import slic

from captum_rise import (
    RISE,
    ExtremalPerturbation,
    HSICAttribution,
    MeaningfulPerturbation,
    deletion,
    insertion,
)
from captum_rise.comparison import gradcam_map, integrated_gradients_map, rise_map
from captum_rise.imagenet import load_classifier
from captum_rise.quantus_explain import probabilities

SAMPLINGS = ("random", "antithetic", "sobol")
TOLERANCES = (0.5, 0.35)
ANYTIME_MAX_MASKS = 8000
STOCHASTIC = {
    "RISE",
    "HSIC-1536",
    "HSIC-768",
    "KernelShap",
    *(f"RISE-1000 {s}" for s in SAMPLINGS),
    *(f"RISE tolerance {t}" for t in TOLERANCES),
}


class AnytimeRISE:
    """RISE on the class probability that stops at ``tolerance``; keeps the masks it used.

    Random masks: the ones whose error the stop rule estimates without bias (for
    Sobol' masks, the default, it is an upper bound)."""

    def __init__(self, model: torch.nn.Module, tolerance: float) -> None:
        self.rise = RISE(probabilities(model))
        self.tolerance = tolerance

    @property
    def masks_used(self) -> int | None:
        return self.rise.n_masks_used

    def __call__(self, x: torch.Tensor, target: int, seed: int) -> torch.Tensor:
        return self.rise.attribute(
            x,
            target=target,
            n_masks=ANYTIME_MAX_MASKS,
            tolerance=self.tolerance,
            seed=seed,
            mask_sampling="random",
        )[:, :1]


def method_table(classifier, rise_masks: int, batch: int | None) -> dict[str, Callable]:
    """name -> f(x, target, seed) returning a (1, 1, H, W) saliency map.

    ``batch`` None: captum_rise's methods choose their own; Captum's get 4 (CPU) or 64.
    """
    model = classifier.model
    probs = probabilities(model)
    on_cpu = next(model.parameters()).device.type == "cpu"
    captum_batch = batch or (4 if on_cpu else 64)

    def hsic(n_designs: int) -> Callable:
        return lambda x, t, seed: HSICAttribution(probs).attribute(
            x, target=t, n_designs=n_designs, perturbations_per_eval=batch, seed=seed
        )[:, :1]

    def kernel_shap(x, t, seed):
        segments = slic(
            x[0].permute(1, 2, 0).cpu().numpy(), n_segments=50, compactness=10, start_label=0
        )
        mask = torch.from_numpy(segments).long()[None, None].to(x.device)
        torch.manual_seed(seed)  # KernelShap samples with the global RNG
        return KernelShap(probs).attribute(
            x, target=t, feature_mask=mask, n_samples=500, perturbations_per_eval=captum_batch
        )[:, :1]

    def sampled_rise(sampling: str) -> Callable:
        return lambda x, t, seed: rise_map(
            model,
            x,
            t,
            n_masks=1000,
            perturbations_per_eval=batch,
            seed=seed,
            mask_sampling=sampling,
        )

    return {
        "RISE": lambda x, t, seed: rise_map(  # the paper's random masks
            model,
            x,
            t,
            n_masks=rise_masks,
            perturbations_per_eval=batch,
            seed=seed,
            mask_sampling="random",
        ),
        **{f"RISE-1000 {s}": sampled_rise(s) for s in SAMPLINGS},
        **{f"RISE tolerance {t}": AnytimeRISE(model, t) for t in TOLERANCES},
        "HSIC-1536": hsic(1536),
        "HSIC-768": hsic(768),
        "Grad-CAM": lambda x, t, seed: gradcam_map(model, x, t, classifier.gradcam_layer()),
        "Integrated Gradients": lambda x, t, seed: integrated_gradients_map(model, x, t),
        "Occlusion": lambda x, t, seed: (
            Occlusion(probs)
            .attribute(
                x,
                target=t,
                sliding_window_shapes=(3, 32, 32),
                strides=(3, 16, 16),
                perturbations_per_eval=captum_batch,
            )
            .sum(dim=1, keepdim=True)
        ),
        "KernelShap": kernel_shap,
        "Meaningful perturbation": lambda x, t, seed: MeaningfulPerturbation(model).attribute(
            x, target=t, seed=seed
        )[:, :1],
        "Extremal perturbation": lambda x, t, seed: ExtremalPerturbation(model).attribute(
            x, target=t, areas=[0.1]
        )[:, :1],
    }


FORWARDS = {
    "RISE": "N",
    "HSIC-1536": "1536",
    "HSIC-768": "768",
    "Grad-CAM": "1 + backward",
    "Integrated Gradients": "50 + backward",
    "Occlusion": "169",
    "KernelShap": "500",
    "Meaningful perturbation": "300 + backward",
    "Extremal perturbation": "800 + backward",
    **{f"RISE-1000 {s}": "1000" for s in SAMPLINGS},
    **{f"RISE tolerance {t}": "used" for t in TOLERANCES},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rise-masks", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=None, help="perturbed images per forward")
    parser.add_argument("--methods", default=None, help="comma-separated subset")
    parser.add_argument("--photos", default=None, help="comma-separated subset")
    parser.add_argument("--out", default="benchmarks/results/faithfulness.json")
    args = parser.parse_args()

    classifier = load_classifier("mobilenet_v2", "IMAGENET1K_V1", args.device)
    methods = method_table(classifier, args.rise_masks, args.batch)
    chosen = args.methods.split(",") if args.methods else list(methods)
    photos = bundled_photos()
    if args.photos:
        photos = {name: photos[name] for name in args.photos.split(",")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = json.loads(out.read_text()) if out.exists() else {}

    for name in chosen:
        seeds = range(args.seeds) if name in STOCHASTIC else [0]
        for seed in seeds:
            for photo_name, photo in photos.items():
                key = f"{name}|{seed}|{photo_name}"
                if name == "RISE":
                    key += f"|N={args.rise_masks}"
                if key in results:
                    continue
                x = classifier.preprocess(photo).to(args.device)
                with torch.no_grad():
                    target = int(classifier.model(x).argmax())
                start = time.perf_counter()
                saliency = methods[name](x, target, seed).detach()
                seconds = time.perf_counter() - start
                deleted = deletion(classifier.model, x, saliency, target)
                inserted = insertion(classifier.model, x, saliency, target)
                results[key] = {
                    "method": name,
                    "seed": seed,
                    "photo": photo_name,
                    "class": classifier.categories[target],
                    "deletion": float(deleted.auc),
                    "insertion": float(inserted.auc),
                    "seconds": seconds,
                    "masks_used": getattr(methods[name], "masks_used", None),
                }
                out.write_text(json.dumps(results, indent=1))
                print(
                    f"{key}: deletion {float(deleted.auc):.4f} "
                    f"insertion {float(inserted.auc):.4f} ({seconds:.1f} s)",
                    flush=True,
                )
    print_table(results, chosen, args.rise_masks, args.device)


def print_table(results: dict[str, dict], methods: list[str], rise_masks: int, device: str) -> None:
    print(f"\nMobileNetV2 (ImageNet), {device}; mean over photos, +- std over seeds")
    print(
        "| method | forwards / image | deletion AUC (lower better) "
        "| insertion AUC (higher better) | s / image |"
    )
    print("|---|---|---|---|---|")
    for name in methods:
        rows = [
            r
            for k, r in results.items()
            if r["method"] == name and (name != "RISE" or k.endswith(f"N={rise_masks}"))
        ]
        if not rows:
            continue
        by_seed: dict[int, list[dict]] = {}
        for r in rows:
            by_seed.setdefault(r["seed"], []).append(r)
        cells = []
        for metric in ("deletion", "insertion"):
            means = [np.mean([r[metric] for r in group]) for group in by_seed.values()]
            spread = f" +- {np.std(means):.4f}" if len(means) > 1 else ""
            cells.append(f"{np.mean(means):.4f}{spread}")
        forwards = FORWARDS[name].replace("N", str(rise_masks))
        if forwards == "used":  # anytime RISE: mean (min-max) of the masks it used
            used = [r["masks_used"] for r in rows]
            forwards = f"{np.mean(used):.0f} ({min(used)}-{max(used)})"
        seconds = np.mean([r["seconds"] for r in rows])
        photos = len({r["photo"] for r in rows})
        print(
            f"| {name} ({photos} photos, {len(by_seed)} seeds) | {forwards} "
            f"| {cells[0]} | {cells[1]} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
