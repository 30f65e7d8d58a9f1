"""Helpers shared by the benchmark scripts: photos, timing, peak memory, a naive RISE,
OpenVINO's compiled models, ONNX Runtime's sessions."""

import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

from captum_rise.batching import synchronize


def bundled_photos() -> dict[str, Image.Image]:
    """Real photos that ship inside installed packages (no download)."""
    import matplotlib.cbook
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = {
        name: Image.fromarray(getattr(data, name)())
        for name in ("chelsea", "coffee", "astronaut", "rocket")
    }
    samples = load_sample_images()
    for path, image in zip(samples.filenames, samples.images):
        photos[path.rsplit("/", 1)[-1].split(".")[0]] = Image.fromarray(image)
    photos["grace_hopper"] = Image.open(
        matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    ).convert("RGB")
    return photos


class ForwardTimer(torch.nn.Module):
    """Wraps a model and adds up the wall time spent in its forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seconds = 0.0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        synchronize(x.device)
        start = time.perf_counter()
        out = self.model(x)
        synchronize(x.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def peak_memory_bytes(device: str) -> int:
    """Peak memory of this process since the last :func:`reset_peak_memory`: the CUDA
    allocator's peak, or the resident-set high-water mark (VmHWM on Linux)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated()
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_memory(device: str) -> None:
    """Starts a new peak: the CUDA allocator's, or the resident-set high-water mark (Linux)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:  # not Linux: the peak includes what came before
        pass


def convert_for_openvino(module: torch.nn.Module):
    """``module`` (224x224 RGB images) as an OpenVINO model taking any batch size."""
    import openvino as ov

    converted = ov.convert_model(module, example_input=torch.rand(1, 3, 224, 224))
    converted.reshape([-1, 3, 224, 224])
    return converted


def compile_openvino(converted, threads: int = 2):
    """An OpenVINO model compiled for the CPU with ``threads`` inference threads."""
    import openvino as ov

    return ov.Core().compile_model(converted, "CPU", {"INFERENCE_NUM_THREADS": threads})


def export_onnxruntime(module: torch.nn.Module, threads: int = 2, spinning: bool = True):
    """``module`` (224x224 RGB images, any batch size) exported to ONNX, as an ONNX Runtime
    session on the CPU with ``threads`` intra-op threads, which spin between calls
    (ONNX Runtime's default) unless ``spinning`` is False."""
    import tempfile
    from pathlib import Path

    import onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        torch.onnx.export(
            module,
            (torch.rand(1, 3, 224, 224),),
            str(path),
            dynamo=False,
            input_names=["pixels"],
            dynamic_axes={"pixels": {0: "batch"}},
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_child(
    script: str,
    arguments: list[str],
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Runs ``script`` in a fresh Python process and parses the JSON of its last output line.

    Peak-memory figures need a process of their own, since the high-water mark only grows.
    Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds. ``env``: the child's
    environment (``None``: this one).
    """
    out = subprocess.run(
        [sys.executable, script, *arguments],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def naive_rise(
    model, image: torch.Tensor, target: int, n_masks: int, batch: int, seed: int
) -> torch.Tensor:
    """RISE as the original code does it: every mask in memory, made on the CPU with numpy."""
    from skimage.transform import resize

    grid_size, p_keep = 7, 0.5
    height, width = image.shape[-2:]
    cell = np.ceil(np.array([height, width]) / grid_size)
    up_size = ((grid_size + 1) * cell).astype(int)
    rng = np.random.default_rng(seed)
    grid = (rng.random((n_masks, grid_size, grid_size)) < p_keep).astype("float32")
    masks = np.empty((n_masks, height, width), dtype="float32")
    for i in range(n_masks):
        dy, dx = rng.integers(0, cell[0]), rng.integers(0, cell[1])
        upsampled = resize(grid[i], up_size, order=1, mode="reflect", anti_aliasing=False)
        masks[i] = upsampled[dy : dy + height, dx : dx + width]
    masks_t = torch.from_numpy(masks).to(image.device)
    scores = []
    with torch.no_grad():
        for lo in range(0, n_masks, batch):
            masked = image * masks_t[lo : lo + batch, None]
            scores.append(torch.softmax(model(masked), dim=1)[:, target])
    saliency = torch.cat(scores) @ masks_t.reshape(n_masks, -1)
    return saliency.reshape(height, width) / n_masks / p_keep
