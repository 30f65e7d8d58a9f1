"""Stand-ins and ground truth for checking the library: the automatic chunk size without a
GPU, a model server on the loopback address (:class:`ModelServer`), a toy language model,
and exact Banzhaf and Shapley values (:func:`exact_banzhaf`, :func:`exact_shapley`).

:class:`GPUShapedClassifier` is a small classifier whose forward calls take
time on a :class:`FakeClock` as a GPU's do: a fixed latency per call, a small
time per image above it, and a large one-off cost for every batch size it
meets for the first time. :func:`simulate_accelerator` makes
:mod:`captum_rise.batching` size chunks as on an accelerator, timed by that
clock, so a test or a benchmark sees the chunk choice and its cost exactly,
whatever the machine's load::

    clock = simulate_accelerator(x, monkeypatch.setattr)
    model = GPUShapedClassifier(clock)
    RISE(model).attribute(x, target=0, n_masks=8000)
    clock.now, model.batch_sizes  # simulated seconds, distinct sizes met
"""

import http.server
import io
import itertools
import math
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from captum_rise._forward import Blender
from captum_rise.batching import OutOfMemoryError
from captum_rise.hsic import kept_minus_dropped
from captum_rise.masks import GroupIndex
from captum_rise.runtimes import RuntimeForward

EXACT_MAX_GROUPS = 16
""":func:`exact_banzhaf` enumerates ``2 ** G`` subsets: at most this many groups."""


