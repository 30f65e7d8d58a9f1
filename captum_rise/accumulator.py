"""Running sums of score-weighted masks, mergeable across workers."""

from collections.abc import Sequence

import torch
from torch import Tensor

from captum_rise._forward import check_finite_scores
from captum_rise.distributed import all_reduce

NORMALIZATIONS = ("expectation", "coverage", "centred", "difference")
"""How the weighted sums become maps (:meth:`SaliencyAccumulator.saliency`)."""


def check_normalization(normalization: str, p_keep: float) -> None:
    """Raises a ValueError unless ``normalization`` is one of :data:`NORMALIZATIONS` that
    ``p_keep`` allows (the signed view needs masks that drop something)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if normalization == "difference" and p_keep >= 1:
        raise ValueError("normalization='difference' needs p_keep < 1 (some masks drop)")


class SaliencyAccumulator:
    """Accumulates ``sum_n f_n * M_n``, ``sum_n M_n`` and ``sum_n f_n`` for a tuple of inputs.

    Masks of input ``i`` have shape ``(n, Bm, *rest_i)`` with ``Bm`` 1 (shared
    by the batch) or ``B``; scores have shape ``(n, B, K)`` for ``K`` outputs.
    The sums are kept at the masks' resolution, so a mask broadcast over
    channels costs no channel memory.

    Chunks are added with one matmul per input, which gives the mask sums too
    (a column of ones beside the scores). A flush reads the masks and
    rewrites the ``(B, K, ...)`` sums, so chunks are buffered until they hold
    at least as many masks as the sums have rows (``B * K``, times ``R + 1``
    with replicates), or ``buffer_bytes`` of masks: with one score per
    example every chunk is added at once, while its masks are still in the
    cache; with many outputs (``K`` = 1000 classes) and small chunks, memory
    traffic is bounded by the masks'. Memory stays bounded by the buffer,
    whatever ``N`` is.
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
        buffer_bytes: masks held before they are added to the sums.
        replicates: ``R`` (0: no error tracking).
    """

    def __init__(
        self,
        batch_size: int,
        n_outputs: int,
        mask_shapes: Sequence[tuple[int, ...]],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        buffer_bytes: int = 64 * 2**20,
        replicates: int = 0,
    ) -> None:
        if replicates == 1 or replicates < 0:
            raise ValueError(f"replicates must be 0 (no error tracking) or >= 2, got {replicates}")
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
        self.score_sums = torch.zeros(batch_size, n_outputs, device=device, dtype=dtype)
        self.replicates = replicates
        # per replicate: (R, B, K, *rest) weighted sums and (R, Bm, *rest) mask sums per
        # input, (R, B, K) score sums and the number of masks
        self.replicate_sums: list[Tensor] = [
            torch.zeros(replicates, *w.shape, device=device, dtype=dtype)
            for w in (self.weighted_sums if replicates else [])
        ]
        self.replicate_mask_sums: list[Tensor] = [
            torch.zeros(replicates, *m.shape, device=device, dtype=dtype)
            for m in (self.mask_sums if replicates else [])
        ]
        self.replicate_score_sums = torch.zeros(
            replicates, batch_size, n_outputs, device=device, dtype=dtype
        )
        self.replicate_counts = torch.zeros(replicates, device=device, dtype=dtype)
        self.n_masks = 0
        self._scores_finite = torch.ones((), dtype=torch.bool, device=device)
        self.buffer_bytes = buffer_bytes
        self._pending_scores: list[Tensor] = []
        self._pending_masks: list[tuple[Tensor, ...]] = []
        self._pending_replicates: list[Tensor] = []
        self._pending_bytes = 0
        self._pending_count = 0
        self._rows = batch_size * n_outputs * (1 + replicates)

    def add(
        self, scores: Tensor, masks: tuple[Tensor, ...], replicates: Tensor | None = None
    ) -> None:
        """Add a chunk: ``scores`` ``(n, B, K)``, ``masks[i]`` ``(n, Bm, *rest_i)``, and
        with error tracking the ``(n,)`` replicate of every mask."""
        if self.replicates:
            if replicates is None:
                raise ValueError("an accumulator with replicates needs each mask's replicate")
            self._pending_replicates.append(replicates)
        self._pending_scores.append(scores)
        self._pending_masks.append(masks)
        self._pending_bytes += sum(m.numel() * m.element_size() for m in masks)
        self._pending_count += scores.shape[0]
        self.n_masks += scores.shape[0]
        if self._pending_bytes >= self.buffer_bytes or self._pending_count >= self._rows:
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
        self._pending_scores, self._pending_masks = [], []
        self._pending_bytes = self._pending_count = 0
        self._scores_finite &= torch.isfinite(scores).all()
        self.score_sums += scores.sum(dim=0)
        if self.replicates:
            # (n, R): the scores of replicate r sit in column r, zeros elsewhere
            labels = torch.cat(self._pending_replicates)
            self._pending_replicates = []
            one_hot = torch.nn.functional.one_hot(labels, self.replicates).to(scores.dtype)
            self.replicate_counts += one_hot.sum(dim=0)
            self.replicate_score_sums += torch.einsum("nbk,nr->rbk", scores, one_hot)
            by_replicate = (scores[:, :, :, None] * one_hot[:, None, None, :]).flatten(2)
        for i, (mask_sum, mask) in enumerate(zip(self.mask_sums, masks)):
            mask = mask.to(scores.dtype)
            weighted, summed = _weighted_and_plain_sums(scores, mask)
            self.weighted_sums[i] += weighted.reshape(self.weighted_sums[i].shape)
            mask_sum += summed.reshape(mask_sum.shape)
            if self.replicates:
                sums = _weighted_sum(by_replicate, mask)  # (B, K * R, P) or (B * K * R, P)
                shape = self.weighted_sums[i].shape
                sums = sums.reshape(shape[0], shape[1], self.replicates, *shape[2:])
                self.replicate_sums[i] += sums.movedim(2, 0)
                flat = mask.reshape(mask.shape[0], -1)
                self.replicate_mask_sums[i] += (one_hot.T @ flat).reshape(
                    self.replicate_mask_sums[i].shape
                )

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
        self.score_sums += other.score_sums.to(self.score_sums.device)
        for mine, theirs in zip(
            self.replicate_sums + self.replicate_mask_sums,
            other.replicate_sums + other.replicate_mask_sums,
        ):
            mine += theirs.to(mine.device)
        if self.replicates:
            self.replicate_counts += other.replicate_counts.to(self.replicate_counts.device)
            self.replicate_score_sums += other.replicate_score_sums.to(self.score_sums.device)
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
        self.score_sums = all_reduce(self.score_sums, group)
        self.replicate_sums = [all_reduce(r, group) for r in self.replicate_sums]
        self.replicate_mask_sums = [all_reduce(r, group) for r in self.replicate_mask_sums]
        if self.replicates:
            self.replicate_counts = all_reduce(self.replicate_counts, group)
            self.replicate_score_sums = all_reduce(self.replicate_score_sums, group)
        count = torch.tensor([self.n_masks], dtype=torch.int64)
        self.n_masks = int(all_reduce(count, group).item())
        return self

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
        self._flush()
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
            torch.cat([m.flatten(2) for m in self.replicate_mask_sums], dim=2)[:, :, None],
            counts.reshape(shape),
            p_keep,
            mean_score,
        )
        weights = (counts / counts.sum()).reshape(shape)
        spread = (weights**2 * (replicate_maps - maps) ** 2).sum(dim=0)
        variances = spread * self.replicates / (self.replicates - 1)
        counted = torch.ones_like(maps[:1, :1])  # (1, 1, P), or (Bm, 1, P) with ignore
        if ignore is not None:
            counted = ~torch.cat([m.flatten(1) for m in ignore], dim=1)[:, None]
            counted = counted.to(maps.dtype)
        n_counted = counted.sum(dim=2)
        rms = ((variances * counted).sum(dim=2) / n_counted).sqrt()
        centred = (
            maps - (maps * counted).sum(dim=2, keepdim=True) / n_counted[..., None]
        ) * counted
        map_spread = (centred.pow(2).sum(dim=2) / (n_counted - 1).clamp_min(1)).sqrt()
        return rms / map_spread.clamp_min(torch.finfo(map_spread.dtype).tiny)


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
