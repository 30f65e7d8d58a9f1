"""The dataset runner on 1 and on 2 processes (issue 10): images per second and their ratio.

Both runs explain the same photos (bundled with scikit-image, scikit-learn and
matplotlib, plus a mirrored copy to make 8) with the same arguments, one after
the other in this script, each process on 1 thread:

* ``OMP_NUM_THREADS=1 captum-rise evaluate DATA ...`` (one process);
* ``torchrun --nproc-per-node 2 -m captum_rise evaluate DATA ...`` (two gloo
  ranks; torchrun gives each 1 thread).

The wall time covers the whole command (start, model load, explanation,
deletion and insertion, merge and summary). The two result files are
compared: the AUCs must agree, whatever the number of processes.

For scale, the script also measures what the machine itself allows: the same
MobileNetV2 forward loop (1 thread, batch 4) in one process, then in two
processes at once; the ratio of their images per second is the ceiling of
any 2-process speed-up here (cores shared with other tenants or by SMT, memory
bandwidth).

Usage: ``python benchmarks/evaluate_scaling.py [--methods rise,gradcam] [--n-masks 500]
[--curve-steps 32] [--device cpu]``
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bundled_photos
from PIL import ImageOps


def write_photos(folder: Path) -> int:
    photos = bundled_photos()
    photos["chelsea_mirrored"] = ImageOps.mirror(photos["chelsea"])
    for name, photo in photos.items():
        photo.convert("RGB").save(folder / f"{name}.png")
    return len(photos)


def timed_run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


FORWARD_LOOP = """
import time, torch, torchvision
torch.set_num_threads(1)
model = torchvision.models.mobilenet_v2().eval().to(memory_format=torch.channels_last)
x = torch.rand(4, 3, 224, 224).contiguous(memory_format=torch.channels_last)
with torch.no_grad():
    model(x)
    start = time.perf_counter()
    for _ in range(40):
        model(x)
print(160 / (time.perf_counter() - start))
"""


def forward_ceiling(env: dict[str, str]) -> float:
    """Images/s of two concurrent 1-thread forward loops over that of one loop."""
    alone = float(
        subprocess.run(
            [sys.executable, "-c", FORWARD_LOOP],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    pair = [
        subprocess.Popen(
            [sys.executable, "-c", FORWARD_LOOP], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    together = sum(float(p.communicate()[0]) for p in pair)
    return together / alone


def aucs(path: Path) -> dict[tuple, tuple]:
    with open(path, newline="") as file:
        return {
            (r["image"], r["method"]): (float(r["deletion_auc"]), float(r["insertion_auc"]))
            for r in csv.DictReader(file)
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="rise,gradcam")
    parser.add_argument("--n-masks", default="500")
    parser.add_argument("--curve-steps", default="32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "photos"
        data.mkdir()
        n_images = write_photos(data)
        common = [
            "-m", "captum_rise", "evaluate", str(data), "--methods", args.methods,
            "--n-masks", args.n_masks, "--curve-steps", args.curve_steps, "--device", args.device,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
        ceiling = forward_ceiling(env) if args.device == "cpu" else None
        one = timed_run([sys.executable, *common, "--out", f"{tmp}/one"], env)
        two = timed_run([*torchrun, *common, "--out", f"{tmp}/two"], env)
        first, second = (
            aucs(Path(tmp) / "one" / "results.csv"),
            aucs(Path(tmp) / "two" / "results.csv"),
        )
        worst = max(abs(a - b) for key in first for a, b in zip(first[key], second[key]))
    print(
        f"{n_images} photos, MobileNetV2, methods {args.methods}, {args.n_masks} masks, "
        f"{args.curve_steps} curve steps, device {args.device}, 1 thread per process "
        f"({os.cpu_count()} cores)"
    )
    print("| processes | wall s | images / s |")
    print("|---|---|---|")
    print(f"| 1 | {one:.1f} | {n_images / one:.3f} |")
    print(f"| 2 (torchrun, gloo) | {two:.1f} | {n_images / two:.3f} |")
    print(f"speed-up with 2 processes: {one / two:.2f}x")
    if ceiling is not None:
        print(f"the machine's ceiling (two 1-thread forward loops at once vs one): {ceiling:.2f}x")
    print(f"largest AUC difference between the two runs: {worst:.2g}")


if __name__ == "__main__":
    main()
