"""Explanation drift: two evaluation runs over the same images, compared image by image.

The two runs of :func:`captum_rise.evaluation.evaluate_dataset` (``captum-rise
evaluate``) may differ in the model (a float model and its INT8 version, two
checkpoints), the runtime, the seed, or the method (``methods=["rise:hsic"]``).
Each image's row of a method in run A is paired with its row in run B, and gives:

- ``spearman``: the Spearman rank correlation of the two maps, each averaged over
  square blocks to at most 32 a side first (a 224x224 map: 32x32 blocks of 7x7
  pixels, as the run report's disagreement), so that it compares where the maps put
  their weight, not pixel noise; 1: the same order of the regions;
- ``top_overlap``: the share of the blocks in one map's top :data:`TOP_FRACTION`
  that are also in the other's (both hold the same number of blocks);
- the deletion and insertion AUCs of each run and their change, B minus A;
- the model's predicted class and its probability in each run.

Over the images, each figure's mean has a percentile-bootstrap interval; the
changes are paired (a resample draws images, with both runs' values of each).

**The maps.** Every run keeps its maps as the report's thumbnails (8-bit PNGs, at
most 224 pixels a side, with their range: 5 to 15 kB per image and method for
MobileNetV2's maps of 224x224 photos); with ``--save-maps`` also as float32 ``.npz``
files at full resolution (about 150 kB each). A pair uses the ``.npz`` maps when both
runs saved them, the thumbnails otherwise (a run with ``--no-report`` and without
``--save-maps`` cannot be compared). The 8 bits change the figures little: on blocks of
7x7 pixels the rounding averages out (measured on RISE maps of 4 photos, MobileNetV2: the
Spearman correlations within 4e-5, the top 10 % overlaps within one block of 102).

**What must match**: the images, the target explained on each image, the curves'
steps and, for a method compared with itself, its settings. A mismatch raises
:class:`RunMismatchError` naming each difference, unless ``force`` (then the
images of both runs are compared, and the differences are listed in the summary).
"""

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_rise.evaluation.agreement import TOP_FRACTION, map_agreement
from captum_rise.evaluation.results import Row, is_success, read_config, read_rows
from captum_rise.evaluation.summary import BOOTSTRAP_RESAMPLES, CONFIDENCE, bootstrap_interval
from captum_rise.evaluation.thumbnails import REPORT_DIR, map_path, read_map

COMPARISON_FILE = "comparison.csv"
SUMMARY_FILE = "summary.md"
COMPARISON_COLUMNS = (
    "image",
    "method_a",
    "method_b",
    "target",
    "spearman",
    "top_overlap",
    "deletion_a",
    "deletion_b",
    "deletion_change",
    "insertion_a",
    "insertion_b",
    "insertion_change",
    "predicted_a",
    "predicted_b",
    "predicted_score_a",
    "predicted_score_b",
)
"""The columns of ``comparison.csv``, one row per image and method pair; ``target``:
run A's (``a|b`` where they differ, compared with ``force``); ``predicted_*``: empty for a
run of an earlier version, which did not record them."""
NUMBER_COLUMNS = COMPARISON_COLUMNS[4:12]  # from spearman to insertion_change
PREDICTED_COLUMNS = COMPARISON_COLUMNS[12:]  # the classes, then their probabilities


class RunMismatchError(ValueError):
    """The two runs did not explain the same images, targets or settings."""


@dataclass
class PairSummary:
    """One method pair's figures over its images: ``(mean, interval low, interval high)``."""

    method_a: str
    method_b: str
    n_images: int
    n_left_out: int  # images that failed in either run
    spearman: tuple[float, float, float]
    top_overlap: tuple[float, float, float]
    deletion_change: tuple[float, float, float]
    insertion_change: tuple[float, float, float]
    deletion: tuple[float, float]  # the two runs' mean AUCs
    insertion: tuple[float, float]
    n_predicted: int  # images whose predicted class both runs recorded
    n_class_changed: int
    score_change: tuple[float, float, float] | None  # of the top class, where it did not change

    @property
    def name(self) -> str:
        return pair_name(self.method_a, self.method_b)


