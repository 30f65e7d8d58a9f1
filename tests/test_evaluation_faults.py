"""The dataset runner under real faults (issue 21): a run killed with SIGKILL and resumed, two
runs on one folder at once, bad images and a failing model, a full disk.

The runs that must die or overlap are real processes (``sys.executable`` on a small script);
their results are compared with a clean run of the same settings.
"""

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_evaluation import BoxModel, _assert_same_results, _dataset, _write_images

from captum_rise.evaluation import RunInProgressError, evaluate_dataset
from captum_rise.evaluation.results import read_rows

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and locks")

N_IMAGES = 6
METHODS = ["rise", "gradcam"]
SETTINGS = dict(n_masks=64, curve_steps=8, show_progress=False)

CHILD = """
import os, resource, signal, sys, time
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_evaluation import BoxModel, _dataset
from captum_rise.evaluation import evaluate_dataset

seconds_per_image, file_size_limit = {seconds_per_image!r}, {file_size_limit!r}
if file_size_limit:  # a full disk: writes past this size fail with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
if "WORLD_SIZE" in os.environ:  # under torchrun: each rank leaves its pid
    dist.init_process_group("gloo")
    os.makedirs({out!r}, exist_ok=True)
    with open(os.path.join({out!r}, f"pid-{{dist.get_rank()}}"), "w") as file:
        file.write(str(os.getpid()))


class SlowImages(type(_dataset({data!r}))):
    def __getitem__(self, index):
        time.sleep(seconds_per_image)
        return super().__getitem__(index)


dataset = SlowImages({data!r}, _dataset({data!r}).transform)
evaluate_dataset(BoxModel(), dataset, {out!r}, {methods!r}, **{settings!r})
if dist.is_initialized():
    dist.destroy_process_group()
"""


