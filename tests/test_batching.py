"""The automatic chunk size: probing, memory bound, out-of-memory fallback, invariance."""

import pytest
import torch
from captum._utils.progress import NullProgress

from captum_rise import RISE, HSICAttribution, batching, deletion, insertion
from captum_rise.batching import ChunkSizer, OutOfMemoryError, memory_limit, run_in_chunks


def probe(seconds_per_item, limit=10**6, n_items=10**5):
    """Runs the sizer on a synthetic cost curve; returns the sizes it asked for."""
    sizer = ChunkSizer(limit)
    sizes = []
    while sizer.probing:
        sizes.append(sizer.size)
        sizer.record(sizer.size, sizer.size * seconds_per_item(sizer.size))
    return sizes, sizer


def test_sizer_stops_at_the_best_size_of_a_cpu_like_curve():
    # fastest per item at 4, slower beyond (as MobileNetV2 on 2 cores)
    cost = {1: 20.0, 2: 17.0, 4: 12.7, 8: 14.0, 16: 20.0, 32: 30.0}
    sizes, sizer = probe(lambda s: cost[s])
    assert sizes == [s for s in (1, 2, 4, 8) for _ in range(batching.TIMED_CALLS_PER_SIZE)]
    assert sizer.size == 4 and not sizer.probing


def test_sizer_grows_while_the_gain_exceeds_the_threshold():
    # per-call overhead of 100 units: per item 100/s + 1, gains shrink as s grows
    _sizes, sizer = probe(lambda s: 100.0 / s + 1.0)
    assert sizer.size > 64
    gain_at_best = (100.0 / sizer.size + 1) / (100.0 / (2 * sizer.size) + 1) - 1
    assert gain_at_best <= batching.MIN_GAIN / (1 - batching.MIN_GAIN) + 1e-9


def test_sizer_never_exceeds_its_memory_limit():
    sizes, sizer = probe(lambda s: 1.0 / s, limit=12)
    assert max(sizes) == 12 and sizer.size == 12


def test_sizer_keeps_the_fastest_of_its_timings():
    sizer = ChunkSizer(100)
    sizer.record(1, 10.0)  # first call pays a warm-up
    for _ in range(batching.TIMED_CALLS_PER_SIZE - 1):
        assert sizer.size == 1
        sizer.record(1, 1.0)
    assert sizer.size == 2
    sizer.record(2, 2.0)
    for _ in range(batching.TIMED_CALLS_PER_SIZE - 1):
        sizer.record(2, 2.2)  # 1.0 per item at best: no gain over size 1
    assert sizer.size == 1 and not sizer.probing


