"""Any forward, one contract: numpy and array-like outputs, runtime adapters (ONNX Runtime,
OpenVINO, TorchScript), and calls kept in flight against a real HTTP model server."""

import threading
import time

import numpy as np
import pytest
import torch

from captum_rise import (
    RISE,
    DetectionScore,
    HSICAttribution,
    SobolAttribution,
    deletion,
    insertion,
)
from captum_rise.batching import sizer_for
from captum_rise.quantus_explain import explain
from captum_rise.runtimes import as_output_tensor
from captum_rise.testing import ModelServer, ServerForward


def _numpy_forward(model):
    return lambda x: model(x).detach().numpy()


METHODS = {
    "rise": lambda f, x: RISE(f).attribute(
        x, target=1, n_masks=64, seed=0, perturbations_per_eval=16
    ),
    "hsic": lambda f, x: HSICAttribution(f).attribute(
        x, target=1, n_designs=64, grid_size=4, seed=0, perturbations_per_eval=16
    ),
    "sobol": lambda f, x: SobolAttribution(f).attribute(
        x, target=1, n_designs=8, grid_size=4, seed=0, perturbations_per_eval=16
    ),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_numpy_forward_gives_the_same_map_as_the_tensor_one(tiny_convnet, method):
    """Same seed, same chunks: the float32 outputs are the same numbers, so the maps are
    equal to the bit."""
    x = torch.rand(2, 3, 16, 16)
    expected = METHODS[method](tiny_convnet, x)
    assert torch.equal(METHODS[method](_numpy_forward(tiny_convnet), x), expected)
    lists = lambda inputs: tiny_convnet(inputs).tolist()  # an array-like: Python floats
    torch.testing.assert_close(METHODS[method](lists, x), expected)


def test_d_rise_with_a_numpy_detector_gives_the_same_maps():
    boxes = torch.tensor([[2.0, 2.0, 12.0, 12.0]])

    def detector(images, as_numpy):
        scores = images[:, :, 2:12, 2:12].mean(dim=(1, 2, 3))
        if as_numpy:
            return [{"boxes": boxes.numpy(), "scores": s.reshape(1).numpy()} for s in scores]
        return [{"boxes": boxes, "scores": s.reshape(1)} for s in scores]

    x = torch.rand(1, 3, 32, 32)
    maps = [
        RISE(DetectionScore(lambda im, n=as_numpy: detector(im, n), boxes)).attribute(
            x, n_masks=64, grid_size=8, seed=0, perturbations_per_eval=16
        )
        for as_numpy in (False, True)
    ]
    assert torch.equal(maps[0], maps[1])


def test_causal_metrics_and_quantus_explain_take_numpy_forwards(tiny_convnet):
    x, saliency = torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16)
    for metric in (deletion, insertion):
        expected = metric(tiny_convnet, x, saliency, target=1, n_steps=8).auc
        got = metric(_numpy_forward(tiny_convnet), x, saliency, target=1, n_steps=8).auc
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    kwargs = dict(n_masks=32, seed=0, perturbations_per_eval=8)
    expected = explain(tiny_convnet, x.numpy(), np.array([1, 2]), **kwargs)
    got = explain(_numpy_forward(tiny_convnet), x.numpy(), np.array([1, 2]), **kwargs)
    np.testing.assert_array_equal(got, expected)


def test_an_output_without_numbers_is_a_type_error_naming_the_forward():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(TypeError, match="output of forward_func must be a tensor, a numpy"):
        RISE(lambda inputs: "class 3").attribute(x, n_masks=4)
    with pytest.raises(TypeError, match="output of forward_func"):
        RISE(lambda inputs: {"probs": 1}).attribute(x, n_masks=4)
    assert as_output_tensor(np.float64(0.5)).dtype == torch.float64  # dtypes are kept


class SlowForward:
    """The tiny convnet behind a delay that shrinks with each call, so that calls in
    flight return out of order; records the calls in flight and the autograd mode."""

    def __init__(self, model):
        self.model, self.lock = model, threading.Lock()
        self.calls = self.in_flight = self.most_in_flight = 0
        self.grad_seen = set()

    def __call__(self, x):
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            delay = 0.01 + 0.02 / self.calls
        time.sleep(delay)
        self.grad_seen.add(torch.is_grad_enabled())
        output = self.model(x)
        with self.lock:
            self.in_flight -= 1
        return output


