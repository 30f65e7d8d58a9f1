"""Anytime RISE with each mask sampling: masks used to reach a tolerance, and how honest the
reported error is (issue 21).

Two settings with a known reference map:

* ``box``: a model whose score is a sigmoid of the mean intensity inside a box of a 32x32
  image, a 6x6 grid; the reference is the map of 40,000 Sobol' masks;
* ``photos`` (``--photos``): MobileNetV2 (ImageNet weights) on the bundled photos at 224x224,
  the default 7x7 grid (``--n-photos`` of them); the reference is the map of
  ``--reference-masks`` Sobol' masks.

For every sampling and tolerance, ``--seeds`` runs with ``n_masks=--max-masks``; the table
gives the mean masks used, the mean reported error at the stop, the mean true relative error
(RMS over the map of the difference to the reference, over the map's standard deviation; the
reference's own error is negligible against it) and how many runs reported within 2x of the
true error.

Usage: ``python benchmarks/anytime.py [--seeds 10] [--tolerances 0.2,0.1,0.05] [--photos]``
"""

import argparse

import torch

from captum_rise import RISE
from captum_rise.masks import MASK_SAMPLINGS


def box_setting():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def model(inputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(12 * (inputs[:, :, 8:20, 12:26].mean(dim=(1, 2, 3)) - 0.25))

    return [(model, x, None, 6)]


def photo_settings(n_photos: int):
    import torchvision.transforms.functional as TF
    from _common import bundled_photos

    from captum_rise.imagenet import load_classifier

    classifier = load_classifier("mobilenet_v2", "IMAGENET1K_V1")
    model = classifier.model.to(memory_format=torch.channels_last)
    settings = []
    for photo in list(bundled_photos().values())[:n_photos]:
        x = TF.to_tensor(TF.center_crop(TF.resize(photo.convert("RGB"), 256), 224))[None]
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            target = int(model(x).argmax())
        settings.append((lambda inp, t=target: torch.softmax(model(inp), 1)[:, t], x, None, 7))
    return settings


def relative_error(saliency: torch.Tensor, reference: torch.Tensor) -> float:
    return float(((saliency - reference) ** 2).mean().sqrt() / reference.std())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--tolerances", default="0.2,0.1,0.05")
    parser.add_argument("--max-masks", type=int, default=20_000)
    parser.add_argument("--reference-masks", type=int, default=40_000)
    parser.add_argument("--photos", action="store_true")
    parser.add_argument("--n-photos", type=int, default=3, help="with --photos")
    parser.add_argument("--samplings", default=",".join(MASK_SAMPLINGS))
    args = parser.parse_args()
    settings = photo_settings(args.n_photos) if args.photos else box_setting()
    print("| setting | sampling | tolerance | masks used | reported | true | within 2x |")
    print("|---|---|---|---|---|---|---|")
    for index, (model, x, target, grid) in enumerate(settings):
        rise = RISE(model)
        reference = rise.attribute(
            x, target=target, grid_size=grid, n_masks=args.reference_masks, seed=10**6
        )[0, 0]
        for sampling in args.samplings.split(","):
            for tolerance in [float(t) for t in args.tolerances.split(",")]:
                used, reported, true, within = [], [], [], 0
                for seed in range(args.seeds):
                    saliency, delta = rise.attribute(
                        x, target=target, grid_size=grid, n_masks=args.max_masks, seed=seed,
                        tolerance=tolerance, mask_sampling=sampling,
                        return_convergence_delta=True,
                    )  # fmt: skip
                    error = relative_error(saliency[0, 0], reference)
                    used.append(rise.n_masks_used)
                    reported.append(float(delta[0]))
                    true.append(error)
                    within += 0.5 <= error / float(delta[0]) <= 2
                name = "box" if not args.photos else f"photo {index}"
                print(
                    f"| {name} | {sampling} | {tolerance} | {sum(used) / len(used):.0f} "
                    f"| {sum(reported) / len(reported):.3f} | {sum(true) / len(true):.3f} "
                    f"| {within}/{args.seeds} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
