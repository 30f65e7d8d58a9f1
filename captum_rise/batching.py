"""How many perturbed inputs go through the model per call, chosen while they are used.

Perturbation methods send thousands of perturbed copies of an input through
the model. Two costs decide how to split them into forward calls:

* the time per item, which depends on the batch: on a small CPU a handful of
  images per call is fastest (MobileNetV2: 2.5 times slower per image at 64);
  on a GPU a call costs a few milliseconds whatever its size up to dozens of
  images, so hundreds per call are fastest;
* a one-off cost for every batch size the model meets for the first time: a
  GPU's convolution library plans its kernels per input shape (for MobileNetV2
  on an H200 with cuDNN 9, 1.4 s per new size in 2026-10 and 0.14 s in
  2026-12, against 3 to 40 ms for a steady call of up to 512 images); on a
  CPU it is small.

So the number of distinct batch sizes matters as much as the number of calls,
and neither the device's name nor where the inputs sit tells the costs: CPU
inputs may go to a GPU inside the forward, to a server, or to a compiled
session. :func:`run_in_chunks` chooses the chunk while the items are used, from
a cost model of the calls the work itself makes (every forward counts). The
rule is the same on every device; the device sets only the first size and the
memory bound (:func:`chunk_bounds`):

1. start at one item per call on the CPU; on an accelerator at the largest
   chunk within :data:`ACCELERATOR_START_BYTES` of perturbed inputs and the
   memory bound, where a GPU is near its best time per item;
2. time :data:`TIMED_CALLS_PER_SIZE` calls at that size: the fastest is its
   steady time; a first call's excess over it is the one-off cost of a new
   size (:attr:`ChunkSizer.new_size_seconds`);
3. with one size measured, when a new size costs more than
   :data:`JUMP_CALLS` calls at it (a GPU's warm-up, as for CPU inputs sent to a
   GPU inside the forward) and the calls it would save pay for it, jump
   straight to the memory bound's even split of the remaining work: one more
   size met in all. Otherwise measure twice that size only if a new size's
   one-off cost is at most :data:`MAX_PROBE_SHARE` of the remaining work's
   time (where a GPU's new sizes are dear, this keeps the start size). With
   two or more, a call of ``b`` items is predicted to cost a latency plus a time per item
   (:meth:`ChunkSizer.call_seconds`: the line through the largest two sizes
   measured, where a rise within the spread of their timed calls counts as
   none; interpolated between measured sizes). For the powers of two of the
   current size up to the memory bound, the remaining work's time is
   predicted, the padded last call included (:meth:`ChunkSizer.work_seconds`);
   the target is the smallest size within :data:`KNEE_SHARE` of the best
   prediction (a larger one would save less, and a curve may turn up beyond
   what was measured). The probe moves only if the target's prediction plus
   its one-off cost beats staying (:meth:`ChunkSizer.remaining_seconds`), and
   goes straight there, unless climbing by doubling costs at most
   :data:`MAX_PROBE_SHARE` of it (then every size on the way is measured:
   cheap insurance on a CPU, whose curves turn up);
4. a size measured is kept as the best only if it lowers the time per item
   by more than :data:`MIN_GAIN`, or at all when the cost model chose it from
   two sizes or more (its prediction already weighed the gain against the
   one-off cost; a runtime with a fixed cost per call, such as OpenVINO's
   2.5 ms, gains 4 % from 16 to 27 images a call); the probe ends at the best
   size when two sizes measured in a row are not better (one may be noise:
   the second look, at twice the size, is taken only if it costs at most
   :data:`MAX_PROBE_SHARE` of the remaining work), or when no larger size
   pays. Fewer items than a chunk (a tail, or work that fits in one chunk)
   run the cheapest way by the measured costs: one call at a size the model
   has met, padded with copies of the last item whose outputs are dropped;
   one call at a new size; or calls at a smaller size met.

On an out-of-memory error the chunk is halved and redone: no item is lost or
counted twice. Every call at a size met for the first time, and every call
while probing, is timed; timing synchronises the device, so steady calls
never wait for it.

What was measured (sizes met, their times, the one-off cost) is remembered
per model and kind of item (shapes, dtypes, layout, device). The model is
found inside the forward function (:func:`captum_rise._forward.model_of`), so a new closure over
the same model, e.g. one per image of a dataset, starts where the last one
stopped, and RISE, HSIC and the deletion and insertion curves of one model
share their sizes.
"""

