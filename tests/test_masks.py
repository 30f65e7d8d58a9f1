"""Mask samplers: statistics, shapes, chunking, generator isolation."""

import pytest
import torch

from captum_rise.masks import (
    DRAW_BLOCK,
    GridMaskSampler,
    GroupIndex,
    GroupMaskSampler,
    make_generator,
    spatial_grid_shape,
)


def _all_masks(sampler, n, chunk, seed=0):
    generator = make_generator(seed, torch.device("cpu"))
    return [torch.cat(parts) for parts in zip(*sampler.chunks(n, chunk, generator))]


@pytest.mark.parametrize("p_keep", [0.5, 0.2])
def test_grid_masks_have_mean_p_keep_and_values_in_unit_interval(p_keep):
    sampler = GridMaskSampler([torch.Size([1, 3, 30, 30])], 5, p_keep, torch.device("cpu"))
    (masks,) = _all_masks(sampler, 4000, 1000)
    assert masks.shape == (4000, 1, 1, 30, 30)
    assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0
    per_pixel_mean = masks.mean(dim=0)
    assert float((per_pixel_mean - p_keep).abs().max()) < 0.05
    # bilinear upsampling makes masks smooth, not binary
    assert ((masks > 0.01) & (masks < 0.99)).float().mean() > 0.2


def test_grid_shifts_cover_the_whole_cell():
    sampler = GridMaskSampler([torch.Size([1, 3, 24, 24])], 4, 0.5, torch.device("cpu"))
    assert sampler.cells == [(6, 6)]
    params = sampler.draw(2000, make_generator(0, torch.device("cpu")))
    ((_, shifts),) = sampler.split_params(params)
    for axis in range(2):
        assert set(shifts[:, axis].tolist()) == set(range(6))


def test_grid_masks_are_the_crop_of_the_upsampled_grid():
    """Shift 0 with an all-ones grid gives ones; a single kept cell peaks at its centre."""
    sampler = GridMaskSampler([torch.Size([1, 1, 8, 8])], 2, 0.5, torch.device("cpu"))
    params = torch.zeros(1, sampler.n_params)  # every cell kept (u < p), shift 0
    (mask,) = sampler.render(params)
    torch.testing.assert_close(mask, torch.ones(1, 1, 1, 8, 8))
    params[0, 1:4] = 0.99  # keep only the top-left cell
    (mask,) = sampler.render(params)
    peak = (mask[0, 0, 0] == mask.max()).nonzero()
    assert peak.float().mean(0).tolist() == pytest.approx([1.5, 1.5], abs=1.0)


def _upsample_then_crop(binary, shifts, spatial, cells):
    """The paper's recipe, step by step: upsample the whole ``(s + 1) * cell`` grid, crop it."""
    modes = {1: "linear", 2: "bilinear", 3: "trilinear"}
    size = tuple((g + 1) * c for g, c in zip(binary.shape[1:], cells))
    volume = torch.nn.functional.interpolate(
        binary.unsqueeze(1), size=size, mode=modes[len(size)], align_corners=False
    ).squeeze(1)
    crops = []
    for k in range(binary.shape[0]):
        window = tuple(slice(int(s), int(s) + length) for s, length in zip(shifts[k], spatial))
        crops.append(volume[k][window])
    return torch.stack(crops)


