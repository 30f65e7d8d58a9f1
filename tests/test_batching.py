"""The automatic chunk size: probing, memory bound, out-of-memory fallback, invariance."""

import pytest
import torch
from captum._utils.progress import NullProgress

from captum_rise import RISE, HSICAttribution, _forward, batching, deletion, insertion
from captum_rise.batching import ChunkSizer, OutOfMemoryError, memory_limit, run_in_chunks
from captum_rise.testing import COST_SHAPES, FakeClock, default_against_fixed


def probe(seconds_per_item, limit=10**6, n_items=10**5):
    """Runs the sizer on a synthetic cost curve; returns the sizes it asked for."""
    sizer = ChunkSizer(limit)
    sizes = []
    while sizer.probing:
        sizes.append(sizer.size)
        sizer.record(sizer.size, sizer.size * seconds_per_item(sizer.size), remaining=n_items)
    return sizes, sizer


def test_sizer_stops_at_the_best_size_of_a_cpu_like_curve():
    # fastest per item at 4, slower beyond (as MobileNetV2 on 2 cores): 8 and 16 (the
    # second look) are measured, then the probe settles on 4
    cost = {1: 20.0, 2: 17.0, 4: 12.7, 8: 14.0, 16: 20.0, 32: 30.0}
    sizes, sizer = probe(lambda s: cost[s])
    assert sizes == [s for s in (1, 2, 4, 8, 16) for _ in range(batching.TIMED_CALLS_PER_SIZE)]
    assert sizer.size == 4 and not sizer.probing


def test_one_size_slowed_by_noise_does_not_stop_the_probe():
    """OpenVINO's MobileNetV2 on 2 cores costs 4.8, 3.5, 2.5, 2.1 and 1.95 ms per image
    at 1, 2, 4, 8 and 16 per call; a busy moment that makes size 2 look no better than
    1 used to end the probe at 1 (2.5x slower). The second look finds 4."""
    cost = {1: 4.8, 2: 4.7, 4: 2.5, 8: 2.1, 16: 1.95, 27: 1.93}  # 27: the memory bound
    sizes, sizer = probe(lambda s: cost[s], limit=27, n_items=2000)
    assert sizer.size == 16 and not sizer.probing and sizes.count(4) == 3


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
    sizer.record(1, 10.0, remaining=1000)  # first call pays a warm-up
    for _ in range(batching.TIMED_CALLS_PER_SIZE - 1):
        assert sizer.size == 1
        sizer.record(1, 1.0, remaining=1000)
    assert sizer.size == 2
    assert sizer.new_size_seconds == 9.0  # the first call's excess over the steady time
    sizer.record(2, 2.0, remaining=1000)
    for _ in range(batching.TIMED_CALLS_PER_SIZE - 1):
        sizer.record(2, 2.2, remaining=1000)  # 1.0 per item at best: no gain over size 1
    assert sizer.size == 4 and sizer.probing  # a second look
    for _ in range(batching.TIMED_CALLS_PER_SIZE):
        sizer.record(4, 4.0, remaining=1000)  # no gain either
    assert sizer.size == 1 and not sizer.probing