class FakeClock:
    """A clock that moves only when told to (:meth:`advance`); call it for the time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


NEW_SIZE_SECONDS = 1.4
"""One-off cost of a new batch size: MobileNetV2 on an H200 (torch 2.11, cuDNN 9)."""

CALL_SECONDS = 0.0035
"""The time of a call of up to about 64 images on that GPU."""

IMAGE_SECONDS = 25e-3 / 512
"""The time per image of large calls on that GPU (25 ms for 512 images)."""


SIMULATED_MEMORY_LIMIT = 100_000
"""Items per call that the simulated accelerator's memory allows: a large GPU's, never reached."""


def simulate_accelerator(
    item: Tensor, set_attribute: Callable[[object, str, object], None] = setattr
) -> FakeClock:
    """Makes :mod:`captum_rise.batching` size chunks as on an accelerator, for items like
    ``item``, timed by a new :class:`FakeClock`, which it returns.

    The first chunk holds 512 such items (as 512 ImageNet images on a GPU) and the
    memory bound is :data:`SIMULATED_MEMORY_LIMIT`. ``set_attribute`` installs the
    changes: pytest's ``monkeypatch.setattr`` undoes them after a test; the default
    ``setattr`` keeps them for the process (a benchmark).
    """
    from captum_rise import batching

    clock = FakeClock()
    set_attribute(batching, "clock", clock)
    set_attribute(batching, "ACCELERATOR_START_BYTES", 512 * item.numel() * item.element_size())
    set_attribute(
        batching,
        "chunk_bounds",
        lambda item_bytes, device: (
            batching.accelerator_start(item_bytes, SIMULATED_MEMORY_LIMIT),
            SIMULATED_MEMORY_LIMIT,
        ),
    )
    return clock


class SleepingClock:
    """The real clock, for :class:`CostShapedClassifier` in real time: :meth:`advance`
    sleeps (a model with a given cost shape, timed by wall time)."""

    def __call__(self) -> float:
        return time.perf_counter()

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)


class CostShapedClassifier(nn.Module):
    """``(N, C, H, W)`` images to ``(N, n_classes)`` probabilities, taking the time of a
    given cost shape on ``clock`` (a :class:`FakeClock` or a :class:`SleepingClock`).

    A call of ``N`` images advances ``clock`` by ``call_seconds(N)``, plus
    ``new_size_seconds`` when ``N`` is a batch size it has not met before; above
    ``max_batch`` images it raises ``torch.OutOfMemoryError`` (in no time). The
    scores are a softmax of a fixed linear map of the images' 4x4 average-pooled
    values, so attributions are deterministic and depend on the image.

    Attributes:
        calls: the batch size of every call, in order.
        batch_sizes: the distinct batch sizes met.
    """

    def __init__(
        self,
        clock: FakeClock | SleepingClock,
        call_seconds: Callable[[int], float],
        new_size_seconds: float = 0.0,
        max_batch: int | None = None,
        channels: int = 3,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.call_seconds = call_seconds
        self.new_size_seconds = new_size_seconds
        self.max_batch = max_batch
        self.calls: list[int] = []
        self.batch_sizes: set[int] = set()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(
            torch.randn(channels * 16, n_classes, generator=generator), requires_grad=False
        )

    def forward(self, x: Tensor) -> Tensor:
        self.spend(x.shape[0])
        pooled = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return torch.softmax(pooled @ self.weight.to(x.dtype), dim=1)

    def spend(self, rows: int) -> None:
        """Takes the time of a call of ``rows`` images (or raises out of memory)."""
        if self.max_batch is not None and rows > self.max_batch:
            raise OutOfMemoryError(f"{rows} images do not fit (at most {self.max_batch})")
        seconds = self.call_seconds(rows)
        if rows not in self.batch_sizes:
            seconds += self.new_size_seconds
        self.batch_sizes.add(rows)
        self.calls.append(rows)
        self.clock.advance(seconds)


class GPUShapedClassifier(CostShapedClassifier):
    """A :class:`CostShapedClassifier` with a GPU's costs: a call of ``N`` images takes
    ``max(call_seconds, N * image_seconds)``, plus ``new_size_seconds`` for a new
    batch size (defaults: the H200 measurements above)."""

    def __init__(
        self,
        clock: FakeClock | SleepingClock,
        channels: int = 3,
        n_classes: int = 10,
        new_size_seconds: float = NEW_SIZE_SECONDS,
        call_seconds: float = CALL_SECONDS,
        image_seconds: float = IMAGE_SECONDS,
    ) -> None:
        super().__init__(
            clock,
            lambda rows: max(call_seconds, rows * image_seconds),
            new_size_seconds,
            channels=channels,
            n_classes=n_classes,
        )


@dataclass(frozen=True)
class CostShape:
    """How a model's calls cost time: what :class:`CostShapedClassifier` takes.

    Attributes:
        call_seconds: the steady time of a call of ``N`` items.
        new_size_seconds: the one-off cost of a batch size met for the first time.
        max_batch: the largest call that fits in memory (None: no bound), found by
            an out-of-memory error.
        max_batch_size: the largest call it takes, known in advance (a server's
            cap, :attr:`captum_rise.runtimes.RuntimeForward.max_batch_size`).
        image_size: the side of the square RGB images it is shown.
    """

    call_seconds: Callable[[int], float]
    new_size_seconds: float = 0.0
    max_batch: int | None = None
    max_batch_size: int | None = None
    image_size: int = 32

    def model(self, clock: FakeClock | SleepingClock, n_classes: int = 10) -> CostShapedClassifier:
        """A fresh model with these costs (one that has met no batch size)."""
        return CostShapedClassifier(
            clock, self.call_seconds, self.new_size_seconds, self.max_batch, n_classes=n_classes
        )


MOBILENET_V2_CPU_SECONDS_PER_ITEM = {
    1: 14.7e-3, 2: 13.7e-3, 4: 14.8e-3, 8: 24.8e-3,
    16: 25.2e-3, 32: 29.7e-3, 64: 50.1e-3, 111: 56.4e-3,
}  # fmt: skip
"""Measured: MobileNetV2 (torchvision, float32, contiguous) on 224x224 images, 2 CPU
threads, steady time per image at each batch size (this project's 2-core machine)."""


def _mobilenet_v2_cpu_call_seconds(rows: int) -> float:
    """MobileNetV2's measured CPU curve, per item interpolated in log batch size."""
    sizes = sorted(MOBILENET_V2_CPU_SECONDS_PER_ITEM)
    low = max([s for s in sizes if s <= rows], default=sizes[0])
    high = min([s for s in sizes if s >= rows], default=sizes[-1])
    per_low, per_high = (
        MOBILENET_V2_CPU_SECONDS_PER_ITEM[low],
        MOBILENET_V2_CPU_SECONDS_PER_ITEM[high],
    )
    share = 0.0 if high == low else math.log(rows / low) / math.log(high / low)
    return rows * (per_low + share * (per_high - per_low))


COST_SHAPES: dict[str, CostShape] = {
    "cpu-convex": CostShape(_mobilenet_v2_cpu_call_seconds, 0.03, image_size=224),
    "gpu-shaped": CostShape(lambda rows: 3.5e-3 + 0.05e-3 * rows, 0.5),
    "latency": CostShape(lambda rows: 20e-3 + 0.01e-3 * rows, image_size=64),
    "flat": CostShape(lambda rows: 71e-3 * rows, image_size=150),
    "memory-bound": CostShape(lambda rows: 3.5e-3 + 0.05e-3 * rows, 0.5, max_batch=700),
    "fast-runtime": CostShape(lambda rows: 0.4e-3 + 1.7e-3 * rows, 5e-3, image_size=224),
    "server": CostShape(lambda rows: 20e-3 + 0.5e-3 * rows, max_batch_size=32, image_size=224),
}
"""Cost shapes the automatic chunk must handle, all with inputs on the CPU:

* ``cpu-convex``: MobileNetV2 on this CPU (measured; fastest per image at 2, 3.8
  times slower at 111, the memory bound of 224x224 images), 30 ms per new size;
* ``gpu-shaped``: a forward that sends CPU inputs to a GPU (3.5 ms per call +
  0.05 ms per item, 0.5 s for each new batch size);
* ``latency``: a model behind a server (20 ms per call + 0.01 ms per item);
* ``flat``: no gain from batching (dlib's face descriptor: 71 ms per 150x150 chip);
* ``memory-bound``: ``gpu-shaped``, out of memory above 700 items;
* ``fast-runtime``: MobileNetV2 compiled by OpenVINO on this CPU (1.5 to 1.9 ms
  per image at every batch size, measured): 0.4 ms per call + 1.7 ms per image,
  5 ms per new size;
* ``server``: a model server behind a network that takes at most 32 images a
  request (20 ms per request + 0.5 ms per image).
"""


def simulate_calls(
    shape: CostShape,
    chunk_size: int | None,
    n_items: int = 8000,
    runs: int = 3,
    set_attribute: Callable[[object, str, object], None] = setattr,
) -> tuple[list[float], list[int], int]:
    """``runs`` calls of :func:`captum_rise.batching.run_in_chunks` over ``n_items``
    items, one after the other, on one model of the given cost shape (a fresh process:
    it has met no batch size; one sizer, as :func:`~captum_rise.batching.sizer_for`
    remembers it), timed on a :class:`FakeClock` that ``set_attribute`` installs.

    Returns:
        ``(seconds, new_sizes, limit)``: each call's seconds, the batch sizes each met
        for the first time, and the memory bound of the shape's images on the CPU.
    """
    from captum._utils.progress import NullProgress

    from captum_rise import batching

    clock = FakeClock()
    set_attribute(batching, "clock", clock)
    item_bytes = 3 * shape.image_size**2 * 4  # one float32 RGB image
    sizer = batching.new_sizer(item_bytes, torch.device("cpu"), shape.max_batch_size)
    limit = sizer.limit
    model = shape.model(clock)

    def begin(lo: int, hi: int, batch: int) -> Callable[[], None]:
        return lambda: model.spend(batch)  # the costs do not depend on the pixels

    seconds, new_sizes = [], []
    for _ in range(runs):
        before, met_before = clock(), len(model.batch_sizes)
        batching.run_in_chunks(
            n_items, begin, lambda *_: None, chunk_size, lambda: sizer,
            torch.device("cpu"), NullProgress(),
        )  # fmt: skip
        seconds.append(clock() - before)
        new_sizes.append(len(model.batch_sizes) - met_before)
    return seconds, new_sizes, limit


def default_against_fixed(
    shape: CostShape,
    n_items: int,
    set_attribute: Callable[[object, str, object], None] = setattr,
) -> tuple[list[float], list[int]]:
    """The automatic chunk against every fixed power-of-two chunk that fits (up to the
    memory bound, or the sizes that fit for a shape that runs out of memory), on
    :func:`simulate_calls`: the ratios of the default's first and second call (a
    later call, or a new closure over the same model: it finds the same sizer) to the
    best fixed chunk's, and the sizes the default met for the first time in each."""
    default, new_sizes, limit = simulate_calls(shape, None, n_items, 2, set_attribute)
    bound = min(limit, shape.max_batch or limit)
    fixed = [
        simulate_calls(shape, 2**k, n_items, 2, set_attribute)[0] for k in range(bound.bit_length())
    ]
    best = [min(seconds[call] for seconds in fixed) for call in range(len(default))]
    return [d / b for d, b in zip(default, best)], new_sizes


NAMES = ("anna", "bob", "carla", "dan")
CITIES = {"paris": "french", "rome": "italian", "berlin": "german", "madrid": "spanish"}
DRINKS = ("tea", "coffee")
PRONOUNS = ("she", "he")
PROMPT = "{} lives in {} and drinks {} . {} speaks"
"""The toy task's prompt: name, city, drink and pronoun fill the template; the answer
is the city's language and ``fluently``: only the city decides the first answer token."""

NEUTRAL_WORDS = ["someone", "somewhere", "something", "they"]
"""What stands for a removed name, city, drink and pronoun (the baselines of the
template's values): the model was trained with them, and with ``somewhere`` the
language is any of the four, equally likely."""


def toy_language_model(seed: int = 0, steps: int = 250) -> tuple[Any, Any]:
    """A 2-layer GPT-2 and a word-level tokenizer trained here (seconds on a CPU) on
    :data:`PROMPT` followed by ``"<language> fluently"``, where each word of the
    prompt is replaced by its :data:`NEUTRAL_WORDS` entry in a third of the
    sentences.

    For testing and tutorials of LLM attribution offline: no hub, no download.
    Needs ``transformers`` and ``tokenizers`` (``pip install captum-perturbation[llm]``).

    Returns:
        ``(model, tokenizer)``: a ``GPT2LMHeadModel`` in eval mode and a
        ``PreTrainedTokenizerFast``.
    """
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    except ImportError as error:
        raise ImportError(
            "toy_language_model needs transformers and tokenizers: "
            "pip install 'captum-perturbation[llm]'"
        ) from error
    words = ["<pad>", "<unk>", *NAMES, *CITIES, *CITIES.values(), *DRINKS, *PRONOUNS]
    words += [*NEUTRAL_WORDS, "lives", "in", "and", "drinks", ".", "speaks", "fluently"]
    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level, pad_token="<pad>", unk_token="<unk>"
    )
    generator = torch.Generator().manual_seed(seed)

    def pick(options: Sequence[str]) -> str:
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    sentences = []
    languages = list(CITIES.values())
    for _ in range(256):
        values = [pick(NAMES), pick(list(CITIES)), pick(DRINKS), pick(PRONOUNS)]
        language = CITIES[values[1]]
        for slot, neutral in enumerate(NEUTRAL_WORDS):
            if float(torch.rand(1, generator=generator)) < 1 / 3:
                values[slot] = neutral
        if values[1] == "somewhere":
            language = pick(languages)
        sentences.append(f"{PROMPT.format(*values)} {language} fluently")
    ids = torch.tensor([tokenizer.encode(s) for s in sentences])
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(words),
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # else transformers warns that it picks this default
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


