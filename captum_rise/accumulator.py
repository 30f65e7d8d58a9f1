"""Running sums of score-weighted masks, mergeable across workers, the same bits whatever the
chunks and ranks."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from captum_rise._forward import check_finite_scores
from captum_rise.distributed import all_reduce, broadcast

NORMALIZATIONS = ("expectation", "coverage", "centred", "difference")
"""How the weighted sums become maps (:meth:`SaliencyAccumulator.saliency`)."""


def check_normalization(normalization: str, p_keep: float) -> None:
    """Raises a ValueError unless ``normalization`` is one of :data:`NORMALIZATIONS` that
    ``p_keep`` allows (the signed view needs masks that drop something)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if normalization == "difference" and p_keep >= 1:
        raise ValueError("normalization='difference' needs p_keep < 1 (some masks drop)")


BUFFER_BYTES = 64 * 2**20
"""The most bytes of masks one block of sums holds by default (:func:`sum_block`)."""

SUM_BLOCK = 64
"""Masks ``k * SUM_BLOCK .. (k + 1) * SUM_BLOCK - 1`` are summed together, by one matmul
per input, whatever chunks they came in (:class:`SaliencyAccumulator`)."""


def sum_block(mask_shapes: Sequence[tuple[int, ...]], dtype: torch.dtype, buffer_bytes: int) -> int:
    """Masks per block of sums: :data:`SUM_BLOCK`, halved while a block's masks of
    ``mask_shapes`` (``(Bm, *rest_i)`` per input) in ``dtype`` exceed ``buffer_bytes``.
    A power of two, so blocks tile rounds and ranks' shares aligned to any larger one."""
    item_bytes = sum(math.prod(shape) for shape in mask_shapes) * dtype.itemsize
    block = SUM_BLOCK
    while block > 1 and block * item_bytes > buffer_bytes:
        block //= 2
    return block


_Chunk = tuple[Tensor, tuple[Tensor, ...], Tensor | None]
"""Masks as they were added: ``(scores, masks, replicate labels or None)``."""


@dataclass
class _Node:
    """Masks ``lo .. hi - 1``. A complete node holds their ``sums``: a block (``level`` 0),
    or the sum of two sibling nodes of ``level - 1`` (:func:`_siblings`). Part of a block
    holds the masks themselves (``rows``), so that the parts of a block, however it was
    cut, are summed by the block's one matmul once they meet (:meth:`SaliencyAccumulator._push`)."""

    lo: int
    hi: int
    level: int
    sums: list[Tensor] | None = None
    rows: list[_Chunk] | None = None

    @property
    def complete(self) -> bool:
        return self.rows is None


