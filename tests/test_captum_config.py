"""RISE and HSIC through Captum's own generic attribution test configuration.

Captum ships the configuration its ``test_targets.py`` and ``test_jit.py`` read
(:mod:`captum.testing.attr.helpers.test_config`). Every entry that runs one of
Captum's perturbation methods is run here with RISE and HSIC, plus a
``feature_mask`` variant of each and list-target variants, against the
properties those tests check: batched targets equal one example at a time,
``torch.jit`` script/trace models equal eager ones, NoiseTunnel with zero noise
equals the method, ``perturbations_per_eval`` does not change the maps, and
nothing the call is given changes. Like Captum's tests, every call is preceded
by a global reseed and passes no ``seed``: the methods draw theirs from torch's
global generator. The last tests show that each check fails on a broken
attribution.

Tolerance: the compared calls draw the same masks, so their maps differ only by
float32 rounding (scores of one input at different batch sizes, sums of <= 32
scores in other orders): a few 1e-7 of the map's largest value. They are
compared with Captum's ``target_delta`` of 1e-4, relative to that value when it
is above 1; a broken attribution is off by a sizeable fraction of it.
"""

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from captum._utils.common import _format_additional_forward_args, _format_tensor_into_tuples
from captum.attr import (
    FeatureAblation,
    FeaturePermutation,
    KernelShap,
    Lime,
    NoiseTunnel,
    Occlusion,
    ShapleyValueSampling,
)
from captum.testing.attr.helpers.test_config import config

from captum_rise import RISE, HSICAttribution
from captum_rise._base import log_usage

PERTURBATION_METHODS = (
    FeatureAblation,
    FeaturePermutation,
    KernelShap,
    Lime,
    Occlusion,
    ShapleyValueSampling,
)
NOISE_TUNNEL_ARGS = ("nt_samples", "nt_samples_batch_size", "stdevs", "nt_type")
METHODS: dict[str, tuple[type, dict[str, Any]]] = {
    # Random masks: on inputs of 3 features RISE's default Sobol' masks give nearly
    # the exact map whatever the seed, random ones a map that depends on it, so the
    # seeding convention is checked too.
    "RISE": (RISE, {"n_masks": 32, "mask_sampling": "random"}),
    "HSIC": (HSICAttribution, {"n_designs": 32}),
}
RESEED = 1234  # Captum's BaseTest.setUp seed


def _feature_mask(inputs: Any) -> Any:
    """Groups shared by the batch: features (0, 1) and (2,) of a (B, 3) input (a
    second input's groups are 2 and 3), 5x5 blocks of a (B, 1, 10, 10) image."""
    if isinstance(inputs, tuple):
        return tuple(torch.tensor([[0, 0, 1]]) + 2 * i for i in range(len(inputs)))
    if inputs.dim() == 2:
        return torch.tensor([[0, 0, 1]])
    blocks = torch.arange(inputs.shape[-1]) // 5
    return (blocks[:, None] * 2 + blocks[None, :]).expand(1, 1, -1, -1)


def _cases() -> list[tuple[str, dict[str, Any]]]:
    """``(name, entry)``: the config's perturbation entries (Occlusion's window
    shapes dropped), each with a ``feature_mask`` variant, and list-target
    variants of the entries whose target is a tensor or an int."""
    cases = []
    for entry in config:
        if not any(issubclass(a, PERTURBATION_METHODS) for a in entry["algorithms"]):
            continue
        args = {k: v for k, v in entry["attribute_args"].items() if k != "sliding_window_shapes"}
        base = {"model": entry["model"], "args": args, "nt": entry.get("noise_tunnel", False)}
        cases.append((entry["name"], base))
        masked = {**base, "args": {**args, "feature_mask": _feature_mask(args["inputs"])}}
        cases.append((entry["name"] + "_feature_mask", masked))
        target = args.get("target")
        n_examples = len(_format_tensor_into_tuples(args["inputs"])[0])
        if isinstance(target, torch.Tensor) and target.numel() == n_examples:
            listed = {**base, "args": {**args, "target": target.tolist()}}
            cases.append((entry["name"] + "_list_target", listed))
        elif isinstance(target, int):
            listed = {**base, "args": {**args, "target": [target] * n_examples}}
            cases.append((entry["name"] + "_list_target", listed))
    return cases


