"""Captum's seeding convention: with ``seed=None`` the sampling methods take their seed
from torch's global generator, so ``torch.manual_seed`` makes a run reproducible (as
KernelShap, Lime and NoiseTunnel are); an int ``seed`` leaves the global state alone."""

import pytest
import torch

from captum_rise import RISE, HSICAttribution, MeaningfulPerturbation, SobolAttribution

# Each method at a cheap setting whose maps depend on the random draw; fixed chunks,
# so that two calls with one seed run the same batches and agree to the bit.
METHODS = {
    "rise random": lambda model, x, **kw: RISE(model).attribute(
        x, target=1, n_masks=32, grid_size=3, mask_sampling="random",
        perturbations_per_eval=8, **kw,
    ),
    "rise sobol": lambda model, x, **kw: RISE(model).attribute(
        x, target=1, n_masks=32, grid_size=3, perturbations_per_eval=8, **kw
    ),
    "hsic": lambda model, x, **kw: HSICAttribution(model).attribute(
        x, target=1, n_designs=32, grid_size=3, perturbations_per_eval=8, **kw
    ),
    "sobol": lambda model, x, **kw: SobolAttribution(model).attribute(
        x, target=1, n_designs=4, grid_size=3, perturbations_per_eval=8, **kw
    ),
    "meaningful": lambda model, x, **kw: MeaningfulPerturbation(model).attribute(
        x, target=1, variant="preserve", n_iter=5, mask_shape=(4, 4), **kw
    ),
}  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
def test_global_seed_reproduces_seed_none(tiny_convnet, method):
    explain, x = METHODS[method], torch.rand(1, 3, 16, 16)
    torch.manual_seed(0)
    first = explain(tiny_convnet, x)
    torch.manual_seed(0)
    second = explain(tiny_convnet, x)
    torch.manual_seed(1)
    other = explain(tiny_convnet, x)
    assert torch.equal(first, second)
    # a different draw moves every method's map by far more than float32 rounding
    assert (first - other).abs().max() > 1e-4 * first.abs().max()


@pytest.mark.parametrize("method", METHODS)
def test_int_seed_ignores_and_keeps_the_global_generator(tiny_convnet, method):
    explain, x = METHODS[method], torch.rand(1, 3, 16, 16)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = explain(tiny_convnet, x, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(1)
    assert torch.equal(explain(tiny_convnet, x, seed=3), first)


@pytest.mark.parametrize("method", METHODS)
def test_a_seed_that_is_not_an_int_is_a_clear_error(tiny_convnet, method):
    with pytest.raises(TypeError, match="seed must be an int or None"):
        METHODS[method](tiny_convnet, torch.rand(1, 3, 16, 16), seed=1.5)