def exact_banzhaf(
    forward_func: Callable[[Tensor], Tensor],
    inputs: Tensor,
    feature_mask: Tensor,
    baselines: float | int | Tensor = 0,
) -> Tensor:
    """Exact Banzhaf values of the feature groups of one example, over all ``2 ** G``
    subsets: ``E[f | group kept] - E[f | group dropped]``, what RISE's
    ``normalization="difference"`` estimates at ``p_keep=0.5``.

    Perturbed inputs are made as RISE makes them (:class:`captum_rise._forward.Blender`:
    token ids replaced by the baseline, floats blended); features with the id
    :data:`captum_rise.masks.ALWAYS_KEPT` stay.

    Args:
        forward_func: ``(2 ** G, ...)`` -> ``(2 ** G,)`` or ``(2 ** G, 1)`` scores.
        inputs: ``(1, ...)``, one example.
        feature_mask: group ids broadcastable to ``inputs``.
        baselines: what a dropped feature becomes.

    Returns:
        ``(G,)`` float64 values, groups in increasing order of their ids.
    """
    subsets, scores = _every_subset(forward_func, inputs, feature_mask, baselines, "exact_banzhaf")
    return kept_minus_dropped(subsets, scores)


def exact_shapley(
    forward_func: Callable[[Tensor], Tensor],
    inputs: Tensor,
    feature_mask: Tensor,
    baselines: float | int | Tensor = 0,
) -> Tensor:
    """Exact Shapley values of the feature groups of one example, over all ``2 ** G``
    subsets: ``sum_S |S|! (G - |S| - 1)! / G! (f(S + i) - f(S))`` over the subsets
    ``S`` of the other groups. Arguments as :func:`exact_banzhaf`.

    Returns:
        ``(G,)`` float64 values, groups in increasing order of their ids.
    """
    subsets, scores = _every_subset(forward_func, inputs, feature_mask, baselines, "exact_shapley")
    n_groups = subsets.shape[1]
    size = subsets.sum(dim=1, keepdim=True).double()

    def weight(others: Tensor) -> Tensor:  # |S|! (G - |S| - 1)! / G!, 0 outside 0 .. G - 1
        valid = (others >= 0) & (others <= n_groups - 1)
        others = others.clamp(0, n_groups - 1)
        log_weight = (
            torch.lgamma(others + 1) + torch.lgamma(n_groups - others) - math.lgamma(n_groups + 1)
        )
        return log_weight.exp() * valid

    kept = subsets.double()
    coefficients = kept * weight(size - 1) - (1 - kept) * weight(size)
    return coefficients.T @ scores.double()


