"""Splitting the masks of one explanation across the ranks of a ``torch.distributed`` group.

Mask ``k`` depends only on the seed and ``k`` (:class:`captum_rise.masks.ParamStream`),
so rank ``r`` of ``P`` can run masks ``share(N, r, P)`` on its own and the
sums of all ranks make the single-process result.

Collectives run on the group backend's device: CUDA for NCCL (the current
CUDA device), the CPU otherwise (gloo); tensors are moved there and back.
"""

import torch
import torch.distributed as dist
from torch import Tensor

from captum_rise._validation import resolve_seed

ProcessGroup = dist.ProcessGroup | None


def share(n_items: int, rank: int, world_size: int, unit: int = 1) -> tuple[int, int]:
    """Rank ``rank``'s contiguous range ``[lo, hi)`` of ``n_items`` items, in whole
    ``unit``-s of items (the last one may be short), so that every range starts at a
    multiple of ``unit``.

    The first ranks get one unit more than the others; a rank may get none when
    there are fewer units than ranks.
    """
    base, extra = divmod(-(-n_items // unit), world_size)
    lo = rank * base + min(rank, extra)
    hi = lo + base + (rank < extra)
    return min(lo * unit, n_items), min(hi * unit, n_items)


def group_rank_and_size(group: ProcessGroup) -> tuple[int, int]:
    """``(rank, world_size)`` within ``group``; ``(0, 1)`` for None."""
    if group is None:
        return 0, 1
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError(
            "process_group was given but torch.distributed is not initialised: call "
            "torch.distributed.init_process_group first (torchrun sets up the environment)"
        )
    return dist.get_rank(group), dist.get_world_size(group)


def _collective_device(group: dist.ProcessGroup, device: torch.device) -> torch.device:
    if dist.get_backend(group) == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if device.type != "cpu" else device


def all_reduce(
    tensor: Tensor,
    group: dist.ProcessGroup,
    op: "dist.ReduceOp.RedOpType" = dist.ReduceOp.SUM,
) -> Tensor:
    """``op`` of ``tensor`` over the ranks of ``group``, on ``tensor``'s device and in its dtype."""
    on_backend = tensor.to(_collective_device(group, tensor.device)).contiguous()
    dist.all_reduce(on_backend, op=op, group=group)
    return on_backend.to(tensor.device)


def broadcast(tensor: Tensor, source: int, group: dist.ProcessGroup) -> Tensor:
    """``tensor`` of the rank ``source`` of ``group`` on every rank, on ``tensor``'s device
    and in its dtype (the others pass a tensor of the same shape)."""
    on_backend = tensor.to(_collective_device(group, tensor.device)).contiguous()
    dist.broadcast(on_backend, src=dist.get_global_rank(group, source), group=group)
    return on_backend.to(tensor.device)


def agree_on_seed(seed: int | None, group: ProcessGroup) -> int:
    """``seed``, or for ``seed=None`` one draw from torch's global generator
    (:func:`captum_rise._validation.resolve_seed`, Captum's convention).

    Under a group every rank draws, so that global generators seeded alike stay
    in step, and rank 0's draw is sent to all: every rank draws the same masks.
    """
    group_rank_and_size(group)  # a clear error for a group that is not set up
    if group is None or seed is not None:
        return resolve_seed(seed)
    drawn = torch.tensor([resolve_seed(None)], dtype=torch.int64)
    return int(broadcast(drawn, 0, group).item())
