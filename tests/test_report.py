"""The HTML report's data: thumbnails, the disagreement of maps, run.js against results.csv,
rebuilding. What a browser shows of it is tested in test_report_browser.py."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr
from test_evaluation import BOX, SETTINGS, BoxModel, _dataset, _write_images

from captum_rise.cli import main
from captum_rise.evaluation import evaluate_dataset, write_report
from captum_rise.evaluation.agreement import map_disagreement
from captum_rise.evaluation.thumbnails import (
    THUMBNAIL_SIDE,
    image_key,
    map_path,
    photo_path,
    read_map,
    save_map,
    save_photo,
)

METHODS = ["rise", "hsic", "gradcam"]


def read_script(path: Path):
    """The data of a report script, ``window.name({...});``."""
    text = path.read_text()
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


def report_files(report_dir: Path) -> dict[str, bytes]:
    return {
        p.relative_to(report_dir).as_posix(): p.read_bytes()
        for p in sorted(report_dir.rglob("*"))
        if p.is_file()
    }


def assert_same_report(report_dir: Path, expected_dir: Path) -> None:
    """Two runs' reports show the same images, maps, targets and AUCs; the AUCs, curves and
    maps up to float32 rounding between runs (processes with other thread counts sum in
    another order), the seconds aside."""
    mine, theirs = (
        read_script(report_dir / "data/run.js"),
        read_script(expected_dir / "data/run.js"),
    )
    assert mine["methods"] == theirs["methods"]
    assert [i["id"] for i in mine["images"]] == [i["id"] for i in theirs["images"]]
    for a, b in zip(mine["images"], theirs["images"]):
        assert (a["key"], a["target"], a["target_name"], a["photo"]) == (
            b["key"],
            b["target"],
            b["target_name"],
            b["photo"],
        )
    seconds = mine["row_fields"].index("seconds")
    for a, b in zip(mine["rows"], theirs["rows"]):
        numbers = [i for i, v in enumerate(b) if isinstance(v, float) and i != seconds]
        assert [v for i, v in enumerate(a) if i not in numbers and i != seconds] == [
            v for i, v in enumerate(b) if i not in numbers and i != seconds
        ]
        assert [a[i] for i in numbers] == pytest.approx([b[i] for i in numbers], rel=1e-4, abs=1e-6)
    names = {n for n in report_files(expected_dir) if n != "data/run.js"}
    assert set(report_files(report_dir)) - {"data/run.js"} == names


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A BoxModel run over 4 images (2 with boxes) and an unreadable file, with the report."""
    _write_images(tmp_path / "data")
    (tmp_path / "data" / "broken.jpg").write_text("not a photo")
    y0, y1, x0, x1 = BOX
    evaluate_dataset(
        BoxModel(),
        _dataset(tmp_path / "data"),
        tmp_path / "out",
        METHODS,
        class_names=["bright box", "nothing"],
        boxes={"dogs/image0.png": [(x0, y0, x1, y1)], "cats/image1.png": [(x0, y0, x1, y1)]},
        **SETTINGS,
    )
    return tmp_path / "out"


def test_a_saved_map_keeps_its_range_and_its_order(tmp_path):
    saliency = torch.linspace(0.3, 2.0, 48 * 40).reshape(48, 40) ** 3
    save_map(tmp_path, "a/b c.png", "rise", saliency)
    values, low, high = read_map(map_path(tmp_path, "a/b c.png", "rise"))
    assert values.dtype == np.uint8 and values.shape == (48, 40)
    assert (low, high) == pytest.approx((float(saliency.min()), float(saliency.max())), rel=1e-5)
    restored = low + values / 255 * (high - low)
    # 8 bits over the range: half a step of error at most, and the order is kept up to ties
    assert np.abs(restored - saliency.numpy()).max() <= (high - low) / 510 + 1e-6
    assert np.all(np.diff(values.ravel().astype(int)) >= 0)
    save_map(tmp_path, "flat", "rise", torch.full((5, 5), 0.25))
    values, low, high = read_map(map_path(tmp_path, "flat", "rise"))
    assert (low, high) == (0.25, 0.25) and not values.any()