import concurrent.futures
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch
from captum._utils.progress import Progress

from captum_rise._forward import model_of
from captum_rise._validation import check_int
from captum_rise.runtimes import RuntimeForward

ChunkResult = TypeVar("ChunkResult")

OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
"""Raised by torch when an allocation fails (``torch.cuda.OutOfMemoryError``)."""

MIN_GAIN = 0.05
"""A size measured is kept as the best only if it lowers the time per item by more than
this share (else the smaller is kept: less memory, and fewer sizes met)."""

KNEE_SHARE = 0.02
"""The probe's target: the smallest size whose predicted time per item is within this
share of the best predicted within the memory bound (where the call's latency has
stopped mattering; a cost curve may turn up beyond what was measured)."""

TIMED_CALLS_PER_SIZE = 3
"""Calls timed at each size while probing; the fastest counts (the first call at a size
the model has not met carries its one-off cost)."""

MAX_PROBE_SHARE = 0.1
"""The probe spends at most this share of the predicted time of the remaining work on
insurance: a second size when only one is measured, and a climb by doubling (rather
than a jump straight to the predicted best) that only measurement can justify."""

JUMP_CALLS = 16
"""With one size measured, a new size that costs more than this many calls at it (a GPU's
warm-up: 0.5 to 1.4 s against a few ms a call; a CPU's: about 2 calls) makes the probe
jump straight to the memory bound's even split of the remaining work (2,000 items under
a bound of 1,365: calls of 1,000), instead of climbing by doubling, which would meet a
new size at every step, when the calls saved, were a call's time all latency, pay for
the one more warm-up (from 1 item a call, yes; from a GPU's 512 images, no)."""

CPU_BUDGET_BYTES = 16 * 2**20
"""Off CUDA: the most bytes of perturbed inputs one forward call may hold (27 ImageNet
images). Beyond the caches the pipeline's own work per item (blending, accumulating)
grows: with a forward that costs nothing, RISE at 224x224 on 2 cores spent 0.09 ms
per mask at 16 and 32 masks per call and 0.20 to 0.26 ms at 64 and 111
(``benchmarks/overhead.py``); no CPU model measured here was faster per item above it
(MobileNetV2 in torch is fastest at about 4, OpenVINO's is flat)."""

ACCELERATOR_START_BYTES = 512 * 3 * 224 * 224 * 4
"""Off the CPU: the first chunk holds up to this many bytes of perturbed inputs:
512 ImageNet images in float32 (294 MiB), which an H200 runs through ResNet-50
or MobileNetV2 at its best time per image (25 ms per call)."""

CUDA_FREE_SHARE = 0.5
"""On CUDA: the share of the free device memory that one forward call may use."""

ACTIVATION_FACTOR = 32
"""On CUDA: a model's working memory per example, estimated as this many times the
size of its input (ResNet-50 at 224x224 needs about 20 times in inference).
Underestimates are caught by the out-of-memory fallback."""

DETERMINISTIC_CPU_CHUNK = 16
"""Under ``torch.use_deterministic_algorithms(True)`` on the CPU: the items per call
(at most the memory bound; see :func:`deterministic_chunk`)."""

clock: Callable[[], float] = time.perf_counter
"""The timer of the probe (tests and simulations replace it with a fake clock)."""

DEFAULT_RETRIES = 3
"""Times a forward call that failed with one of :data:`RETRIED_ERRORS` is tried again.
A server that fails one request in 25 then loses a call once in 390,000."""