@dataclass
class Comparison:
    """The rows of ``comparison.csv``, the summaries, and the two runs' facts."""

    rows: list[Row]
    summaries: list[PairSummary]
    runs: dict[str, dict[str, Any]]  # "a" and "b": folder, model, seed, images
    mismatches: list[str] = field(default_factory=list)  # compared anyway (force)


def pair_name(method_a: str, method_b: str) -> str:
    return method_a if method_a == method_b else f"{method_a}-{method_b}"


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    methods: Sequence[str] | None = None,
    *,
    force: bool = False,
) -> Comparison:
    """Compares two evaluation runs image by image (see the module's documentation).

    Args:
        run_a, run_b: results folders of ``captum-rise evaluate``.
        methods: the pairs to compare: ``"rise"`` (rise in both runs) or ``"rise:hsic"``
            (A's rise with B's hsic). Default: every method of both runs, with itself.
        force: compare even when the images, targets or settings differ.

    Returns:
        The :class:`Comparison`.

    Raises:
        RunMismatchError: the runs differ (without ``force``), saying how.
        ValueError: a folder holds no results, a method is in neither run, or a map is missing.
    """
    folders = {"a": Path(run_a), "b": Path(run_b)}
    rows = {side: _rows_by_method(folder) for side, folder in folders.items()}
    configs = {side: read_config(folder) for side, folder in folders.items()}
    pairs = _method_pairs(methods, rows)
    found: dict[str, list[str]] = {}  # how the images differ: the pairs they differ for
    for a, b in pairs:
        for text in _image_mismatches(rows["a"][a], rows["b"][b]):
            found.setdefault(text, []).append(pair_name(a, b))
    mismatches = [f"{', '.join(names)}: {text}" for text, names in found.items()]
    mismatches += _settings_mismatches(pairs, configs)
    if mismatches and not force:
        raise RunMismatchError(
            f"the runs {folders['a']} and {folders['b']} differ: " + "; ".join(mismatches)
            + ". Compare runs of the same images and settings, or compare anyway (force=True, "
            "captum-rise compare --force)"
        )  # fmt: skip
    table, summaries = [], []
    for a, b in pairs:
        mine = _pair_rows(folders, a, b, rows)
        table += mine
        summaries.append(_summarise(a, b, mine, rows))
    runs = {
        side: {
            "folder": str(folders[side]),
            "model": configs[side].get("model", ""),
            "seed": configs[side].get("seed"),
            "images": len({image for method in rows[side].values() for image in method}),
        }
        for side in folders
    }
    return Comparison(table, summaries, runs, mismatches)


def _rows_by_method(folder: Path) -> dict[str, dict[str, Row]]:
    rows = read_rows(folder)
    if not rows:
        raise ValueError(f"{folder} holds no evaluation results (results.csv)")
    by_method: dict[str, dict[str, Row]] = {}
    for (image, method), row in sorted(rows.items()):
        by_method.setdefault(method, {})[image] = row
    return by_method


def _method_pairs(
    methods: Sequence[str] | None, rows: dict[str, dict[str, dict[str, Row]]]
) -> list[tuple[str, str]]:
    if methods is None:
        pairs = [(m, m) for m in rows["a"] if m in rows["b"]]
        if not pairs:
            raise ValueError(
                f"the runs share no method (A: {', '.join(rows['a'])}; B: {', '.join(rows['b'])}):"
                " name the pairs to compare, e.g. methods=['rise:hsic']"
            )
        return pairs
    pairs = []
    for text in methods:
        a, _, b = text.partition(":")
        a, b = a.strip(), (b or a).strip()
        for side, method in (("a", a), ("b", b)):
            if method not in rows[side]:
                raise ValueError(
                    f"methods: {method!r} is not in run {side.upper()} "
                    f"(it has {', '.join(rows[side])})"
                )
        pairs.append((a, b))
    return pairs