def test_a_signed_map_is_saved_over_a_range_symmetric_about_0(tmp_path):
    saliency = torch.linspace(-0.5, 2.0, 48 * 40).reshape(48, 40)
    save_map(tmp_path, "signed", "ig", saliency)
    values, low, high = read_map(map_path(tmp_path, "signed", "ig"))
    assert (low, high) == pytest.approx((-2.0, 2.0), rel=1e-5)
    # 0 is the middle gray (half a step of rounding), so the page can centre its scale there
    zero = np.abs(saliency.numpy()).argmin()
    assert abs(int(values.ravel()[zero]) - 127.5) <= 0.5 + 255 * 2.5 / (48 * 40) / 4
    restored = low + values / 255 * (high - low)
    assert np.abs(restored - saliency.numpy()).max() <= (high - low) / 510 + 1e-6


def test_thumbnails_are_small_and_photos_are_shown_as_pixels(tmp_path):
    big = torch.rand(3, 600, 300)
    save_photo(tmp_path, "big", big)
    save_map(tmp_path, "big", "ig", big[0])
    with Image.open(photo_path(tmp_path, "big")) as photo:
        assert photo.size == (THUMBNAIL_SIDE // 2, THUMBNAIL_SIDE) and photo.mode == "RGB"
    assert read_map(map_path(tmp_path, "big", "ig"))[0].shape == (
        THUMBNAIL_SIDE,
        THUMBNAIL_SIDE // 2,
    )
    # a normalised input is stretched to its range; pixels in [0, 1] are kept as they are
    gray = torch.full((3, 8, 8), 0.5)
    gray[:, :4] = -2.0
    save_photo(tmp_path, "normalised", gray)
    save_photo(tmp_path, "pixels", gray.clamp(0, 1))
    with (
        Image.open(photo_path(tmp_path, "normalised")) as a,
        Image.open(photo_path(tmp_path, "pixels")) as b,
    ):
        assert np.asarray(a)[6, 4, 0] > 240 and 120 < np.asarray(b)[6, 4, 0] < 135
    save_photo(tmp_path, "one channel", torch.rand(1, 8, 8))
    with Image.open(photo_path(tmp_path, "one channel")) as photo:
        assert photo.mode == "L"
    assert not list(tmp_path.rglob("*.tmp"))  # written whole, then renamed
    assert image_key("a/b c.png") == image_key("a/b c.png") != image_key("a/b d.png")


def test_map_disagreement_is_one_minus_the_mean_spearman_correlation():
    rng = np.random.default_rng(0)
    a, b, c = (rng.random((64, 48)) for _ in range(3))
    assert map_disagreement([a]) is None and map_disagreement([]) is None
    assert map_disagreement([a, a * 3 + 1]) == pytest.approx(0.0, abs=1e-12)
    assert map_disagreement([a, -a]) == pytest.approx(2.0, abs=1e-12)
    assert map_disagreement([a, np.zeros_like(a)]) == 1.0  # a constant map: unrelated

    def pooled(m):  # 64x48 to 32x24 by 2x2 means: the measure's pooling
        return m.reshape(32, 2, 24, 2).mean(axis=(1, 3)).ravel()

    expected = 1 - np.mean(
        [spearmanr(pooled(x), pooled(y))[0] for x, y in ((a, b), (a, c), (b, c))]
    )
    assert map_disagreement([a, b, c]) == pytest.approx(expected, abs=1e-12)
    ties = np.repeat(np.arange(4.0), 16).reshape(8, 8)  # ties share their mean rank
    noisy = ties + rng.random((8, 8)) * 0.1
    assert map_disagreement([ties, noisy]) == pytest.approx(
        1 - spearmanr(ties.ravel(), noisy.ravel())[0], abs=1e-12
    )


def test_the_report_holds_what_results_csv_holds(run_dir):
    report = run_dir / "report"
    data = read_script(report / "data/run.js")
    with open(run_dir / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert data["methods"] == sorted(METHODS)
    assert [i["id"] for i in data["images"]] == sorted({r["image"] for r in rows})
    fields = data["row_fields"]
    shown = {
        (data["images"][e[0]]["id"], data["methods"][e[1]]): dict(zip(fields, e))
        for e in data["rows"]
    }
    assert len(shown) == len(rows) == 15
    for row in rows:
        entry = shown[(row["image"], row["method"])]
        if row["error"]:
            assert entry["error"] == row["error"] and entry["deletion_auc"] is None
            continue
        for column in ("deletion_auc", "insertion_auc", "seconds"):
            assert entry[column] == float(row[column])
        hit = None if row["pointing_hit"] == "" else int(row["pointing_hit"])
        assert entry["error"] is None and entry["pointing_hit"] == hit
        assert (hit is not None) == (row["image"] in ("dogs/image0.png", "cats/image1.png"))
        _, low, high = read_map(map_path(report, row["image"], row["method"]))
        assert (entry["map_low"], entry["map_high"]) == (low, high) and low <= high
        curves = read_script(
            report / f"data/images/{image_key(row['image'])[:2]}/{image_key(row['image'])}.js"
        )["curves"][row["method"]]
        assert curves["deletion"] == [float(v) for v in row["deletion_curve"].split()]
        assert curves["insertion"] == [float(v) for v in row["insertion_curve"].split()]
    for image in data["images"]:
        mine = [r for r in rows if r["image"] == image["id"]]
        if image["id"] == "broken.jpg":
            assert image["score"] is None and image["disagreement"] is None
            assert not image["photo"]
            continue
        assert image["target"] == int(mine[0]["target"])
        assert image["target_name"] == ["bright box", "nothing"][image["target"]]
        assert image["score"] == float(mine[0]["deletion_curve"].split()[0])
        assert image["photo"] and 0 <= image["disagreement"] <= 2
    summaries = {s["method"]: s for s in data["summaries"]}
    markdown = (run_dir / "summary.md").read_text()
    for method, s in summaries.items():  # the figures of summary.md
        d, i = s["deletion"], s["insertion"]
        assert (
            f"| {method} | 4 | 1 | {d[0]:.4f} [{d[1]:.4f}, {d[2]:.4f}] | "
            f"{i[0]:.4f} [{i[1]:.4f}, {i[2]:.4f}] | {s['pointing']:.3f} |" in markdown
        )
    assert data["run"]["versions"]["captum_rise"] and data["run"]["failed_rows"] == 3
    assert data["run"]["model"] == "model" and data["run"]["seed"] == 0


def test_the_report_is_a_few_tens_of_kb_per_image_and_method(run_dir):
    files = report_files(run_dir / "report")
    per_image = [len(v) for k, v in files.items() if k.startswith(("assets/", "data/images/"))]
    assert sum(per_image) / (4 * len(METHODS)) < 20_000  # 32x32 images: a few kB each
    assert all(len(files[name]) > 0 for name in ("index.html", "report.js", "report.css"))


def test_the_command_rebuilds_the_same_report(run_dir, capsys):
    written = report_files(run_dir / "report")
    (run_dir / "report" / "data" / "run.js").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "index.html").as_uri() in capsys.readouterr().out
    assert report_files(run_dir / "report") == written


def test_no_report_and_no_results_are_clear(tmp_path, capsys):
    _write_images(tmp_path / "data")
    evaluate_dataset(
        BoxModel(), _dataset(tmp_path / "data"), tmp_path / "out", ["gradcam"], report=False,
        **SETTINGS,
    )  # fmt: skip
    assert not (tmp_path / "out" / "report").exists()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no evaluation results" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no evaluation results"):
        write_report(tmp_path / "empty")
    # a run without thumbnails still gets a report, without pictures
    write_report(tmp_path / "out")
    data = read_script(tmp_path / "out" / "report" / "data/run.js")
    assert not any(i["photo"] for i in data["images"])
    assert all(e[data["row_fields"].index("map_low")] is None for e in data["rows"])


def test_a_thumbnail_that_cannot_be_written_fails_its_row_and_is_retried(tmp_path, monkeypatch):
    from captum_rise.evaluation import runner

    def save_or_fail(report_dir, image_id, method, saliency):
        if method == "rise":
            raise OSError(28, "No space left on device")
        save_map(report_dir, image_id, method, saliency)

    _write_images(tmp_path / "data")
    arguments = (BoxModel(), _dataset(tmp_path / "data"), tmp_path / "out", ["gradcam", "rise"])
    monkeypatch.setattr(runner, "save_map", save_or_fail)
    rows = evaluate_dataset(*arguments, n_images=1, **SETTINGS)
    assert [(r["method"], r["error"]) for r in rows] == [
        ("gradcam", ""),
        ("rise", "OSError: [Errno 28] No space left on device"),
    ]
    monkeypatch.undo()  # space freed: the rerun redoes the failed row only
    rows = evaluate_dataset(*arguments, n_images=1, **SETTINGS)
    assert [r["error"] for r in rows] == ["", ""]
    assert map_path(tmp_path / "out" / "report", rows[1]["image"], "rise").exists()
