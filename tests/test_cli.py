"""Command line: clear errors, and an end-to-end run on the offline MobileNetV2."""

from pathlib import Path

import pytest
import torch

from captum_rise.cli import main
from captum_rise.imagenet import DEFAULT_WEIGHTS, demo_image_path

WEIGHTS_FILE = Path(torch.hub.get_dir()) / "checkpoints" / "mobilenet_v2-b0353104.pth"


def test_missing_file_is_a_clear_error(capsys, tmp_path):
    assert main(["explain", str(tmp_path / "nope.jpg")]) == 2
    assert "no such image file" in capsys.readouterr().err


def test_unreadable_image_is_a_clear_error(capsys, tmp_path):
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("not an image")
    assert main(["explain", str(bogus)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["explain", str(demo_image_path()), "--model", "resnet9000"]) == 2
    assert "unknown model 'resnet9000'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["demo", "--n-masks", "0"], "--n-masks"),
        (["demo", "--batch", "0"], "--batch"),
        (["explain", "photo.jpg", "--batch", "-3"], "--batch"),
        (["demo", "--target", "cat"], "--target"),
        (["demo", "--target", "-1"], "--target"),
        (["demo", "--device", "tpu"], "--device"),
        (["evaluate", "photos", "--out", "results", "--n-masks", "0"], "--n-masks"),
        (["evaluate", "photos", "--out", "results", "--device", "abc"], "--device"),
    ],
)
def test_bad_arguments_fail_before_any_work(monkeypatch, capsys, arguments, named):
    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr("captum_rise.cli.load_classifier", no_work)
    monkeypatch.setattr("captum_rise.evaluation.command.load_model", no_work)
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code == 2
    assert f"argument {named}" in capsys.readouterr().err


def test_cuda_without_a_device_is_refused_up_front(monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit):
        main(["demo", "--device", "cuda"])
    assert "no CUDA device is available" in capsys.readouterr().err


def test_target_beyond_the_model_classes_is_a_clear_error(capsys):
    if not WEIGHTS_FILE.exists():
        pytest.skip("offline MobileNetV2 weights are not placed (make test places them)")
    assert main(["demo", "--target", "1000"]) == 2
    assert "--target must be in [0, 1000)" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_writes_the_figure_and_prints_the_aucs(capsys, tmp_path):
    if not WEIGHTS_FILE.exists():
        pytest.skip("offline MobileNetV2 weights are not placed (make test places them)")
    out = tmp_path / "figure.png"
    assert (
        main(["demo", "--n-masks", "16", "--batch", "8", "--device", "cpu", "--out", str(out)]) == 0
    )
    captured = capsys.readouterr()
    printed = captured.out
    assert "RISE attribution" not in captured.err  # no bar nested in the stages bar in a log
    assert "bow tie" in printed  # MobileNetV2's top class for Grace Hopper's portrait
    for method in ("RISE", "Grad-CAM", "Integrated Gradients"):
        assert f"| {method} | 0." in printed
    assert "not a benchmark" in printed
    assert out.stat().st_size > 50_000 and out.read_bytes()[:4] == b"\x89PNG"
    assert DEFAULT_WEIGHTS == "IMAGENET1K_V1"
