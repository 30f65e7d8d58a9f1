"""The HTML report of an evaluation run: ``DIR/report/index.html``, to look at in a browser.

The report is a static folder that opens from ``file://`` (no server, no
CDN) and still works when copied elsewhere:

- ``index.html``, ``report.js``, ``report.css``: the page (the same for every run);
- ``data/run.js``: the run (settings, versions, per-method summaries with the
  bootstrap intervals of ``summary.md``) and one entry per image and method
  (AUCs, pointing hit, seconds, map range, error), loaded with the page;
- ``data/images/<shard>/<key>.js``: one image's curves, loaded when its view opens;
- ``assets/<shard>/<key>.jpg`` and ``<key>.<method>.png``: the thumbnails the
  run saved (:mod:`captum_rise.evaluation.thumbnails`), loaded as they are shown.

The data files are JavaScript (``window.captumRiseReport...(...)``) rather than
JSON, because browsers refuse ``fetch`` on ``file://`` but load scripts.
:func:`write_report` builds it from the results folder alone, so
``captum-rise report DIR`` rebuilds it after a resumed or multi-process run.
"""

import itertools
import json
import shutil
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps

from captum_rise.evaluation.agreement import map_disagreement
from captum_rise.evaluation.results import (
    Row,
    is_success,
    parse_curve,
    read_config,
    read_rows,
)
from captum_rise.evaluation.summary import BOOTSTRAP_RESAMPLES, CONFIDENCE, summarise
from captum_rise.evaluation.thumbnails import (
    REPORT_DIR,
    image_key,
    map_path,
    photo_path,
    read_map,
    sharded_path,
)

PAGE_FILES = ("index.html", "common.js", "report.js", "report.css")
DATA_DIR = "data"
COLOUR_MAP = "jet"  # maps of one sign, low to high
DIVERGING_COLOUR_MAP = "RdBu_r"  # maps of both signs, centred at 0 (as captum_rise.plotting)
COLOUR_STOPS = 17  # odd: a diverging scale has a stop at its centre
ROW_FIELDS = (
    "image",  # index into the images
    "method",  # index into the methods
    "deletion_auc",
    "insertion_auc",
    "pointing_hit",  # 1, 0 or None without boxes
    "seconds",
    "map_low",  # the map's range, None without a saved map
    "map_high",
    "error",  # None on success
)


def write_report(out_dir: str | Path) -> Path:
    """Builds (or rebuilds) ``out_dir/report`` from the run's results and thumbnails.

    Reads ``results.csv`` and any part files a stopped run left, ``run.json``
    and the thumbnails; writes the page and its data files.

    Args:
        out_dir: a results folder of :func:`captum_rise.evaluation.evaluate_dataset`.

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: ``out_dir`` holds no results rows.
    """
    out_dir = Path(out_dir)
    rows = sorted(read_rows(out_dir).values(), key=lambda r: (r["image"], r["method"]))
    if not rows:
        raise ValueError(
            f"{out_dir} holds no evaluation results (results.csv): run captum-rise evaluate first"
        )
    report_dir = out_dir / REPORT_DIR
    (report_dir / DATA_DIR).mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        with resources.as_file(resources.files(__package__) / "report_files" / name) as source:
            shutil.copyfile(source, report_dir / name)

    methods = list(dict.fromkeys(r["method"] for r in rows))
    config = read_config(out_dir)
    images, entries = [], []
    for image_id, group in itertools.groupby(rows, key=lambda r: r["image"]):
        image_rows = list(group)
        ranges, pixels = {}, []  # one image's maps at a time: a large run's would not fit
        for r in image_rows:
            path = map_path(report_dir, image_id, r["method"])
            if is_success(r) and path.exists():
                values, low, high = read_map(path)
                ranges[r["method"]] = (low, high)
                pixels.append(values)
        images.append(
            _image_entry(report_dir, image_id, image_rows, map_disagreement(pixels), config)
        )
        entries += [_row_entry(r, len(images) - 1, methods, ranges) for r in image_rows]
        _write_image_data(report_dir, image_id, image_rows)
    run = {
        "run": _run_facts(config, rows, len(images)),
        "methods": methods,
        "summaries": _summaries(rows, config),
        "images": images,
        "row_fields": list(ROW_FIELDS),
        "rows": entries,
        "colour_map": colour_stops(COLOUR_MAP),
        "diverging_colour_map": colour_stops(DIVERGING_COLOUR_MAP),
    }
    _write_script(report_dir / DATA_DIR / "run.js", "captumRiseReportRun", run)
    return report_dir / "index.html"