def _examples(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def _image_mismatches(images_a: dict[str, Row], images_b: dict[str, Row]) -> list[str]:
    """How one method pair's images and targets differ between the runs, in words."""
    found = []
    only_a = sorted(set(images_a) - set(images_b))
    only_b = sorted(set(images_b) - set(images_a))
    if only_a or only_b:
        found.append(
            f"other images ({len(images_a)} in A, {len(images_b)} in B; "
            f"only in A: {_examples(only_a) or 'none'}; only in B: {_examples(only_b) or 'none'})"
        )
    other_targets = [
        f"{image} ({images_a[image]['target']} in A, {images_b[image]['target']} in B)"
        for image in sorted(set(images_a) & set(images_b))
        if images_a[image]["target"] != images_b[image]["target"]
    ]
    if other_targets:
        found.append(
            f"other targets on {len(other_targets)} images ({_examples(other_targets)}; "
            "runs without --class-map explain each model's own top class)"
        )
    return found


def _settings_mismatches(
    pairs: Sequence[tuple[str, str]], configs: dict[str, dict[str, Any]]
) -> list[str]:
    """How the runs' curves and the settings of each method compared with itself differ."""
    found = []
    steps = [configs[side].get("curve_steps") for side in ("a", "b")]
    if steps[0] != steps[1]:
        found.append(f"curve_steps: {steps[0]} in A, {steps[1]} in B")
    for method in (a for a, b in pairs if a == b):
        a, b = (configs[side].get("methods", {}).get(method) or {} for side in ("a", "b"))
        found += [
            f"{method} {key}: {a.get(key)} in A, {b.get(key)} in B"
            for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key)
        ]
    return found


def load_map(folder: Path, image: str, method: str, full: bool) -> np.ndarray:
    """A run's ``(H, W)`` float map: the ``.npz`` of ``--save-maps`` when ``full``, else
    the report's thumbnail, its 8 bits brought back to the map's range."""
    if full:
        with np.load(folder / "maps" / method / f"{image}.npz") as saved:
            return np.asarray(saved["saliency"], dtype=np.float64)
    path = map_path(folder / REPORT_DIR, image, method)
    if not path.exists():
        raise ValueError(
            f"{folder} kept no map of {image} by {method}: runs keep their maps in the report "
            "(the default) or with --save-maps; a run with --no-report and without "
            "--save-maps cannot be compared"
        )
    values, low, high = read_map(path)
    return low + values.astype(np.float64) / 255 * (high - low)


def pair_maps(
    folders: dict[str, Path], image: str, method_a: str, method_b: str
) -> tuple[np.ndarray, np.ndarray]:
    """Both runs' maps of ``image``, from the same source, at the smaller one's size."""
    full = all(
        (folders[side] / "maps" / method / f"{image}.npz").exists()
        for side, method in (("a", method_a), ("b", method_b))
    )
    maps = [
        load_map(folders[side], image, method, full)
        for side, method in (("a", method_a), ("b", method_b))
    ]
    shape = min(maps[0].shape, maps[1].shape, key=lambda s: s[0] * s[1])
    return tuple(_resized(m, shape) for m in maps)  # type: ignore[return-value]


