"""Where code runs: the compute device and the DDP rank, decided in one place.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`init_distributed`
starts the process group from them (NCCL on GPUs, gloo on CPUs), :func:`rank_world` reports
this process's rank, and :func:`pick_device` gives each rank its own GPU.
"""

from __future__ import annotations

import os

import torch

__all__ = ["init_distributed", "is_main_process", "pick_device", "rank_world"]


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without an initialised process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process is rank 0 (the one that writes shared files and prints)."""
    return rank_world()[0] == 0


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: this rank's GPU (``LOCAL_RANK``) when CUDA is available, else the CPU; or a torch device name."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(name)


def init_distributed() -> bool:
    """Start the process group when launched by ``torchrun`` with several processes; returns whether it runs."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch.distributed.init_process_group(backend)
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def shutdown_distributed() -> None:
    """Leave the process group together.

    A barrier first, so no rank tears down its links while a peer still uses them.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
