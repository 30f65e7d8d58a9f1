"""Models deployed in other runtimes as forward functions, and the contract every forward meets.

Every method and score adapter of captum_rise takes a forward that returns a
torch tensor, a numpy array or anything numpy reads (:func:`as_output_tensor`
converts it, in one place). So a deployed model needs only to be called with
numpy; the adapters here do that, name the runtime's inputs, and respect a
model exported with a fixed batch size::

    session = onnxruntime.InferenceSession("model.onnx")
    RISE(OnnxRuntimeForward(session)).attribute(x, target=t)

    compiled = openvino.Core().compile_model("model.xml", "CPU")
    RISE(OpenVINOForward(compiled)).attribute(x, target=t)

A TorchScript module (``torch.jit.load("model.pt")``) is a torch model and
needs no adapter. Calls go as they come: a runtime with a fixed batch size
gets slices of that size, the short last one padded with copies of its last
row (whose outputs are dropped); the chunks of perturbation methods never
exceed :attr:`RuntimeForward.max_batch_size`
(:func:`captum_rise.batching.sizer_for`).
"""

import threading
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor

ONNX_ELEMENT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}
"""ONNX Runtime's input types, as the numpy dtypes they are handed."""


def as_output_tensor(value: object, name: str = "the output of forward_func") -> Tensor:
    """A forward's output as a tensor: a tensor as it is; a numpy array (its dtype kept,
    its memory shared), a number, anything numpy reads (lists, objects with
    ``__array__``), or a sequence of array-likes of one length (dlib's ``vectors``).

    Raises:
        TypeError: naming ``name``, when ``value`` holds no numbers.
    """
    if isinstance(value, Tensor):
        return value
    try:
        if isinstance(value, (list, tuple)):  # rows one by one: numpy may not read them at once
            array = np.stack([np.asarray(item) for item in value])
        else:
            array = np.asarray(value)
        if array.dtype == object:  # numbers held as objects (MTCNN's), rows of a sequence type
            rows = [np.asarray(item, dtype=np.float32) for item in value]  # type: ignore[attr-defined]
            array = np.stack(rows)
    except (TypeError, ValueError):
        array = np.empty(0, dtype=object)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(
            f"{name} must be a tensor, a numpy array or an array-like of numbers, "
            f"got {type(value).__name__}"
        )
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")  # torch shares only writeable, ordered memory
    return torch.from_numpy(array)


class RuntimeForward(ABC):
    """Base of the runtime adapters: torch inputs in, a torch tensor out.

    Each input goes to the runtime as a C-ordered numpy array of the dtype it
    declares; the output comes back on the first input's device. Inputs with
    more rows than :attr:`max_batch_size` are run in slices of that size; with
    a fixed batch size, a short slice is padded with copies of its last row.

    Attributes:
        input_names: the runtime's inputs, in the order the forward's positional
            arguments fill them.
        input_dtypes: the numpy dtype of each (None: as given).
        max_batch_size: rows per call the model takes (None: any number).
        fixed_batch_size: whether it takes exactly that many.
        output: which of the model's outputs is returned (index or name).
    """

    input_names: list[str]
    input_dtypes: list[Any]
    max_batch_size: int | None
    fixed_batch_size: bool

    def __init__(self, output: int | str = 0) -> None:
        self.output = output

    def __call__(self, *inputs: Tensor | np.ndarray) -> Tensor:
        if len(inputs) != len(self.input_names):
            raise TypeError(
                f"{type(self).__name__} takes {len(self.input_names)} input(s) "
                f"({', '.join(self.input_names)}), got {len(inputs)}"
            )
        device = inputs[0].device if isinstance(inputs[0], Tensor) else torch.device("cpu")
        arrays = [_to_numpy(x, dtype) for x, dtype in zip(inputs, self.input_dtypes)]
        rows = arrays[0].shape[0]
        step = self.max_batch_size or rows
        outputs = []
        for lo in range(0, rows, step):
            part = [a[lo : lo + step] for a in arrays]
            n = part[0].shape[0]
            if self.fixed_batch_size and n < step:
                part = [np.concatenate([p, np.repeat(p[-1:], step - n, axis=0)]) for p in part]
            outputs.append(np.asarray(self._run(dict(zip(self.input_names, part))))[:n])
        output = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
        return as_output_tensor(output, f"the output of {type(self).__name__}").to(device)

    @abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> Any:
        """The runtime's output :attr:`output` for one call."""


class OnnxRuntimeForward(RuntimeForward):
    """An ONNX Runtime ``InferenceSession`` as a forward function.

    ``session.run`` may be called from several threads at once (ONNX
    Runtime allows it), so ``concurrent_calls`` works with it. On few cores,
    create the session with ``session.intra_op.allow_spinning`` set to ``"0"``:
    its threads spin between calls by default and starve the blending and sums
    that run between them (docs: "Deployed models").

    Args:
        session: ``onnxruntime.InferenceSession``.
        output: the output returned, by index or name (default the first).

    Example::

        RISE(OnnxRuntimeForward(onnxruntime.InferenceSession("model.onnx")))
    """

    def __init__(self, session: Any, output: int | str = 0) -> None:
        super().__init__(output)
        self.session = session
        inputs = session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self.input_dtypes = [ONNX_ELEMENT_TYPES.get(i.type) for i in inputs]
        first = inputs[0].shape[0] if inputs[0].shape else None
        self.fixed_batch_size = isinstance(first, int) and first > 0
        self.max_batch_size = first if self.fixed_batch_size else None
        names = [o.name for o in session.get_outputs()]
        self._output_name = output if isinstance(output, str) else names[output]
        if self._output_name not in names:
            raise ValueError(f"output must be one of {names} or an index, got {output!r}")

    def _run(self, feed: dict[str, np.ndarray]) -> Any:
        return self.session.run([self._output_name], feed)[0]


class OpenVINOForward(RuntimeForward):
    """An OpenVINO ``CompiledModel`` as a forward function.

    Each thread gets its own infer request, so ``concurrent_calls`` works (a
    compiled model's own ``__call__`` shares one request).

    Args:
        compiled_model: ``openvino.CompiledModel`` (``Core().compile_model(...)``).
        output: the output returned, by index or name (default the first).

    Example::

        RISE(OpenVINOForward(openvino.Core().compile_model("model.xml", "CPU")))
    """

    def __init__(self, compiled_model: Any, output: int | str = 0) -> None:
        super().__init__(output)
        self.compiled_model = compiled_model
        ports = list(compiled_model.inputs)
        self.input_names = [port.any_name for port in ports]
        self.input_dtypes = [port.get_element_type().to_dtype() for port in ports]
        first = ports[0].get_partial_shape()[0]
        self.fixed_batch_size = bool(first.is_static)
        self.max_batch_size = first.get_length() if self.fixed_batch_size else None
        self._output_port = compiled_model.output(output)
        self._requests = threading.local()

    def _run(self, feed: dict[str, np.ndarray]) -> Any:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled_model.create_infer_request()
        return request.infer(feed)[self._output_port]


def _to_numpy(value: Tensor | np.ndarray, dtype: Any) -> np.ndarray:
    """``value`` as a C-ordered numpy array of ``dtype`` (None: its own)."""
    array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    return np.ascontiguousarray(array, dtype=dtype)
