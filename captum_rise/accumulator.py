"""Running sums of score-weighted masks, mergeable across workers."""

from collections.abc import Sequence

import torch
from torch import Tensor

from captum_rise._forward import check_finite_scores
from captum_rise.distributed import all_reduce

NORMALIZATIONS = ("expectation", "coverage")


class SaliencyAccumulator:
    """Accumulates ``sum_n f_n * M_n`` and ``sum_n M_n`` for a tuple of inputs.

    Masks of input ``i`` have shape ``(n, Bm, *rest_i)`` with ``Bm`` 1 (shared
    by the batch) or ``B``; scores have shape ``(n, B, K)`` for ``K`` outputs.
    The sums are kept at the masks' resolution, so a mask broadcast over
    channels costs no channel memory.

    Chunks are buffered up to ``buffer_bytes`` of masks and added with one
    matmul per flush: with many outputs (``K`` = 1000 classes) and small
    chunks, updating the ``(B, K, ...)`` sums once per chunk would be bound by
    memory traffic. Memory stays bounded by the buffer, whatever ``N`` is.
    Scores are checked to be finite when the sums are read (:meth:`saliency`,
    :meth:`relative_standard_error`): the accumulator never waits for the
    device while chunks are added.

    Masks and scores may come in any floating dtype (e.g. float16 from a
    half-precision model); the sums are kept in ``dtype``.

    With ``track_squares`` it also keeps ``sum_n f_n^2 * M_n^2``, from which
    :meth:`relative_standard_error` estimates the maps' error.

    Two accumulators over disjoint sets of masks can be :meth:`merge`-d, e.g.
    when masks are split across workers, or summed over the ranks of a
    ``torch.distributed`` group with :meth:`all_reduce`.

    Args:
        batch_size: ``B``.
        n_outputs: ``K``, the number of scores per example.
        mask_shapes: ``(Bm, *rest_i)`` per input.
        device, dtype: of the sums.
        buffer_bytes: masks held before they are added to the sums.
    """

    def __init__(
        self,
        batch_size: int,
        n_outputs: int,
        mask_shapes: Sequence[tuple[int, ...]],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        buffer_bytes: int = 64 * 2**20,
        track_squares: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.n_outputs = n_outputs
        self.mask_shapes = [tuple(s) for s in mask_shapes]
        self.weighted_sums: list[Tensor] = [
            torch.zeros(batch_size, n_outputs, *shape[1:], device=device, dtype=dtype)
            for shape in self.mask_shapes
        ]
        self.mask_sums: list[Tensor] = [
            torch.zeros(shape, device=device, dtype=dtype) for shape in self.mask_shapes
        ]
        self.squared_sums: list[Tensor] = (
            [torch.zeros_like(w) for w in self.weighted_sums] if track_squares else []
        )
        self.n_masks = 0
        self._scores_finite = torch.ones((), dtype=torch.bool, device=device)
        self.buffer_bytes = buffer_bytes
        self._pending_scores: list[Tensor] = []
        self._pending_masks: list[tuple[Tensor, ...]] = []
        self._pending_bytes = 0

    def add(self, scores: Tensor, masks: tuple[Tensor, ...]) -> None:
        """Add a chunk: ``scores`` ``(n, B, K)``, ``masks[i]`` ``(n, Bm, *rest_i)``."""
        self._pending_scores.append(scores)
        self._pending_masks.append(masks)
        self._pending_bytes += sum(m.numel() * m.element_size() for m in masks)
        self.n_masks += scores.shape[0]
        if self._pending_bytes >= self.buffer_bytes:
            self._flush()

    def _flush(self) -> None:
        """Adds the buffered chunks to the sums, with one matmul per input."""
        if not self._pending_scores:
            return
        scores = torch.cat(self._pending_scores).to(self.weighted_sums[0].dtype)
        # a chunk as large as the buffer (a GPU's) is used as it is, not copied
        masks = tuple(
            parts[0] if len(parts) == 1 else torch.cat(parts) for parts in zip(*self._pending_masks)
        )
        self._pending_scores, self._pending_masks, self._pending_bytes = [], [], 0
        self._scores_finite &= torch.isfinite(scores).all()
        for i, (mask_sum, mask) in enumerate(zip(self.mask_sums, masks)):
            mask = mask.to(scores.dtype)
            self.weighted_sums[i] += _weighted_sum(scores, mask).reshape(
                self.weighted_sums[i].shape
            )
            if self.squared_sums:
                squares = _weighted_sum(scores**2, mask**2)
                self.squared_sums[i] += squares.reshape(self.squared_sums[i].shape)
            mask_sum += mask.sum(dim=0)

    def merge(self, other: "SaliencyAccumulator") -> "SaliencyAccumulator":
        """Add the sums of ``other`` (same shapes) into this accumulator; returns self."""
        if [tuple(w.shape) for w in other.weighted_sums] != [
            tuple(w.shape) for w in self.weighted_sums
        ]:
            raise ValueError("cannot merge accumulators of different shapes")
        self._flush()
        other._flush()
        self._scores_finite &= other._scores_finite.to(self._scores_finite.device)
        for mine, theirs in zip(self.weighted_sums, other.weighted_sums):
            mine += theirs.to(mine.device)
        for mine, theirs in zip(self.mask_sums, other.mask_sums):
            mine += theirs.to(mine.device)
        for mine, theirs in zip(self.squared_sums, other.squared_sums):
            mine += theirs.to(mine.device)
        self.n_masks += other.n_masks
        return self

    def all_reduce(self, group: "torch.distributed.ProcessGroup") -> "SaliencyAccumulator":
        """Sums over the ranks of ``group``, each of which accumulated its own masks;
        every rank ends with the sums of all masks. Returns self."""
        self._flush()
        # every rank raises if one had non-finite scores (rather than one rank alone)
        finite = all_reduce(self._scores_finite.int(), group, torch.distributed.ReduceOp.MIN)
        self._scores_finite = finite.bool()
        self.weighted_sums = [all_reduce(w, group) for w in self.weighted_sums]
        self.mask_sums = [all_reduce(m, group) for m in self.mask_sums]
        self.squared_sums = [all_reduce(q, group) for q in self.squared_sums]
        count = torch.tensor([self.n_masks], dtype=torch.int64)
        self.n_masks = int(all_reduce(count, group).item())
        return self

    def saliency(self, p_keep: float, normalization: str = "expectation") -> list[Tensor]:
        """The saliency maps, ``(B, K, *rest_i)`` per input.

        ``"expectation"`` divides by ``N * p_keep`` (the paper's eq. 6);
        ``"coverage"`` divides every feature by the sum of its own mask values,
        an estimate of ``E[f | M=1]`` that is unbiased for unequal coverage.
        """
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        if self.n_masks == 0:
            raise ValueError("no masks were accumulated")
        self._flush()
        check_finite_scores(self._scores_finite)
        if normalization == "expectation":
            return [w / (self.n_masks * p_keep) for w in self.weighted_sums]
        return [
            w / mask_sum.unsqueeze(1).clamp_min(torch.finfo(w.dtype).tiny)
            for w, mask_sum in zip(self.weighted_sums, self.mask_sums)
        ]

    def relative_standard_error(self, p_keep: float) -> Tensor:
        """``(B, K)`` estimated relative standard error of the ``"expectation"`` maps.

        Per feature ``j`` (at the masks' resolution, over all inputs), the
        standard error of ``S_j = sum_n f_n M_nj / (N p)`` is
        ``sqrt(Var(f M_j) / N) / p``, with the variance estimated from the
        sums and the sums of squares; the relative error is the RMS over
        features of those standard errors, divided by the standard deviation
        of the map over features. Needs ``track_squares=True``.
        """
        if not self.squared_sums:
            raise ValueError("relative_standard_error needs an accumulator with track_squares=True")
        if self.n_masks < 2:
            raise ValueError("relative_standard_error needs at least 2 masks")
        self._flush()
        check_finite_scores(self._scores_finite)
        n = self.n_masks
        means = torch.cat([w.flatten(2) for w in self.weighted_sums], dim=2) / n
        second_moments = torch.cat([q.flatten(2) for q in self.squared_sums], dim=2) / n
        variances = (second_moments - means**2).clamp_min(0) * n / (n - 1)
        standard_errors = (variances / n).sqrt() / p_keep
        spread = (means / p_keep).std(dim=2)
        rms = standard_errors.pow(2).mean(dim=2).sqrt()
        return rms / spread.clamp_min(torch.finfo(spread.dtype).tiny)


def _weighted_sum(scores: Tensor, mask: Tensor) -> Tensor:
    """``sum_n scores[n, b, k] * mask[n, b or 0, p]``: ``(B*K, P)`` or ``(B, K, P)``."""
    n = scores.shape[0]
    flat = mask.reshape(n, mask.shape[1], -1)
    if flat.shape[1] == 1:
        # (B*K, n) @ (n, P): one matmul for every example and output.
        return scores.permute(1, 2, 0).reshape(-1, n) @ flat[:, 0]
    return torch.einsum("nbk,nbp->bkp", scores, flat)
