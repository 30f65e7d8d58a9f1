"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright with that executable (no browser download).

Without Chromium or Playwright these tests skip; CI installs both and sets
``CAPTUM_RISE_BROWSER_TESTS=required``, which turns a missing browser into a failure.
``CAPTUM_RISE_SCREENSHOTS=DIR`` saves the screenshots of the real run's report there
(the docs' pictures come from it).
"""

import csv
import os
import shutil
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_report import read_script, run_dir  # noqa: F401 (a fixture)

from captum_rise import evaluation
from captum_rise.evaluation.report import PAGE_FILES
from captum_rise.evaluation.thumbnails import image_key, save_map

CHROMIUM = os.environ.get("CAPTUM_RISE_CHROMIUM", "/usr/bin/chromium")
# Headless on a closed network: no background connections, no GPU, a fresh profile.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
PAGE_SIZE = 50  # rows of the images table per page (report.js)


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "Playwright is not installed (pip install playwright)"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if os.environ.get("CAPTUM_RISE_BROWSER_TESTS") == "required":
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page whose console errors and warnings and uncaught errors are collected
    in ``page.problems``."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.problems = []
    tab.on(
        "console",
        lambda m: (
            tab.problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
        ),
    )
    tab.on("pageerror", lambda error: tab.problems.append(f"uncaught: {error}"))
    yield tab
    context.close()


def _open(page, report_dir: Path, route: str = "") -> None:
    page.goto((report_dir / "index.html").as_uri() + route)
    try:
        page.wait_for_selector("body[data-ready=true]", timeout=10_000)
    except Exception as error:  # Playwright's TimeoutError: say what the page said
        raise AssertionError(f"the report did not start: {page.problems}") from error


def _fixed(text: str | float, digits: int) -> str:
    """A number as JavaScript's ``toFixed`` writes it: the double's exact value rounded half
    away from zero (Python's format rounds half to even: 0.125 gives 0.12 there, 0.13 here)."""
    exact = Decimal(float(text))
    return str(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def _results(out_dir: Path) -> list[dict[str, str]]:
    with open(out_dir / "results.csv", newline="") as file:
        return list(csv.DictReader(file))


def _table(page, keys: tuple[str, ...] = ("image", "method")) -> list[dict[str, str]]:
    """The images table's rows on the current page, by column, with the rows' ``keys``
    (their ``data-`` attributes)."""
    return page.eval_on_selector_all(
        "#images-table tbody tr",
        """(rows, keys) => rows.map(tr => Object.assign(
            Object.fromEntries(keys.map(key => [key, tr.dataset[key]])),
            ...[...tr.querySelectorAll('td[data-column]')]
                .map(td => ({[td.dataset.column]: td.textContent}))))""",
        list(keys),
    )


def _images_loaded(page, selector: str) -> list[bool]:
    return page.eval_on_selector_all(
        selector, "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"
    )


def check_report(page, out_dir: Path) -> None:
    """What a user sees matches the results, and every control works."""
    report_dir = out_dir / "report"
    rows = _results(out_dir)
    done = [r for r in rows if not r["error"]]
    failed = [r for r in rows if r["error"]]
    methods = sorted({r["method"] for r in rows})
    data = read_script(report_dir / "data" / "run.js")
    assert len(done) <= PAGE_SIZE  # the checks below read one page

    # the overview: one line per method, its images and failures
    _open(page, report_dir)
    overview = page.eval_on_selector_all(
        "#methods-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [line[0] for line in overview] == methods
    for line in overview:
        mine = [r for r in done if r["method"] == line[0]]
        assert int(line[1]) == len(mine)
        assert int(line[2]) == sum(r["method"] == line[0] for r in failed)
        hits = [int(r["pointing_hit"]) for r in mine if r["pointing_hit"]]
        assert line[5] == (_fixed(sum(hits) / len(hits), 3) if hits else "\u2013")  # en dash
    assert page.is_visible("#scatter") and page.is_visible("#mean-curves svg")

    # the table: the numbers of results.csv
    page.click("#nav-images")
    shown = _table(page)
    assert len(shown) == len(done)
    by_key = {(r["image"], r["method"]): r for r in done}
    for line in shown:
        row = by_key[(line["image"], line["method"])]
        assert line["deletion_auc"] == _fixed(row["deletion_auc"], 4)
        assert line["insertion_auc"] == _fixed(row["insertion_auc"], 4)
        assert line["seconds"] == _fixed(row["seconds"], 2)
        assert line["pointing_hit"] == {"": "", "1": "hit", "0": "miss"}[row["pointing_hit"]]
        assert line["target"].endswith(f"({row['target']})") or line["target"] == row["target"]
        assert line["score"] == _fixed(row["deletion_curve"].split()[0], 3)

    # sorting by any column, both ways
    for column, key in (("insertion_auc", float), ("deletion_auc", float), ("method", str)):
        page.click(f"#images-table th[data-column={column}]")
        values = [key(line[column]) for line in _table(page)]
        assert values == sorted(values)
        page.click(f"#images-table th[data-column={column}]")
        values = [key(line[column]) for line in _table(page)]
        assert values == sorted(values, reverse=True)

    # filtering by method, and by the image's name
    page.select_option("#method-filter", methods[-1])
    assert {line["method"] for line in _table(page)} == {methods[-1]}
    assert len(_table(page)) == sum(r["method"] == methods[-1] for r in done)
    page.select_option("#method-filter", "")
    first_image = done[0]["image"]
    page.fill("#image-filter", first_image)
    assert {line["image"] for line in _table(page)} == {first_image}
    page.fill("#image-filter", "")

    # the images where the methods disagree most, one click away
    page.click("#sort-disagreement")
    page.wait_for_selector("th[data-column=disagreement][aria-sort=descending]")
    disagreement = {i["id"]: i["disagreement"] for i in data["images"]}
    most = min((-v, k) for k, v in disagreement.items() if v is not None)[1]  # ties: by name
    assert _table(page)[0]["image"] == most
    values = [float(line["disagreement"]) for line in _table(page)]
    assert values == sorted(values, reverse=True)

    # an image's view: its photo, every method's map over it, the curves, its target
    page.click(f"#images-table tbody tr[data-image='{most}']")
    assert page.evaluate("location.hash") == f"#image={image_key(most)}"
    page.wait_for_selector("#image-curves svg")
    assert page.inner_text("#image-title") == most
    mine = [r for r in done if r["image"] == most]
    assert f"({mine[0]['target']})" in page.inner_text("#image-target")
    page.wait_for_load_state("load")
    assert page.eval_on_selector_all("#image-panels img.map", "i => i.length") == len(mine)
    assert all(_images_loaded(page, "#image-panels img"))
    series = page.eval_on_selector_all(
        "#image-curves path", "paths => paths.map(p => p.dataset.series)"
    )
    assert sorted(series) == sorted(
        f"{r['method']} {c}" for r in mine for c in ("deletion", "insertion")
    )
    for row in mine:
        panel = page.inner_text(f"#image-panels [data-panel={row['method']}]")
        assert f"deletion AUC {_fixed(row['deletion_auc'], 4)}" in panel

    # the scatter plot opens the image of the point clicked
    page.click("#nav-overview")
    box = {
        k: float(v) for k, v in page.eval_on_selector("#scatter", "c => ({...c.dataset})").items()
    }

    def pixel(r):
        fx = (float(r["deletion_auc"]) - box["xMin"]) / (box["xMax"] - box["xMin"])
        fy = (float(r["insertion_auc"]) - box["yMin"]) / (box["yMax"] - box["yMin"])
        return box["left"] + fx * box["plotWidth"], box["top"] + (1 - fy) * box["plotHeight"]

    x, y = pixel(done[-1])
    page.click("#scatter", position={"x": x, "y": y})
    on_the_spot = {  # points drawn within a pixel of the click
        image_key(r["image"]) for r in done if abs(pixel(r)[0] - x) + abs(pixel(r)[1] - y) < 1
    }
    assert page.evaluate("location.hash")[len("#image=") :] in on_the_spot

    # the failures, with their messages
    page.click("#nav-failures")
    listed = page.eval_on_selector_all(
        "#failures-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert sorted(listed) == sorted([r["image"], r["method"], r["error"]] for r in failed)
    assert page.inner_text("#nav-failures") == f"Failures ({len(failed)})"
    assert page.problems == []


def test_the_report_of_a_small_run_in_a_browser(page, run_dir, tmp_path):  # noqa: F811
    check_report(page, run_dir)
    # a copied folder opens as well: every path in the report is relative
    shutil.copytree(run_dir / "report", tmp_path / "copied" / "report")
    shutil.copy(run_dir / "results.csv", tmp_path / "copied")
    shutil.rmtree(run_dir / "report")
    check_report(page, tmp_path / "copied")


def _legend(page, method: str) -> dict:
    """What a map's panel shows of its colour scale: the bar, its labels, the map's filter."""
    return page.eval_on_selector(
        f"#image-panels [data-panel={method}]",
        """panel => {
            const bar = panel.querySelector('.colour-bar');
            const box = bar.getBoundingClientRect();
            const centre = panel.querySelector('.colour-labels .centre');
            const middle = centre ? centre.getBoundingClientRect() : null;
            return {
                scale: bar.dataset.scale,
                labels: [...panel.querySelectorAll('.colour-labels span')].map(s => s.textContent),
                barCentre: box.left + box.width / 2,
                labelCentre: middle ? middle.left + middle.width / 2 : null,
                filter: getComputedStyle(panel.querySelector('img.map')).filter,
                gradient: getComputedStyle(bar).backgroundImage,
            };
        }""",
    )


def _stop(gradient: str, percent: str) -> list[int]:
    """The ``rgb(...)`` of a CSS linear gradient's stop at ``percent``."""
    for part in gradient.split("rgb(")[1:]:
        colour, position = part.split(")")[0], part.split(")")[1].strip(" ,")
        if position == percent:
            return [int(v) for v in colour.split(",")]
    raise AssertionError(f"no stop at {percent} in {gradient}")


def test_signed_maps_are_drawn_on_a_diverging_scale(page, run_dir):  # noqa: F811
    """A map with both signs: a diverging scale whose ends are -m and m and whose centre, 0, is
    under the bar's middle; maps of one sign keep the sequential scale and their own range."""
    image = next(r["image"] for r in _results(run_dir) if not r["error"])
    report_dir = run_dir / "report"
    save_map(report_dir, image, "rise", torch.linspace(-1.0, 3.0, 32 * 32).reshape(32, 32))
    evaluation.write_report(run_dir)
    data = read_script(report_dir / "data" / "run.js")
    _open(page, report_dir, f"#image={image_key(image)}")
    page.wait_for_selector("#image-panels [data-panel=rise] .colour-bar")

    signed = _legend(page, "rise")
    assert signed["scale"] == "diverging" and signed["labels"] == ["-3.00", "0", "3.00"]
    assert abs(signed["labelCentre"] - signed["barCentre"]) < 1  # pixels
    assert "colour-scale-diverging" in signed["filter"]
    stops = [[round(v * 255) for v in stop] for stop in data["diverging_colour_map"]]
    assert _stop(signed["gradient"], "0%") == stops[0]  # RdBu_r: blue below 0
    assert _stop(signed["gradient"], "100%") == stops[-1]  # red above
    assert _stop(signed["gradient"], "50%") == stops[len(stops) // 2]  # the centre's white
    assert min(stops[len(stops) // 2]) > 240

    fields = data["row_fields"]
    index = next(i for i, entry in enumerate(data["images"]) if entry["id"] == image)
    sequential = 0
    for entry in data["rows"]:
        row = dict(zip(fields, entry, strict=True))
        method = data["methods"][row["method"]]
        if row["image"] != index or method == "rise" or row["map_low"] is None:
            continue
        shown = _legend(page, method)
        both_signs = row["map_low"] < 0 < row["map_high"]
        assert shown["scale"] == ("diverging" if both_signs else "sequential")
        assert len(shown["labels"]) == (3 if both_signs else 2)
        assert ("colour-scale-diverging" in shown["filter"]) == both_signs
        sequential += not both_signs
    assert sequential >= 1  # Grad-CAM's map (a ReLU's) has one sign
    assert page.problems == []


def test_a_report_without_its_data_says_so(page, tmp_path):
    for name in PAGE_FILES:  # the page alone, without data/run.js
        with resources.as_file(resources.files(evaluation) / "report_files" / name) as source:
            shutil.copy(source, tmp_path / name)
    page.goto((tmp_path / "index.html").as_uri())
    page.wait_for_selector("#load-error:not([hidden])")
    assert "captum-rise report DIR" in page.inner_text("#load-error")


@pytest.mark.slow  # CI runs it (make test-slow): the real model and every method, about 80 s
def test_the_report_of_a_real_run_in_a_browser(page, tmp_path):
    """captum-rise evaluate on photos of scikit-image with rise,hsic,sobol,gradcam,ig,
    MobileNetV2, an unreadable file among them."""
    skimage_data = pytest.importorskip("skimage.data")
    for folder, name in (("cat", "chelsea"), ("coffee", "coffee"), ("people", "astronaut")):
        (tmp_path / "data" / folder).mkdir(parents=True)
        Image.fromarray(getattr(skimage_data, name)()).save(
            tmp_path / "data" / folder / f"{name}.png"
        )
    (tmp_path / "data" / "people" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    command = [
        sys.executable, "-m", "captum_rise", "evaluate", str(tmp_path / "data"),
        "--out", str(tmp_path / "out"), "--methods", "rise,hsic,sobol,gradcam,ig",
        "--n-masks", "300", "--n-designs", "64", "--curve-steps", "16",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "report" / "index.html").as_uri() in done.stdout
    check_report(page, tmp_path / "out")
    data = read_script(tmp_path / "out" / "report" / "data" / "run.js")
    assert {i["target_name"] for i in data["images"]} >= {"espresso"}  # ImageNet's names
    screenshots = os.environ.get("CAPTUM_RISE_SCREENSHOTS")
    folder = Path(screenshots) if screenshots else tmp_path
    _open(page, tmp_path / "out" / "report")
    page.screenshot(path=folder / "report_overview.png", full_page=True)
    _open(page, tmp_path / "out" / "report", f"#image={image_key('people/astronaut.png')}")
    page.wait_for_selector("#image-curves svg")
    page.wait_for_load_state("load")
    page.screenshot(path=folder / "report_image.png", full_page=True)
    with Image.open(folder / "report_image.png") as shot:
        assert shot.width == VIEWPORT["width"] and len(set(shot.convert("L").getdata())) > 50
    assert page.problems == []