def test_memory_limit_on_the_cpu_is_a_byte_budget():
    assert memory_limit(batching.CPU_BUDGET_BYTES // 10, torch.device("cpu")) == 10
    assert memory_limit(2 * batching.CPU_BUDGET_BYTES, torch.device("cpu")) == 1


def collect(n_items, chunk_size, fail_above=None, sizer=None):
    """run_in_chunks over items 0..n-1 with an evaluate that fails above a size."""
    calls, consumed = [], []

    def evaluate(lo, hi):
        calls.append(hi - lo)
        if fail_above is not None and hi - lo > fail_above:
            raise OutOfMemoryError("CUDA out of memory (provoked by the test)")
        return list(range(lo, hi))

    state = sizer or ChunkSizer(10**6)
    run_in_chunks(
        n_items,
        evaluate,
        lambda lo, hi, r: consumed.extend(r),
        chunk_size,
        lambda: state,
        torch.device("cpu"),
        NullProgress(),
    )
    return calls, consumed, state


def test_out_of_memory_halves_the_chunk_and_loses_no_item():
    sizer = ChunkSizer(10**6)
    sizer.size, sizer.probing = 64, False
    calls, consumed, state = collect(500, None, fail_above=20, sizer=sizer)
    assert consumed == list(range(500))  # each item once, in order
    assert calls[:4] == [64, 32, 16, 16] and state.limit == 16
    assert max(calls[3:]) <= 16


def test_out_of_memory_while_probing_stops_growth():
    _calls, consumed, state = collect(3000, None, fail_above=8)
    assert consumed == list(range(3000))
    assert state.limit == 8 and not state.probing and state.size <= 8


def test_out_of_memory_of_a_single_item_or_a_fixed_size_reaches_the_user():
    with pytest.raises(OutOfMemoryError):
        collect(10, None, fail_above=0)
    with pytest.raises(OutOfMemoryError):
        collect(10, 8, fail_above=4)


def test_fixed_chunk_size_is_used_as_given():
    calls, consumed, _ = collect(10, 4)
    assert calls == [4, 4, 2] and consumed == list(range(10))


class _FakeClock:
    """Stands in for the ``time`` module in :mod:`captum_rise.batching`: time moves
    only when a test model says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_probing_grows_when_each_call_has_a_fixed_cost(tiny_convnet, monkeypatch):
    # 10 ms per call whatever its size: larger chunks are always cheaper per mask,
    # up to the memory bound (here 32 masks of a 3x16x16 float32 input).
    monkeypatch.setattr(batching, "CPU_BUDGET_BYTES", 32 * 3 * 16 * 16 * 4)
    clock = _FakeClock()  # deterministic: the test must not depend on the machine's load
    monkeypatch.setattr(batching, "time", clock)
    seen = []

    def slow_model(x):
        seen.append(x.shape[0])
        clock.now += 0.01
        return tiny_convnet(x)

    x = torch.rand(1, 3, 16, 16)
    attr = RISE(slow_model).attribute(x, target=1, n_masks=300, seed=0)
    assert sum(seen) == 300
    assert max(seen) == 32 and seen[-2] == 32
    reference = RISE(tiny_convnet).attribute(
        x, target=1, n_masks=300, seed=0, perturbations_per_eval=7
    )
    torch.testing.assert_close(attr, reference)


def test_chosen_size_is_remembered_for_the_same_function_and_input(tiny_convnet, monkeypatch):
    monkeypatch.setattr(batching, "CPU_BUDGET_BYTES", 8 * 3 * 16 * 16 * 4)  # at most 8 masks
    seen = []

    def model(x):
        seen.append(x.shape[0])
        return tiny_convnet(x)

    rise = RISE(model)
    x = torch.rand(1, 3, 16, 16)
    rise.attribute(x, target=1, n_masks=200, seed=0)
    sizer = batching._SIZERS[model][batching.item_signature(x)]
    assert not sizer.probing
    seen.clear()
    rise.attribute(x, target=1, n_masks=200, seed=1)
    assert set(seen[:-1]) == {sizer.size}  # no probing the second time


def test_rise_survives_out_of_memory_with_the_same_map(tiny_convnet):
    calls = []

    def fragile_model(x):  # "runs out of memory" above 6 masked images per call
        calls.append(x.shape[0])
        if x.shape[0] > 6:
            raise OutOfMemoryError("CUDA out of memory (provoked by the test)")
        return tiny_convnet(x)

    x = torch.rand(2, 3, 16, 16)
    attr = RISE(fragile_model).attribute(x, target=1, n_masks=100, seed=4)
    reference = RISE(tiny_convnet).attribute(
        x, target=1, n_masks=100, seed=4, perturbations_per_eval=3
    )
    torch.testing.assert_close(attr, reference)
    assert any(c > 6 for c in calls) and max(calls[-5:]) <= 6


@pytest.mark.parametrize("size", [1, 3, 50])
def test_automatic_equals_fixed_for_classes_hsic_and_groups(tiny_convnet, size):
    x = torch.rand(2, 3, 16, 16)
    rise = RISE(tiny_convnet)
    torch.testing.assert_close(
        rise.attribute_classes(x, classes=[0, 3], n_masks=80, seed=2),
        rise.attribute_classes(x, classes=[0, 3], n_masks=80, seed=2, perturbations_per_eval=size),
    )
    groups = torch.arange(16).reshape(1, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    torch.testing.assert_close(
        rise.attribute(x, target=2, feature_mask=groups, n_masks=80, seed=2),
        rise.attribute(
            x, target=2, feature_mask=groups, n_masks=80, seed=2, perturbations_per_eval=size
        ),
    )
    hsic = HSICAttribution(tiny_convnet)
    torch.testing.assert_close(
        hsic.attribute(x, target=1, n_designs=64, grid_size=4, seed=2),
        hsic.attribute(x, target=1, n_designs=64, grid_size=4, seed=2, perturbations_per_eval=size),
    )


def test_metrics_automatic_batch_equals_fixed(tiny_convnet):
    x = torch.rand(2, 3, 12, 12)
    saliency = torch.rand(2, 1, 12, 12)
    for curve in (deletion, insertion):
        automatic = curve(tiny_convnet, x, saliency, [1, 2])
        fixed = curve(tiny_convnet, x, saliency, [1, 2], batch_size=5)
        torch.testing.assert_close(automatic.scores, fixed.scores)


def test_finiteness_is_checked_once_per_flush_not_per_forward(tiny_convnet, monkeypatch):
    import captum_rise.accumulator as accumulator

    checks = []
    original = accumulator.check_finite_scores
    monkeypatch.setattr(
        accumulator, "check_finite_scores", lambda scores: checks.append(1) or original(scores)
    )
    RISE(tiny_convnet).attribute(
        torch.rand(1, 3, 16, 16), target=0, n_masks=64, perturbations_per_eval=1
    )
    assert len(checks) == 1  # 64 forward calls, one flush


@pytest.mark.parametrize("value", [0, -2, 1.5, "4", True])
def test_bad_chunk_sizes_name_the_argument(tiny_convnet, value):
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises((TypeError, ValueError), match="perturbations_per_eval"):
        RISE(tiny_convnet).attribute(x, target=0, n_masks=8, perturbations_per_eval=value)
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        deletion(tiny_convnet, x, x, target=0, batch_size=value)
