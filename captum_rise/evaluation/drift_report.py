"""The HTML report of a comparison of two runs: ``DIR/report/index.html``, a sibling of the run
report (:mod:`captum_rise.evaluation.report`): a static folder that opens from ``file://``
and still works when copied elsewhere.

- ``index.html``, ``compare.js``, ``common.js``, ``report.css``: the page (the last two are the
  run report's);
- ``data/comparison.js``: the runs, the summaries of :mod:`captum_rise.evaluation.drift` and one
  entry per image and method pair (the figures of ``comparison.csv``, the maps' ranges);
- ``assets/<shard>/<key>.jpg``: the photo (run A's thumbnail), and per method pair
  ``<key>.<pair>.a.png``, ``.b.png`` and ``.difference.png``: both maps and their difference,
  each map scaled to [0, 1] over its own range first (B minus A, on a diverging scale).
"""

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_rise.evaluation.drift import (
    NUMBER_COLUMNS,
    PREDICTED_COLUMNS,
    Comparison,
    PairSummary,
    pair_maps,
    pair_name,
)
from captum_rise.evaluation.report import COLOUR_MAP, DIVERGING_COLOUR_MAP, colour_stops
from captum_rise.evaluation.results import read_config
from captum_rise.evaluation.summary import BOOTSTRAP_RESAMPLES, CONFIDENCE
from captum_rise.evaluation.thumbnails import (
    REPORT_DIR,
    image_key,
    photo_path,
    save_map,
)

PAGE_FILES = {  # package file: name in the report
    "compare.html": "index.html",
    "common.js": "common.js",
    "compare.js": "compare.js",
    "report.css": "report.css",
}
DATA_FILE = "data/comparison.js"
ROW_FIELDS = (
    "image",  # index into the images
    "pair",  # index into the pairs
    *NUMBER_COLUMNS,
    "predicted_a",  # class index, None where not recorded
    "predicted_b",
    "predicted_score_a",
    "predicted_score_b",
    "ranges",  # [[low, high] of A's map, of B's, of the difference]
)


def write_comparison_report(comparison: Comparison, out_dir: str | Path) -> Path:
    """Writes ``out_dir/report`` for ``comparison`` (maps read again from the two runs);
    returns the path of its ``index.html``."""
    report_dir = Path(out_dir) / REPORT_DIR
    (report_dir / "data").mkdir(parents=True, exist_ok=True)
    for source, name in PAGE_FILES.items():
        with resources.as_file(resources.files(__package__) / "report_files" / source) as path:
            shutil.copyfile(path, report_dir / name)
    folders = {side: Path(run["folder"]) for side, run in comparison.runs.items()}
    pairs = [s.name for s in comparison.summaries]
    targets = {row["image"]: row["target"] for row in comparison.rows}  # images in order
    image_index = {image: i for i, image in enumerate(targets)}
    names = list(read_config(folders["a"]).get("class_names") or [])
    images = [_image_entry(report_dir, folders["a"], i, targets[i], names) for i in targets]
    entries = []
    for row in comparison.rows:
        pair = pair_name(row["method_a"], row["method_b"])
        ranges = _save_maps(report_dir, folders, row, pair)
        entries.append(
            [
                image_index[row["image"]],
                pairs.index(pair),
                *(float(row[c]) for c in NUMBER_COLUMNS),
                *(int(row[c]) if row[c] else None for c in PREDICTED_COLUMNS[:2]),
                *(float(row[c]) if row[c] else None for c in PREDICTED_COLUMNS[2:]),
                ranges,
            ]
        )  # fmt: skip
    data = {
        "runs": comparison.runs,
        "mismatches": comparison.mismatches,
        "pairs": pairs,
        "summaries": [_summary_entry(s) for s in comparison.summaries],
        "images": images,
        "class_names": names,
        "row_fields": list(ROW_FIELDS),
        "rows": entries,
        "confidence": CONFIDENCE,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
        "colour_map": colour_stops(COLOUR_MAP),
        "diverging_colour_map": colour_stops(DIVERGING_COLOUR_MAP),
    }
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)
    (report_dir / DATA_FILE).write_text(f"window.captumRiseComparison({text});\n")
    return report_dir / "index.html"


def _image_entry(
    report_dir: Path, run_a: Path, image_id: str, target: str, names: list[str]
) -> dict[str, Any]:
    """An image's id, key, target and name; its photo copied from run A's report."""
    photo = photo_path(run_a / REPORT_DIR, image_id)
    if photo.exists():
        copy = photo_path(report_dir, image_id)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, copy)
    index = int(target) if target.isdigit() else None
    return {
        "id": image_id,
        "key": image_key(image_id),
        "photo": photo.exists(),
        "target": target,
        "target_name": names[index] if index is not None and index < len(names) else None,
    }


def _save_maps(
    report_dir: Path, folders: dict[str, Path], row: dict[str, str], pair: str
) -> list[list[float]]:
    """Saves the pair's two maps and their difference; returns the three saved ranges."""
    maps = pair_maps(folders, row["image"], row["method_a"], row["method_b"])
    scaled = [(m - m.min()) / (np.ptp(m) or 1.0) for m in maps]
    return [
        list(save_map(report_dir, row["image"], f"{pair}.{suffix}", torch.as_tensor(values)))
        for suffix, values in (
            ("a", maps[0]),
            ("b", maps[1]),
            ("difference", scaled[1] - scaled[0]),
        )
    ]


def _summary_entry(summary: PairSummary) -> dict[str, Any]:
    return {
        "pair": summary.name,
        "method_a": summary.method_a,
        "method_b": summary.method_b,
        "images": summary.n_images,
        "left_out": summary.n_left_out,
        "spearman": list(summary.spearman),
        "top_overlap": list(summary.top_overlap),
        "deletion": list(summary.deletion),
        "insertion": list(summary.insertion),
        "deletion_change": list(summary.deletion_change),
        "insertion_change": list(summary.insertion_change),
        "predicted": summary.n_predicted,
        "class_changed": summary.n_class_changed,
        "score_change": list(summary.score_change) if summary.score_change else None,
    }
