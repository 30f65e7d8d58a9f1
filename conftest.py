"""Run the tutorials with small settings under pytest (nbmake's kernels inherit the environment)."""

import os

os.environ.setdefault("CAPTUM_RISE_TUTORIAL_SMALL", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