CASES = dict(_cases())
ENTRIES = [entry["name"] for entry in config if entry["name"] in CASES]
"""The config's own entries, without the variants (for the jit and NoiseTunnel checks)."""


def _explain(method: str, model: torch.nn.Module, args: dict[str, Any], nt: bool, **kw: Any):
    """One reseeded call, as a tuple of attributions, checked to leave its arguments
    and the model as they were (:func:`check_no_side_effects`). Under NoiseTunnel
    the call passes ``seed``: the tunnel draws its noise from the global generator
    first, as much as the batch is large, so a batch and one example would draw
    different seeds."""
    cls, settings = METHODS[method]
    explainer = NoiseTunnel(cls(model)) if nt else cls(model)
    if nt:
        kw.setdefault("seed", RESEED)
    with check_no_side_effects(model, args):
        torch.manual_seed(RESEED)
        out = explainer.attribute(**args, **settings, **kw)
    return out if isinstance(out, tuple) else (out,)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


@contextlib.contextmanager
def check_no_side_effects(model: torch.nn.Module, args: dict[str, Any]) -> Iterator[None]:
    """The inputs, baselines, other arguments and the model are left as they were
    (values, ``requires_grad``, parameters and their gradients, train/eval mode),
    and so is autograd's mode."""
    given = _tensors(list(args.values()))
    before = [(t.clone(), t.requires_grad) for t in given]
    state = copy.deepcopy(model.state_dict())
    training, grad_enabled = model.training, torch.is_grad_enabled()
    yield
    for t, (value, requires_grad) in zip(given, before):
        assert torch.equal(t, value) and t.requires_grad == requires_grad, "an argument changed"
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()), "model changed"
    assert model.training == training and torch.is_grad_enabled() == grad_enabled
    assert all(p.grad is None for p in model.parameters()), "gradients left on the model"


def _assert_maps_close(actual: tuple, expected: tuple) -> None:
    for a, e in zip(actual, expected):
        scale = max(1.0, float(e.abs().max()))
        torch.testing.assert_close(a, e, rtol=0, atol=1e-4 * scale)


def _example(value: Any, i: int, n_examples: int) -> Any:
    """Example ``i`` of a per-example tensor (or of each one in a tuple); other values as given."""
    if isinstance(value, tuple):
        return tuple(_example(v, i, n_examples) for v in value)
    if isinstance(value, torch.Tensor) and value.dim() > 0 and len(value) == n_examples:
        return value[i : i + 1]
    return value


def check_batched_equals_one_by_one(method: str, case: dict[str, Any]) -> None:
    """Each example's map of the batched call is the map of that example alone (its
    target as an int and as a one-element list, Captum's test_targets)."""
    args, model = case["args"], case["model"]
    batched = _explain(method, model, args, case["nt"])
    n_examples = len(batched[0])
    target = args.get("target")
    per_example = isinstance(target, (list, torch.Tensor)) and len(target) == n_examples
    for i in range(n_examples):
        single = {k: _example(v, i, n_examples) for k, v in args.items() if k != "target"}
        expected = tuple(b[i : i + 1] for b in batched)
        targets = [target[i], target[i : i + 1]] if per_example else [target]
        for single_target in targets:
            got = _explain(method, model, {**single, "target": single_target}, case["nt"])
            _assert_maps_close(got, expected)


def check_jit_equals_eager(method: str, case: dict[str, Any], mode: str) -> None:
    """A ``torch.jit.script``-ed or ``trace``-d model gives the eager model's maps."""
    args, model = case["args"], case["model"]
    if mode == "script":
        compiled = torch.jit.script(model)
    else:
        example = _format_tensor_into_tuples(args["inputs"]) + (
            _format_additional_forward_args(args.get("additional_forward_args")) or ()
        )
        compiled = torch.jit.trace(model, example)
    eager = _explain(method, model, args, case["nt"])
    _assert_maps_close(_explain(method, compiled, args, case["nt"]), eager)


def check_zero_noise_tunnel_equals_method(method: str, case: dict[str, Any]) -> None:
    """NoiseTunnel with ``stdevs=0`` averages maps of one seed's masks: the method's map."""
    args = {k: v for k, v in case["args"].items() if k not in NOISE_TUNNEL_ARGS}
    tunnel_args = {**case["args"], "stdevs": 0.0, "nt_samples": case["args"].get("nt_samples", 4)}
    tunnel = _explain(method, case["model"], tunnel_args, nt=True, seed=5)
    _assert_maps_close(tunnel, _explain(method, case["model"], args, nt=False, seed=5))


