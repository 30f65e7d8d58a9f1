"""Sphinx configuration: API reference from the docstrings, the CLI, figures, tutorials."""

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import captum_rise  # noqa: E402

project = "captum_rise"
author = "captum_rise developers"
copyright = "2026, captum_rise developers"
release = captum_rise.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
    "myst_nb",
]

# Google-style docstrings; types come from the annotations.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Captum's base classes document Captum's methods; only ours are documented here.
autodoc_inherit_docstrings = False

# The tutorials are rendered as committed, never executed (they need the offline
# ImageNet weights and minutes of CPU).
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

html_theme = "furo"
html_title = f"captum_rise {release}"


def _copy_tutorials() -> None:
    """The notebooks live in ../tutorials (pytest runs them there); Sphinx reads a copy."""
    target = Path(__file__).parent / "tutorials"
    target.mkdir(exist_ok=True)
    for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
        shutil.copyfile(notebook, target / notebook.name)


_copy_tutorials()
