"""How alike two saliency maps of one image are, on blocks rather than pixels.

Each ``(H, W)`` map is averaged over square blocks to at most :data:`BLOCKS_SIDE`
blocks a side first (224x224: 32x32 blocks of 7x7 pixels), so that the measures
compare where the maps put their weight, not pixel noise. The run report's
disagreement of an image's methods (:func:`map_disagreement`) and the comparison
of two runs (:func:`map_agreement`, :mod:`captum_rise.evaluation.drift`) use them.
"""

import itertools
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

BLOCKS_SIDE = 32
TOP_FRACTION = 0.1


def pooled_blocks(values: np.ndarray) -> np.ndarray:
    """Means over blocks of ``factor`` pixels a side, ``factor`` the least that brings the
    longer side to at most :data:`BLOCKS_SIDE` blocks (the last blocks may be smaller)."""
    height, width = values.shape
    factor = -(-max(height, width) // BLOCKS_SIDE)
    starts = [np.arange(0, n, factor) for n in (height, width)]
    sums = np.add.reduceat(
        np.add.reduceat(values.astype(float), starts[0], axis=0), starts[1], axis=1
    )
    counts = np.outer(*(np.diff(np.append(s, n)) for s, n in zip(starts, (height, width))))
    return sums / counts


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two vectors; 0 where one is constant."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / norm if norm > 0 else 0.0


def _block_ranks(values: np.ndarray) -> np.ndarray:
    return rankdata(pooled_blocks(values).ravel())  # ties share their mean rank


def _top(blocks: np.ndarray, k: int) -> set[int]:
    """The indices of the ``k`` largest blocks, ties in order of position."""
    return set(np.argsort(-blocks, kind="stable")[:k].tolist())


def map_disagreement(maps: Sequence[np.ndarray]) -> float | None:
    """How much maps of one image disagree: 1 minus their mean pairwise Spearman correlation
    on blocks. 0: the maps rank the regions alike; 1: unrelated; 2: opposite. None for fewer
    than two maps; a constant map counts as unrelated to the others.
    """
    if len(maps) < 2:
        return None
    ranks = [_block_ranks(m) for m in maps]
    correlations = [_correlation(a, b) for a, b in itertools.combinations(ranks, 2)]
    return float(1 - np.mean(correlations))


def map_agreement(
    map_a: np.ndarray, map_b: np.ndarray, top_fraction: float = TOP_FRACTION
) -> tuple[float, float]:
    """``(spearman, top_overlap)`` of two ``(H, W)`` maps of one size, on blocks.

    ``spearman``: the Spearman rank correlation of the blocks (1: the same order; 0 where one
    map is constant, 1 where both are: neither shows any evidence). ``top_overlap``: the
    share of the blocks in one map's top ``top_fraction`` that are also in the other's (both
    hold the same number, at least one; ties in order of position).
    """
    if map_a.shape != map_b.shape:
        raise ValueError(f"the maps must have one shape, got {map_a.shape} and {map_b.shape}")
    blocks = [pooled_blocks(m).ravel() for m in (map_a, map_b)]
    ranks = [rankdata(b) for b in blocks]  # ties share their mean rank
    both_constant = all(np.ptp(r) == 0 for r in ranks)
    spearman = 1.0 if both_constant else _correlation(*ranks)
    k = max(1, round(top_fraction * blocks[0].size))
    return spearman, len(_top(blocks[0], k) & _top(blocks[1], k)) / k