def test_concurrent_calls_give_the_same_map_in_any_order(tiny_convnet):
    """Results are consumed in order whichever call returns first (later calls return
    sooner here): the same chunks give the map to the bit."""
    x = torch.rand(1, 3, 16, 16)
    kwargs = dict(target=2, n_masks=200, seed=0, perturbations_per_eval=8)
    alone = RISE(SlowForward(tiny_convnet)).attribute(x, **kwargs)
    slow = SlowForward(tiny_convnet)
    together = RISE(slow).attribute(x, **kwargs, concurrent_calls=4)
    assert torch.equal(together, alone)
    assert slow.most_in_flight > 1 and slow.grad_seen == {False}
    hsic = [
        HSICAttribution(SlowForward(tiny_convnet)).attribute(
            x, target=2, n_designs=64, seed=0, perturbations_per_eval=8, concurrent_calls=k
        )
        for k in (1, 3)
    ]
    assert torch.equal(hsic[0], hsic[1])
    with pytest.raises(ValueError, match="concurrent_calls must be >= 1"):
        RISE(tiny_convnet).attribute(x, n_masks=4, concurrent_calls=0)


# --- a real HTTP model server on the loopback address ---------------------------------


@pytest.fixture
def model_server(tiny_convnet):
    server = ModelServer(tiny_convnet).start()
    yield server
    server.stop()


def test_a_model_server_runs_requests_in_parallel_with_the_same_map(model_server, tiny_convnet):
    """The server takes 8 images and 8 requests at a time: the chunk never exceeds its
    cap (a larger request would fail with 413), 8 requests are in flight at once, and
    the map is the one-at-a-time map and the in-process model's (float rounding of
    the same float32 outputs sent through numpy: equal to the bit)."""
    x = torch.rand(1, 3, 16, 16)
    forward = ServerForward(model_server.url, max_batch_size=8)
    assert sizer_for(forward, (x,)).limit == 8
    kwargs = dict(target=3, n_masks=256, seed=0, perturbations_per_eval=8)
    one_at_a_time = RISE(forward).attribute(x, **kwargs)
    assert model_server.most_in_flight == 1 and model_server.requests == 32
    parallel = RISE(forward).attribute(x, **kwargs, concurrent_calls=8)
    assert model_server.most_in_flight > 1 and model_server.requests == 64
    assert torch.equal(parallel, one_at_a_time)
    assert torch.equal(parallel, RISE(tiny_convnet).attribute(x, **kwargs))
    # the automatic chunk stays within the server's cap (no 413)
    automatic = RISE(forward).attribute(x, target=3, n_masks=256, seed=0, concurrent_calls=8)
    torch.testing.assert_close(automatic, one_at_a_time)


# --- real runtimes ------------------------------------------------------------------------

# The runtimes compute in float32 with other kernels: on this network their outputs differ
# from torch's by about 1e-7 (checked in each test). A map averages scores weighted by masks
# in [0, 1] and divided by N p_keep, so it differs by at most that error / p_keep; 1e-5 on
# probabilities leaves a margin of 50.
RUNTIME_ATOL = 1e-5


def _assert_explains_like(method, forward, model, x, **kwargs):
    """``method`` on ``forward`` gives ``model``'s attributions within RUNTIME_ATOL."""
    torch.testing.assert_close(
        method(forward).attribute(x, **kwargs),
        method(model).attribute(x, **kwargs),
        rtol=0,
        atol=RUNTIME_ATOL,
    )


def _export_onnx(model, path, batch=None):
    """``model`` as an ONNX file with a dynamic batch (``batch`` None) or a fixed one."""
    x = torch.rand(batch or 2, 3, 16, 16)
    dynamic = None if batch else {"pixels": {0: "batch"}}
    torch.onnx.export(
        model, (x,), str(path), dynamo=False, input_names=["pixels"], dynamic_axes=dynamic
    )
    return path


