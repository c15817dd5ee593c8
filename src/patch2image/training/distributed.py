"""Data-parallel training with PyTorch's own engine (torchrun + DistributedDataParallel).

Launched by ``torchrun``, every process reads its rank from the environment. The processes draw the
same batches and augmentations (same seed), each trains on its contiguous share of every batch,
and the loss's sums are added across processes, so that the gradients DDP averages are exactly
those of one process with the whole batch. Validation, checkpoints and scoring run on rank 0.
"""

import contextlib
import os

import torch
import torch.distributed as dist


def init_from_environment(device: torch.device) -> bool:
    """Join the process group torchrun describes (gloo on CPU, NCCL on GPU); False when run alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


_alone = False


@contextlib.contextmanager
def alone():
    """Within this block the loss is this process's own (rank 0's validation)."""
    global _alone
    previous, _alone = _alone, True
    try:
        yield
    finally:
        _alone = previous


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes, differentiable (the backward pass sums the gradients too)."""
    if not dist.is_initialized() or _alone:
        return tensor
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor)


def broadcast_from_main(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This process's contiguous share of a batch drawn identically by every process."""
    if not dist.is_initialized():
        return batch
    return batch.tensor_split(world_size())[rank()]
