"""The comparison report of ``captum-rise compare`` in headless Chromium (as
test_report_browser.py: skipped without a browser, required in CI): its numbers are those
of comparison.csv, its table sorts, and an image opens the two maps side by side with
their difference."""

import csv
import shutil
from pathlib import Path

from test_drift import runs  # noqa: F401 (a fixture)
from test_report_browser import _fixed, _images_loaded, _open, _table, browser, page  # noqa: F401

from captum_rise.cli import main
from captum_rise.evaluation.thumbnails import image_key

ROW_KEYS = ("image", "pair")  # the data- attributes of a row of the images table


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "comparison.csv", newline="") as file:
        return list(csv.DictReader(file))


def _signed(text: str) -> str:
    value = _fixed(text, 4)
    return value if value.startswith("-") or float(value) == 0 else "+" + value


def check_comparison_report(page, out: Path) -> None:  # noqa: F811
    rows = _rows(out)
    report = out / "report"
    _open(page, report)
    summary = page.eval_on_selector_all(
        "#summary-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    pairs = sorted({r["method_a"] for r in rows})
    assert [line[0] for line in summary] == pairs
    for line in summary:
        mine = [r for r in rows if r["method_a"] == line[0]]
        assert int(line[1]) == len(mine)
        mean = sum(float(r["spearman"]) for r in mine) / len(mine)
        assert line[2].startswith(_fixed(mean, 4) + " (")
        changed = sum(r["predicted_a"] != r["predicted_b"] for r in mine)
        assert line[8] == f"{changed} of {len(mine)}"

    # the table: the first pair's rows, the most changed maps first, the numbers of the CSV
    page.click("#drift-link")
    shown = _table(page, ROW_KEYS)
    first = [r for r in rows if r["method_a"] == pairs[0]]
    assert len(shown) == len(first) and {line["pair"] for line in shown} == {pairs[0]}
    by_image = {r["image"]: r for r in first}
    for line in shown:
        row = by_image[line["image"]]
        for column in ("spearman", "top_overlap", "deletion_a", "deletion_b", "insertion_a"):
            assert line[column] == _fixed(row[column], 4)
        for column in ("deletion_change", "insertion_change"):
            assert line[column] == _signed(row[column])
    spearman = [float(line["spearman"]) for line in shown]
    assert spearman == sorted(spearman)
    assert page.get_attribute("th[data-column=spearman]", "aria-sort") == "ascending"

    # sorting by a column, both ways; the other pair
    for descending in (False, True):
        page.click("#images-table th[data-column=insertion_change]")
        values = [float(line["insertion_change"]) for line in _table(page, ROW_KEYS)]
        assert values == sorted(values, reverse=descending)
    page.select_option("#pair-filter", str(len(pairs) - 1))
    assert {line["pair"] for line in _table(page, ROW_KEYS)} == {pairs[-1]}

    # an image: the photo, map A, map B and their difference side by side
    page.select_option("#pair-filter", "0")
    page.click("#images-table th[data-column=spearman]")  # ascending: the most changed first
    worst = _table(page, ROW_KEYS)[0]["image"]
    page.click(f"#images-table tbody tr[data-image='{worst}']")
    assert page.evaluate("location.hash") == f"#image={image_key(worst)}/0"
    page.wait_for_load_state("load")
    panels = page.eval_on_selector_all("#image-panels .panel", "p => p.map(x => x.dataset.panel)")
    assert panels == ["photo", "a", "b", "difference"]
    assert all(_images_loaded(page, "#image-panels img"))
    row = by_image[worst]
    assert f"Spearman {_fixed(row['spearman'], 4)}" in page.inner_text("#image-facts")
    assert f"deletion AUC {_fixed(row['deletion_a'], 4)}" in page.inner_text("[data-panel=a]")
    assert f"deletion AUC {_fixed(row['deletion_b'], 4)}" in page.inner_text("[data-panel=b]")
    scale = page.get_attribute("[data-panel=difference] .colour-bar", "data-scale")
    assert scale == "diverging"
    assert page.problems == []


def test_the_comparison_report_in_a_browser(page, runs, tmp_path):  # noqa: F811
    out = tmp_path / "drift"
    assert main(["compare", str(runs["a"]), str(runs["shifted"]), "--out", str(out)]) == 0
    check_comparison_report(page, out)
    # a copied folder opens as well: the report holds its photos and maps
    shutil.copytree(out, tmp_path / "copied")
    shutil.rmtree(out)
    check_comparison_report(page, tmp_path / "copied")


def test_a_comparison_report_without_its_data_says_so(page, runs, tmp_path):  # noqa: F811
    out = tmp_path / "drift"
    assert main(["compare", str(runs["a"]), str(runs["again"]), "--out", str(out)]) == 0
    (out / "report" / "data" / "comparison.js").unlink()
    page.goto((out / "report" / "index.html").as_uri())
    page.wait_for_selector("#load-error:not([hidden])")
    assert "captum-rise compare" in page.inner_text("#load-error")
