"""Random, antithetic and Sobol' masks on a real model (issue 12): map error against N, and AUCs.

For each photo (the bundled ones, in order), MobileNetV2 with ImageNet weights
explains its top class. A reference map is made with ``--reference-masks``
masks of ``--reference-sampling`` (seed 10_000; Sobol' by default: every
sampling is an unbiased estimate of the same map, so the squared error
against an independent reference is the map's variance plus the
reference's, and the reference with the least variance shows the
differences best; a random reference at 16000 masks had an error as large
as Sobol's maps at N=1000 and hid everything below it). Each sampling then
runs 2000 masks for each seed; since mask k depends only on the seed and k,
the maps at N = 250, 500, 1000 and 2000 are the running sums at those points. The error of a map is
``RMS(map - reference) / std(reference)`` over pixels. Deletion and insertion
AUCs (paper protocol) are taken at N = 1000.

Usage: ``python benchmarks/mask_sampling.py [--photos 7] [--seeds 3]
[--reference-masks 32000] [--reference-sampling sobol]`` (the issue's
protocol; hours on a 2-core CPU: ``--photos 3 --seeds 2 --reference-masks
8000`` took ~1 h on one core).
"""

import argparse
import time

import numpy as np
import torch
from _common import bundled_photos

from captum_rise import deletion, insertion
from captum_rise.accumulator import SaliencyAccumulator
from captum_rise.imagenet import load_classifier
from captum_rise.masks import MASK_SAMPLINGS, GridMaskSampler, ParamStream, make_generator

CHECKPOINTS = (250, 500, 1000, 2000)
CHUNK = 16


def running_maps(model, x, target, sampling, seed, checkpoints) -> dict[int, torch.Tensor]:
    """RISE maps ``(H, W)`` after each checkpoint's number of masks."""
    sampler = GridMaskSampler([x.shape], 7, 0.5, x.device)
    stream = ParamStream(sampler, make_generator(seed), sampling)
    accumulator = SaliencyAccumulator(1, 1, sampler.mask_shapes, x.device)
    maps, done = {}, 0
    with torch.no_grad():
        for checkpoint in checkpoints:
            while done < checkpoint:
                hi = min(done + CHUNK, checkpoint)
                (masks,) = sampler.render(stream.params(done, hi))
                batch = (x * masks[:, 0]).contiguous(memory_format=torch.channels_last)
                scores = torch.softmax(model(batch), dim=1)[:, target]
                accumulator.add(scores[:, None, None], (masks,))
                done = hi
            maps[checkpoint] = accumulator.saliency(0.5)[0][0, 0, 0].clone()
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--reference-masks", type=int, default=32_000)
    parser.add_argument("--reference-sampling", choices=MASK_SAMPLINGS, default="sobol")
    args = parser.parse_args()
    classifier = load_classifier()
    model = classifier.model.to(memory_format=torch.channels_last)
    photos = list(bundled_photos().items())[: args.photos]
    errors: dict[str, dict[int, list[float]]] = {
        s: {n: [] for n in CHECKPOINTS} for s in MASK_SAMPLINGS
    }
    aucs: dict[str, list[tuple]] = {s: [] for s in MASK_SAMPLINGS}
    start = time.perf_counter()
    for number, (name, photo) in enumerate(photos, start=1):
        x = classifier.preprocess(photo)
        with torch.no_grad():
            target = int(model(x.contiguous(memory_format=torch.channels_last)).argmax())
        reference = running_maps(
            model, x, target, args.reference_sampling, 10_000, (args.reference_masks,)
        )[args.reference_masks]
        for sampling in MASK_SAMPLINGS:
            for seed in range(args.seeds):
                maps = running_maps(model, x, target, sampling, seed, CHECKPOINTS)
                for n, saliency in maps.items():
                    error = (saliency - reference).pow(2).mean().sqrt() / reference.std()
                    errors[sampling][n].append(float(error))
                if seed == 0:
                    saliency = maps[1000][None, None]
                    aucs[sampling].append(
                        (
                            float(deletion(model, x, saliency, target).auc[0]),
                            float(insertion(model, x, saliency, target).auc[0]),
                        )
                    )
        print(f"{name} done ({time.perf_counter() - start:.0f} s)", flush=True)
        report(errors, aucs, number, args)


def report(errors, aucs, n_photos: int, args: argparse.Namespace) -> None:
    """The table over the photos done so far (printed after every photo)."""
    print(
        f"\nMobileNetV2, {n_photos} photos, {args.seeds} seeds, reference N={args.reference_masks}"
        f" ({args.reference_sampling}), 7x7 grid, p 0.5"
    )
    header = " | ".join(f"error N={n}" for n in CHECKPOINTS)
    print(f"| sampling | {header} | deletion AUC N=1000 | insertion AUC N=1000 |")
    print("|---" * (len(CHECKPOINTS) + 3) + "|")
    for sampling in MASK_SAMPLINGS:
        cells = [f"{np.mean(errors[sampling][n]):.4f}" for n in CHECKPOINTS]
        d, i = np.mean(aucs[sampling], axis=0)
        print(f"| {sampling} | " + " | ".join(cells) + f" | {d:.4f} | {i:.4f} |")
    random_error = np.mean(errors["random"][1000])
    for sampling in ("antithetic", "sobol"):
        # masks random needs for the error this sampling reaches at N=1000 (errors ~ 1/sqrt(N))
        equivalent = 1000 * (random_error / np.mean(errors[sampling][1000])) ** 2
        print(
            f"{sampling}: its error at N=1000 needs about {equivalent:.0f} random masks", flush=True
        )


if __name__ == "__main__":
    main()