def check_perturbations_per_eval_invariant(method: str, case: dict[str, Any]) -> None:
    """Fixed chunks of 1 and 7 give the automatic chunks' maps, within Captum's own
    absolute ``target_delta`` of 1e-4 whatever the maps' scale (the sums are the same
    whatever the chunks, :class:`captum_rise.SaliencyAccumulator`; only the scores of
    one input at different batch sizes may differ by rounding)."""
    args = {k: v for k, v in case["args"].items() if k != "perturbations_per_eval"}
    automatic = _explain(method, case["model"], args, case["nt"])
    for chunk in (1, 7):
        got = _explain(method, case["model"], args, case["nt"], perturbations_per_eval=chunk)
        for a, e in zip(got, automatic):
            torch.testing.assert_close(a, e, rtol=0, atol=1e-4)


def _traceable(case: dict[str, Any]) -> bool:
    extra = _format_additional_forward_args(case["args"].get("additional_forward_args")) or ()
    return all(isinstance(v, torch.Tensor) for v in extra)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CASES)
def test_batched_equals_one_by_one(method, name):
    check_batched_equals_one_by_one(method, CASES[name])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("name", "mode"),
    [(n, "script") for n in ENTRIES] + [(n, "trace") for n in ENTRIES if _traceable(CASES[n])],
)
def test_jit_equals_eager(method, name, mode):
    check_jit_equals_eager(method, CASES[name], mode)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", [n for n in ENTRIES if CASES[n]["nt"]])
def test_zero_noise_tunnel_equals_method(method, name):
    check_zero_noise_tunnel_equals_method(method, CASES[name])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CASES)
def test_perturbations_per_eval_does_not_change_maps(method, name):
    check_perturbations_per_eval_invariant(method, CASES[name])


# Broken attributions, each decorated like Captum's methods (NoiseTunnel calls the
# undecorated function).


class _FirstTarget(RISE):
    """Broken: explains every example for the first example's target."""

    @log_usage
    def attribute(self, inputs, target=None, **kwargs):
        if isinstance(target, (list, torch.Tensor)) and len(target) > 1:
            target = [target[0]] * len(target)
        return super().attribute(inputs, target=target, **kwargs)


class _PerBatchScale(RISE):
    """Broken: divides the maps by the number of examples."""

    @log_usage
    def attribute(self, inputs, **kwargs):
        maps = super().attribute(inputs, **kwargs)
        return maps / len(_format_tensor_into_tuples(inputs)[0])


class _SeedFromChunk(RISE):
    """Broken: the masks depend on ``perturbations_per_eval``."""

    @log_usage
    def attribute(self, inputs, perturbations_per_eval=None, **kwargs):
        kwargs["seed"] = perturbations_per_eval or 0
        return super().attribute(inputs, perturbations_per_eval=perturbations_per_eval, **kwargs)


class _ClampsInputs(RISE):
    """Broken: clamps the caller's inputs in place."""

    @log_usage
    def attribute(self, inputs, **kwargs):
        for inp in _format_tensor_into_tuples(inputs):
            inp.data.clamp_(min=0)
        return super().attribute(inputs, **kwargs)


@pytest.mark.parametrize(
    ("broken", "check", "name"),
    [
        (_FirstTarget, check_batched_equals_one_by_one, "basic_multi_target"),
        (_PerBatchScale, check_batched_equals_one_by_one, "basic_single_target"),
        (_PerBatchScale, check_zero_noise_tunnel_equals_method, "basic_multi_tensor_target_nt"),
        (_SeedFromChunk, check_perturbations_per_eval_invariant, "basic_single_target"),
        (_ClampsInputs, check_perturbations_per_eval_invariant, "basic_single_target"),
    ],
)
def test_checks_catch_a_broken_attribution(monkeypatch, broken, check, name):
    monkeypatch.setitem(METHODS, "broken", (broken, METHODS["RISE"][1]))
    check("RISE", CASES[name])  # the check holds for RISE itself
    with pytest.raises(AssertionError):
        check("broken", CASES[name])