RETRIED_ERRORS: tuple[type[BaseException], ...] = (OSError, concurrent.futures.TimeoutError)
"""What a forward call may raise and be retried for: network and I/O errors, which
HTTP errors (urllib's, requests') and timeouts are. Anything else (a model's bug, a
wrong output, an out-of-memory error, which halves the chunk) is raised at once."""

RETRY_BACKOFF_SECONDS = 0.05
"""A failed call is tried again at once, then after this wait, doubling at every
further retry of that call (0, 0.05, 0.1 s with the default retries): a server's
rare error costs one request's time, one that is down is given 0.15 s to recover."""

sleep: Callable[[float], None] = time.sleep
"""The wait between retries (tests replace it)."""


class ForwardError(RuntimeError):
    """A forward call still failed after its retries (:class:`Retries`); the error it
    raised last is its ``__cause__``. Nothing is made of the items finished before it.

    Attributes:
        items: ``(lo, hi)``: the call's items ``lo .. hi - 1`` (masks, designs, steps).
        attempts: how many times that call was made.
        failures: failed calls in the whole run (retried or not).
        finished: items finished, in order, before that call (``start .. lo - 1``).
    """

    def __init__(self, items: tuple[int, int], attempts: int, failures: int, unit: str) -> None:
        self.items, self.attempts, self.failures, self.finished = items, attempts, failures, 0
        lo, hi = items
        super().__init__(
            f"the forward call of {unit}s {lo}..{hi - 1} failed {attempts} times "
            f"({failures} failed calls in this run), the last with the error above; "
            f"retries= sets how often a call is tried again (now {attempts - 1})"
        )