def test_memory_limit_on_the_cpu_is_a_byte_budget():
    assert memory_limit(batching.CPU_BUDGET_BYTES // 10, torch.device("cpu")) == 10
    assert memory_limit(2 * batching.CPU_BUDGET_BYTES, torch.device("cpu")) == 1


def collect(n_items, chunk_size, fail_above=None, sizer=None):
    """run_in_chunks over items 0..n-1 with an evaluate that fails above a size."""
    calls, consumed = [], []

    def evaluate(lo, hi, batch):
        calls.append(batch)
        if fail_above is not None and batch > fail_above:
            raise OutOfMemoryError("CUDA out of memory (provoked by the test)")
        return list(range(lo, hi))

    state = sizer or ChunkSizer(10**6)
    run_in_chunks(
        n_items,
        lambda lo, hi, batch: lambda: evaluate(lo, hi, batch),
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
    # the probe may have jumped past 8 and halved below it: any size that fits is kept
    assert state.limit <= 8 and not state.probing and state.size <= state.limit


def test_out_of_memory_of_a_single_item_or_a_fixed_size_reaches_the_user():
    with pytest.raises(OutOfMemoryError):
        collect(10, None, fail_above=0)
    with pytest.raises(OutOfMemoryError):
        collect(10, 8, fail_above=4)


def test_fixed_chunk_size_is_used_as_given():
    calls, consumed, _ = collect(10, 4)
    assert calls == [4, 4, 2] and consumed == list(range(10))


def test_probing_grows_when_each_call_has_a_fixed_cost(tiny_convnet, monkeypatch):
    # 10 ms per call whatever its size: larger chunks are always cheaper per mask,
    # up to the memory bound (here 32 masks of a 3x16x16 float32 input).
    monkeypatch.setattr(batching, "CPU_BUDGET_BYTES", 32 * 3 * 16 * 16 * 4)
    clock = FakeClock()  # deterministic: the test must not depend on the machine's load
    monkeypatch.setattr(batching, "clock", clock)
    seen = []

    def slow_model(x):
        seen.append(x.shape[0])
        clock.advance(0.01)
        return tiny_convnet(x)

    x = torch.rand(1, 3, 16, 16)
    attr = RISE(slow_model).attribute(x, target=1, n_masks=300, seed=0)
    assert max(seen) == 32 and seen[-2] == 32
    assert set(seen) == {1, 2, 32}  # straight to the memory bound once the latency is seen
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
    sizer = batching.sizer_for(model, (x,))
    assert not sizer.probing
    seen.clear()
    rise.attribute(x, target=1, n_masks=200, seed=1)
    assert set(seen[:-1]) == {sizer.size}  # no probing the second time
    # the memory belongs to the model inside the function: a new closure starts there too
    seen.clear()
    RISE(lambda inp: model(inp)).attribute(x, target=1, n_masks=200, seed=2)
    assert set(seen[:-1]) == {sizer.size}
    assert batching.sizer_for(tiny_convnet, (x,)) is sizer


def test_rise_survives_out_of_memory_with_the_same_map(tiny_convnet, monkeypatch):
    calls = []
    clock = FakeClock()  # 10 ms per call: the probe goes past 6 whatever the machine's load
    monkeypatch.setattr(batching, "clock", clock)

    def fragile_model(x):  # "runs out of memory" above 6 masked images per call
        calls.append(x.shape[0])
        if x.shape[0] > 6:
            raise OutOfMemoryError("CUDA out of memory (provoked by the test)")
        clock.advance(0.01)
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


def test_finiteness_is_checked_when_the_maps_are_read_not_per_forward(tiny_convnet, monkeypatch):
    import captum_rise.accumulator as accumulator

    checks = []
    original = accumulator.check_finite_scores
    monkeypatch.setattr(
        accumulator, "check_finite_scores", lambda scores: checks.append(1) or original(scores)
    )
    RISE(tiny_convnet).attribute(
        torch.rand(1, 3, 16, 16), target=0, n_masks=64, perturbations_per_eval=1
    )
    assert len(checks) == 1  # 64 forward calls, one read


@pytest.mark.parametrize("value", [0, -2, 1.5, "4", True])
def test_bad_chunk_sizes_name_the_argument(tiny_convnet, value):
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises((TypeError, ValueError), match="perturbations_per_eval"):
        RISE(tiny_convnet).attribute(x, target=0, n_masks=8, perturbations_per_eval=value)
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        deletion(tiny_convnet, x, x, target=0, batch_size=value)


def test_model_of_finds_the_module_a_forward_function_runs(tiny_convnet):
    from functools import partial

    class Scorer:
        def __init__(self, model):
            self.model = model

        def __call__(self, x):
            return self.model(x)

        def score(self, x):
            return self.model(x)

    def probabilities(model):
        def forward(x):
            return torch.softmax(model(x), dim=1)

        return forward

    scorer = Scorer(tiny_convnet)
    for forward in (
        tiny_convnet,
        probabilities(tiny_convnet),
        lambda x: probabilities(tiny_convnet)(x),
        partial(lambda m, x: m(x), tiny_convnet),
        scorer,
        scorer.score,
    ):
        assert _forward.model_of(forward) is tiny_convnet

    def no_model(x):
        return x.sum(dim=1)

    assert _forward.model_of(no_model) is no_model


GLOBAL_MODEL = torch.nn.Linear(4, 2)


def test_model_of_finds_a_global_model_named_by_a_lambda():
    forward = lambda x: torch.softmax(GLOBAL_MODEL(x), dim=1)  # a notebook's idiom
    assert _forward.model_of(forward) is GLOBAL_MODEL


def test_pad_batch_repeats_the_last_item_and_keeps_the_layout():
    from captum_rise._forward import pad_batch

    x = torch.rand(6, 3, 4, 5).contiguous(memory_format=torch.channels_last)  # 3 items of B=2
    padded = pad_batch(x, 10, group=2)
    assert padded.shape == (10, 3, 4, 5)
    assert padded.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(padded[:6], x)
    torch.testing.assert_close(padded[6:8], x[4:6])
    torch.testing.assert_close(padded[8:10], x[4:6])
    assert pad_batch(x, 6, group=2) is x


def test_padded_scores_equal_unpadded_with_arguments_and_per_example_targets():
    from captum_rise._forward import ModelScorer

    calls = []

    def model(x, scale):
        calls.append(x.shape[0])
        return torch.softmax(x.flatten(1)[:, :5] * scale, dim=1)

    x = torch.rand(3 * 2, 1, 4, 4)  # 3 perturbations of B=2 examples
    scale = torch.tensor([[1.0], [2.0]])  # one per example

    def scorer():
        return ModelScorer(model, 2, (scale,), target=[1, 4])

    exact = scorer()((x,), 3)
    padded = scorer()((x,), 3, batch=8)
    assert calls == [6, 16]
    torch.testing.assert_close(padded, exact)


def test_tail_runs_at_a_met_size_when_new_sizes_are_expensive():
    sizer = ChunkSizer(10**6, start=512)
    sizer.record(512, 1.4 + 0.025, remaining=7488)  # a new size: 1.4 s one-off
    sizer.record(512, 0.025, remaining=6976)
    sizer.record(512, 0.025, remaining=6464)
    assert sizer.new_size_seconds == pytest.approx(1.4)
    assert not sizer.probing and sizer.size == 512  # doubling would cost more than it saves
    assert sizer.next_chunk(320) == (320, 512)  # padded, not a new size
    assert sizer.next_chunk(2000) == (512, 512)


def test_tail_takes_a_new_size_when_new_sizes_are_cheap():
    sizer = ChunkSizer(10**6, start=4)
    for _ in range(batching.TIMED_CALLS_PER_SIZE):
        sizer.record(4, 0.040, remaining=10**4)  # no one-off cost: 10 ms per item
    for _ in range(batching.TIMED_CALLS_PER_SIZE):
        sizer.record(8, 0.100, remaining=10**4)  # slower per item
    for _ in range(batching.TIMED_CALLS_PER_SIZE):
        sizer.record(16, 0.250, remaining=10**4)  # the second look: slower again, keep 4
    assert not sizer.probing and sizer.size == 4
    assert sizer.next_chunk(3) == (3, 3)  # padding to 4 would run a useless item
    sizer.seen.add(8)
    assert sizer.next_chunk(3) == (3, 3)


def test_work_that_fits_in_one_chunk_runs_in_one_call_at_a_met_size():
    calls = []

    def evaluate(lo, hi, batch):
        calls.append((hi - lo, batch))
        return hi - lo

    sizer = ChunkSizer(10**6, start=512)
    for n in (300, 200, 512, 100):
        run_in_chunks(
            n,
            lambda lo, hi, batch: lambda: evaluate(lo, hi, batch),
            lambda lo, hi, r: None,
            None,
            lambda: sizer,
            torch.device("cpu"),
            NullProgress(),
        )
    # the first call meets size 300; the later ones reuse a size met (nothing measured yet)
    assert calls == [(300, 300), (200, 300), (512, 512), (100, 300)]


def simulated_gpu(monkeypatch, x):
    """A fake clock and an accelerator's chunk bounds for inputs like ``x``, and a fresh
    GPU-shaped model (a fresh process: it has met no batch size)."""
    from captum_rise.testing import GPUShapedClassifier, simulate_accelerator

    clock = simulate_accelerator(x, monkeypatch.setattr)
    return clock, GPUShapedClassifier(clock)


def timed_call(clock, run):
    start = clock()
    run()
    return clock() - start


def test_gpu_shaped_stand_in_first_second_and_new_function_calls(monkeypatch):
    """Issue 19's targets on a model with a GPU's costs (fake clock, N=8000): the
    default against the best fixed chunk, each in a fresh 'process' (a fresh model)."""
    x = torch.rand(1, 3, 32, 32)
    n_masks = 8000

    def calls(perturbations_per_eval):
        clock, model = simulated_gpu(monkeypatch, x)
        probs = lambda inp: model(inp)  # a user's closure over the model

        def run(forward, seed):
            return lambda: RISE(forward).attribute(
                x,
                target=0,
                n_masks=n_masks,
                seed=seed,
                perturbations_per_eval=perturbations_per_eval,
            )

        first = timed_call(clock, run(probs, 0))
        second = timed_call(clock, run(probs, 1))
        new_function = timed_call(clock, run(lambda inp: model(inp), 2))
        return first, second, new_function, len(model.batch_sizes)

    fixed = {size: calls(size) for size in (64, 256, 500, 512, 1000, 2000, 8000)}
    first, second, new_function, n_sizes = calls(None)
    best_first = min(f[0] for f in fixed.values())
    best_steady = min(f[1] for f in fixed.values())
    assert first <= 1.25 * best_first, (first, best_first)
    assert second <= 1.10 * best_steady, (second, best_steady)
    assert new_function <= 1.10 * best_steady, (new_function, best_steady)
    assert n_sizes == 1  # one batch size met in three calls


def test_rise_hsic_and_curves_of_one_model_share_the_sizes_met(monkeypatch):
    x = torch.rand(1, 3, 32, 32)
    _clock, model = simulated_gpu(monkeypatch, x)
    saliency = RISE(lambda inp: model(inp)).attribute(x, target=0, n_masks=1000, seed=0)
    met = set(model.batch_sizes)
    HSICAttribution(model).attribute(x, target=0, n_designs=300, seed=0)
    deletion(model, x, saliency, target=0)
    insertion(model, x, saliency, target=0)
    assert model.batch_sizes == met


def test_dataset_runner_warms_up_once_per_run(monkeypatch, tmp_path):
    """A new closure per image (the runner's) must not meet new batch sizes."""
    from captum_rise.evaluation import evaluate_dataset

    images = [(torch.rand(3, 32, 32), 0) for _ in range(3)]
    _clock, model = simulated_gpu(monkeypatch, images[0][0][None])
    settings = dict(methods=["rise", "hsic"], n_masks=700, n_designs=300, show_progress=False)
    evaluate_dataset(model, images[:1], tmp_path / "one", **settings)
    met = set(model.batch_sizes)
    rows = evaluate_dataset(model, images, tmp_path / "three", **settings)
    assert all(row["error"] == "" for row in rows)
    assert model.batch_sizes == met


def test_blender_makes_a_padded_chunk_in_place():
    from captum_rise._forward import Blender

    x = torch.rand(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(3, 1, 1, 4, 4),)
    blender = Blender((x,), (0.5,))
    (exact,) = blender(masks)
    (padded,) = blender(masks, batch=5)
    assert padded.shape == (10, 3, 4, 4)
    assert padded.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(padded[:6], exact)
    torch.testing.assert_close(padded[6:].reshape(2, 2, 3, 4, 4), exact[4:6].expand(2, 2, 3, 4, 4))


def test_the_blender_reuses_a_released_batch_with_the_values_of_a_fresh_one():
    from captum_rise._forward import Blender

    x = torch.rand(2, 3, 4, 4)
    first, second = torch.rand(3, 1, 1, 4, 4), torch.rand(3, 1, 1, 4, 4)
    blender = Blender((x,), (0.5,))
    (used,) = blender((first,))
    blender.release((used,), torch.zeros(3, 2, 1))
    (again,) = blender((second,))
    assert again.data_ptr() == used.data_ptr()
    torch.testing.assert_close(again, Blender((x,), (0.5,))((second,))[0], rtol=0, atol=0)
    blender.release((again,), again[:, 0])  # what the call returned is a view of the batch
    (fresh,) = blender((first,))
    assert fresh.data_ptr() != again.data_ptr()


@pytest.mark.parametrize("chunk", [1, 8, None])
def test_a_forward_returning_a_view_of_its_input_keeps_its_scores(chunk):
    """Scores that are a view of the perturbed batch (this forward's are) stay with the
    accumulator, whose block of 64 masks spans several calls: that batch is not reused."""
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    settings = dict(target=0, n_masks=200, seed=0, grid_size=2, perturbations_per_eval=chunk)
    viewed = RISE(lambda batch: batch[:, 0, 0, :3]).attribute(x, **settings)
    copied = RISE(lambda batch: batch[:, 0, 0, :3].clone()).attribute(x, **settings)
    assert torch.equal(viewed, copied)


BOUNDS = {"latency": (1.5, 1.10), "memory-bound": (1.25, 1.15)}
"""Per cost shape, the first call's and the later calls' bounds against the best fixed chunk
where they are not issue 37's 1.25x and 1.10x: a pure latency at N = 2,000 (0.14 s of work in
6 calls at the bound: the probe's 6 calls at sizes 1 and 2 alone are 0.12 s; 1.44x, as before
issue 37) and a GPU out of memory above 700 (the halved chunk's tail: 1.12x)."""


@pytest.mark.parametrize("n_items", [2000, 8000])
def test_default_is_near_the_best_fixed_chunk_on_every_cost_shape_at_once(monkeypatch, n_items):
    """Issue 37's targets, exact on a fake clock, for every cost shape in one test (a change
    made for one shape cannot move another unseen): the first call within 1.25x the best
    fixed chunk's first call, the second (or a new closure over the same model: it finds
    the same sizer) within 1.10x the best steady call (the CPU's eager model, the fast
    runtime, the GPU-shaped model, the server with a cap; :data:`BOUNDS` for two more),
    and no new size after the first call where a new size costs a GPU's warm-up
    (:func:`default_against_fixed`; the table: ``python benchmarks/cost_shapes.py``)."""
    ratios = {}
    for name, shape in sorted(COST_SHAPES.items()):
        ratios[name], new_sizes = default_against_fixed(shape, n_items, monkeypatch.setattr)
        # a GPU's one-off cost is never paid again; a CPU's few ms may buy a cheaper tail
        assert new_sizes[1] == 0 or shape.new_size_seconds < 0.1, name
    beyond = {
        name: ratio
        for name, ratio in ratios.items()
        if ratio[0] > BOUNDS.get(name, (1.25, 1.10))[0]
        or ratio[1] > BOUNDS.get(name, (1.25, 1.10))[1]
    }
    assert not beyond, ratios


def test_gpu_shaped_costs_on_a_cpu_device_jump_to_a_large_chunk(monkeypatch):
    """The issue's case, through RISE: CPU inputs, a model with a GPU's costs (3.5 ms
    per call + 0.05 ms per item, 0.5 s per new size), N = 8,000. Issue 25's rule kept 4
    items per call (12x slower than the best fixed chunk on the first call); issue 32's
    met sizes 1, 2, 4 and 1,365 (1.79x); a new size costing 140 calls, the probe jumps
    from 1 straight to the memory bound's even split: two sizes in all."""
    shape = COST_SHAPES["gpu-shaped"]
    x = torch.rand(1, 3, 32, 32)

    def calls(perturbations_per_eval):
        clock = FakeClock()
        monkeypatch.setattr(batching, "clock", clock)
        model = shape.model(clock)

        def run(forward, seed):
            return lambda: RISE(forward).attribute(
                x, target=0, n_masks=8000, seed=seed, perturbations_per_eval=perturbations_per_eval
            )

        forward = lambda inp: model(inp)  # a user's closure
        first = timed_call(clock, run(forward, 0))
        second = timed_call(clock, run(forward, 1))
        new_function = timed_call(clock, run(lambda inp: model(inp), 2))
        return (first, second, new_function), model

    fixed = [calls(2**k)[0] for k in range(4, 13)]
    (first, second, new_function), model = calls(None)
    best = [min(f[i] for f in fixed) for i in range(3)]
    assert first <= 1.25 * best[0] and second <= 1.10 * best[1], (first, second, best)
    assert new_function <= 1.10 * best[2]
    assert max(model.calls) >= 512 and len(model.batch_sizes) == 2  # two warm-ups in all


def test_a_short_tail_runs_at_a_smaller_met_size_when_padding_and_new_sizes_cost_more():
    sizer = ChunkSizer(10**6, start=1)
    for size, seconds in ((1, 0.004), (2, 0.0041), (4096, 0.3)):
        sizer.size = size
        sizer.record(size, seconds + 0.5, remaining=10**5)  # first call: 0.5 s one-off
        for _ in range(batching.TIMED_CALLS_PER_SIZE - 1):
            sizer.record(size, seconds, remaining=10**5)
    sizer.size, sizer.probing = 4096, False
    # 50 items: padding to 4096 costs 0.3 s, a new size 0.5 s, 25 calls of 2 about 0.1 s
    assert sizer.next_chunk(50) == (2, 2)
    assert sizer.next_chunk(3000) == (3000, 4096)  # here padding is cheapest
