import pytest
import torch

from captum_rise import SaliencyAccumulator


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


def test_buffered_chunks_give_the_same_saliency_as_immediate_adds():
    """With 16 outputs, 12 masks are fewer than the sums' 16 rows: they stay buffered."""
    torch.manual_seed(0)
    scores, masks = torch.rand(12, 1, 16), torch.rand(12, 1, 1, 6, 6)
    immediate = SaliencyAccumulator(1, 16, [(1, 1, 6, 6)], torch.device("cpu"), buffer_bytes=0)
    buffered = SaliencyAccumulator(1, 16, [(1, 1, 6, 6)], torch.device("cpu"), buffer_bytes=10**6)
    for lo in range(0, 12, 3):
        immediate.add(scores[lo : lo + 3], (masks[lo : lo + 3],))
        buffered.add(scores[lo : lo + 3], (masks[lo : lo + 3],))
    assert torch.count_nonzero(buffered.weighted_sums[0]) == 0  # still in the buffer
    for mode in ("expectation", "coverage"):
        torch.testing.assert_close(
            buffered.saliency(0.5, mode)[0], immediate.saliency(0.5, mode)[0]
        )


def test_a_chunk_with_as_many_masks_as_rows_is_added_at_once():
    """One score per example: each chunk goes into the sums while its masks are fresh;
    the mask sums come from the same matmul and equal a plain sum."""
    torch.manual_seed(0)
    scores, masks = torch.rand(5, 2, 1), torch.rand(5, 1, 1, 6, 6)
    accumulator = SaliencyAccumulator(2, 1, [(1, 1, 6, 6)], torch.device("cpu"))
    accumulator.add(scores[:2], (masks[:2],))
    assert torch.count_nonzero(accumulator.weighted_sums[0]) > 0
    accumulator.add(scores[2:], (masks[2:],))
    expected = torch.einsum("nbk,nxyz->bkxyz", scores, masks[:, 0])
    torch.testing.assert_close(accumulator.weighted_sums[0], expected)
    torch.testing.assert_close(accumulator.mask_sums[0], masks.sum(dim=0))
