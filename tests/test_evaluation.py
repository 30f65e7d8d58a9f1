"""The dataset runner: rows, seeds, failures, resumption, boxes, summary, ranks."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision.transforms.functional as TF
from PIL import Image

from captum_rise.cli import main
from captum_rise.evaluation import (
    COLUMNS,
    METHOD_NAMES,
    ImageFiles,
    bootstrap_interval,
    evaluate_dataset,
    image_seed,
    read_boxes,
)
from captum_rise.evaluation.data import box_region, resize_crop_boxes
from captum_rise.evaluation.results import PartWriter, read_rows

BOX = (8, 20, 4, 14)  # rows y0:y1, columns x0:x1 of the 32x32 images
SETTINGS = dict(n_masks=120, n_designs=64, curve_steps=8, show_progress=False)


class BoxModel(torch.nn.Module):
    """Class 0's logit grows with the brightness inside :data:`BOX`; class 1's is 0.

    Only the box matters, so a faithful map peaks inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.gray = torch.nn.Conv2d(3, 1, 1, bias=False)
        torch.nn.init.constant_(self.gray.weight, 1 / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = BOX
        brightness = self.gray(x)[:, 0, y0:y1, x0:x1].mean(dim=(1, 2))
        return torch.stack([20 * (brightness - 0.5), torch.zeros_like(brightness)], dim=1)


def _write_images(root: Path, n: int = 4) -> None:
    """Smooth random 32x32 photos (SLIC finds superpixels in them), in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(n):
        coarse = torch.as_tensor(rng.random((1, 3, 4, 4)), dtype=torch.float32)
        image = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")[0]
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        TF.to_pil_image(image).save(folder / f"image{i}.png")


def _dataset(root: Path) -> ImageFiles:
    return ImageFiles(root, TF.to_tensor)


def _read(path: Path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _comparable(rows):
    """Rows keyed by (image, method), without what may differ between runs (time, rank)."""
    return {
        (r["image"], r["method"]): {k: v for k, v in r.items() if k not in ("seconds", "rank")}
        for r in rows
    }


def _assert_same_results(rows, expected):
    mine, theirs = _comparable(rows), _comparable(expected)
    assert mine.keys() == theirs.keys()
    for key in theirs:
        for column in ("deletion_auc", "insertion_auc"):
            assert float(mine[key][column]) == pytest.approx(float(theirs[key][column]), rel=1e-4)
        others = [c for c in theirs[key] if c not in ("deletion_auc", "insertion_auc")]
        others = [c for c in others if not c.endswith("_curve")]
        assert {c: mine[key][c] for c in others} == {c: theirs[key][c] for c in others}


@pytest.fixture
def images(tmp_path) -> Path:
    _write_images(tmp_path / "data")
    return tmp_path / "data"


def test_image_seed_depends_on_the_run_seed_and_the_image_only():
    assert image_seed(0, "a/b.png") == image_seed(0, "a/b.png")
    assert image_seed(0, "a/b.png") != image_seed(1, "a/b.png")
    assert image_seed(0, "a/b.png") != image_seed(0, "a/c.png")
    assert 0 <= image_seed(123, "x") < 2**62


def test_every_method_gives_one_row_per_image_and_failures_are_rows(images, tmp_path, monkeypatch):
    # extremal perturbation's 300 iterations would be half of this test's time: 30 run the same code
    monkeypatch.setattr("captum_rise.evaluation.methods.EXTREMAL_ITERATIONS", 30)
    (images / "broken.jpg").write_text("not a photo")
    y0, y1, x0, x1 = BOX
    boxes = {
        image: [(x0, y0, x1, y1)]
        for image in ("dogs/image0.png", "cats/image3.png", "cats/image1.png")
    }
    rows = evaluate_dataset(
        BoxModel(), _dataset(images), tmp_path / "out", METHOD_NAMES, boxes=boxes, **SETTINGS
    )
    assert _read(tmp_path / "out" / "results.csv") == rows
    assert list(rows[0]) == list(COLUMNS)
    assert {(r["image"], r["method"]) for r in rows} == {
        (image, method)
        for image in [
            "broken.jpg",
            "cats/image1.png",
            "cats/image3.png",
            "dogs/image0.png",
            "dogs/image2.png",
        ]
        for method in METHOD_NAMES
    }
    for row in rows:
        if row["image"] == "broken.jpg":
            assert "ImageLoadError" in row["error"] and row["deletion_auc"] == ""
            continue
        assert row["error"] == "", row
        assert 0 <= float(row["deletion_auc"]) <= 1 and 0 <= float(row["insertion_auc"]) <= 1
        assert int(row["seed"]) == image_seed(0, row["image"])
        assert len(row["deletion_curve"].split()) == 101
        assert json.loads(row["settings"])  # the method's settings, recorded
        assert (row["pointing_hit"] != "") == (row["image"] in boxes)
    # Only the box matters to the model: for class 0 (a bright box) RISE's maximum falls on
    # it. (For class 1 the box matters negatively: the maximum is anywhere else.)
    rise = [r for r in rows if r["method"] == "rise" and r["pointing_hit"] != ""]
    assert [r["pointing_hit"] for r in rise if r["target"] == "0"] == ["1", "1"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    for method in METHOD_NAMES:
        assert f"| {method} | 4 | 1 |" in summary
    assert (tmp_path / "out" / "summary.png").stat().st_size > 10_000
    assert not (tmp_path / "out" / "parts").exists()


class _StopsAt(torch.utils.data.Dataset):
    """The dataset, but taking item ``stop`` interrupts the run (a pre-emption)."""

    def __init__(self, dataset, stop: int) -> None:
        self.dataset, self.stop = dataset, stop

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if index == self.stop:
            raise KeyboardInterrupt
        return self.dataset[index]


def test_a_stopped_run_resumes_without_repeating_or_missing_rows(images, tmp_path):
    methods = ["rise", "gradcam"]
    full = evaluate_dataset(BoxModel(), _dataset(images), tmp_path / "full", methods, **SETTINGS)
    ids = _dataset(images).ids
    with pytest.raises(KeyboardInterrupt):
        evaluate_dataset(
            BoxModel(),
            _StopsAt(_dataset(images), 2),
            tmp_path / "out",
            methods,
            image_ids=ids,
            **SETTINGS,
        )
    before = read_rows(tmp_path / "out")
    assert {image for image, _ in before} == set(ids[:2])
    resumed = evaluate_dataset(BoxModel(), _dataset(images), tmp_path / "out", methods, **SETTINGS)
    assert len(resumed) == len({(r["image"], r["method"]) for r in resumed}) == len(full)
    _assert_same_results(resumed, full)
    for row in resumed:  # rows done before the stop were kept, not redone
        if (row["image"], row["method"]) in before:
            assert row["seconds"] == before[(row["image"], row["method"])]["seconds"]
    _assert_report_rebuilds(tmp_path / "out", tmp_path / "full")


def _assert_report_rebuilds(out_dir: Path, expected_dir: Path) -> None:
    """``captum-rise report`` rebuilds the run's own report to the byte, and it shows what
    the report of ``expected_dir`` (a run in one go, on one process) shows."""
    from test_report import assert_same_report, report_files  # it imports this module

    written = report_files(out_dir / "report")
    shutil.rmtree(out_dir / "report" / "data")
    assert main(["report", str(out_dir)]) == 0
    assert report_files(out_dir / "report") == written
    assert_same_report(out_dir / "report", expected_dir / "report")


def test_a_rerun_with_other_settings_is_refused(images, tmp_path):
    evaluate_dataset(
        BoxModel(), _dataset(images), tmp_path / "out", ["rise"], n_images=1, **SETTINGS
    )
    with pytest.raises(ValueError, match="n_masks"):
        evaluate_dataset(
            BoxModel(), _dataset(images), tmp_path / "out", ["rise"], **{**SETTINGS, "n_masks": 7}
        )


def test_a_half_written_row_is_dropped_and_writing_goes_on(tmp_path):
    writer = PartWriter(tmp_path, rank=0)
    good = dict.fromkeys(COLUMNS, "1") | {"image": "a", "method": "rise", "error": ""}
    writer.write(good)
    writer.close()
    with open(tmp_path / "parts" / "rank-0.csv", "a") as file:
        file.write("b,rise,3,0.")  # the crash
    writer = PartWriter(tmp_path, rank=0)
    writer.write(good | {"image": "c"})
    writer.close()
    assert sorted(read_rows(tmp_path)) == [("a", "rise"), ("c", "rise")]


def test_each_row_records_the_models_top_class_and_its_probability(images, tmp_path):
    class_map = {"cats": 1, "dogs": 1}  # explain class 1, whatever the model predicts
    dataset = ImageFiles(images, TF.to_tensor, class_map=class_map)
    rows = evaluate_dataset(BoxModel(), dataset, tmp_path / "out", ["rise"], **SETTINGS)
    for row in rows:
        x = TF.to_tensor(Image.open(images / row["image"]).convert("RGB"))[None]
        probabilities = torch.softmax(BoxModel()(x), dim=1)[0]
        assert row["target"] == "1"
        assert row["predicted"] == str(int(probabilities.argmax()))
        # written with 6 significant digits
        assert float(row["predicted_score"]) == pytest.approx(float(probabilities.max()), rel=1e-5)


def test_rows_of_an_earlier_version_are_read_and_its_part_file_is_resumed(tmp_path):
    earlier = [c for c in COLUMNS if c not in ("predicted", "predicted_score")]
    (tmp_path / "parts").mkdir()
    row = dict.fromkeys(earlier, "1") | {"method": "rise", "error": "", "complete": "yes"}
    for path in (tmp_path / "results.csv", tmp_path / "parts" / "rank-0.csv"):
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=earlier)
            writer.writeheader()
            writer.writerow(row | {"image": path.stem})
    rows = read_rows(tmp_path)
    assert sorted(rows) == [("rank-0", "rise"), ("results", "rise")]
    assert {(r["predicted"], r["predicted_score"]) for r in rows.values()} == {("", "")}
    writer = PartWriter(tmp_path, rank=0)  # resuming rewrites the part file under the new header
    writer.write(dict.fromkeys(COLUMNS, "2") | {"image": "b", "method": "rise", "error": ""})
    writer.close()
    assert _read(tmp_path / "parts" / "rank-0.csv")[0]["predicted"] == ""
    assert sorted(read_rows(tmp_path)) == [("b", "rise"), ("rank-0", "rise"), ("results", "rise")]
    assert read_rows(tmp_path)[("b", "rise")]["predicted"] == "2"


def test_bad_data_and_methods_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="not a folder"):
        ImageFiles(tmp_path / "missing", TF.to_tensor)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        ImageFiles(tmp_path / "empty", TF.to_tensor)
    _write_images(tmp_path / "data", n=1)
    with pytest.raises(ValueError, match="methods must be some of rise"):
        evaluate_dataset(
            BoxModel(), _dataset(tmp_path / "data"), tmp_path / "out", ["rise", "lime"]
        )
    # The command line checks its arguments before it loads a model.
    assert main(["evaluate", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no image files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            ["evaluate", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--methods", "lime"]
        )
    assert "methods must be some of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--n-masks", "0"])
    assert "must be >= 1" in capsys.readouterr().err


def test_boxes_file_and_its_mapping_into_the_crop(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("image,x0,y0,x1,y1\na.png,10,20,50,60\na.png,0,0,5,5\nb.png,1,1,2,2\n")
    assert read_boxes(path) == {
        "a.png": [(10.0, 20.0, 50.0, 60.0), (0.0, 0.0, 5.0, 5.0)],
        "b.png": [(1.0, 1.0, 2.0, 2.0)],
    }
    path.write_text("image,x,y\n")
    with pytest.raises(ValueError, match="header must be image,x0,y0,x1,y1"):
        read_boxes(path)
    # Brute force: paint the box in an image, resize and crop it as torchvision does.
    image = np.zeros((300, 400), dtype=np.uint8)
    image[40:180, 250:390] = 255
    resized = TF.center_crop(TF.resize(Image.fromarray(image), 64), 56)
    ys, xs = np.nonzero(np.asarray(resized) > 127)
    (box,) = resize_crop_boxes([(250, 40, 390, 180)], (400, 300), 64, 56)
    region = box_region([box], 56, 56).numpy()
    painted = np.zeros_like(region)
    painted[ys, xs] = True
    assert (region != painted).sum() <= 0.1 * painted.sum()
    assert resize_crop_boxes([(0, 0, 20, 20)], (400, 300), 64, 56) == []  # cropped away


def test_bootstrap_interval():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.5, 0.1, 20), rng.normal(0.5, 0.1, 2000)
    for values in (small, large):
        low, high = bootstrap_interval(values)
        assert low < values.mean() < high
    assert np.ptp(bootstrap_interval(large)) < np.ptp(bootstrap_interval(small)) / 5
    assert bootstrap_interval([0.3]) == (0.3, 0.3)


WORLD_SIZE = 2


def _rank_worker(rank: int, store: str, data: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE)
    try:
        evaluate_dataset(
            BoxModel(), _dataset(Path(data)), out, ["rise", "hsic", "gradcam"], **SETTINGS
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # CI runs it (make test-slow)
def test_two_ranks_write_the_one_rank_results(images, tmp_path):
    _write_images(images / "more", n=3)  # 7 images: one rank gets one image more
    one = evaluate_dataset(
        BoxModel(), _dataset(images), tmp_path / "one", ["rise", "hsic", "gradcam"], **SETTINGS
    )
    mp.start_processes(
        _rank_worker,
        args=(str(tmp_path / "store"), str(images), str(tmp_path / "two")),
        nprocs=WORLD_SIZE,
        start_method="spawn",
    )
    two = _read(tmp_path / "two" / "results.csv")
    _assert_same_results(two, one)
    assert {r["rank"] for r in two} == {"0", "1"}
    assert "ranks: 2" in (tmp_path / "two" / "summary.md").read_text()
    _assert_report_rebuilds(tmp_path / "two", tmp_path / "one")


@pytest.mark.slow  # CI runs it (make test-slow)
def test_the_command_under_torchrun_on_a_real_classifier(tmp_path):
    """torchrun, 2 CPU processes, MobileNetV2 on two photos: folder classes, boxes, ranks."""
    skimage_data = pytest.importorskip("skimage.data")
    for folder, name in (("cat", "chelsea"), ("coffee", "coffee")):
        (tmp_path / "data" / folder).mkdir(parents=True)
        Image.fromarray(getattr(skimage_data, name)()).save(
            tmp_path / "data" / folder / f"{name}.png"
        )
    (tmp_path / "classes.json").write_text('{"cat": 281, "coffee": 967}')
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\ncat/chelsea.png,140,20,320,280\n")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "-m", "captum_rise", "evaluate", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
        "--methods", "rise,gradcam", "--n-masks", "20", "--curve-steps", "4",
        "--class-map", str(tmp_path / "classes.json"), "--boxes", str(tmp_path / "boxes.csv"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _read(tmp_path / "out" / "results.csv")
    assert {(r["image"], r["method"], r["target"]) for r in rows} == {
        ("cat/chelsea.png", "rise", "281"),
        ("cat/chelsea.png", "gradcam", "281"),
        ("coffee/coffee.png", "rise", "967"),
        ("coffee/coffee.png", "gradcam", "967"),
    }
    assert {r["rank"] for r in rows} == {"0", "1"} and all(r["error"] == "" for r in rows)
    assert [r["pointing_hit"] != "" for r in rows] == [True, True, False, False]
    assert "| rise | 2 | 0 |" in done.stdout  # rank 0 prints the summary
    # the report holds both ranks' pictures, and captum-rise report rebuilds it to the byte
    from test_report import read_script, report_files  # it imports this module

    report = tmp_path / "out" / "report"
    assert (report / "index.html").as_uri() in done.stdout
    data = read_script(report / "data" / "run.js")
    assert [i["target_name"] for i in data["images"]] == ["tabby", "espresso"]  # 281, 967
    assert all(e[data["row_fields"].index("map_low")] is not None for e in data["rows"])
    written = report_files(report)
    assert len([name for name in written if name.startswith("assets/")]) == 2 * 3
    shutil.rmtree(report / "data")
    assert main(["report", str(tmp_path / "out")]) == 0
    assert report_files(report) == written
