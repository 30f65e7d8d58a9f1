"""The HTML report of an evaluation run: what it adds to a run, and how fast it opens (issue 33).

Two sections, each printing its table:

1. ``overhead``: ``evaluate_dataset`` with RISE on MobileNetV2 over the shipped photos, the
   report on and off, in alternating order, ``--repeats`` pairs in this process. Printed:
   each pair's run times and their ratio, and the report's own time measured directly (the
   thumbnails the run saves, timed around the saving functions, plus ``write_report`` at the
   end) as a share of the run with the report. Target: at most 5 %.
2. ``open``: a report of ``--images`` images opened in headless Chromium (Debian's
   ``chromium``, driven by Playwright), ``--loads`` times, each in a fresh browser context
   (no cache). Timed from ``page.goto`` to the overview drawn (``body[data-ready]``), and to
   the first page of the images table with the thumbnails in view loaded. The images come from a
   real Grad-CAM run of a small convnet on generated 224x224 images, or with
   ``--synthetic`` from rows and thumbnails written directly (random smooth maps, curves
   and AUCs) for ``--methods`` methods, which reaches 10,000 images x 5 methods in minutes.
   Printed: build time, sizes (the page's data, per image and method), and the spread of
   the load times. Target: the first page of a 2,000-image report in under 2 s.

Threads: torch 2. Usage: ``python benchmarks/report.py overhead [--photos 4] [--n-masks 1000]
[--repeats 3]``; ``python benchmarks/report.py open [--images 2000] [--synthetic --methods 5]
[--loads 5]``.
"""

import argparse
import csv
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import bundled_photos
from torch import nn

from captum_rise.evaluation import evaluate_dataset, runner, write_report
from captum_rise.evaluation.results import COLUMNS, COMPLETE, format_curve
from captum_rise.evaluation.thumbnails import save_map, save_photo
from captum_rise.imagenet import load_classifier

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
METHODS = ("rise", "hsic", "sobol", "gradcam", "ig")


class _Timed:
    """Adds up the wall time of the functions it wraps in the runner's module."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.seconds = 0.0
        self.originals = {name: getattr(runner, name) for name in names}
        for name, function in self.originals.items():
            setattr(runner, name, self._wrap(function))

    def _wrap(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed

    def restore(self) -> None:
        for name, function in self.originals.items():
            setattr(runner, name, function)


class _Photos(torch.utils.data.Dataset):
    def __init__(self, images: list[torch.Tensor]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], None


def overhead(args: argparse.Namespace) -> None:
    classifier = load_classifier()
    photos = list(bundled_photos().values())[: args.photos]
    dataset = _Photos([classifier.preprocess(photo)[0] for photo in photos])
    settings = dict(n_masks=args.n_masks, curve_steps=args.curve_steps, show_progress=False)
    print(f"RISE, N={args.n_masks}, {len(dataset)} photos, curve steps {args.curve_steps}")
    print("pair | with report (s) | without (s) | ratio | report's own time (s) | share")
    shares, ratios = [], []
    for pair in range(args.repeats):
        times = {}
        for report in (True, False) if pair % 2 == 0 else (False, True):
            with tempfile.TemporaryDirectory() as folder:
                timed = _Timed(("save_photo", "save_map", "write_report"))
                start = time.perf_counter()
                try:
                    evaluate_dataset(
                        classifier.model, dataset, folder, ["rise"], report=report, **settings
                    )
                finally:
                    timed.restore()
                times[report] = (time.perf_counter() - start, timed.seconds)
        (with_report, own), (without, _) = times[True], times[False]
        ratios.append(with_report / without)
        shares.append(own / with_report)
        print(f"{pair + 1} | {with_report:.1f} | {without:.1f} | {ratios[-1]:.3f} | "
              f"{own:.3f} | {100 * shares[-1]:.2f} %")  # fmt: skip
    print(f"ratio with/without: {min(ratios):.3f}-{max(ratios):.3f}; report's own share: "
          f"{100 * min(shares):.2f}-{100 * max(shares):.2f} % (target <= 5 %)")  # fmt: skip


def _generated_images(n: int, side: int = 224) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, 3, 8, 8, generator=generator)
    return [
        torch.nn.functional.interpolate(c[None], size=(side, side), mode="bilinear")[0]
        for c in coarse
    ]


def _real_run(out: Path, n_images: int) -> tuple[float, float]:
    """Grad-CAM on a small untrained convnet over generated images; returns the run's seconds
    and the report's own (its thumbnails and ``write_report``)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()  # fmt: skip
    dataset = _Photos(_generated_images(n_images))
    timed = _Timed(("save_photo", "save_map", "write_report"))
    start = time.perf_counter()
    try:
        evaluate_dataset(model, dataset, out, ["gradcam"], curve_steps=16, show_progress=True)
    finally:
        timed.restore()
    return time.perf_counter() - start, timed.seconds


