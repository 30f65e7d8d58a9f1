"""The perturbation methods stay small: one pipeline; each method its sampler, estimator, sink."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from code_size import code_sizes  # noqa: E402

METHOD_CLASSES = {"rise.py": "RISE", "hsic.py": "HSICAttribution", "sobol.py": "SobolAttribution"}
PIPELINE_MODULES = {*METHOD_CLASSES, "_pipeline.py", "batching.py", "masks.py", "accumulator.py"}


def test_method_classes_and_functions_stay_within_their_size():
    for path in sorted(ROOT / "captum_rise" / name for name in PIPELINE_MODULES):
        for line, kind, name, lines in code_sizes(path):
            where = f"{path.relative_to(ROOT)}:{line} {name}"
            if kind == "function":
                assert lines <= 100, f"{where}: {lines} lines of code (at most 100)"
            elif METHOD_CLASSES.get(path.name) == name:
                assert lines <= 250, f"{where}: {lines} lines of code (at most 250)"


def test_the_counter_skips_docstrings_comments_and_blank_lines(tmp_path):
    source = tmp_path / "example.py"
    source.write_text('class A:\n    """Doc\n    string."""\n\n    # comment\n    x = 1\n')
    assert code_sizes(source) == [(1, "class", "A", 2)]
