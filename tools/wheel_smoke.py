"""Smoke test of an installed captum_rise wheel, run from outside the source tree (make package).

Checks that the package imports from site-packages, ships py.typed and the report's page, runs
RISE on a table, and installs the ``captum-rise`` command.
"""

import importlib.resources
import subprocess
import sys
from pathlib import Path

import torch

import captum_rise
from captum_rise import RISE


def main() -> int:
    location = Path(captum_rise.__file__).resolve()
    assert "site-packages" in location.parts, f"imported from the source tree: {location}"
    assert importlib.resources.files("captum_rise").joinpath("py.typed").is_file(), "no py.typed"
    page = importlib.resources.files("captum_rise.evaluation").joinpath("report_files")
    for name in ("index.html", "report.js", "report.css"):
        assert page.joinpath(name).is_file(), f"the wheel lacks the report's {name}"
    model = torch.nn.Linear(12, 3)
    saliency = RISE(lambda x: torch.softmax(model(x), dim=1)).attribute(
        torch.rand(2, 12), target=0, n_masks=64, seed=0
    )
    assert saliency.shape == (2, 12)
    command = Path(sys.executable).parent / "captum-rise"
    usage = subprocess.run([command, "--help"], capture_output=True, text=True, check=True).stdout
    assert usage.startswith("usage: captum-rise")
    print(f"captum_rise {captum_rise.__version__} from {location.parent}: wheel smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