def _every_subset(
    forward_func: Callable[[Tensor], Tensor],
    inputs: Tensor,
    feature_mask: Tensor,
    baselines: float | int | Tensor,
    name: str,
) -> tuple[Tensor, Tensor]:
    """``(2 ** G, G)`` every subset of the groups kept, and the ``(2 ** G,)`` scores."""
    groups = GroupIndex((feature_mask,), (inputs,))
    if groups.n_groups > EXACT_MAX_GROUPS:
        raise ValueError(
            f"{name} enumerates 2 ** G subsets: at most {EXACT_MAX_GROUPS} groups, "
            f"got {groups.n_groups}"
        )
    subsets = torch.tensor(
        list(itertools.product([0.0, 1.0], repeat=groups.n_groups)), device=inputs.device
    )
    (masks,) = groups.expand(subsets, fill=1.0)
    with torch.no_grad():
        (perturbed,) = Blender((inputs,), (baselines,))((masks,))
        scores = forward_func(perturbed).reshape(len(subsets), -1)
    if scores.shape[1] != 1:
        raise ValueError(f"forward_func must return one score per input, got {scores.shape[1]}")
    return subsets, scores[:, 0]


class ModelServer(http.server.ThreadingHTTPServer):
    """Serves ``model`` over HTTP on the loopback address: POST a ``.npy`` batch to
    :attr:`url`, get the ``.npy`` output back.

    Each request waits ``latency`` seconds (a queue, a network, a busy GPU);
    it takes at most ``max_batch`` images (more: HTTP 413) and at most
    ``max_requests`` are served at once (others wait their turn). It counts
    the requests and the most it served at once. Start it with :meth:`start`,
    stop it with :meth:`stop`.

    Faults, for testing retries: request number ``k`` (counting from 1) is
    answered with HTTP 500 when ``k`` is a multiple of ``fail_every``, and
    answered only after ``stall_seconds`` more when ``k`` is a multiple of
    ``stall_every`` (0: never); :attr:`failed` and :attr:`stalled` count them.
    """

    daemon_threads = True

    def __init__(
        self,
        model: Callable[[Tensor], Tensor],
        latency: float = 0.02,
        max_batch: int = 8,
        max_requests: int = 8,
        fail_every: int = 0,
        stall_every: int = 0,
        stall_seconds: float = 1.0,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _ModelHandler)
        self.model, self.latency, self.max_batch = model, latency, max_batch
        self.slots = threading.Semaphore(max_requests)
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = self.requests = 0
        self.fail_every, self.stall_every, self.stall_seconds = (
            fail_every,
            stall_every,
            stall_seconds,
        )
        self.arrived = self.failed = self.stalled = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet when a client left before its answer (it timed out: a stall)."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def fault(self) -> str | None:
        """The fault of the request just arrived: ``"fail"``, ``"stall"`` or None."""
        with self.lock:
            self.arrived += 1
            if self.fail_every and self.arrived % self.fail_every == 0:
                self.failed += 1
                return "fail"
            if self.stall_every and self.arrived % self.stall_every == 0:
                self.stalled += 1
                return "stall"
        return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/predict"

    def start(self) -> "ModelServer":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def predict(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """One request's output, after its latency, within the concurrency cap."""
        with self.slots:
            with self.lock:
                self.requests += 1
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            time.sleep(self.latency)
            with torch.no_grad():
                output = self.model(torch.from_numpy(batch)).numpy()
            with self.lock:
                self.in_flight -= 1
        return output


class _ModelHandler(http.server.BaseHTTPRequestHandler):
    server: ModelServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        batch = np.load(io.BytesIO(body))
        if batch.shape[0] > self.server.max_batch:
            self.send_error(413, f"at most {self.server.max_batch} images a request")
            return
        fault = self.server.fault()
        if fault == "fail":
            self.send_error(500, "injected failure")
            return
        if fault == "stall":
            time.sleep(self.server.stall_seconds)
        reply = io.BytesIO()
        np.save(reply, self.server.predict(batch))
        self.send_response(200)
        self.send_header("Content-Length", str(reply.tell()))
        self.end_headers()
        self.wfile.write(reply.getvalue())

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class ServerForward(RuntimeForward):
    """A :class:`ModelServer` (or any server taking and returning ``.npy`` bodies) as a
    forward: one request per at most ``max_batch_size`` images, safe to call from
    several threads (``concurrent_calls``)."""

    def __init__(self, url: str, max_batch_size: int, timeout: float = 60.0) -> None:
        super().__init__()
        self.url, self.timeout = url, timeout
        self.max_batch_size, self.fixed_batch_size = max_batch_size, False
        self.input_names, self.input_dtypes = ["images"], [np.float32]

    def _run(self, feed: dict[str, np.ndarray[Any, Any]]) -> Any:
        body = io.BytesIO()
        np.save(body, feed["images"])
        request = urllib.request.Request(self.url, data=body.getvalue(), method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return np.load(io.BytesIO(response.read()))