def start_run(
    data: Path,
    out: Path,
    seconds_per_image: float = 0.0,
    file_size_limit: int = 0,
    torchrun: bool = False,
):
    """The run as a process of its own: ``python script`` or ``torchrun`` with 2 ranks."""
    script = out.parent / f"{out.name}-run.py"
    script.write_text(
        textwrap.dedent(
            CHILD.format(
                tests=str(Path(__file__).parent),
                data=str(data),
                out=str(out),
                methods=METHODS,
                settings=SETTINGS,
                seconds_per_image=seconds_per_image,
                file_size_limit=file_size_limit,
            )
        )
    )
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    process = subprocess.Popen(
        [*launcher, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # its own process group: killed whole if a test fails
    )
    STARTED.append(process)
    return process


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_process_left_behind():
    """A failed test must not leave its runs (or torchrun's ranks) running."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_rows(out: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(read_rows(out)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run wrote no rows in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def data_and_clean_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    _write_images(root / "data", N_IMAGES)
    clean = evaluate_dataset(
        BoxModel(), _dataset(root / "data"), root / "clean", METHODS, **SETTINGS
    )
    assert len(clean) == N_IMAGES * len(METHODS) and all(r["error"] == "" for r in clean)
    return root / "data", clean


def read_results(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow  # CI runs it (make test-slow)
def test_a_run_killed_with_sigkill_resumes_without_duplicate_missing_or_changed_rows(
    data_and_clean_run, tmp_path
):
    data, clean = data_and_clean_run
    out = tmp_path / "killed"
    run = start_run(data, out, seconds_per_image=0.5)
    wait_for_rows(out, 3, run)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL
    assert not (out / "results.csv").exists()  # killed mid-run
    written = len(read_rows(out))
    assert 3 <= written < N_IMAGES * len(METHODS)

    resumed = start_run(data, out)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    rows = read_results(out)
    keys = [(r["image"], r["method"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_IMAGES * len(METHODS)
    _assert_same_results(rows, clean)


@pytest.mark.slow  # CI runs it (make test-slow)
def test_a_second_run_on_the_same_folder_is_refused(data_and_clean_run, tmp_path):
    data, clean = data_and_clean_run
    out = tmp_path / "busy"
    first = start_run(data, out, seconds_per_image=0.4)
    wait_for_rows(out, 1, first)
    with pytest.raises(RunInProgressError, match="another run is writing to"):
        evaluate_dataset(BoxModel(), _dataset(data), out, METHODS, **SETTINGS)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    _assert_same_results(read_results(out), clean)  # nothing interleaved


@pytest.mark.slow  # CI runs it (make test-slow)
def test_a_full_disk_is_a_clear_error_and_nothing_half_written_is_trusted(
    data_and_clean_run, tmp_path
):
    data, clean = data_and_clean_run
    out = tmp_path / "full"
    # room for run.json, the part file's header and about one row
    full = start_run(data, out, file_size_limit=3000)
    _, stderr = full.communicate(timeout=300)
    assert full.returncode != 0
    assert "could not write a results row" in stderr and "rerun the same command" in stderr
    kept = read_rows(out)
    assert len(kept) < N_IMAGES * len(METHODS)
    assert not (out / "parts" / "rank-0.csv").read_text().endswith("\n")  # a row was cut short
    for key, row in kept.items():  # the rows kept are whole and equal to the clean run's
        _assert_same_results([row], [r for r in clean if (r["image"], r["method"]) == key])

    resumed = start_run(data, out)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    _assert_same_results(read_results(out), clean)


def test_bad_images_and_a_failing_model_are_rows_with_errors(tmp_path):
    data = tmp_path / "data"
    _write_images(data, 2)
    (data / "dogs" / "broken.png").write_bytes(b"\x89PNG not really an image")
    Image.fromarray(np.full((40, 40), 200, dtype=np.uint8), mode="L").save(
        data / "dogs" / "gray.png"
    )
    Image.fromarray(np.full((32, 32, 3), 255, dtype=np.uint8)).save(data / "cats" / "white.png")

    class FailsOnWhite(BoxModel):
        def forward(self, x):
            if bool((x.flatten(1).mean(dim=1) > 0.99).any()):
                raise RuntimeError("the model failed on this image")
            return super().forward(x)

    rows = evaluate_dataset(FailsOnWhite(), _dataset(data), tmp_path / "out", METHODS, **SETTINGS)
    by_image = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row)
    assert len(rows) == 5 * len(METHODS)  # every image has its rows; the run went on
    assert all("error" in r and r["error"] for r in by_image["dogs/broken.png"])
    assert all("the model failed on this image" in r["error"] for r in by_image["cats/white.png"])
    assert all(r["error"] == "" for r in by_image["dogs/gray.png"])  # converted to RGB, 40x40
    good = [
        r
        for name, rs in by_image.items()
        for r in rs
        if name.startswith(("dogs/image", "cats/image"))
    ]
    assert len(good) == 2 * len(METHODS) and all(r["error"] == "" for r in good)
    assert torch.isfinite(torch.tensor([float(r["deletion_auc"]) for r in good])).all()


def test_a_row_cut_inside_its_last_column_is_not_read_back(data_and_clean_run, tmp_path):
    """Without the final ``complete`` column, a row cut inside its insertion curve would be
    read back with a shorter curve (a changed row)."""
    _, clean = data_and_clean_run
    from captum_rise.evaluation.results import PartWriter

    writer = PartWriter(tmp_path, rank=0)
    writer.write(clean[0])
    writer.write(clean[1])
    writer.close()
    path = tmp_path / "parts" / "rank-0.csv"
    text = path.read_text()
    cut = text.rindex(" ", 0, text.rindex(",yes"))  # inside the second row's last curve
    path.write_text(text[:cut])
    assert list(read_rows(tmp_path)) == [(clean[0]["image"], clean[0]["method"])]


@pytest.mark.slow  # CI runs it (make test-slow)
def test_a_rank_killed_under_torchrun_resumes_to_the_clean_results(data_and_clean_run, tmp_path):
    data, clean = data_and_clean_run
    out = tmp_path / "torchrun"
    run = start_run(data, out, seconds_per_image=0.6, torchrun=True)
    wait_for_rows(out, 2, run, timeout=180)
    os.kill(int((out / "pid-1").read_text()), signal.SIGKILL)  # one rank dies
    run.communicate(timeout=120)
    assert run.returncode != 0  # torchrun reports the failed rank and stops the other
    assert not (out / "results.csv").exists()

    resumed = start_run(data, out, torchrun=True)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    rows = read_results(out)
    keys = [(r["image"], r["method"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_IMAGES * len(METHODS)
    _assert_same_results(rows, clean)
