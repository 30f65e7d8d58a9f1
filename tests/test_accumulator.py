import itertools

import pytest
import torch

from captum_rise import SaliencyAccumulator
from captum_rise.accumulator import SUM_BLOCK, sum_block


def test_add_matches_explicit_weighted_sum_and_merge_matches_whole():
    torch.manual_seed(0)
    scores = torch.rand(10, 2, 3)
    shared = torch.rand(10, 1, 1, 4, 4)
    per_example = torch.rand(10, 2, 5)
    whole = SaliencyAccumulator(2, 3, [(1, 1, 4, 4), (2, 5)], torch.device("cpu"), buffer_bytes=0)
    whole.add(scores, (shared, per_example))
    expected_shared = torch.einsum("nbk,nhw->bkhw", scores, shared[:, 0, 0])
    torch.testing.assert_close(whole.weighted_sums[0][:, :, 0], expected_shared)
    expected_example = torch.einsum("nbk,nbf->bkf", scores, per_example)
    torch.testing.assert_close(whole.weighted_sums[1], expected_example)

    first = SaliencyAccumulator(2, 3, [(1, 1, 4, 4), (2, 5)], torch.device("cpu"))
    second = SaliencyAccumulator(2, 3, [(1, 1, 4, 4), (2, 5)], torch.device("cpu"))
    first.add(scores[:4], (shared[:4], per_example[:4]))
    second.add(scores[4:], (shared[4:], per_example[4:]))
    merged = first.merge(second)
    assert merged.n_masks == 10
    for mode in ("expectation", "coverage"):
        for a, b in zip(merged.saliency(0.5, mode), whole.saliency(0.5, mode)):
            torch.testing.assert_close(a, b)


def test_merge_rejects_other_shapes_and_empty_saliency():
    a = SaliencyAccumulator(1, 1, [(1, 4)], torch.device("cpu"))
    b = SaliencyAccumulator(1, 2, [(1, 4)], torch.device("cpu"))
    with pytest.raises(ValueError, match="shapes"):
        a.merge(b)
    with pytest.raises(ValueError, match="no masks"):
        a.saliency(0.5)


def chunked(accumulator, scores, masks, bounds, replicates=None):
    """Adds masks ``lo .. hi - 1`` for each ``(lo, hi)`` of ``bounds``, numbered."""
    for lo, hi in bounds:
        labels = None if replicates is None else replicates[lo:hi]
        accumulator.add(scores[lo:hi], tuple(m[lo:hi] for m in masks), labels, first=lo)
    return accumulator


def random_bounds(n, generator):
    """Consecutive chunks of random sizes (1 to 150) covering ``0 .. n - 1``."""
    bounds, lo = [], 0
    while lo < n:
        hi = min(n, lo + int(torch.randint(1, 151, (1,), generator=generator)))
        bounds.append((lo, hi))
        lo = hi
    return bounds


@pytest.mark.bits
@pytest.mark.parametrize("replicates", [0, 4])
def test_sums_are_the_same_bits_whatever_the_chunks(replicates):
    """Chunks of any sizes (or one chunk of everything) give equal sums, to the bit:
    blocks of masks are summed whole, and blocks in a fixed tree."""
    generator = torch.Generator().manual_seed(0)
    n = 1000  # 15 blocks of 64 and a partial one
    scores = torch.rand(n, 2, 3, generator=generator) * 1000
    per_example = 1 if replicates else 2  # the error needs one mask shape for all inputs
    masks = (
        torch.rand(n, 1, 1, 5, 5, generator=generator),
        torch.rand(n, per_example, 7, generator=generator),
    )
    labels = torch.arange(n) % replicates if replicates else None
    shapes = [(1, 1, 5, 5), (per_example, 7)]

    def accumulated(bounds):
        accumulator = SaliencyAccumulator(2, 3, shapes, torch.device("cpu"), replicates=replicates)
        return chunked(accumulator, scores, masks, bounds, labels)

    whole = accumulated([(0, n)])
    reference = whole.saliency(0.5, "centred")
    for trial in range(5):
        other = accumulated(random_bounds(n, generator))
        for a, b in zip(other.saliency(0.5, "centred"), reference):
            assert torch.equal(a, b), trial
        if replicates:
            assert torch.equal(
                other.relative_standard_error(0.5, "centred"),
                whole.relative_standard_error(0.5, "centred"),
            )
    # and they are the sums: against float64
    expected = torch.einsum("nbk,nf->bkf", scores.double(), masks[0].flatten(1).double())
    torch.testing.assert_close(
        whole.weighted_sums[0].flatten(2).double(), expected, rtol=1e-6, atol=0
    )