def _siblings(left: _Node, right: _Node, block: int) -> bool:
    """Whether ``left`` and ``right`` are the two halves of one node of the binary tree
    over blocks ``0, 1, 2, ...``: complete, of one level, adjacent, ``left`` first."""
    return (
        left.complete
        and right.complete
        and left.level == right.level
        and left.hi == right.lo
        and (left.lo // block) % (2 ** (left.level + 1)) == 0
    )


def _parts_of_one_block(left: _Node, right: _Node, block: int) -> bool:
    """Whether ``left`` and ``right`` are adjacent parts of one block, ``left`` first."""
    return (
        not left.complete
        and not right.complete
        and left.hi == right.lo
        and left.lo // block == (right.hi - 1) // block
    )


class SaliencyAccumulator:
    """Accumulates ``sum_n f_n * M_n``, ``sum_n M_n`` and ``sum_n f_n`` for a tuple of inputs.

    Masks of input ``i`` have shape ``(n, Bm, *rest_i)`` with ``Bm`` 1 (shared
    by the batch) or ``B``; scores have shape ``(n, B, K)`` for ``K`` outputs.
    The sums are kept at the masks' resolution, so a mask broadcast over
    channels costs no channel memory.

    **The same bits whatever the chunks.** Masks are numbered (``first`` in
    :meth:`add`): masks ``k * S .. (k + 1) * S - 1`` (``S``: :func:`sum_block`)
    are summed as one block, by one matmul per input (a column of ones beside
    the scores gives the mask sums too), once the block is complete, whatever
    chunks brought them; and blocks are added in a fixed binary tree over their
    numbers (pairwise summation: blocks ``2j`` and ``2j + 1``, then pairs of
    those, ...). A block's matmul always sees its masks and scores in fresh,
    contiguous, aligned memory (BLAS kernels may round differently at another
    address). Part of a block keeps its masks, not their sums, until the rest
    of the block joins it. So the sums do not depend on how the masks were
    chunked, nor on which rank of a process group ran which masks, cut at
    blocks or not: :meth:`merge` and :meth:`all_reduce` rebuild the same tree
    from contiguous ranges of masks, and give the single-process sums to the
    bit. The tree keeps at most one subtree per level, ``log2(N / S) + 1`` sums
    in all, and the masks of at most two parts of blocks (one at each end of a
    range); memory does not grow with ``N`` beyond that. (The promise is one
    host's: another CPU's kernels may round the same block otherwise.)

    Scores are checked to be finite when the sums are read (:meth:`saliency`,
    :meth:`relative_standard_error`): the accumulator never waits for the
    device while chunks are added.

    Masks and scores may come in any floating dtype (e.g. float16 from a
    half-precision model); the sums are kept in ``dtype``.

    With ``replicates`` ``R >= 2`` it also keeps the weighted sums of each of
    ``R`` replicates (masks labelled ``0 .. R - 1`` by the caller, e.g. by
    :meth:`captum_rise.masks.ParamStream.replicate_of`), from whose spread
    :meth:`relative_standard_error` estimates the maps' error.

    Two accumulators over disjoint sets of masks can be :meth:`merge`-d, e.g.
    when masks are split across workers, or summed over the ranks of a
    ``torch.distributed`` group with :meth:`all_reduce`.

    Args:
        batch_size: ``B``.
        n_outputs: ``K``, the number of scores per example.
        mask_shapes: ``(Bm, *rest_i)`` per input.
        device, dtype: of the sums.
        buffer_bytes: the most bytes of masks a block holds (:func:`sum_block`).
        replicates: ``R`` (0: no error tracking).
    """

    def __init__(
        self,
        batch_size: int,
        n_outputs: int,
        mask_shapes: Sequence[tuple[int, ...]],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        buffer_bytes: int = BUFFER_BYTES,
        replicates: int = 0,
    ) -> None:
        if replicates == 1 or replicates < 0:
            raise ValueError(f"replicates must be 0 (no error tracking) or >= 2, got {replicates}")
        self.batch_size = batch_size
        self.n_outputs = n_outputs
        self.mask_shapes = [tuple(s) for s in mask_shapes]
        self.device, self.dtype = device, dtype
        self.replicates = replicates
        self.block = sum_block(self.mask_shapes, dtype, buffer_bytes)
        self.n_masks = 0
        self._scores_finite = torch.ones((), dtype=torch.bool, device=device)
        self._nodes: list[_Node] = []  # the tree's subtrees, in mask order
        # chunks of masks pending_lo .. pending_hi - 1 of a block not yet complete
        self._pending: list[_Chunk] = []
        self._pending_lo = self._pending_hi = 0
        self._total: list[Tensor] | None = None  # the sums, until the next add
        self._buffers: dict[int, Tensor] = {}  # per input, a block's masks joined (_rows)

    # -- the sums, by name ------------------------------------------------------------
    @property
    def weighted_sums(self) -> list[Tensor]:
        """``(B, K, *rest_i)`` per input: ``sum_n f_n M_n``."""
        return self._sums()[: len(self.mask_shapes)]

    @property
    def mask_sums(self) -> list[Tensor]:
        """``(Bm, *rest_i)`` per input: ``sum_n M_n``."""
        n = len(self.mask_shapes)
        return self._sums()[n : 2 * n]

    @property
    def score_sums(self) -> Tensor:
        """``(B, K)``: ``sum_n f_n``."""
        return self._sums()[2 * len(self.mask_shapes)]

    @property
    def replicate_sums(self) -> list[Tensor]:
        """``(R, B, K, *rest_i)`` per input: the weighted sums of each replicate."""
        n = len(self.mask_shapes)
        return self._sums()[2 * n + 1 : 3 * n + 1] if self.replicates else []

    @property
    def replicate_mask_sums(self) -> list[Tensor]:
        """``(R, Bm, *rest_i)`` per input: the mask sums of each replicate."""
        n = len(self.mask_shapes)
        return self._sums()[3 * n + 1 : 4 * n + 1] if self.replicates else []

    @property
    def replicate_score_sums(self) -> Tensor:
        """``(R, B, K)``: the score sums of each replicate."""
        return self._sums()[4 * len(self.mask_shapes) + 1]

    @property
    def replicate_counts(self) -> Tensor:
        """``(R,)``: the masks of each replicate."""
        return self._sums()[4 * len(self.mask_shapes) + 2]

    # -- adding masks -----------------------------------------------------------------
    def add(
        self,
        scores: Tensor,
        masks: tuple[Tensor, ...],
        replicates: Tensor | None = None,
        first: int | None = None,
    ) -> None:
        """Add a chunk: ``scores`` ``(n, B, K)``, ``masks[i]`` ``(n, Bm, *rest_i)``, with
        error tracking the ``(n,)`` replicate of every mask, and ``first``: the number
        of the chunk's first mask (default: right after the last chunk added)."""
        if self.replicates and replicates is None:
            raise ValueError("an accumulator with replicates needs each mask's replicate")
        first = self._pending_hi if first is None else first
        if self._pending and first != self._pending_hi:
            self._push(self._take(self._pending_hi - self._pending_lo))  # a block left partial
        if not self._pending:
            self._pending_lo = self._pending_hi = first
        self._pending.append((scores, masks, replicates if self.replicates else None))
        self._pending_hi += scores.shape[0]
        self.n_masks += scores.shape[0]
        self._total = None
        while self._pending_hi >= self._block_end(self._pending_lo):
            self._push(self._take(self._block_end(self._pending_lo) - self._pending_lo))

    def _block_end(self, index: int) -> int:
        """The first mask after the block of mask ``index``."""
        return (index // self.block + 1) * self.block

    def _take(self, count: int) -> _Node:
        """The first ``count`` pending masks, which leave the buffer, as a node: their
        sums when they are a whole block, the masks themselves otherwise."""
        taken: list[_Chunk] = []
        needed = count
        while needed:
            scores, masks, labels = self._pending[0]
            n = scores.shape[0]
            if n <= needed:
                taken.append(self._pending.pop(0))
                needed -= n
                continue
            taken.append((scores[:needed], tuple(m[:needed] for m in masks), _head(labels, needed)))
            self._pending[0] = (
                scores[needed:],
                tuple(m[needed:] for m in masks),
                _tail(labels, needed),
            )
            needed = 0
        lo = self._pending_lo
        self._pending_lo += count
        return self._node(lo, lo + count, taken)

    def _node(self, lo: int, hi: int, rows: list[_Chunk]) -> _Node:
        """A node of masks ``lo .. hi - 1`` (``rows``): summed when they are a whole block,
        else joined into one chunk of their own (not views that keep a whole chunk alive)."""
        if lo % self.block == 0 and hi - lo == self.block:
            return _Node(lo, hi, 0, sums=self._block_sums(rows))
        return _Node(lo, hi, 0, rows=[_joined(rows, self.dtype)])

    def _block_sums(self, chunks: list[_Chunk]) -> list[Tensor]:
        """The sums of the masks of ``chunks`` (weighted, mask and score sums per input,
        then the replicates'), one matmul per input, on contiguous aligned memory
        (:meth:`_rows`)."""
        scores = _aligned(_cat([c[0] for c in chunks]).to(self.dtype))
        masks = tuple(
            self._rows(i, [part.to(self.dtype) for part in parts])
            for i, parts in enumerate(zip(*(c[1] for c in chunks)))
        )
        self._scores_finite &= torch.isfinite(scores).all()
        weighted_sums, mask_sums = [], []
        for shape, mask in zip(self.mask_shapes, masks):
            weighted, summed = _weighted_and_plain_sums(scores, mask)
            weighted_sums.append(weighted.reshape(self.batch_size, self.n_outputs, *shape[1:]))
            mask_sums.append(summed.reshape(shape))
        sums = [*weighted_sums, *mask_sums, scores.sum(dim=0)]
        if not self.replicates:
            return sums
        # (n, R): the scores of replicate r sit in column r, zeros elsewhere
        labels = _cat([c[2] for c in chunks if c[2] is not None])
        one_hot = torch.nn.functional.one_hot(labels, self.replicates).to(scores.dtype)
        by_replicate = (scores[:, :, :, None] * one_hot[:, None, None, :]).flatten(2)
        replicate_sums, replicate_mask_sums = [], []
        for shape, mask in zip(self.mask_shapes, masks):
            weighted = _weighted_sum(by_replicate, mask)  # (B, K * R, P) or (B * K * R, P)
            weighted = weighted.reshape(self.batch_size, self.n_outputs, self.replicates, -1)
            replicate_sums.append(
                weighted.movedim(2, 0).reshape(self.replicates, *sums[0].shape[:2], *shape[1:])
            )
            flat = mask.reshape(mask.shape[0], -1)
            replicate_mask_sums.append((one_hot.T @ flat).reshape(self.replicates, *shape))
        replicate_scores = torch.einsum("nbk,nr->rbk", scores, one_hot)
        return [*sums, *replicate_sums, *replicate_mask_sums, replicate_scores, one_hot.sum(dim=0)]

    def _rows(self, index: int, parts: list[Tensor]) -> Tensor:
        """Input ``index``'s masks of a block, ``parts`` joined: a part that is contiguous
        and aligned (:func:`_is_aligned`) as it is, else copied into a buffer of the
        accumulator's own, reused from block to block (fresh memory would cost the
        operating system's page faults, more than the copy)."""
        if len(parts) == 1 and _is_aligned(parts[0]):
            return parts[0]
        n = sum(part.shape[0] for part in parts)
        first = parts[0]
        buffer = self._buffers.get(index)
        if buffer is None or buffer.shape[0] < n or buffer.shape[1:] != first.shape[1:]:
            shape = (max(n, self.block), *first.shape[1:])
            buffer = torch.empty(shape, dtype=self.dtype, device=first.device)
            self._buffers[index] = buffer
        return torch.cat(parts, out=buffer[:n])

    def _push(self, node: _Node) -> None:
        """Adds ``node`` after the others: a part of a block joins the part before it
        (summed once the block is whole), and siblings join as they complete (the tree)."""
        if self._nodes and _parts_of_one_block(self._nodes[-1], node, self.block):
            left = self._nodes.pop()
            assert left.rows is not None and node.rows is not None
            node = self._node(left.lo, node.hi, left.rows + node.rows)
        self._nodes.append(node)
        while len(self._nodes) >= 2 and _siblings(self._nodes[-2], self._nodes[-1], self.block):
            right, left = self._nodes.pop(), self._nodes.pop()
            assert left.sums is not None and right.sums is not None
            joined = [a + b for a, b in zip(left.sums, right.sums)]
            self._nodes.append(_Node(left.lo, right.hi, left.level + 1, sums=joined))

    def _with_pending(self) -> list[_Node]:
        """The subtrees, and the pending masks as a last part of a block (left pending)."""
        if not self._pending:
            return list(self._nodes)
        pending = _Node(self._pending_lo, self._pending_hi, 0, rows=list(self._pending))
        return [*self._nodes, pending]

    def _sums(self) -> list[Tensor]:
        """All the sums: the subtrees and the parts of blocks, added in mask order."""
        if self._total is None:
            sums = [self._node_sums(node) for node in self._with_pending()]
            if not sums:
                return self._zeros()
            total = sums[0]
            for node_sums in sums[1:]:
                total = [a + b for a, b in zip(total, node_sums)]
            self._total = total
        return self._total

    def _node_sums(self, node: _Node) -> list[Tensor]:
        """The sums of ``node``: its own, or those of its masks (a part of a block)."""
        if node.rows is not None:
            return self._block_sums(node.rows)
        assert node.sums is not None
        return node.sums

    def _zeros(self) -> list[Tensor]:
        """Sums of no masks."""
        zeros = lambda *shape: torch.zeros(shape, device=self.device, dtype=self.dtype)
        sums = [zeros(self.batch_size, self.n_outputs, *s[1:]) for s in self.mask_shapes]
        sums += [zeros(*s) for s in self.mask_shapes]
        sums.append(zeros(self.batch_size, self.n_outputs))
        if not self.replicates:
            return sums
        r = self.replicates
        sums += [zeros(r, *w.shape) for w in sums[: len(self.mask_shapes)]]
        sums += [zeros(r, *s) for s in self.mask_shapes]
        return [*sums, zeros(r, self.batch_size, self.n_outputs), zeros(r)]

    # -- combining accumulators -------------------------------------------------------
    def _check_like(self, other: "SaliencyAccumulator") -> None:
        if (other.batch_size, other.n_outputs, other.mask_shapes, other.replicates) != (
            self.batch_size,
            self.n_outputs,
            self.mask_shapes,
            self.replicates,
        ) or other.block != self.block:
            raise ValueError("cannot merge accumulators of different shapes")

    def merge(self, other: "SaliencyAccumulator") -> "SaliencyAccumulator":
        """Add the sums of ``other`` (same shapes, other masks) into this accumulator;
        returns self. Subtrees are joined in mask order, so accumulators of contiguous
        ranges of masks give the sums of one accumulator of them all, to the bit."""
        self._check_like(other)
        nodes = sorted(self._with_pending() + other._with_pending(), key=lambda n: n.lo)
        self._pending, self._nodes = [], []
        for node in nodes:
            self._push(_on_device(node, self.device))
        self._scores_finite &= other._scores_finite.to(self.device)
        self.n_masks += other.n_masks
        self._total = None
        return self

    def all_reduce(self, group: "torch.distributed.ProcessGroup") -> "SaliencyAccumulator":
        """Sums over the ranks of ``group``, each of which accumulated its own masks;
        every rank ends with the sums of all masks, the single-process sums to the bit
        when the ranks' masks are contiguous ranges (:meth:`merge`). Returns self.
        Every rank sends each of its subtrees (the others send zeros in its place) and
        the masks of its parts of blocks, which meet the other parts of their block."""
        finite = all_reduce(self._scores_finite.int(), group, torch.distributed.ReduceOp.MIN)
        nodes = self._with_pending()
        counts = all_reduce(torch.tensor([len(nodes)]), group, torch.distributed.ReduceOp.MAX)
        rank, world_size = (
            torch.distributed.get_rank(group),
            torch.distributed.get_world_size(group),
        )
        slots = int(counts.item())
        # (lo, hi, level, complete) of every rank's subtrees; hi = 0 marks an empty slot
        table = torch.zeros(world_size, slots, 4, dtype=torch.int64)
        for i, node in enumerate(nodes):
            table[rank, i] = torch.tensor([node.lo, node.hi, node.level, node.complete])
        table = all_reduce(table, group)
        gathered: list[_Node] = []
        for owner in range(world_size):
            for i in range(slots):
                lo, hi, level, complete = (int(v) for v in table[owner, i])
                if hi == 0:
                    continue
                mine = nodes[i] if owner == rank else None
                if complete:
                    gathered.append(_Node(lo, hi, level, sums=self._summed(mine, group)))
                else:
                    rows = self._sent_rows(mine, hi - lo, owner, group)
                    gathered.append(_Node(lo, hi, 0, rows=[rows]))
        count = all_reduce(torch.tensor([self.n_masks], dtype=torch.int64), group)
        self._pending, self._nodes = [], []
        for node in sorted(gathered, key=lambda n: n.lo):
            self._push(node)
        self._scores_finite = finite.bool()
        self.n_masks = int(count.item())
        self._total = None
        return self

    def _summed(self, node: _Node | None, group: "torch.distributed.ProcessGroup") -> list[Tensor]:
        """A subtree's sums on every rank: its owner's (``node``), zeros from the others."""
        mine = [s.clone() for s in node.sums] if node and node.sums else self._zeros()
        return [all_reduce(s, group) for s in mine]

    def _sent_rows(
        self, node: _Node | None, n: int, owner: int, group: "torch.distributed.ProcessGroup"
    ) -> _Chunk:
        """A part of a block's ``n`` masks on every rank, sent by its owner (``node``)."""
        if node is not None and node.rows is not None:
            scores, masks, labels = _joined(node.rows, self.dtype)
        else:
            empty = lambda *shape: torch.empty(shape, device=self.device, dtype=self.dtype)
            scores = empty(n, self.batch_size, self.n_outputs)
            masks = tuple(empty(n, *shape) for shape in self.mask_shapes)
            labels = torch.empty(n, dtype=torch.int64, device=self.device)
        sent = [broadcast(t, owner, group) for t in (scores, *masks)]
        if not self.replicates:
            return sent[0], tuple(sent[1:]), None
        assert labels is not None  # an accumulator with replicates labels every mask
        return sent[0], tuple(sent[1:]), broadcast(labels, owner, group)

    def saliency(self, p_keep: float, normalization: str = "expectation") -> list[Tensor]:
        r"""The saliency maps, ``(B, K, *rest_i)`` per input.

        With ``W = sum_n f_n M_n``, ``C = sum_n M_n`` (per feature), the mean
        score ``f = sum_n f_n / N`` and ``p = p_keep``:

        * ``"expectation"``: ``W / (N p)``, the paper's eq. 6, an estimate of
          ``E[f | M = 1]``;
        * ``"coverage"``: ``W / C``, the same expectation as a ratio, which
          does not carry the masks' uneven coverage ``C / (N p) - 1`` times
          the mean score into the map;
        * ``"centred"``: ``(W - f C) / (N p) + f``, the same expectation with
          the mean score as a control variate (``E[M] = p`` is known): the
          coverage noise is removed and the map stays a linear estimate;
        * ``"difference"``: ``(W - f C) / (N p (1 - p))``, the signed view
          ``E[f | kept] - E[f | dropped]`` (exactly so for binary masks; the
          covariance of score and mask over the mask's variance ``p (1 - p)``
          otherwise): positive where keeping a feature raises the score,
          negative where it lowers it. For ``feature_mask`` groups at
          ``p = 0.5`` it is the Banzhaf value of each group.
        """
        check_normalization(normalization, p_keep)
        if self.n_masks == 0:
            raise ValueError("no masks were accumulated")
        self._sums()  # the pending masks' scores are checked with the others
        check_finite_scores(self._scores_finite)
        mean_score = self.score_sums[..., None] / self.n_masks
        return [
            _map_from_sums(
                normalization,
                w.flatten(2),
                mask_sum.flatten(1)[:, None],
                self.n_masks,
                p_keep,
                mean_score,
            ).reshape(w.shape)
            for w, mask_sum in zip(self.weighted_sums, self.mask_sums)
        ]

    def relative_standard_error(
        self,
        p_keep: float,
        normalization: str = "expectation",
        ignore: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """``(B, K)`` estimated relative standard error of the maps of :meth:`saliency`.

        Randomised quasi-Monte Carlo: the ``R`` replicates are independent
        estimates of the map, ``S_r`` (the same estimator on replicate ``r``'s
        sums, the centred ones on the replicate's own mean score), so per
        feature ``j`` (at the masks' resolution, over all inputs) the standard
        error of the map ``S`` is estimated from their spread,
        ``sqrt(R / (R - 1) * sum_r (N_r / N)^2 (S_rj - S_j)^2)``. That holds
        for any sampling whose replicates are independent and identically
        distributed: random masks, antithetic pairs, and independently
        scrambled Sobol' sequences, whose smaller errors it measures instead
        of bounding them. ``S`` is the weighted mean of the ``S_r`` for
        ``"expectation"``; for the others, whose ``S_r`` are ratios (or
        centred on their own mean), this is the random groups estimate of the
        variance, to first order. The relative error
        is the RMS over features of those standard errors, divided by the
        standard deviation of the map over features. Needs ``replicates >=
        2`` and a mask in every replicate; with ``R`` replicates the estimate
        has about ``R - 1`` degrees of freedom per feature, pooled over the
        features. ``ignore``: per input, ``(Bm, *rest_i)`` True for features
        left out of both (never masked, e.g. :data:`captum_rise.masks.ALWAYS_KEPT`).
        """
        if not self.replicates:
            raise ValueError("relative_standard_error needs an accumulator with replicates >= 2")
        maps = torch.cat([m.flatten(2) for m in self.saliency(p_keep, normalization)], dim=2)
        counts = self.replicate_counts
        if float(counts.min()) < 1:
            raise ValueError(
                f"relative_standard_error needs a mask in each of the {self.replicates} replicates"
            )
        shape = (-1, 1, 1, 1)
        # each replicate centred on its own mean score: the same estimator as the whole
        mean_score = self.replicate_score_sums[..., None] / counts.reshape(shape)
        replicate_maps = _map_from_sums(
            normalization,
            torch.cat([r.flatten(3) for r in self.replicate_sums], dim=3),
            _features(self.replicate_mask_sums, batch_dim=1)[:, :, None],
            counts.reshape(shape),
            p_keep,
            mean_score,
        )
        weights = (counts / counts.sum()).reshape(shape)
        spread = (weights**2 * (replicate_maps - maps) ** 2).sum(dim=0)
        variances = spread * self.replicates / (self.replicates - 1)
        counted = torch.ones_like(maps[:1, :1])  # (1, 1, P), or (Bm, 1, P) with ignore
        if ignore is not None:
            counted = ~_features(ignore, batch_dim=0)[:, None]
            counted = counted.to(maps.dtype)
        n_counted = counted.sum(dim=2)
        rms = ((variances * counted).sum(dim=2) / n_counted).sqrt()
        centred = (
            maps - (maps * counted).sum(dim=2, keepdim=True) / n_counted[..., None]
        ) * counted
        map_spread = (centred.pow(2).sum(dim=2) / (n_counted - 1).clamp_min(1)).sqrt()
        return rms / map_spread.clamp_min(torch.finfo(map_spread.dtype).tiny)


def _features(tensors: Sequence[Tensor], batch_dim: int) -> Tensor:
    """Per input ``(..., Bm_i, *rest_i)`` (``Bm_i`` 1 or ``B``, at ``batch_dim``): the
    features of all inputs side by side, ``(..., Bm, P)``; an input whose masks the batch
    shares is expanded to the others' ``Bm``."""
    bm = max(t.shape[batch_dim] for t in tensors)
    flat = [t.flatten(batch_dim + 1) for t in tensors]
    return torch.cat([f.expand(*f.shape[:batch_dim], bm, f.shape[-1]) for f in flat], dim=-1)


def _map_from_sums(
    normalization: str,
    weighted: Tensor,
    mask_sum: Tensor,
    count: Tensor | int,
    p_keep: float,
    mean_score: Tensor,
) -> Tensor:
    """The map of ``normalization`` (:meth:`SaliencyAccumulator.saliency`) from sums.

    Args:
        weighted: ``(..., B, K, P)`` sums of score-weighted masks.
        mask_sum: ``(..., Bm, 1, P)`` sums of the masks.
        count: the number of masks, broadcastable to ``weighted``.
        mean_score: ``(..., B, K, 1)`` mean score, the control variate's coefficient.
    """
    if normalization == "expectation":
        return weighted / (count * p_keep)
    if normalization == "coverage":
        return weighted / mask_sum.clamp_min(torch.finfo(weighted.dtype).tiny)
    centred = (weighted - mean_score * mask_sum) / (count * p_keep)
    if normalization == "centred":
        return centred + mean_score
    return centred / (1 - p_keep)


def _weighted_and_plain_sums(scores: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``sum_n scores[n, b, k] * mask[n, b or 0, p]`` (as :func:`_weighted_sum`) and
    ``sum_n mask[n, :, p]`` ``(Bm, P)``; for masks shared by the batch, one matmul
    gives both (a column of ones beside the scores)."""
    n = scores.shape[0]
    flat = mask.reshape(n, mask.shape[1], -1)
    if flat.shape[1] == 1:
        weights = torch.cat([scores.reshape(n, -1), scores.new_ones(n, 1)], dim=1)
        both = weights.T @ flat[:, 0]  # (B*K + 1, P)
        return both[:-1], both[-1:]
    return _weighted_sum(scores, mask), flat.sum(dim=0)


def _weighted_sum(scores: Tensor, mask: Tensor) -> Tensor:
    """``sum_n scores[n, b, k] * mask[n, b or 0, p]``: ``(B*K, P)`` or ``(B, K, P)``."""
    n = scores.shape[0]
    flat = mask.reshape(n, mask.shape[1], -1)
    if flat.shape[1] == 1:
        # (B*K, n) @ (n, P): one matmul for every example and output.
        return scores.permute(1, 2, 0).reshape(-1, n) @ flat[:, 0]
    return torch.einsum("nbk,nbp->bkp", scores, flat)


def _joined(rows: list[_Chunk], dtype: torch.dtype) -> _Chunk:
    """``rows`` as one chunk in fresh memory, scores and masks in ``dtype``."""
    scores = torch.cat([r[0] for r in rows]).to(dtype)
    masks = tuple(torch.cat(parts).to(dtype) for parts in zip(*(r[1] for r in rows)))
    labels = [r[2] for r in rows if r[2] is not None]
    return scores, masks, torch.cat(labels) if labels else None


def _on_device(node: _Node, device: torch.device) -> _Node:
    """``node`` with its sums or masks on ``device``."""
    if node.rows is None:
        assert node.sums is not None
        return _Node(node.lo, node.hi, node.level, sums=[s.to(device) for s in node.sums])
    rows = [
        (s.to(device), tuple(m.to(device) for m in masks), None if r is None else r.to(device))
        for s, masks, r in node.rows
    ]
    return _Node(node.lo, node.hi, node.level, rows=rows)


ALIGNMENT = 64
"""Bytes: the alignment of fresh tensors on the CPU (PyTorch's allocator), and a
multiple of every vector width. A BLAS kernel may round otherwise at an address not
aligned so, so a block's matmul always reads memory aligned to it."""


def _is_aligned(tensor: Tensor) -> bool:
    """Whether ``tensor`` is contiguous at an address aligned to :data:`ALIGNMENT`."""
    return tensor.is_contiguous() and tensor.data_ptr() % ALIGNMENT == 0


def _aligned(tensor: Tensor) -> Tensor:
    """``tensor`` if :func:`_is_aligned`, else a contiguous copy (fresh, so aligned)."""
    return tensor if _is_aligned(tensor) else tensor.clone(memory_format=torch.contiguous_format)


def _cat(parts: list[Tensor]) -> Tensor:
    """``parts`` joined along dim 0 (one part: itself, not a copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _head(labels: Tensor | None, n: int) -> Tensor | None:
    return None if labels is None else labels[:n]


def _tail(labels: Tensor | None, n: int) -> Tensor | None:
    return None if labels is None else labels[n:]
