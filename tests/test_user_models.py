"""``captum-rise evaluate --model``: the user's own model from a factory, an ONNX file or a
TorchScript file, resumable; pickles refused; white-box methods refused on black boxes."""

import csv
import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from captum_rise.cli import main
from captum_rise.evaluation import ModelSpec, load_model
from captum_rise.imagenet import ModelLoadError

ARGS = ["--n-masks", "64", "--curve-steps", "4", "--input-size", "32", "--resize-size", "32"]


class BoxModel(torch.nn.Module):
    """Class 0's logit grows with the brightness inside rows 8:20, columns 4:14."""

    def __init__(self) -> None:
        super().__init__()
        self.gray = torch.nn.Conv2d(3, 1, 1, bias=False)
        torch.nn.init.constant_(self.gray.weight, 1 / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        brightness = self.gray(x)[:, 0, 8:20, 4:14].mean(dim=(1, 2))  # BOX (TorchScript)
        return torch.stack([20 * brightness, torch.zeros_like(brightness)], dim=1)


def build() -> BoxModel:
    """The factory of ``--model test_user_models:build``."""
    return BoxModel().eval()


def build_spec() -> ModelSpec:
    """A factory that also gives the preprocessing: the top-left 32x32 corner."""
    return ModelSpec(BoxModel().eval(), preprocess=lambda image: TF.to_tensor(image)[:, :32, :32])


class LayoutRecorder(BoxModel):
    """A :class:`BoxModel` that records whether each batch it sees is ``channels_last``."""

    layouts: ClassVar[list[bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        LayoutRecorder.layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        return super().forward(x)


def build_channels_last() -> ModelSpec:
    """A factory that asks for ``channels_last`` images."""
    return ModelSpec(
        LayoutRecorder().eval().to(memory_format=torch.channels_last),
        memory_format=torch.channels_last,
    )


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        coarse = torch.as_tensor(rng.random((1, 3, 4, 4)), dtype=torch.float32)
        image = torch.nn.functional.interpolate(coarse, size=(40, 48), mode="bilinear")[0]
        TF.to_pil_image(image).save(folder / f"photo{i}.png")
    return folder


def _rows(out):
    with open(out / "results.csv", newline="") as file:
        return list(csv.DictReader(file))


def _evaluate(photos, out, model, *extra):
    return main(["evaluate", str(photos), "--out", str(out), "--model", model, *ARGS, *extra])


def test_a_factory_model_runs_every_method_and_resumes(photos, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    out = tmp_path / "results"
    methods = "rise,gradcam,ig"
    assert _evaluate(photos, out, "test_user_models:build", "--methods", methods) == 0
    rows = _rows(out)
    assert len(rows) == 9 and all(r["error"] == "" for r in rows)
    assert {r["model"] for r in rows} == {"test_user_models:build"}
    before = (out / "results.csv").read_text()
    assert _evaluate(photos, out, "test_user_models:build", "--methods", methods) == 0
    assert (out / "results.csv").read_text() == before  # resumed: nothing left to do
    spec_out = tmp_path / "spec"
    assert _evaluate(photos, spec_out, "test_user_models:build_spec", "--methods", "rise") == 0
    assert len(_rows(spec_out)) == 3


def test_a_factory_may_ask_for_channels_last_images(photos, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert load_model("test_user_models:build", torch.device("cpu")).memory_format == (
        torch.contiguous_format
    )
    loaded = load_model("test_user_models:build_channels_last", torch.device("cpu"))
    assert loaded.memory_format == torch.channels_last
    LayoutRecorder.layouts.clear()
    out = tmp_path / "channels-last"
    assert _evaluate(photos, out, "test_user_models:build_channels_last", "--methods", "rise") == 0
    # the masked batches of RISE and the curves' batches: channels_last, every one
    assert len(LayoutRecorder.layouts) > 3 and all(LayoutRecorder.layouts)


def test_normalisation_goes_in_front_of_the_model(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    loaded = load_model(
        "test_user_models:build", torch.device("cpu"), crop_size=32, mean=[0.5] * 3, std=[0.25] * 3
    )
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded.forward(x), build()((x - 0.5) / 0.25))
    assert loaded.resize_size == 37  # 32 * 256 / 224, rounded


def test_an_onnx_file_runs_and_resumes_and_refuses_white_box_methods(photos, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        build(),
        (torch.rand(1, 3, 32, 32),),
        str(path),
        dynamo=False,
        input_names=["pixels"],
        dynamic_axes={"pixels": {0: "batch"}},
    )
    out = tmp_path / "onnx"
    assert _evaluate(photos, out, str(path), "--methods", "rise,occlusion") == 0
    rows = _rows(out)
    assert len(rows) == 6 and all(r["error"] == "" for r in rows)
    torch_out = tmp_path / "torch"
    _evaluate(photos, torch_out, "test_user_models:build", "--methods", "rise,occlusion")
    for onnx_row, torch_row in zip(rows, _rows(torch_out)):  # the same maps to float rounding
        assert float(onnx_row["deletion_auc"]) == pytest.approx(
            float(torch_row["deletion_auc"]), abs=1e-4
        )
    progress_before = (out / "results.csv").read_text()
    assert _evaluate(photos, out, str(path), "--methods", "rise,occlusion") == 0
    assert (out / "results.csv").read_text() == progress_before
    capsys.readouterr()
    assert _evaluate(photos, tmp_path / "ig", str(path), "--methods", "rise,ig") == 2
    error = capsys.readouterr().err
    assert "ig need the gradients of a torch model" in error and "black box" in error


def test_a_torchscript_file_runs(photos, tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(build()), str(path))
    out = tmp_path / "scripted"
    assert _evaluate(photos, out, str(path), "--methods", "rise,ig") == 0
    assert len(_rows(out)) == 6 and all(r["error"] == "" for r in _rows(out))
    assert _evaluate(photos, tmp_path / "gc", str(path), "--methods", "gradcam") == 2
    assert "forward hooks" in capsys.readouterr().err


@pytest.mark.parametrize(
    "save",
    [
        lambda model, path: torch.save(model, path),  # a whole pickled module
        lambda model, path: torch.save(model.state_dict(), path),  # a checkpoint
        lambda model, path: path.write_bytes(pickle.dumps({"weights": [1, 2]})),
    ],
)
def test_a_pickle_is_refused_without_being_loaded(photos, tmp_path, capsys, save, monkeypatch):
    """The file is never opened by an unpickler: torch.load and pickle.load would fail
    the test if called."""
    path = tmp_path / "model.pth"
    save(build(), path)
    forbidden = lambda *args, **kwargs: pytest.fail("a pickle was loaded")
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    assert _evaluate(photos, tmp_path / "out", str(path)) == 2
    error = capsys.readouterr().err
    assert "is a pickle" in error and "never unpickles" in error and "torch.jit.save" in error
    assert not (tmp_path / "out" / "results.csv").exists()


def test_bad_model_specs_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    cpu = torch.device("cpu")
    with pytest.raises(ModelLoadError, match="cannot import 'missing'"):
        load_model("test_user_models:missing", cpu)
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(str(tmp_path / "absent.onnx"), cpu)
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(ModelLoadError, match="not an ONNX file"):
        load_model(str(text), cpu)
    with pytest.raises(ModelLoadError, match="--mean and --std go together"):
        load_model("test_user_models:build", cpu, mean=[0.5] * 3)