@pytest.mark.parametrize(
    "shape, grid",
    [((1, 50), 5), ((1, 3, 40, 37), (4, 7)), ((1, 224, 224), 7), ((1, 2, 9, 10, 11), 3)],
)
def test_grid_masks_equal_the_upsampled_and_cropped_grid(shape, grid):
    """The separable render equals upsampling the whole grid and cropping it, mask by mask.

    Each output is a sum of at most 2^d products of interpolation weights in [0, 1] and
    0/1 cells, in another order than torch's upsampling: float32 round-off of a few ulps
    of 1 (atol 1e-6)."""
    sampler = GridMaskSampler([torch.Size(shape)], grid, 0.5, torch.device("cpu"))
    params = sampler.draw(64, make_generator(3, torch.device("cpu")))
    ((binary, shifts),) = sampler.split_params(params)
    layout = sampler.layouts[0]
    expected = _upsample_then_crop(binary, shifts, layout.spatial, sampler.cells[0])
    (masks,) = sampler.render(params)
    assert set(shifts.flatten().tolist()) != {0}  # the crops really move
    torch.testing.assert_close(
        masks.reshape(expected.shape), expected.clamp(0, 1), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize(
    "shape, grid, expected_mask_shape",
    [
        ((2, 50), 5, (1, 50)),
        ((2, 4, 50), 5, (1, 1, 50)),
        ((2, 3, 16, 20), (4, 5), (1, 1, 16, 20)),
        ((2, 2, 6, 8, 10), 3, (1, 1, 6, 8, 10)),
    ],
)
def test_grid_masks_work_for_1d_2d_and_3d_inputs(shape, grid, expected_mask_shape):
    sampler = GridMaskSampler([torch.Size(shape)], grid, 0.5, torch.device("cpu"))
    (masks,) = _all_masks(sampler, 10, 4)
    assert masks.shape == (10, *expected_mask_shape)


def test_masks_do_not_depend_on_chunk_size():
    sampler = GridMaskSampler([torch.Size([1, 3, 12, 12])], 3, 0.5, torch.device("cpu"))
    n = DRAW_BLOCK + 37
    reference = _all_masks(sampler, n, 1)[0]
    for chunk in (7, 500, n):
        torch.testing.assert_close(_all_masks(sampler, n, chunk)[0], reference, rtol=0, atol=0)


def test_int_seed_leaves_global_rng_untouched_and_none_draws_from_it():
    sampler = GridMaskSampler([torch.Size([1, 3, 12, 12])], 3, 0.5, torch.device("cpu"))
    state = torch.get_rng_state()
    _all_masks(sampler, 100, 10, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(5)
    seeded = torch.get_rng_state()
    first = _all_masks(sampler, 100, 10, seed=None)[0]
    assert not torch.equal(torch.get_rng_state(), seeded)  # one draw from the global generator
    torch.manual_seed(5)
    assert torch.equal(_all_masks(sampler, 100, 10, seed=None)[0], first)


def test_group_masks_keep_whole_groups_shared_across_inputs():
    inputs = (torch.rand(2, 3, 4, 4), torch.rand(2, 5))
    feature_mask = (
        torch.tensor([[0, 0, 1, 1]] * 4).reshape(1, 1, 4, 4),
        torch.tensor([[1, 1, 7, 7, 7]]),
    )
    groups = GroupIndex(feature_mask, inputs)
    assert groups.n_groups == 3
    sampler = GroupMaskSampler(groups, 0.5, torch.device("cpu"))
    image_masks, tab_masks = _all_masks(sampler, 200, 50)
    assert image_masks.shape == (200, 1, 1, 4, 4) and tab_masks.shape == (200, 1, 5)
    # group 1 spans both inputs and is kept or dropped in both at once
    torch.testing.assert_close(image_masks[:, 0, 0, 0, 2], tab_masks[:, 0, 0])
    assert set(image_masks.unique().tolist()) == {0.0, 1.0}
    assert abs(float(tab_masks[:, 0, 2].mean()) - 0.5) < 0.1


def test_spatial_grid_shape_rejects_bad_sizes():
    with pytest.raises(ValueError, match="grid_size"):
        spatial_grid_shape(torch.Size([1, 3, 8, 8]), 0)
    with pytest.raises(ValueError, match="grid_size"):
        spatial_grid_shape(torch.Size([1, 3, 8, 8]), 9)
    with pytest.raises(ValueError, match="grid_size"):
        spatial_grid_shape(torch.Size([1, 3, 8, 8]), (2, 2, 2, 2))
    with pytest.raises(TypeError, match="grid_size"):
        spatial_grid_shape(torch.Size([1, 3, 8, 8]), 2.5)