class RecordingSession:
    """An ONNX Runtime session that records the batch sizes it is run with."""

    def __init__(self, session):
        self.session, self.batches = session, []

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, outputs, feed):
        self.batches.append(next(iter(feed.values())).shape[0])
        return self.session.run(outputs, feed)


def test_onnx_runtime_session_explains_like_the_torch_model(tiny_convnet, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from captum_rise.runtimes import OnnxRuntimeForward

    path = _export_onnx(tiny_convnet, tmp_path / "dynamic.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    forward = OnnxRuntimeForward(session)
    x = torch.rand(2, 3, 16, 16)
    assert (forward(x) - tiny_convnet(x)).abs().max() < 1e-6
    _assert_explains_like(RISE, forward, tiny_convnet, x, target=1, n_masks=128, seed=0)
    hsic = dict(target=1, n_designs=64, grid_size=4, seed=0)
    _assert_explains_like(HSICAttribution, forward, tiny_convnet, x, **hsic)


@pytest.mark.parametrize("fixed", [1, 4])
def test_a_fixed_batch_onnx_model_gets_only_its_batch_size(tiny_convnet, tmp_path, fixed):
    """Batch 1 (many exports): every call holds one row. Batch 4 with chunks of 3 masks
    of 2 examples: each chunk's 6 rows go as 4 + 2, the short slice padded to 4."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from captum_rise.runtimes import OnnxRuntimeForward

    path = _export_onnx(tiny_convnet, tmp_path / f"batch{fixed}.onnx", batch=fixed)
    session = RecordingSession(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    forward = OnnxRuntimeForward(session)
    assert forward.fixed_batch_size and forward.max_batch_size == fixed
    x = torch.rand(2, 3, 16, 16)
    chunk = None if fixed == 1 else 3
    maps = RISE(forward).attribute(x, target=1, n_masks=30, seed=0, perturbations_per_eval=chunk)
    assert set(session.batches) == {fixed}
    expected = RISE(tiny_convnet).attribute(
        x, target=1, n_masks=30, seed=0, perturbations_per_eval=chunk
    )
    torch.testing.assert_close(maps, expected, rtol=0, atol=RUNTIME_ATOL)


def test_openvino_compiled_model_explains_like_the_torch_model(tiny_convnet):
    ov = pytest.importorskip("openvino")
    from captum_rise.runtimes import OpenVINOForward

    example = torch.rand(1, 3, 16, 16)
    dynamic = ov.convert_model(tiny_convnet, example_input=example)
    dynamic.reshape([-1, 3, 16, 16])
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}  # not bf16
    forward = OpenVINOForward(core.compile_model(dynamic, "CPU", config))
    assert not forward.fixed_batch_size
    x = torch.rand(2, 3, 16, 16)
    assert (forward(x) - tiny_convnet(x)).abs().max() < 1e-6
    kwargs = dict(target=1, n_masks=128, seed=0)
    expected = RISE(tiny_convnet).attribute(x, **kwargs)
    got = RISE(forward).attribute(x, **kwargs, perturbations_per_eval=8, concurrent_calls=2)
    torch.testing.assert_close(got, expected, rtol=0, atol=RUNTIME_ATOL)
    fixed = ov.convert_model(tiny_convnet, example_input=example, input=[1, 3, 16, 16])
    forward = OpenVINOForward(core.compile_model(fixed, "CPU", config))
    assert forward.fixed_batch_size and forward.max_batch_size == 1
    assert sizer_for(forward, (x,)).limit == 1  # 2 examples a mask: one mask, two calls
    torch.testing.assert_close(
        RISE(forward).attribute(x, **kwargs), expected, rtol=0, atol=RUNTIME_ATOL
    )


def test_a_torchscript_file_explains_like_the_eager_model(tiny_convnet, tmp_path):
    """A TorchScript module is a torch model: no adapter, the same map to float rounding
    (the scripted graph may fuse operations)."""
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(tiny_convnet), str(path))
    loaded = torch.jit.load(str(path))
    x = torch.rand(2, 3, 16, 16)
    kwargs = dict(target=1, n_masks=128, seed=0, perturbations_per_eval=16)
    _assert_explains_like(RISE, loaded, tiny_convnet, x, **kwargs)
