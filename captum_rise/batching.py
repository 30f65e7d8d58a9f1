"""How many perturbed inputs go through the model per call, chosen while they are used.

Perturbation methods send thousands of perturbed copies of an input through
the model. The fastest number per forward call depends on the model, the
input and the device: on a small CPU a handful of images per call is fastest
and 64 are 2.5 times slower per image; on a GPU the best batch is in the
hundreds. :func:`run_in_chunks` therefore chooses it at run time, with the
work itself as the measurement, so the choice costs no extra forwards:

1. start with one item (mask, design, perturbed image) per call;
2. time :data:`TIMED_CALLS_PER_SIZE` calls at that size and keep the fastest
   time per item (the first call at a new shape pays one-off set-up costs);
3. double the size while the time per item improves by more than
   :data:`MIN_GAIN`, up to a memory bound (:func:`memory_limit`);
4. then keep the best size. On an out-of-memory error the chunk is halved
   and redone: no item is lost or counted twice.

The size found is remembered for the same function and the same kind of
item (shapes, dtypes, device), so a loop over a dataset probes only once.
Timing needs the device to be synchronised; that happens only while probing.
"""

import math
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch
from captum._utils.progress import Progress

from captum_rise._validation import check_int

ChunkResult = TypeVar("ChunkResult")

OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
"""Raised by torch when an allocation fails (``torch.cuda.OutOfMemoryError``)."""

MIN_GAIN = 0.05
"""A larger chunk is kept only if it lowers the time per item by more than this share."""

TIMED_CALLS_PER_SIZE = 3
"""Calls timed at each size while probing; the fastest counts."""

CPU_BUDGET_BYTES = 64 * 2**20
"""Off CUDA: the most bytes of perturbed inputs one forward call may hold."""

CUDA_FREE_SHARE = 0.5
"""On CUDA: the share of the free device memory that one forward call may use."""

ACTIVATION_FACTOR = 32
"""On CUDA: a model's working memory per example, estimated as this many times the
size of its input (ResNet-50 at 224x224 needs about 20 times in inference).
Underestimates are caught by the out-of-memory fallback."""