def _synthetic_run(out: Path, n_images: int, methods: tuple[str, ...]) -> None:
    """Rows, thumbnails and run.json as a run would write them, without a model."""
    rng = np.random.default_rng(0)
    report = out / "report"
    out.mkdir(parents=True, exist_ok=True)
    images = _generated_images(n_images)
    with open(out / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for i, image in enumerate(images):
            image_id = f"generated/{i:05d}.png"
            save_photo(report, image_id, image)
            for method in methods:
                saliency = torch.nn.functional.interpolate(
                    torch.rand(1, 1, 7, 7), size=(224, 224), mode="bilinear"
                )[0, 0]
                save_map(report, image_id, method, saliency)
                deletion = np.sort(rng.random(17))[::-1] * rng.random()
                insertion = np.sort(rng.random(17)) * rng.random()
                fractions = np.linspace(0, 1, 17)
                writer.writerow({
                    "image": image_id, "method": method, "target": str(i % 1000),
                    "deletion_auc": f"{np.trapezoid(deletion, fractions):.6g}",
                    "insertion_auc": f"{np.trapezoid(insertion, fractions):.6g}",
                    "pointing_hit": "", "seconds": f"{rng.random():.3f}", "rank": "0",
                    "seed": "0", "model": "synthetic", "settings": "{}", "error": "",
                    "deletion_curve": format_curve(fractions, deletion),
                    "insertion_curve": format_curve(fractions, insertion),
                    "complete": COMPLETE,
                })  # fmt: skip
    (out / "run.json").write_text(json.dumps({"model": "synthetic", "seed": 0,
                                              "methods": {m: {} for m in methods}}))  # fmt: skip


def _load_times(index: Path, loads: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    overview, table = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        for _ in range(loads):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            problems = []
            page.on("pageerror", lambda error, problems=problems: problems.append(str(error)))
            start = time.perf_counter()
            page.goto(index.as_uri())
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            overview.append(time.perf_counter() - start)
            page.click("#nav-images")
            page.wait_for_function(  # the thumbnails in view (those below load as scrolled to)
                "[...document.querySelectorAll('#images-table img')]"
                ".filter(i => i.getBoundingClientRect().top < innerHeight)"
                ".every(i => i.complete && i.naturalWidth > 0)",
                timeout=60_000,
            )
            table.append(time.perf_counter() - start)
            assert not problems, problems
            context.close()
        browser.close()
    return overview, table


def open_report(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="report-benchmark-"))
    try:
        out = folder / "out"
        if args.synthetic:
            methods = METHODS[: args.methods]
            _synthetic_run(out, args.images, methods)
            print(f"synthetic rows: {args.images} images x {len(methods)} methods")
            start = time.perf_counter()
            write_report(out)
            print(f"write_report: {time.perf_counter() - start:.1f} s")
        else:
            methods = ("gradcam",)
            seconds, own = _real_run(out, args.images)
            print(f"Grad-CAM run, {args.images} images: {seconds:.1f} s, of which the report "
                  f"{own:.1f} s ({100 * own / seconds:.1f} %)")  # fmt: skip
            start = time.perf_counter()
            write_report(out)
            print(f"write_report again: {time.perf_counter() - start:.1f} s")
        report = out / "report"
        sizes = {p: p.stat().st_size for p in report.rglob("*") if p.is_file()}
        per_image = sum(v for p, v in sizes.items() if "assets" in p.parts or "images" in p.parts)
        per_pair = per_image / (args.images * len(methods)) / 1e3
        print(f"report: {sum(sizes.values()) / 1e6:.1f} MB in {len(sizes)} files; "
              f"data/run.js {sizes[report / 'data' / 'run.js'] / 1e6:.2f} MB; "
              f"{per_pair:.1f} kB per image and method")  # fmt: skip
        overview, table = _load_times(report / "index.html", args.loads)
        for name, times in (("overview drawn", overview), ("first table page", table)):
            print(f"{name}: median {statistics.median(times):.2f} s, "
                  f"{min(times):.2f}-{max(times):.2f} s over {len(times)} loads")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("section", choices=("overhead", "open"))
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--n-masks", type=int, default=1000)
    parser.add_argument("--curve-steps", type=int, default=56)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--methods", type=int, default=5)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    overhead(args) if args.section == "overhead" else open_report(args)


if __name__ == "__main__":
    main()
