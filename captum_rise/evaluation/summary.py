"""``summary.md`` and ``summary.png`` of an evaluation run, from its result rows."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from captum_rise.evaluation.results import CURVE_FRACTIONS, Row, is_success, parse_curve

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


def bootstrap_interval(
    values: Sequence[float], n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (fixed seed:
    the same rows give the same summary). A single value gives ``(v, v)``."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_resamples, data.size))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class MethodSummary:
    """One method's figures over the images it succeeded on."""

    method: str
    n_images: int
    n_failed: int
    deletion: tuple[float, float, float]  # mean, interval low, interval high
    insertion: tuple[float, float, float]
    pointing: float | None  # accuracy over images with boxes
    seconds_per_image: float
    deletion_curve: np.ndarray  # mean, at CURVE_FRACTIONS
    insertion_curve: np.ndarray


def summarise(rows: Sequence[Row]) -> list[MethodSummary]:
    """Per method, in order of first appearance; methods with no success are left out."""
    summaries = []
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [r for r in rows if r["method"] == method]
        done = [r for r in mine if is_success(r)]
        if not done:
            continue
        deletion = [float(r["deletion_auc"]) for r in done]
        insertion = [float(r["insertion_auc"]) for r in done]
        hits = [float(r["pointing_hit"]) for r in done if r["pointing_hit"] != ""]
        summaries.append(
            MethodSummary(
                method=method,
                n_images=len(done),
                n_failed=len(mine) - len(done),
                deletion=(float(np.mean(deletion)), *bootstrap_interval(deletion)),
                insertion=(float(np.mean(insertion)), *bootstrap_interval(insertion)),
                pointing=float(np.mean(hits)) if hits else None,
                seconds_per_image=float(np.mean([float(r["seconds"]) for r in done])),
                deletion_curve=np.mean([parse_curve(r["deletion_curve"]) for r in done], axis=0),
                insertion_curve=np.mean([parse_curve(r["insertion_curve"]) for r in done], axis=0),
            )
        )
    return summaries


def format_markdown(summaries: Sequence[MethodSummary], header: dict[str, object]) -> str:
    """The summary table, with the run's settings above it."""
    lines = ["# Evaluation summary", ""]
    lines += [f"- {name}: {value}" for name, value in header.items()]
    lines += [
        "",
        "Mean over images, with 95% bootstrap intervals "
        f"({BOOTSTRAP_RESAMPLES} resamples). Deletion: lower is better; insertion: higher.",
        "",
        "| method | images | failed | deletion AUC | insertion AUC | pointing game | s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        pointing = "" if s.pointing is None else f"{s.pointing:.3f}"
        lines.append(
            f"| {s.method} | {s.n_images} | {s.n_failed} | {_interval(s.deletion)} | "
            f"{_interval(s.insertion)} | {pointing} | {s.seconds_per_image:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _interval(figure: tuple[float, float, float]) -> str:
    mean, low, high = figure
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def draw_summary(summaries: Sequence[MethodSummary]) -> Figure:
    """Mean deletion and insertion curves per method, and the AUCs with their intervals."""
    figure = Figure(figsize=(13, 4), layout="constrained")
    deletion_axes, insertion_axes, auc_axes = figure.subplots(1, 3)
    for s in summaries:
        deletion_axes.plot(
            CURVE_FRACTIONS, s.deletion_curve, label=f"{s.method} ({s.deletion[0]:.3f})"
        )
        insertion_axes.plot(
            CURVE_FRACTIONS, s.insertion_curve, label=f"{s.method} ({s.insertion[0]:.3f})"
        )
    for axes, title in (
        (deletion_axes, "deletion (lower AUC is better)"),
        (insertion_axes, "insertion (higher AUC is better)"),
    ):
        axes.set_title(title)
        axes.set_xlabel("fraction of pixels")
        axes.set_ylabel("mean class probability")
        axes.set_xlim(0, 1)
        axes.legend(fontsize=8)
    positions = np.arange(len(summaries))
    for offset, metric, label in (
        (-0.18, "deletion", "deletion AUC"),
        (0.18, "insertion", "insertion AUC"),
    ):
        means = np.array([getattr(s, metric)[0] for s in summaries])
        lows = np.array([getattr(s, metric)[1] for s in summaries])
        highs = np.array([getattr(s, metric)[2] for s in summaries])
        auc_axes.errorbar(
            positions + offset,
            means,
            yerr=[means - lows, highs - means],
            fmt="o",
            capsize=4,
            label=label,
        )
    auc_axes.set_xticks(positions, [s.method for s in summaries], rotation=30)
    auc_axes.set_title("AUC, 95% bootstrap interval")
    auc_axes.legend(fontsize=8)
    return figure


def write_summary(
    rows: Sequence[Row], out_dir: Path, header: dict[str, object]
) -> list[MethodSummary]:
    """Writes ``summary.md`` and (when a method succeeded) ``summary.png`` into ``out_dir``."""
    summaries = summarise(rows)
    n_images = len({row["image"] for row in rows})
    text = format_markdown(summaries, {"images": n_images, **header})
    (out_dir / "summary.md").write_text(text)
    if summaries:
        draw_summary(summaries).savefig(out_dir / "summary.png", dpi=100)
    return summaries
