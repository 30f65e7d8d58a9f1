"""Run the tutorials with small settings under pytest (nbmake's kernels inherit the environment)."""

import os

import pytest

os.environ.setdefault("CAPTUM_RISE_TUTORIAL_SMALL", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every tutorial notebook is a ``slow`` test (``make test-slow`` runs them)."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