def _resized(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if values.shape == shape:
        return values
    tensor = torch.as_tensor(values)[None, None]
    return torch.nn.functional.interpolate(tensor, size=shape, mode="area")[0, 0].numpy()


def _pair_rows(
    folders: dict[str, Path], a: str, b: str, rows: dict[str, dict[str, dict[str, Row]]]
) -> list[Row]:
    table = []
    for image in sorted(set(rows["a"][a]) & set(rows["b"][b])):
        row_a, row_b = rows["a"][a][image], rows["b"][b][image]
        if not (is_success(row_a) and is_success(row_b)):
            continue
        spearman, overlap = map_agreement(*pair_maps(folders, image, a, b))
        auc = {
            f"{curve}_{side}": float(row[f"{curve}_auc"])
            for curve in ("deletion", "insertion")
            for side, row in (("a", row_a), ("b", row_b))
        }
        targets = dict.fromkeys([row_a["target"], row_b["target"]])
        table.append(
            {
                "image": image,
                "method_a": a,
                "method_b": b,
                "target": "|".join(targets),
                "spearman": f"{spearman:.6g}",
                "top_overlap": f"{overlap:.6g}",
                **{key: f"{value:.6g}" for key, value in auc.items()},
                "deletion_change": f"{auc['deletion_b'] - auc['deletion_a']:.6g}",
                "insertion_change": f"{auc['insertion_b'] - auc['insertion_a']:.6g}",
                "predicted_a": row_a.get("predicted", ""),
                "predicted_b": row_b.get("predicted", ""),
                "predicted_score_a": row_a.get("predicted_score", ""),
                "predicted_score_b": row_b.get("predicted_score", ""),
            }
        )
    return table


def _mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    return (float(np.mean(values)), *bootstrap_interval(values))


def _summarise(
    a: str, b: str, table: Sequence[Row], rows: dict[str, dict[str, dict[str, Row]]]
) -> PairSummary:
    if not table:
        raise ValueError(f"{pair_name(a, b)}: no image succeeded in both runs")
    numbers = {c: [float(r[c]) for r in table] for c in NUMBER_COLUMNS}
    predicted = [r for r in table if r["predicted_a"] and r["predicted_b"]]
    kept = [r for r in predicted if r["predicted_a"] == r["predicted_b"]]
    score_changes = [float(r["predicted_score_b"]) - float(r["predicted_score_a"]) for r in kept]
    shared = set(rows["a"][a]) & set(rows["b"][b])
    return PairSummary(
        method_a=a,
        method_b=b,
        n_images=len(table),
        n_left_out=len(shared) - len(table),
        spearman=_mean_interval(numbers["spearman"]),
        top_overlap=_mean_interval(numbers["top_overlap"]),
        deletion_change=_mean_interval(numbers["deletion_change"]),
        insertion_change=_mean_interval(numbers["insertion_change"]),
        deletion=(float(np.mean(numbers["deletion_a"])), float(np.mean(numbers["deletion_b"]))),
        insertion=(float(np.mean(numbers["insertion_a"])), float(np.mean(numbers["insertion_b"]))),
        n_predicted=len(predicted),
        n_class_changed=len(predicted) - len(kept),
        score_change=_mean_interval(score_changes) if score_changes else None,
    )


def write_comparison(comparison: Comparison, out_dir: str | Path) -> Path:
    """Writes ``out_dir/comparison.csv`` and ``summary.md``; returns the summary's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / COMPARISON_FILE, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COMPARISON_COLUMNS)
        writer.writeheader()
        writer.writerows(comparison.rows)
    path = out_dir / SUMMARY_FILE
    path.write_text(format_summary(comparison))
    return path


def _interval(values: tuple[float, float, float], sign: bool = False) -> str:
    number = "{:+.4f}" if sign else "{:.4f}"
    mean, low, high = (number.format(v) for v in values)
    return f"{mean} ({low} to {high})"


def format_summary(comparison: Comparison) -> str:
    """The agreement summary in Markdown: the runs, then one table row per method pair."""
    lines = ["# Explanation drift", ""]
    lines += [
        f"- {side.upper()}: {run['folder']} (model {run['model']}, seed {run['seed']}, "
        f"{run['images']} images)"
        for side, run in comparison.runs.items()
    ]
    if comparison.mismatches:
        lines.append("- compared anyway, although: " + "; ".join(comparison.mismatches))
    lines += [
        "",
        f"Means over the images both runs explained, with {CONFIDENCE:.0%} bootstrap intervals "
        f"({BOOTSTRAP_RESAMPLES} resamples, paired). Spearman and top {TOP_FRACTION:.0%} overlap "
        "of the maps on 32x32 blocks (1: the same); AUC changes are B minus A.",
        "",
        "| method | images | Spearman | top 10 % overlap | deletion AUC A → B | change | "
        "insertion AUC A → B | change | top class changed | its probability's change |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in comparison.summaries:
        changed = f"{s.n_class_changed} of {s.n_predicted}" if s.n_predicted else "not recorded"
        score = _interval(s.score_change, sign=True) if s.score_change else ""
        lines.append(
            f"| {s.name} | {s.n_images} | {_interval(s.spearman)} | {_interval(s.top_overlap)} | "
            f"{s.deletion[0]:.4f} → {s.deletion[1]:.4f} | {_interval(s.deletion_change, True)} | "
            f"{s.insertion[0]:.4f} → {s.insertion[1]:.4f} | {_interval(s.insertion_change, True)} "
            f"| {changed} | {score} |"
        )
    left_out = sum(s.n_left_out for s in comparison.summaries)
    if left_out:
        lines += ["", f"{left_out} image and method rows failed in either run and are left out."]
    return "\n".join(lines) + "\n"
