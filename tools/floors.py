"""Prints the lowest versions that pyproject.toml declares for the direct dependencies, as
pip constraints (``name==version``), for ``make floors``: every ``>=`` floor must be tested."""

import re
import sys
from pathlib import Path

import tomllib

pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
for requirement in pyproject["project"]["dependencies"]:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)", requirement.strip())
    if match is None:
        sys.exit(f"dependency {requirement!r} has no plain '>=' floor to test")
    print(f"{match[1]}=={match[2]}")