class Retries:
    """Makes forward calls, each tried again up to ``retries`` times when it raises one
    of :data:`RETRIED_ERRORS` (at once, then after :data:`RETRY_BACKOFF_SECONDS`,
    doubling); safe to use from several threads. Raises :class:`ForwardError` when
    the retries run out.

    Args:
        retries: times a call is tried again (0: never).
        unit: what an item is, for the error (``"mask"``, ``"design"``, ...).
    """

    def __init__(self, retries: int = DEFAULT_RETRIES, unit: str = "item") -> None:
        self.retries, self.unit = check_retries(retries), unit
        self.failures = 0
        self._lock = threading.Lock()

    def call(self, run: Callable[[], ChunkResult], lo: int, hi: int) -> ChunkResult:
        """``run()`` for items ``lo .. hi - 1``, retried."""
        for attempt in range(self.retries + 1):
            try:
                return run()
            except RETRIED_ERRORS as error:
                with self._lock:
                    self.failures += 1
                if attempt == self.retries:
                    raise ForwardError((lo, hi), attempt + 1, self.failures, self.unit) from error
            if attempt:
                sleep(RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # the loop returns or raises


def chunk_bounds(item_bytes: int, device: torch.device) -> tuple[int, int]:
    """``(start, limit)``: the first chunk tried and the largest, in items.

    Args:
        item_bytes: bytes of the perturbed inputs that one item sends to the
            model (e.g. one mask applied to a batch of ``B`` examples).
        device: where the model runs. The limit is :func:`memory_limit`; the
            start is 1 on the CPU and :func:`accelerator_start` elsewhere.
    """
    limit = memory_limit(item_bytes, device)
    if device.type == "cpu":
        return 1, limit
    return accelerator_start(item_bytes, limit), limit


def memory_limit(item_bytes: int, device: torch.device) -> int:
    """The largest chunk, in items, that the memory bound allows: on CUDA
    :data:`CUDA_FREE_SHARE` of the free memory over ``ACTIVATION_FACTOR *
    item_bytes``; elsewhere :data:`CPU_BUDGET_BYTES` of perturbed inputs."""
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        budget = CUDA_FREE_SHARE * free_bytes / ACTIVATION_FACTOR
    else:
        budget = CPU_BUDGET_BYTES
    return max(1, int(budget // max(item_bytes, 1)))


def accelerator_start(item_bytes: int, limit: int) -> int:
    """The first chunk on an accelerator: :data:`ACCELERATOR_START_BYTES` of
    perturbed inputs, at most ``limit`` items."""
    return min(limit, max(1, ACCELERATOR_START_BYTES // max(item_bytes, 1)))


class ChunkSizer:
    """What the probe measured for one model and kind of item, and the sizes it chooses.

    Args:
        limit: the largest chunk allowed (memory bound).
        start: the first size tried (clipped to ``limit``).
        fixed: the size of every call when the chunk may not come from timings
            (:func:`deterministic_chunk`); default: the largest power of two
            within ``start``.

    Attributes:
        size: items per call for full chunks.
        probing: whether calls at :attr:`size` are still timed.
        best_size: the size with the lowest time per item measured.
        seen: the batch sizes the model has met (in items).
    """

    def __init__(self, limit: int, start: int = 1, fixed: int | None = None) -> None:
        self.limit = check_int("limit", limit)
        self.size = self.start = min(check_int("start", start), self.limit)
        self.fixed = _power_of_two_within(self.start if fixed is None else fixed)
        self.probing = True
        self.best_size = self.size
        self.seen: set[int] = set()
        self._best_seconds_per_item = math.inf
        self._timings: list[float] = []  # calls at ``size`` while probing
        self._steady_seconds: dict[int, float] = {}  # fastest timed call per measured size
        self._first_seconds: dict[int, float] = {}  # the first call per size
        self._spread_seconds: dict[int, float] = {}  # timing noise: 2nd fastest - fastest
        self._second_look = False  # a size after one that did not help is being measured
        self._predicted = False  # the size being measured is the cost model's choice

    def next_chunk(self, remaining: int) -> tuple[int, int]:
        """``(items, batch)`` of the next call: ``items`` of the ``remaining`` ones,
        run as one call of ``batch >= items`` items (the rest padding)."""
        if remaining >= self.size:
            return self.size, self.size
        return self._tail_chunk(remaining)

    def wants_timing(self, batch: int) -> bool:
        """Whether a call of ``batch`` items is timed: a size met for the first
        time, or a full chunk while probing."""
        return batch not in self.seen or (self.probing and batch == self.size)

    def record(self, batch: int, seconds: float, remaining: int = 0) -> None:
        """The time of a timed call of ``batch`` items; ``remaining``: the items
        still to do after it."""
        if batch not in self.seen:
            self.seen.add(batch)
            self._first_seconds[batch] = seconds
        if not (self.probing and batch == self.size):
            return
        self._timings.append(seconds)
        if len(self._timings) < TIMED_CALLS_PER_SIZE:
            return
        fastest, second_fastest = sorted(self._timings)[:2]
        self._steady_seconds[batch] = fastest
        self._spread_seconds[batch] = second_fastest - fastest
        self._timings = []
        seconds_per_item = self._steady_seconds[batch] / batch
        required_gain = 0.0 if self._predicted else MIN_GAIN
        if seconds_per_item < self._best_seconds_per_item * (1.0 - required_gain):
            self.best_size, self._best_seconds_per_item = batch, seconds_per_item
            self._second_look = False
            self._predicted = len(self._steady_seconds) >= 2  # the next move is the model's
            following = self._following_size(remaining)
            if following is not None:
                self.size = following
                return
        elif not self._second_look and self._second_look_pays(remaining):
            self._second_look = True  # one size that did not help may be noise: look once more
            self._predicted = False
            self.size = min(2 * self.size, self.limit)
            return
        self.size = self.best_size
        self.probing = False

    def _second_look_pays(self, remaining: int) -> bool:
        """Whether twice the size just measured (which did not beat the best) is worth
        measuring: it is within the memory bound and its one-off cost plus its timed
        calls' excess over the best time per item is at most :data:`MAX_PROBE_SHARE`
        of the remaining work at the best size."""
        doubled = min(2 * self.size, self.limit)
        if doubled == self.size or remaining <= 0:
            return False
        excess = TIMED_CALLS_PER_SIZE * max(
            self.call_seconds(doubled) - doubled * self._best_seconds_per_item, 0.0
        )
        one_off = 0.0 if doubled in self.seen else self.new_size_seconds
        return one_off + excess <= MAX_PROBE_SHARE * self.work_seconds(self.best_size, remaining)

    def _following_size(self, remaining: int) -> int | None:
        """The size to measure after :attr:`size` (just measured, the best so far),
        or None to keep it (rule 3 of the module's docstring)."""
        current = self.size
        if current >= self.limit or remaining <= 0:
            return None
        doubled = min(2 * current, self.limit)
        if len(self._steady_seconds) == 1:  # one point: no slope yet
            call = self._steady_seconds[current]
            jump = -(-remaining // -(-remaining // self.limit))  # the bound's even split
            saved = (-(-remaining // current) - -(-remaining // jump)) * call  # if a latency
            if self.new_size_seconds > JUMP_CALLS * call and saved > self.new_size_seconds:
                return jump  # a GPU's warm-up: climbing would pay it at every size
            affordable = self.new_size_seconds <= MAX_PROBE_SHARE * self.work_seconds(
                current, remaining
            )
            return doubled if affordable else None
        candidates = [current]
        while candidates[-1] < self.limit:
            candidates.append(min(2 * candidates[-1], self.limit))
        work = {size: self.work_seconds(size, remaining) for size in candidates}
        fastest = min(work.values())
        target = min(s for s in candidates if work[s] <= (1.0 + KNEE_SHARE) * fastest)
        predicted = self.remaining_seconds(target, remaining)
        if target == current or predicted >= self.remaining_seconds(current, remaining):
            return None  # no larger size, or its one-off cost is not paid back by this work
        if target == doubled:
            return target
        target_seconds_per_item = self.call_seconds(target) / target
        climb = 0.0  # what doubling costs over jumping: one-offs, and slower timed calls
        size = doubled
        while size < target:
            climb += 0.0 if size in self.seen else self.new_size_seconds
            climb += TIMED_CALLS_PER_SIZE * (
                self.call_seconds(size) - size * target_seconds_per_item
            )
            size *= 2
        return doubled if climb <= MAX_PROBE_SHARE * predicted else target

    def work_seconds(self, size: int, remaining: int) -> float:
        """Predicted time of ``remaining`` items in calls of ``size`` (the last one padded)."""
        return math.ceil(remaining / size) * self.call_seconds(size)

    def remaining_seconds(self, size: int, remaining: int) -> float:
        """:meth:`work_seconds`, plus the one-off cost if the model has not met ``size``."""
        one_off = 0.0 if size in self.seen else self.new_size_seconds
        return self.work_seconds(size, remaining) + one_off

    def call_seconds(self, batch: int) -> float:
        """Predicted steady time of a call of ``batch`` items: measured; met in one
        call only, that call's time less the one-off cost of a new size; between
        two measured sizes, on the line through them; above them, on the line (a
        latency plus a time per item, neither negative) through the largest two,
        where a rise within the timing noise (the spread of the calls timed at
        each) counts as none; below them, in proportion to the smallest (0 before
        any is measured)."""
        measured = sorted(self._steady_seconds)
        if batch in self._steady_seconds:
            return self._steady_seconds[batch]
        if batch in self._first_seconds:  # met once (a jump): its first call less a one-off
            first = self._first_seconds[batch]
            return first - self.new_size_seconds if first > self.new_size_seconds else first
        if not measured:
            return 0.0
        if len(measured) == 1 or batch < measured[0]:
            return batch * self._steady_seconds[measured[0]] / measured[0]
        above = [s for s in measured if s > batch]
        if above:
            low, high = measured[measured.index(above[0]) - 1], above[0]
        else:
            low, high = measured[-2:]
        t_low, t_high = self._steady_seconds[low], self._steady_seconds[high]
        per_item = (t_high - t_low) / (high - low)
        if low < batch < high:
            return t_low + per_item * (batch - low)
        noise = self._spread_seconds[low] + self._spread_seconds[high]
        per_item = max((t_high - t_low - noise) / (high - low), 0.0)
        latency = max(t_high - per_item * high, 0.0)
        return latency + per_item * batch

    @property
    def new_size_seconds(self) -> float:
        """The one-off cost of a size the model has not met: the largest excess of
        a first call over the steady time at a measured size (0 before any)."""
        excesses = [self._first_seconds[s] - t for s, t in self._steady_seconds.items()]
        return max([0.0, *excesses])

    def _tail_chunk(self, items: int) -> tuple[int, int]:
        """``(items, batch)`` of the next call when fewer than :attr:`size` items are
        left: the cheapest by the measured costs of one call at the smallest size
        met that holds them (padded), one at a new size, or calls at a smaller size
        met. With nothing measured yet, a met size that holds them if there is one."""
        if items in self.seen:
            return items, items
        padded = min((s for s in self.seen if items < s <= self.limit), default=None)
        if not self._steady_seconds:
            return items, items if padded is None else padded
        options = {(items, items): self.new_size_seconds + self.call_seconds(items)}
        if padded is not None:
            options[items, padded] = self.call_seconds(padded)
        for smaller in (s for s in self.seen if s < items):
            options[smaller, smaller] = self.work_seconds(smaller, items)
        return min(options, key=options.__getitem__)

    def out_of_memory(self, batch: int) -> None:
        """A call of ``batch`` items did not fit: go on with half of it, and never try
        more. (While probing, half of it is the best size measured so far.)"""
        self.limit = max(1, batch // 2)
        self.size = self.best_size = self.limit
        self.probing = False
        self._timings = []


_SIZERS: "weakref.WeakKeyDictionary[object, dict[Hashable, ChunkSizer]]" = (
    weakref.WeakKeyDictionary()
)


def new_sizer(item_bytes: int, device: torch.device, cap: int | None = None) -> ChunkSizer:
    """A sizer that has measured nothing, for items of ``item_bytes`` on ``device``:
    within :func:`chunk_bounds` and at most ``cap`` items a call (a runtime's or a
    server's batch cap; None: none), with :func:`deterministic_chunk`'s size (on the
    CPU, :data:`DETERMINISTIC_CPU_CHUNK` within the bounds)."""
    start, limit = chunk_bounds(item_bytes, device)
    limit = limit if cap is None else min(limit, cap)
    fixed = min(limit, DETERMINISTIC_CPU_CHUNK) if device.type == "cpu" else None
    return ChunkSizer(limit, start, fixed)


def sizer_for(forward_func: object, item: Sequence[torch.Tensor]) -> ChunkSizer:
    """The :class:`ChunkSizer` remembered for the model of ``forward_func`` and this
    kind of item, or a fresh one within :func:`chunk_bounds`.

    Args:
        forward_func: the model or a function running it (see
            :func:`captum_rise._forward.model_of`);
            one that cannot be weakly referenced gets a fresh sizer every time.
        item: the tensors that one item sends to the model (e.g. the inputs
            ``(B, ...)`` that one mask perturbs, or one ``(1, C, H, W)`` image).
            Their shapes, dtypes, layouts and device key the memory; their
            bytes and device set the bounds. A runtime that takes at most
            ``max_batch_size`` rows per call
            (:class:`captum_rise.runtimes.RuntimeForward`) bounds the chunk to
            that many rows.
    """
    model = model_of(forward_func)

    def fresh() -> ChunkSizer:
        item_bytes = sum(t.numel() * t.element_size() for t in item)
        cap = model.max_batch_size if isinstance(model, RuntimeForward) else None
        items_cap = None if cap is None else max(1, cap // max(item[0].shape[0], 1))
        return new_sizer(item_bytes, item[0].device, items_cap)

    try:
        per_model = _SIZERS.setdefault(model, {})
    except TypeError:
        return fresh()
    signature = item_signature(*item)
    if signature not in per_model:
        per_model[signature] = fresh()
    return per_model[signature]


def item_signature(*tensors: torch.Tensor) -> tuple[Hashable, ...]:
    """Shapes, dtypes, memory layouts and device of the tensors that make one item."""
    return tuple((tuple(t.shape), t.dtype, t.device, t.is_contiguous()) for t in tensors)


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work, so that wall time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def deterministic_chunk(sizer: ChunkSizer) -> int:
    """Items per call when the chunk may not come from timings (under
    ``torch.use_deterministic_algorithms(True)``): :attr:`ChunkSizer.fixed`, the
    largest power of two within the first size of an accelerator, or within
    :data:`DETERMINISTIC_CPU_CHUNK` and the memory bound on the CPU
    (:func:`sizer_for`). It depends on the kind of item and the device only (and
    on the free memory of a GPU that is nearly full), so every call and every
    process runs the same calls; a power of two, so calls tile the sums' blocks
    and the ranks' shares."""
    return sizer.fixed


def _power_of_two_within(size: int) -> int:
    return 2 ** (size.bit_length() - 1)


def fixed_calls(
    start: int, end: int, chunk_size: int, padded: bool
) -> Iterator[tuple[int, int, int]]:
    """``(lo, hi, batch)`` of the calls that run items ``start .. end - 1`` in chunks of
    ``chunk_size`` aligned to its multiples (a range that starts between two has a
    shorter first call); ``padded``: short calls padded to ``chunk_size`` items."""
    lo = start
    while lo < end:
        hi = min((lo // chunk_size + 1) * chunk_size, end)
        yield lo, hi, chunk_size if padded else hi - lo
        lo = hi


def run_in_chunks(
    n_items: int,
    begin: Callable[[int, int, int], Callable[[], ChunkResult]],
    consume: Callable[[int, int, ChunkResult], None],
    chunk_size: int | None,
    sizer: Callable[[], ChunkSizer],
    device: torch.device,
    progress: Progress,
    start: int = 0,
    concurrent_calls: int = 1,
    retries: Retries | None = None,
) -> None:
    """Runs items ``start .. start + n_items - 1`` in order, a chunk at a time (``lo``
    and ``hi`` below count from 0, plus ``start``).

    Args:
        n_items: how many items (masks, designs, perturbed images).
        begin: ``begin(lo, hi, batch)`` prepares items ``lo .. hi - 1`` (draws
            their masks) on the calling thread, chunk after chunk in order, and
            returns the call that finishes them: it runs them through the
            model as one call of ``batch >= hi - lo`` items (the others copies
            of item ``hi - 1``, e.g. with
            :func:`captum_rise._forward.pad_batch`, whose outputs it drops)
            and returns what ``consume`` needs. That call may run on another
            thread (``concurrent_calls``) and must have no lasting effect:
            after an out-of-memory error the same items begin again in
            smaller chunks.
        consume: ``consume(lo, hi, result)`` keeps the result (adds it to sums,
            writes it into an output); it runs exactly once per item, in the
            items' order, on the calling thread.
        chunk_size: items per call, used as given (calls are aligned to its
            multiples: the last holds what is left); None chooses it
            automatically (see the module's docstring), or under
            ``torch.use_deterministic_algorithms(True)`` fixes it
            (:func:`deterministic_chunk`, short calls padded): the model sees
            the same calls on every run, so a seed gives the same bits.
        sizer: makes (or recalls) the :class:`ChunkSizer`; called only when
            ``chunk_size`` is None.
        device: where the model runs (for timing and memory).
        progress: advanced by the number of items of every chunk.
        concurrent_calls: calls kept in flight at once, on worker threads, for
            a forward that waits on something else (a model server); results
            are consumed in order, so they do not depend on which call returns
            first. The automatic chunk is measured one call at a time first.
        retries: how failed calls are retried (default: :class:`Retries` with
            :data:`DEFAULT_RETRIES`).

    Raises:
        ForwardError: a call failed more often than its retries allow; its
            ``finished`` counts the items before it.
        torch.OutOfMemoryError: with a fixed ``chunk_size``, when a single item
            does not fit, or in a call in flight (``concurrent_calls > 1``:
            memory is not shared out among concurrent calls).
    """
    retries = Retries() if retries is None else retries
    end = start + n_items
    try:
        padded = chunk_size is None and torch.are_deterministic_algorithms_enabled()
        if padded:
            chunk_size = deterministic_chunk(sizer())
        if chunk_size is not None:
            calls = fixed_calls(start, end, chunk_size, padded)
            run_calls(calls, begin, consume, progress, concurrent_calls, retries)
            return
        state = sizer()
        lo = start
        while lo < end and (state.probing or concurrent_calls == 1):
            items, batch = state.next_chunk(end - lo)
            timed = state.wants_timing(batch)
            if timed:
                synchronize(device)
                began = clock()
            try:
                result = retries.call(begin(lo, lo + items, batch), lo, lo + items)
                out_of_memory = False
            except OutOfMemoryError:
                if batch == 1:
                    raise
                out_of_memory = True
            if out_of_memory:  # outside the handler, so the failed chunk's tensors are freed
                state.out_of_memory(batch)
                continue
            consume(lo, lo + items, result)
            lo += items
            if timed:
                synchronize(device)
                state.record(batch, clock() - began, remaining=end - lo)
            progress.update(items)
        if lo < end:  # measured: the rest in steady calls, several in flight
            calls = _steady_calls(state, lo, end)
            run_calls(calls, begin, consume, progress, concurrent_calls, retries)
    except ForwardError as error:
        error.finished = error.items[0] - start
        raise


def _steady_calls(state: ChunkSizer, lo: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(lo, hi, batch)`` of the calls that run items ``lo .. end - 1`` at the sizes
    ``state`` chooses, untimed."""
    while lo < end:
        items, batch = state.next_chunk(end - lo)
        yield lo, lo + items, batch
        lo += items


def run_calls(
    calls: Iterable[tuple[int, int, int]],
    begin: Callable[[int, int, int], Callable[[], ChunkResult]],
    consume: Callable[[int, int, ChunkResult], None],
    progress: Progress,
    concurrent_calls: int = 1,
    retries: Retries | None = None,
) -> None:
    """Runs the calls ``(lo, hi, batch)`` (see :func:`run_in_chunks`), up to
    ``concurrent_calls`` of them at once on worker threads, which keep the calling
    thread's autograd mode; each is consumed in order as soon as it and those before
    it are done. A failed call is retried on its own thread (``retries``)."""
    retries = Retries() if retries is None else retries
    if concurrent_calls == 1:
        for lo, hi, batch in calls:
            consume(lo, hi, retries.call(begin(lo, hi, batch), lo, hi))
            progress.update(hi - lo)
        return
    grad_enabled = torch.is_grad_enabled()

    def finish(call: Callable[[], ChunkResult], lo: int, hi: int) -> ChunkResult:
        with torch.set_grad_enabled(grad_enabled):
            return retries.call(call, lo, hi)

    in_flight: deque[tuple[int, int, Future[ChunkResult]]] = deque()
    with ThreadPoolExecutor(concurrent_calls, thread_name_prefix="captum_rise-call") as pool:
        try:
            for lo, hi, batch in calls:
                if len(in_flight) == concurrent_calls:
                    _consume_first(in_flight, consume, progress)
                in_flight.append((lo, hi, pool.submit(finish, begin(lo, hi, batch), lo, hi)))
            while in_flight:
                _consume_first(in_flight, consume, progress)
        except BaseException:
            for _, _, future in in_flight:
                future.cancel()
            raise


def _consume_first(
    in_flight: "deque[tuple[int, int, Future[ChunkResult]]]",
    consume: Callable[[int, int, ChunkResult], None],
    progress: Progress,
) -> None:
    """Waits for the oldest call in flight and consumes its result."""
    lo, hi, future = in_flight.popleft()
    consume(lo, hi, future.result())
    progress.update(hi - lo)


def check_retries(value: object) -> int:
    """``value`` as retries: an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"retries must be an int >= 0, got {value!r}")
    return value


def check_chunk_size(name: str, value: int | None) -> int | None:
    """``value`` as an int >= 1, or None (automatic)."""
    return None if value is None else check_int(name, value)
