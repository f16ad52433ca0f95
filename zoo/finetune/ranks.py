"""`torchrun --nproc_per_node N -m zoo finetune ...`: which rank this process is, and its process group.

Under torchrun each rank trains the same model from the same seed on its shard of every minibatch;
the estimator means each loss over the ranks (zoo/estimators/distributed.py), so the replicas stay
identical. Rank 0 alone writes the run's files (checkpoint, loss log, results, plot) and holds the
folder's lock; every rank reads them to resume.
"""

from __future__ import annotations

import os


def init_from_env(device: str) -> bool:
    """Joins the process group that torchrun's environment describes (gloo on the CPU, nccl on CUDA),
    where WORLD_SIZE > 1 and none is initialised yet. True when this call created it."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return True


def close_group() -> None:
    """Destroys the default process group after a barrier, on a run that finished on every rank.

    Left to interpreter teardown, a gloo group can deadlock the exit: its destructor joins the
    backend's worker threads while the main thread holds the GIL, and a worker that is dropping the
    last reference to a Python tensor of an earlier collective waits for the GIL (seen with py-spy
    under a DDP Trainer). A barrier carries no Python tensor, so once it returns the workers are
    idle and the join completes; destroying the group here also spares NCCL's "not destroyed"
    warning.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_data_parallel(estimator: str, first_order: bool, batch_size: int, world: int) -> None:
    """Refuses what a data-parallel run cannot do, in one line."""
    if world == 1:
        return
    if first_order:
        raise ValueError(f"--estimator {estimator}: first-order baselines run in one process, not under torchrun")
    if batch_size % world:
        raise ValueError(f"--batch-size {batch_size} does not split evenly over {world} ranks: the mean of the ranks' "
                         "losses is the batch's loss only for equal shards")
