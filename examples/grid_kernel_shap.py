"""KernelSHAP on grid cells, built on captum_rise's pipeline (docs/guide/extending.md)."""

import torch
from torch import Tensor

from captum_rise import extension as ext


class GridKernelShap(ext.MaskAttribution):
    """Shapley values of grid cells or groups: KernelSHAP's weighted least squares (Lundberg &
    Lee, 2017) on the ends and complementary pairs of coalitions (Covert & Lee, 2021)."""

    method_name = "GridKernelShap"

    def attribute(
        self, inputs, baselines=None, target=None, additional_forward_args=None,
        feature_mask=None, n_samples=1024, grid_size=None, seed=None, **execution,
    ):  # fmt: skip
        args = (baselines, target, additional_forward_args, execution)
        call = ext.AttributionCall.of(self, inputs, *args)
        coverage = ext.choose_coverage(call.inputs, feature_mask, grid_size, ext.DEFAULT_GRID_SIZE)
        sampler = ext.design_sampler(call.inputs, coverage, 0.5, call.device, torch.float32)
        params = ext.ParamStream(sampler, call.generator(seed), "antithetic").params(0, n_samples)
        ends = torch.stack([params[0] * 0, params[0] * 0 + 1])  # nothing kept, all kept
        designs = torch.cat([ends, sampler.keep(params)])  # (2 + n, V) coalitions
        masks_of = lambda lo, hi: sampler.expand(designs[lo:hi], fill=1.0)
        run = call.design_run(sampler, designs, call.scores(masks_of, len(designs), "coalition"))
        return run.attributions(run.per_example(shapley_regression), smooth_map=False)


def shapley_regression(designs: Tensor, scores: Tensor) -> Tensor:
    """``(V,)`` values minimising the Shapley kernel's weighted squared error of the
    additive model on the coalitions ``designs[2:]`` (uniform draws, so each weighs
    its kernel weight), exact at the empty and the full coalition (rows 0 and 1)."""
    z, y = designs[2:].double(), (scores[2:] - scores[0]).double()
    v, size = z.shape[1], z.sum(dim=1)
    inner = (size > 0) & (size < v)  # the kernel is infinite at the ends: constraints
    z, y, size = z[inner], y[inner], size[inner]
    subsets = (torch.lgamma(size.new_tensor(v + 1.0)) - torch.lgamma(size + 1)).exp()
    weights = (v - 1) / (subsets / torch.lgamma(v - size + 1).exp() * size * (v - size))
    gram, moment = (z.T * weights) @ z, (z.T * weights) @ y
    solved = torch.linalg.solve(gram, torch.stack([moment, torch.ones_like(moment)], dim=1))
    total = float(scores[1] - scores[0])  # the values add up to f(all) - f(none)
    shift = (solved[:, 0].sum() - total) / solved[:, 1].sum()
    return solved[:, 0] - shift * solved[:, 1]
