"""Multi-process data-parallel SVI on ``torch.distributed`` (DDP): gloo on CPU, nccl on GPU.

Launch with torchrun, one process per device (or per CPU worker)::

    torchrun --nproc_per_node 2 -m pyro_noisevae train --distributed --out runs/ddp
    # multi-node: the same command on every node, plus
    #   --nnodes 2 --node_rank <0|1> --rdzv_backend c10d --rdzv_endpoint <host of node 0>:29500

Every process holds a full replica of the model. A global mini-batch of ``B`` points is split into
``world_size`` contiguous shards of ``B / world_size`` rows; each rank computes the negative ELBO per data
point of its shard and :class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients, so a step
equals the single-process step on the concatenated batch (with each shard's latent noise drawn by its own
rank: every rank seeds Pyro with ``seed + rank``). :class:`~pyro_noisevae.training.Trainer` puts these pieces
together (:meth:`~pyro_noisevae.training.Trainer.enable_distributed`).
"""

import os

import torch
import torch.distributed as dist

__all__ = ["STOP_CHECK_EVERY", "DistributedContext", "DistributedSetupError", "check_global_batches", "init_distributed",
           "shard", "stop_agreement"]

#: steps between the ranks' agreement on stopping (SIGINT/SIGTERM)
STOP_CHECK_EVERY = 10


class DistributedSetupError(RuntimeError):
    """The process was asked to train distributed but was not launched by torchrun."""


class DistributedContext:
    """Rank, world size and device of this process (``rank=0, world_size=1`` when not distributed)."""

    def __init__(self, rank=0, world_size=1, local_rank=0, device=None, initialized_here=False):
        self.rank, self.world_size, self.local_rank = int(rank), int(world_size), int(local_rank)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.initialized_here = initialized_here

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def close(self):
        """Destroy the process group if :func:`init_distributed` created it."""
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device="cpu", backend=None):
    """
    Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``). Backend: ``nccl`` for CUDA, ``gloo`` otherwise. On CUDA each process
    takes the GPU ``cuda:LOCAL_RANK``.

    :returns: :class:`DistributedContext`.
    :raises DistributedSetupError: when the torchrun variables are missing.
    """
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing and not dist.is_initialized():
        raise DistributedSetupError(
            f"--distributed needs the process-group variables {missing}; launch with "
            "`torchrun --nproc_per_node N -m pyro_noisevae train --distributed ...`"
        )
    device = torch.device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if device.type == "cuda" else "gloo"))
        created = True
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, device, created)


def shard(batch, rank, world_size):
    """
    Rows ``[rank·B/W, (rank+1)·B/W)`` of a global batch of ``B`` rows (``B`` must be divisible by ``W``).

    :param torch.Tensor batch: ``(B, ...)``.
    :returns: ``(B / W, ...)``.
    """
    b = batch.shape[0]
    if b % world_size:
        raise ValueError(f"the global batch ({b} rows) must be divisible by the number of processes ({world_size}); "
                         f"choose a --batch-size and a training-set size that are multiples of {world_size}")
    per = b // world_size
    return batch[rank * per : (rank + 1) * per]


def check_global_batches(num_data, batch_size, world_size, steps_per_epoch):
    """
    Refuse an epoch whose global mini-batches do not all split evenly over ``world_size`` processes (a shard
    of another size would weigh its points differently in DDP's gradient average, and dropping rows would
    train on less data than asked): every batch of ``batch_size`` rows, and the last, smaller batch of
    ``num_data % batch_size`` rows when one of the ``steps_per_epoch`` steps takes it.

    :raises ValueError: naming the batch and the fix.
    """
    sizes = {batch_size}
    if num_data % batch_size and steps_per_epoch * batch_size > num_data:
        sizes.add(num_data % batch_size)
    bad = sorted(b for b in sizes if b % world_size)
    if bad:
        which = "the batch size" if bad[0] == batch_size else f"the last batch of each epoch ({num_data} % {batch_size})"
        raise ValueError(f"{which} is {bad[0]} rows, not divisible by the number of processes ({world_size}); "
                         f"choose a --batch-size and a training-set size that are multiples of {world_size}")


def stop_agreement(ctx, every=STOP_CHECK_EVERY):
    """
    The ``agree`` hook of a :class:`~pyro_noisevae.training.FitLoop` run by every rank: all ranks must leave the
    loop at the same step, or the next collective would hang. Every ``every`` steps of an epoch the ranks
    all-reduce their stop flags (one value read back on the host, not on every step of the hot loop); a signal
    received in between waits for the next agreement.
    """

    def agree(loop, stop_requested):
        if loop.step_in_epoch % every:
            return False
        flag = torch.tensor([float(stop_requested)], device=ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    return agree