def _write_image_data(report_dir: Path, image_id: str, rows: Sequence[Row]) -> None:
    """``data/images/<shard>/<key>.js``: the image's deletion and insertion curves per method."""
    curves = {  # as results.csv holds them: 5 significant digits
        r["method"]: {
            "deletion": parse_curve(r["deletion_curve"]).tolist(),
            "insertion": parse_curve(r["insertion_curve"]).tolist(),
        }
        for r in rows
        if is_success(r)
    }
    path = sharded_path(report_dir / DATA_DIR / "images", image_id, ".js")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_script(path, "captumRiseReportImage", {"key": image_key(image_id), "curves": curves})


def _run_facts(config: dict[str, Any], rows: Sequence[Row], n_images: int) -> dict[str, Any]:
    return {
        "model": config.get("model", rows[0]["model"]),
        "seed": config.get("seed"),
        "curve_steps": config.get("curve_steps"),
        "images": n_images,
        "failed_rows": sum(not is_success(r) for r in rows),
        "versions": config.get("versions", {}),
        "confidence": CONFIDENCE,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
    }


def _summaries(rows: Sequence[Row], config: dict[str, Any]) -> list[dict[str, Any]]:
    """Per method: the figures of ``summary.md``, total seconds, settings and mean curves."""
    settings = config.get("methods", {})
    return [
        {
            "method": s.method,
            "images": s.n_images,
            "failed": s.n_failed,
            "deletion": list(s.deletion),
            "insertion": list(s.insertion),
            "pointing": s.pointing,
            "seconds_per_image": s.seconds_per_image,
            "seconds": s.seconds_per_image * s.n_images,
            "settings": settings.get(s.method, {}),
            "deletion_curve": _numbers(s.deletion_curve),
            "insertion_curve": _numbers(s.insertion_curve),
        }
        for s in summarise(rows)
    ]


def _image_entry(
    report_dir: Path,
    image_id: str,
    rows: Sequence[Row],
    disagreement: float | None,
    config: dict[str, Any],
) -> dict[str, Any]:
    """An image's id, key, target (index, name, score) and how much its maps disagree."""
    done = [r for r in rows if is_success(r)]
    target = next((r["target"] for r in rows if r["target"]), "")
    names = config.get("class_names") or []
    index = int(target) if target else None
    return {
        "id": image_id,
        "key": image_key(image_id),
        "photo": photo_path(report_dir, image_id).exists(),
        "target": index,
        "target_name": names[index] if index is not None and 0 <= index < len(names) else None,
        # the deletion curve starts from the whole image: the model's score of the target
        "score": float(parse_curve(done[0]["deletion_curve"])[0]) if done else None,
        "disagreement": disagreement,
    }


def _row_entry(
    row: Row,
    image_index: int,
    methods: Sequence[str],
    ranges: dict[str, tuple[float, float]],
) -> list[Any]:
    """One entry of :data:`ROW_FIELDS`."""
    saved = ranges.get(row["method"])
    number = lambda text: float(text) if text != "" else None
    return [
        image_index,
        methods.index(row["method"]),
        number(row["deletion_auc"]),
        number(row["insertion_auc"]),
        int(row["pointing_hit"]) if row["pointing_hit"] != "" else None,
        number(row["seconds"]),
        saved[0] if saved else None,
        saved[1] if saved else None,
        row["error"] or None,
    ]


def colour_stops(name: str) -> list[list[float]]:
    """The colour scale ``name`` as :data:`COLOUR_STOPS` RGB stops in [0, 1], low to high."""
    colours = colormaps[name](np.linspace(0, 1, COLOUR_STOPS))[:, :3]
    return [[round(float(v), 4) for v in colour] for colour in colours]


def _numbers(values: Iterable[float]) -> list[float]:
    return [float(f"{v:.5g}") for v in values]


def _write_script(path: Path, function: str, data: object) -> None:
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)
    path.write_text(f"window.{function}({text});\n")