@pytest.mark.bits
@pytest.mark.parametrize("seed", range(10))
def test_contiguous_parts_merged_give_the_whole_to_the_bit(seed):
    """Contiguous parts, cut at blocks or inside them, each added in chunks of its own,
    merged in any order: the sums of one accumulator of every mask, to the bit. (Cut
    inside a block, a part keeps its masks until the rest of the block joins it; 9
    features of float32 put chunks at addresses no vector width divides.)"""
    generator = torch.Generator().manual_seed(seed)
    n = 777
    scores, masks = (
        torch.rand(n, 1, 1, generator=generator),
        (torch.rand(n, 1, 9, generator=generator),),
    )
    new = lambda: SaliencyAccumulator(1, 1, [(1, 9)], torch.device("cpu"))
    whole = chunked(new(), scores, masks, random_bounds(n, generator))
    inside = sorted(torch.randperm(n - 1, generator=generator)[:4].add(1).tolist())
    for cuts in ([0, 128, 256, 777], [0, 3, 500, 640, 777], [0, *inside, 777], [0, 777]):
        parts = []
        for lo, hi in itertools.pairwise(cuts):
            bounds = [(a + lo, b + lo) for a, b in random_bounds(hi - lo, generator)]
            parts.append(chunked(new(), scores, masks, bounds))
        merged = new()
        for index in torch.randperm(len(parts), generator=generator).tolist():
            merged.merge(parts[index])
        assert merged.n_masks == n
        assert torch.equal(merged.saliency(0.5)[0], whole.saliency(0.5)[0]), cuts


@pytest.mark.bits
def test_a_block_at_an_unaligned_address_is_summed_from_an_aligned_copy():
    """The same block of masks, read from a chunk at an address that is not a multiple
    of 64 bytes or from fresh memory, gives the same bits (a BLAS kernel need not)."""
    generator = torch.Generator().manual_seed(3)
    scores, masks = (
        torch.rand(65, 3, 1, generator=generator),
        torch.rand(65, 1, 13, generator=generator),
    )
    for offset in range(1, 8):
        aligned = SaliencyAccumulator(3, 1, [(1, 13)], torch.device("cpu"))
        aligned.add(scores[offset : offset + 64].clone(), (masks[offset : offset + 64].clone(),))
        shifted = SaliencyAccumulator(3, 1, [(1, 13)], torch.device("cpu"))
        shifted.add(scores[offset : offset + 64], (masks[offset : offset + 64],))
        assert torch.equal(aligned.weighted_sums[0], shifted.weighted_sums[0]), offset


@pytest.mark.bits
def test_reading_the_sums_midway_changes_nothing():
    """Anytime runs read the sums after each round; the pending block stays pending."""
    generator = torch.Generator().manual_seed(2)
    scores, masks = (
        torch.rand(300, 1, 1, generator=generator),
        (torch.rand(300, 1, 4, generator=generator),),
    )
    read = SaliencyAccumulator(1, 1, [(1, 4)], torch.device("cpu"))
    unread = SaliencyAccumulator(1, 1, [(1, 4)], torch.device("cpu"))
    for lo in range(0, 300, 50):
        chunked(read, scores, masks, [(lo, lo + 50)])
        read.saliency(0.5)
        chunked(unread, scores, masks, [(lo, lo + 50)])
    assert torch.equal(read.saliency(0.5)[0], unread.saliency(0.5)[0])


def test_blocks_are_a_power_of_two_within_the_byte_budget():
    assert sum_block([(1, 1, 6, 6)], torch.float32, 64 * 2**20) == SUM_BLOCK
    assert sum_block([(1, 1, 224, 224)], torch.float32, 224 * 224 * 4 * 10) == 8
    assert sum_block([(1, 10**6)], torch.float32, 0) == 1


def test_a_chunk_with_as_many_masks_as_rows_is_added_at_once():
    """The mask sums come from the same matmul as the weighted sums and equal a plain sum."""
    torch.manual_seed(0)
    scores, masks = torch.rand(5, 2, 1), torch.rand(5, 1, 1, 6, 6)
    accumulator = SaliencyAccumulator(2, 1, [(1, 1, 6, 6)], torch.device("cpu"))
    accumulator.add(scores[:2], (masks[:2],))
    accumulator.add(scores[2:], (masks[2:],))
    expected = torch.einsum("nbk,nxyz->bkxyz", scores, masks[:, 0])
    torch.testing.assert_close(accumulator.weighted_sums[0], expected)
    torch.testing.assert_close(accumulator.mask_sums[0], masks.sum(dim=0))
