"""Comparing two evaluation runs (captum_rise.evaluation.drift, ``captum-rise compare``): the
agreement measures against brute force, the changes against the runs' own rows, the refusals,
the command. What a browser shows of the comparison report is in test_report_browser.py."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from test_evaluation import SETTINGS, BoxModel, _dataset, _write_images
from test_report import read_script

from captum_rise.cli import main
from captum_rise.evaluation import ImageFiles, evaluate_dataset
from captum_rise.evaluation.agreement import map_agreement, pooled_blocks
from captum_rise.evaluation.drift import (
    COMPARISON_COLUMNS,
    RunMismatchError,
    compare_runs,
    write_comparison,
)
from captum_rise.evaluation.drift_report import write_comparison_report
from captum_rise.evaluation.results import read_rows
from captum_rise.evaluation.summary import bootstrap_interval
from captum_rise.evaluation.thumbnails import map_path, read_map

METHODS = ["rise", "gradcam"]


class ShiftedBoxModel(BoxModel):
    """BoxModel looking at the image mirrored: its box, and so its evidence, is on the other
    side (columns 18 to 28, not 4 to 14)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flip(3))


def _run(images: Path, out: Path, model=None, **options) -> Path:
    dataset = options.pop("dataset", None) or _dataset(images)
    settings = {**SETTINGS, **options}
    methods = settings.pop("methods", METHODS)
    evaluate_dataset(model or BoxModel(), dataset, out, methods, **settings)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Runs over the same 4 images: ``a`` and ``again`` (the same settings, seed 1), ``shifted``
    (another model), ``fewer`` (2 images), ``other_target`` (class 1 explained), ``more_masks``."""
    root = tmp_path_factory.mktemp("runs")
    _write_images(root / "data")
    images = root / "data"
    # every run but one explains class 0 (the models may predict other classes)
    class_0, class_1 = (
        ImageFiles(images, _dataset(images).transform, class_map={"cats": c, "dogs": c})
        for c in (0, 1)
    )
    return {
        "a": _run(images, root / "a", dataset=class_0, save_maps=True),
        "again": _run(images, root / "again", dataset=class_0, seed=1, save_maps=True),
        "shifted": _run(
            images, root / "shifted", ShiftedBoxModel(), dataset=class_0, save_maps=True
        ),
        "fewer": _run(images, root / "fewer", dataset=class_0, n_images=2),
        "other_target": _run(images, root / "other_target", dataset=class_1),
        "more_masks": _run(
            images, root / "more_masks", dataset=class_0, n_masks=121, methods=["rise"]
        ),
    }


def test_map_agreement_is_spearman_and_top_overlap_on_blocks_by_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.random((20, 20)), rng.random((20, 20))  # 20 <= 32 a side: blocks are pixels
    spearman, overlap = map_agreement(a, b)
    assert spearman == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    k = 40  # 10 % of 400 pixels
    top = lambda m: {i for i, _ in sorted(enumerate(m.ravel()), key=lambda t: -t[1])[:k]}
    assert overlap == len(top(a) & top(b)) / k
    assert map_agreement(a, a * 2 + 1) == pytest.approx((1.0, 1.0))
    assert map_agreement(a, -a) == pytest.approx((-1.0, 0.0))
    flat = np.zeros_like(a)
    assert map_agreement(flat, flat)[0] == 1.0 and map_agreement(a, flat)[0] == 0.0
    # 224 a side: 32 blocks of 7x7 pixels, each its mean
    big = rng.random((224, 224))
    blocks = big.reshape(32, 7, 32, 7).mean(axis=(1, 3))
    assert pooled_blocks(big) == pytest.approx(blocks)
    with pytest.raises(ValueError, match="one shape"):
        map_agreement(a, big)


def test_a_run_against_itself_agrees_fully(runs):
    comparison = compare_runs(runs["a"], runs["a"])
    assert [s.name for s in comparison.summaries] == sorted(METHODS)  # as the run report
    for s in comparison.summaries:
        assert s.n_images == 4 and s.spearman[0] == pytest.approx(1.0)
        assert s.top_overlap == (1.0, 1.0, 1.0)
        assert s.deletion_change == (0.0, 0.0, 0.0) and s.insertion_change == (0.0, 0.0, 0.0)
        assert (s.n_predicted, s.n_class_changed) == (4, 0)
        assert s.score_change == (0.0, 0.0, 0.0)


def test_the_changes_are_the_runs_own_rows_and_the_intervals_are_paired(runs):
    comparison = compare_runs(runs["a"], runs["shifted"])
    rows_a, rows_b = read_rows(runs["a"]), read_rows(runs["shifted"])
    for row in comparison.rows:
        key = (row["image"], row["method_a"])
        for curve in ("deletion", "insertion"):
            a, b = float(rows_a[key][f"{curve}_auc"]), float(rows_b[key][f"{curve}_auc"])
            assert float(row[f"{curve}_a"]) == a and float(row[f"{curve}_b"]) == b
            assert float(row[f"{curve}_change"]) == pytest.approx(b - a, rel=1e-5, abs=1e-6)
        assert row["predicted_a"] == rows_a[key]["predicted"]
        assert row["predicted_b"] == rows_b[key]["predicted"]
    rise = next(s for s in comparison.summaries if s.name == "rise")
    changes = [float(r["insertion_change"]) for r in comparison.rows if r["method_a"] == "rise"]
    assert rise.insertion_change == pytest.approx((np.mean(changes), *bootstrap_interval(changes)))
    # the flipped model's evidence is elsewhere: its maps agree less than a second seed's
    again = compare_runs(runs["a"], runs["again"], ["rise"]).summaries[0]
    assert again.spearman[0] > 0.5 and rise.spearman[0] < again.spearman[0] - 0.3


def test_thumbnails_give_the_figures_of_the_full_maps(runs, tmp_path):
    full = compare_runs(runs["a"], runs["again"])
    for name in ("a", "again"):  # the same runs without their .npz maps
        copy = tmp_path / name
        (copy / "report").mkdir(parents=True)
        for item in ("results.csv", "run.json"):
            (copy / item).write_bytes((runs[name] / item).read_bytes())
        (copy / "report" / "assets").symlink_to(runs[name] / "report" / "assets")
    thumbnails = compare_runs(tmp_path / "a", tmp_path / "again")
    for x, y in zip(full.rows, thumbnails.rows):
        # 8 bits over the range: each pixel within 1/510 of the range, which may swap the
        # order of close pixels (blocks are pixels on these 32x32 maps, nothing averages out)
        assert float(x["spearman"]) == pytest.approx(float(y["spearman"]), abs=0.02)


def test_runs_of_other_images_targets_or_settings_are_refused_naming_the_difference(runs):
    other_images = r"gradcam, rise: other images \(4 in A, 2 in B; only in A: dogs/image0.png"
    with pytest.raises(RunMismatchError, match=other_images):
        compare_runs(runs["a"], runs["fewer"])
    other_targets = r"gradcam, rise: other targets on 4 images \(cats/image1.png \(0 in A, 1 in B\)"
    with pytest.raises(RunMismatchError, match=other_targets):
        compare_runs(runs["a"], runs["other_target"])
    with pytest.raises(RunMismatchError, match="rise n_masks: 120 in A, 121 in B"):
        compare_runs(runs["a"], runs["more_masks"])
    with pytest.raises(ValueError, match="'hsic' is not in run A"):
        compare_runs(runs["a"], runs["a"], ["hsic"])
    forced = compare_runs(runs["a"], runs["fewer"], force=True)
    assert forced.summaries[0].n_images == 2 and "other images" in forced.mismatches[0]
    # two methods of one run, compared with each other
    methods = compare_runs(runs["a"], runs["a"], ["rise:gradcam"])
    assert methods.summaries[0].name == "rise-gradcam" and methods.summaries[0].n_images == 4


def test_the_command_prints_the_summary_and_writes_the_csv_and_the_report(runs, tmp_path, capsys):
    out = tmp_path / "drift"
    assert main(["compare", str(runs["a"]), str(runs["shifted"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "# Explanation drift" in printed and "| rise | 4 |" in printed
    assert printed.startswith((out / "summary.md").read_text())
    with open(out / "comparison.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(COMPARISON_COLUMNS) and len(rows) == 8
    data = read_script(out / "report" / "data" / "comparison.js")
    assert data["pairs"] == sorted(METHODS) and len(data["rows"]) == 8
    for suffix in ("a", "b", "difference"):
        assert any((out / "report" / "assets").rglob(f"*.rise.{suffix}.png"))
    assert main(["compare", str(runs["a"]), str(runs["fewer"]), "--out", str(out)]) == 2
    assert "other images" in capsys.readouterr().err
    assert main(["compare", str(runs["a"]), str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_the_difference_map_is_b_minus_a_each_over_its_range(runs, tmp_path):
    comparison = compare_runs(runs["a"], runs["shifted"], ["rise"])
    write_comparison_report(comparison, tmp_path)
    image = comparison.rows[0]["image"]
    maps = []
    for name in ("a", "shifted"):
        with np.load(runs[name] / "maps" / "rise" / f"{image}.npz") as saved:
            m = saved["saliency"].astype(np.float64)
        maps.append((m - m.min()) / np.ptp(m))
    values, low, high = read_map(map_path(tmp_path / "report", image, "rise.difference"))
    restored = low + values / 255 * (high - low)
    # 8 bits over [-m, m]: half a step of rounding
    assert np.abs(restored - (maps[1] - maps[0])).max() <= (high - low) / 510 + 1e-6


def test_a_run_of_an_earlier_version_compares_without_the_predicted_class(runs, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    with open(runs["a"] / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    earlier = [c for c in rows[0] if c not in ("predicted", "predicted_score")]
    with open(old / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=earlier, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (old / "run.json").write_text((runs["a"] / "run.json").read_text())
    (old / "maps").symlink_to(runs["a"] / "maps")
    summary = compare_runs(runs["a"], old).summaries[0]
    assert summary.spearman[0] == pytest.approx(1.0)
    assert (summary.n_predicted, summary.score_change) == (0, None)
    text = write_comparison(compare_runs(runs["a"], old), tmp_path / "out").read_text()
    assert "not recorded" in text
