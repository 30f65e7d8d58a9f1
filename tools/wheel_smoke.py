"""Smoke test of the installed wheel of ``captum-perturbation``, run from outside the source tree.

``make package`` installs the built wheel by its name from a local folder (``--no-index
--find-links dist``) into a fresh virtual environment, once bare and once with each extra, and
runs this script after each install: ``python wheel_smoke.py [--extra NAME]``.

Checks that the package imports from site-packages under its distribution name and version,
ships py.typed and the report's page, runs RISE on a table and installs the ``captum-rise``
command; with ``--extra``, that the extra is declared, that each of its requirements is
installed, and that the modules it is for work (a model, not only an import).
"""

import argparse
import importlib.metadata
import importlib.resources
import re
import subprocess
import sys
from pathlib import Path

import torch

import captum_rise
from captum_rise import RISE

DISTRIBUTION = "captum-perturbation"


def check_base() -> None:
    location = Path(captum_rise.__file__).resolve()
    assert "site-packages" in location.parts, f"imported from the source tree: {location}"
    assert importlib.metadata.version(DISTRIBUTION) == captum_rise.__version__
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


def requirements_of(extra: str) -> list[str]:
    """The names of the requirements the wheel's metadata declares for ``extra``."""
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    declared = importlib.metadata.requires(DISTRIBUTION) or []
    return [
        re.split(r"[\s;<>=!~\[]", line, maxsplit=1)[0] for line in declared if marker.search(line)
    ]


def use_runtimes() -> None:
    import onnxruntime  # noqa: F401
    import openvino

    from captum_rise.runtimes import OpenVINOForward

    model = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Softmax(dim=-1)).eval()
    converted = openvino.convert_model(model, example_input=torch.rand(1, 6))
    converted.reshape([-1, 6])
    forward = OpenVINOForward(openvino.Core().compile_model(converted, "CPU"))
    saliency = RISE(forward).attribute(torch.rand(2, 6), target=1, n_masks=32, seed=0)
    assert saliency.shape == (2, 6)


def use_llm() -> None:
    from captum_rise.testing import toy_language_model

    model, tokenizer = toy_language_model(steps=1)
    tokens = tokenizer("Anna lives in", return_tensors="pt")
    assert model(**tokens).logits.shape[:2] == tokens["input_ids"].shape


def use_faces() -> None:
    from captum_rise.faces import load_dlib_models

    load_dlib_models()


USES = {"runtimes": use_runtimes, "llm": use_llm, "faces": use_faces}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", default=None, help="the extra installed with the wheel")
    extra = parser.parse_args().extra
    check_base()
    if extra is not None:
        names = requirements_of(extra)
        assert names, f"{DISTRIBUTION} declares no extra {extra!r}"
        for name in names:
            importlib.metadata.version(name)  # PackageNotFoundError when the extra missed it
        USES.get(extra, lambda: None)()
    installed = f"{DISTRIBUTION}{f'[{extra}]' if extra else ''} {captum_rise.__version__}"
    print(f"{installed} from {Path(captum_rise.__file__).parent}: wheel smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
