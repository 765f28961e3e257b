"""Distributed data-parallel training: PyTorch DDP launched by torchrun (docs/scale.md).

``torchrun --nproc-per-node N -m medsight train CONFIG --out RUN`` (or ``medsight train CONFIG
--nproc N``, which runs torchrun itself) starts N processes; torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) says who each is, and
several machines join through torchrun's own rendezvous flags (``--nnodes``, ``--node-rank``,
``--master-addr``). This module reads that environment, starts the process group (gloo on
CPU, nccl on GPU) and gives the trainer what it needs: which process writes (rank 0), the
mean of a number over ranks, and one rank's object sent to all.

Nothing here runs when ``WORLD_SIZE`` is unset or 1: a single process trains as before.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["World", "world", "init_from_env", "shutdown"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes.

    Attributes:
        rank: this process (0: the one that logs, checkpoints and saves).
        size: how many processes train.
        local_rank: this process on its machine (its GPU index on a GPU machine).
        local_size: the training processes on this machine (they share its cores).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float, weight: float = 1.0) -> float:
        """The weighted mean of ``value`` over the ranks (the value itself on one process)."""
        if not self.distributed:
            return value
        t = torch.tensor([value * weight, weight], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0] / t[1]) if t[1] else 0.0

    def share(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of rank ``src``, on every rank (pickled by torch.distributed between the
        training processes themselves; nothing from outside is unpickled)."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def world() -> World:
    """The world torchrun's environment describes (one process when it describes none)."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    return World(rank=_env_int("RANK", 0), size=size, local_rank=_env_int("LOCAL_RANK", 0),
                 local_size=max(1, _env_int("LOCAL_WORLD_SIZE", size)))


def init_from_env(timeout_s: float = 1800.0) -> World:
    """Start the process group when torchrun started this process (idempotent).

    The backend is nccl when CUDA is there, else gloo; each CPU process gets an equal share of
    the machine's cores as torch threads unless ``OMP_NUM_THREADS`` says otherwise.
    """
    w = world()
    if not w.distributed or (dist.is_available() and dist.is_initialized()):
        return w
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(w.local_rank)
    dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout_s))
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // w.local_size))
    log.info("distributed training: rank %d of %d (%s)", w.rank, w.size, backend)
    return w


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