def memory_limit(item_bytes: int, device: torch.device) -> int:
    """The largest chunk, in items, that the memory bound allows.

    Args:
        item_bytes: bytes of the perturbed inputs that one item sends to the
            model (e.g. one mask applied to a batch of ``B`` examples).
        device: where the model runs. On CUDA the bound is
            :data:`CUDA_FREE_SHARE` of the free memory over
            ``ACTIVATION_FACTOR * item_bytes``; elsewhere
            :data:`CPU_BUDGET_BYTES` of perturbed inputs.
    """
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        budget = CUDA_FREE_SHARE * free_bytes / ACTIVATION_FACTOR
    else:
        budget = CPU_BUDGET_BYTES
    return max(1, int(budget // max(item_bytes, 1)))


class ChunkSizer:
    """The probing state: grows the chunk while it pays, then keeps the best size.

    Args:
        limit: the largest chunk allowed (memory bound).
    """

    def __init__(self, limit: int) -> None:
        self.limit = check_int("limit", limit)
        self.size = 1
        self.probing = True
        self.best_size = 1
        self._best_seconds_per_item = math.inf
        self._timings: list[float] = []

    def record(self, size: int, seconds: float) -> None:
        """The time of one full chunk of :attr:`size` items, taken while probing."""
        self._timings.append(seconds / size)
        if len(self._timings) < TIMED_CALLS_PER_SIZE:
            return
        seconds_per_item = min(self._timings)
        self._timings = []
        if seconds_per_item < self._best_seconds_per_item * (1.0 - MIN_GAIN):
            self.best_size, self._best_seconds_per_item = size, seconds_per_item
            if size < self.limit:
                self.size = min(2 * size, self.limit)
                return
        self.size = self.best_size
        self.probing = False

    def out_of_memory(self, size: int) -> None:
        """A chunk of ``size`` items did not fit: go on with half of it, and never try
        more. (While probing, half of it is the best size measured so far.)"""
        self.limit = max(1, size // 2)
        self.size = self.best_size = self.limit
        self.probing = False
        self._timings = []


_SIZERS: "weakref.WeakKeyDictionary[object, dict[Hashable, ChunkSizer]]" = (
    weakref.WeakKeyDictionary()
)


def sizer_for(owner: object, item: Sequence[torch.Tensor]) -> ChunkSizer:
    """The :class:`ChunkSizer` remembered for ``owner`` (the forward function) and
    this kind of item, or a fresh one bounded by :func:`memory_limit`.

    Args:
        owner: the forward function; owners that cannot be weakly referenced
            get a fresh sizer every time.
        item: the tensors that one item sends to the model (e.g. the inputs
            ``(B, ...)`` that one mask perturbs, or one ``(1, C, H, W)`` image).
            Their shapes, dtypes, layouts and device key the memory; their
            bytes and device set the memory bound.
    """
    item_bytes = sum(t.numel() * t.element_size() for t in item)
    device = item[0].device
    try:
        per_owner = _SIZERS.setdefault(owner, {})
    except TypeError:
        return ChunkSizer(memory_limit(item_bytes, device))
    signature = item_signature(*item)
    if signature not in per_owner:
        per_owner[signature] = ChunkSizer(memory_limit(item_bytes, device))
    return per_owner[signature]


def item_signature(*tensors: torch.Tensor) -> tuple[Hashable, ...]:
    """Shapes, dtypes, memory layouts and device of the tensors that make one item."""
    return tuple((tuple(t.shape), t.dtype, t.device, t.is_contiguous()) for t in tensors)


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work, so that wall time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_in_chunks(
    n_items: int,
    evaluate: Callable[[int, int], ChunkResult],
    consume: Callable[[int, int, ChunkResult], None],
    chunk_size: int | None,
    sizer: Callable[[], ChunkSizer],
    device: torch.device,
    progress: Progress,
) -> None:
    """Runs ``evaluate`` over items ``0 .. n_items - 1`` in order, a chunk at a time.

    Args:
        n_items: how many items (masks, designs, perturbed images).
        evaluate: ``evaluate(lo, hi)`` runs items ``lo .. hi - 1`` through the
            model and returns what :func:`consume` needs. It must have no
            lasting effect: after an out-of-memory error the same items are
            evaluated again in smaller chunks.
        consume: ``consume(lo, hi, result)`` keeps the result (adds it to sums,
            writes it into an output); it runs exactly once per item.
        chunk_size: items per call; None chooses it automatically (see the
            module's docstring).
        sizer: makes (or recalls) the :class:`ChunkSizer`; called only when
            ``chunk_size`` is None.
        device: where the model runs (for timing and memory).
        progress: advanced by the number of items of every chunk.

    Raises:
        torch.OutOfMemoryError: with a fixed ``chunk_size``, or when a single
            item does not fit.
    """
    if chunk_size is not None:
        for lo in range(0, n_items, chunk_size):
            hi = min(lo + chunk_size, n_items)
            consume(lo, hi, evaluate(lo, hi))
            progress.update(hi - lo)
        return
    state = sizer()
    lo = 0
    while lo < n_items:
        size = min(state.size, n_items - lo)
        timed = state.probing and size == state.size
        if timed:
            synchronize(device)
            start = time.perf_counter()
        try:
            result = evaluate(lo, lo + size)
            out_of_memory = False
        except OutOfMemoryError:
            if size == 1:
                raise
            out_of_memory = True
        if out_of_memory:  # outside the handler, so the failed chunk's tensors are freed
            state.out_of_memory(size)
            continue
        consume(lo, lo + size, result)
        if timed:
            synchronize(device)
            state.record(size, time.perf_counter() - start)
        progress.update(size)
        lo += size


def check_chunk_size(name: str, value: int | None) -> int | None:
    """``value`` as an int >= 1, or None (automatic)."""
    return None if value is None else check_int(name, value)
