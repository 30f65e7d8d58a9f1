"""The results table of an evaluation run: one CSV row per (image, method).

Each rank appends its rows to its own part file, ``DIR/parts/rank-<r>.csv``,
flushed and synced row by row, so ranks never write to the same file and a
crash (a kill, a full disk) loses at most the row being written: every row
ends with the column ``complete`` = ``yes``, so a row cut short anywhere is
never read back. Rank 0 merges the parts into ``DIR/results.csv`` at the end
(sorted by image, then method) and removes them. A rerun reads both, so rows
already done are skipped.
"""

import contextlib
import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = (
    "image",
    "method",
    "target",
    "deletion_auc",
    "insertion_auc",
    "pointing_hit",
    "seconds",
    "predicted",
    "predicted_score",
    "rank",
    "seed",
    "model",
    "settings",
    "error",
    "deletion_curve",
    "insertion_curve",
    "complete",
)
"""``image``: id (path relative to the data folder); ``target``: the class
explained; ``pointing_hit``: 1/0, empty without boxes; ``seconds``: wall time
of the attribution alone; ``seed``: the image's seed; ``settings``: JSON of the
method's settings; ``error``: empty, or why the row failed; the curves: scores
at :data:`CURVE_FRACTIONS`, space separated; ``predicted``, ``predicted_score``: the
model's top class on the whole image and its probability (its score, for a model whose
outputs are already probabilities), the same on every row of an image; ``complete``:
``yes``, written last, so a row cut short by a crash is recognised."""

LATER_COLUMNS = ("predicted", "predicted_score")
"""Columns that runs of earlier versions did not write: their rows read them as empty."""

COMPLETE = "yes"

CURVE_FRACTIONS = np.linspace(0.0, 1.0, 101)
"""Fractions of pixels moved at which the deletion and insertion curves are stored."""

Row = dict[str, str]
Key = tuple[str, str]

RESULTS_FILE = "results.csv"
CONFIG_FILE = "run.json"
"""The run's settings (compared on resuming), with the versions and class names."""
PARTS_DIR = "parts"


def read_config(out_dir: Path) -> dict[str, Any]:
    """A results folder's :data:`CONFIG_FILE`, or ``{}`` where there is none yet."""
    path = out_dir / CONFIG_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def format_curve(fractions: Sequence[float], scores: Sequence[float]) -> str:
    """A curve resampled at :data:`CURVE_FRACTIONS`, as space-separated numbers."""
    values = np.interp(CURVE_FRACTIONS, np.asarray(fractions), np.asarray(scores))
    return " ".join(f"{v:.5g}" for v in values)


def parse_curve(text: str) -> np.ndarray:
    """The ``(101,)`` curve of :func:`format_curve`."""
    return np.array([float(v) for v in text.split()])


def is_success(row: Row) -> bool:
    return not row.get("error")


class ResultsWriteError(OSError):
    """A results row could not be written (e.g. the disk is full); the rows before it are kept."""


class PartWriter:
    """Appends rows to one rank's part file, flushing and syncing each to disk.

    A part file left by a crashed run may end in a half-written row; writing
    continues on a new line, and :func:`read_rows` drops the broken one (it
    lacks the final ``complete`` column).
    """

    def __init__(self, out_dir: Path, rank: int) -> None:
        self.path = out_dir / PARTS_DIR / f"rank-{rank}.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not self.path.exists() or self.path.stat().st_size == 0
        if not is_new and _header(self.path) != list(COLUMNS):
            _rewrite_with_columns(self.path)  # a part file of an earlier version, resumed
        needs_newline = not is_new and not self.path.read_bytes().endswith(b"\n")
        # kept open for the rows to come; close() closes it
        self._file = open(self.path, "a", newline="")  # noqa: SIM115
        if needs_newline:
            self._file.write("\n")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
        if is_new:
            self._writer.writeheader()

    def write(self, row: Row) -> None:
        try:
            self._writer.writerow({**row, "complete": COMPLETE})
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as error:
            raise ResultsWriteError(
                error.errno,
                f"could not write a results row to {self.path} ({error.strerror or error}): "
                "free some space, then rerun the same command to resume (the rows written "
                "before are kept; the one cut short is ignored)",
            ) from error

    def close(self) -> None:
        # a failed write leaves a buffer that cannot be flushed: its row is incomplete, ignored
        with contextlib.suppress(OSError):
            self._file.close()


def _header(path: Path) -> list[str]:
    with open(path, newline="") as file:
        return next(csv.reader(file), [])


def _rows_of(path: Path) -> Iterable[Row]:
    """The complete rows of a results or part file; a file of an earlier version (without
    :data:`LATER_COLUMNS`) gives them empty."""
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        missing = dict.fromkeys(set(COLUMNS) - set(reader.fieldnames or ()), "")
        if not set(missing) <= set(LATER_COLUMNS):
            return
        for row in reader:
            row = {**missing, **row}
            complete = set(row) == set(COLUMNS) and row.get("complete") == COMPLETE
            if complete and all(row[c] is not None for c in COLUMNS):
                yield row


def _rewrite_with_columns(path: Path) -> None:
    """Rewrites a file's complete rows under today's :data:`COLUMNS`."""
    _write_rows(path, list(_rows_of(path)))


def _write_rows(path: Path, rows: Sequence[Row]) -> None:
    """Writes ``rows`` under :data:`COLUMNS` to a temporary file, then renames it over ``path``."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def read_rows(out_dir: Path) -> dict[Key, Row]:
    """The rows of ``results.csv`` and every part file, one per (image, method):
    a successful row wins over a failed one, a later row over an earlier one."""
    paths = [out_dir / RESULTS_FILE, *sorted((out_dir / PARTS_DIR).glob("rank-*.csv"))]
    rows: dict[Key, Row] = {}
    for path in paths:
        if not path.exists():
            continue
        for row in _rows_of(path):
            key = (row["image"], row["method"])
            if key not in rows or is_success(row) or not is_success(rows[key]):
                rows[key] = row
    return rows


def merge_parts(out_dir: Path) -> list[Row]:
    """Writes every row into ``results.csv`` (atomically), removes the part files,
    and returns the rows, sorted by image then method."""
    merged = read_rows(out_dir)
    rows = [merged[key] for key in sorted(merged)]
    _write_rows(out_dir / RESULTS_FILE, rows)
    for part in (out_dir / PARTS_DIR).glob("rank-*.csv"):
        part.unlink()
    if (out_dir / PARTS_DIR).is_dir() and not any((out_dir / PARTS_DIR).iterdir()):
        (out_dir / PARTS_DIR).rmdir()
    return rows
