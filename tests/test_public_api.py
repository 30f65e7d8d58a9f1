"""The public-API page (docs/public_api.md) names only what exists, and all of the top level."""

import importlib
import re
from pathlib import Path

import pytest

import captum_rise

PAGE = Path(__file__).resolve().parents[1] / "docs" / "public_api.md"
ROW = re.compile(r"^\| `(captum_rise[\w.]*)` \|", re.MULTILINE)


def listed_names() -> list[str]:
    return ROW.findall(PAGE.read_text())


def resolve(dotted: str) -> object:
    """The module or attribute ``dotted`` names: its longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


def test_the_page_lists_names_in_both_sections():
    text = PAGE.read_text()
    assert "## Stable" in text and "## Experimental" in text and "## Deprecation policy" in text
    assert len(listed_names()) > 40


@pytest.mark.parametrize("dotted", listed_names())
def test_every_listed_name_is_importable(dotted):
    assert resolve(dotted) is not None


def test_every_top_level_name_is_listed():
    listed = set(listed_names())
    missing = [name for name in captum_rise.__all__ if f"captum_rise.{name}" not in listed]
    assert not missing, f"docs/public_api.md does not list {missing}"


def test_the_version_is_1_0_0_and_the_metadata_agrees():
    from importlib.metadata import version

    assert captum_rise.__version__ == "1.0.0"
    assert version("captum-perturbation") == captum_rise.__version__


def test_no_page_tells_anyone_to_install_the_other_project():
    """The index's ``captum-rise`` (``captum_rise``, ``Captum.Rise``: one normalised name) is
    another project: no text of ours may say ``pip install`` it."""
    root = PAGE.parents[1]
    other = re.compile(r"pip install\W*captum[-_.]+rise\b", re.IGNORECASE)
    texts = [root / "README.md", root / "CHANGELOG.md", root / "Makefile", root / "pyproject.toml"]
    for folder in ("docs", "tutorials", "examples", "tools", "benchmarks", "captum_rise"):
        texts += [
            p for p in (root / folder).rglob("*") if p.suffix in (".md", ".py", ".sh", ".rst")
        ]
    texts = [p for p in texts if "_build" not in p.parts and ".peers" not in p.parts]
    assert len(texts) > 50
    offending = [
        str(p.relative_to(root)) for p in texts if other.search(p.read_text(errors="ignore"))
    ]
    assert offending == []
