"""The process group: which rank this is, on which device in which precision, and the few
collectives training needs (agreeing on when to checkpoint or stop)."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any: ranks agree on when to checkpoint or stop."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather_objects(self, local: Any) -> list[Any]:
        """Every rank's `local`, in rank order (one element without DDP)."""
        if not self.enabled:
            return [local]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, local)
        return gathered

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup_distributed() -> Distributed:
    """Join the process group described by RANK/WORLD_SIZE/MASTER_* (torchrun or spawn_training).

    NCCL on GPU, gloo on CPU; without RANK in the environment, one process without DDP.
    """
    use_cuda = torch.cuda.is_available()
    if "RANK" not in os.environ:
        return Distributed(0, 0, 1, torch.device("cuda" if use_cuda else "cpu"))
    rank, local_rank, world_size = (
        int(os.environ["RANK"]),
        int(os.environ["LOCAL_RANK"]),
        int(os.environ["WORLD_SIZE"]),
    )
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    # Rank 0 evaluates alone while the others wait at a barrier: allow a long wait.
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://", timeout=timedelta(hours=2))
    return Distributed(rank, local_rank, world_size, device)


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of all parameters: replicas that stayed in sync have the same digest."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for autocast, or None for plain fp32; 'auto' picks bf16 where the hardware runs it natively."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and native_cpu_bf16() else None


def native_cpu_bf16() -> bool:
    """True on CPUs with AVX-512 BF16 or AMX, where oneDNN runs bf16 matmuls at full speed."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# glibc's mallopt parameters (malloc.h) and the trim threshold used: 2 GiB, the largest an int holds.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Have glibc keep the memory a training step frees for the next step; False where it cannot.

    By default glibc serves every allocation over 32 MB (a batch's attention scores, its
    activations) with a fresh mmap and unmaps it when freed, so each step gets its memory back from
    the kernel as new zeroed pages: on the reader's CPU run that was 67,000 page faults a second and
    23% of the process's CPU time spent in the kernel. Serving everything from the heap and never
    trimming it keeps the pages mapped: the same run trained 1.45x faster. The price is memory:
    batches of every length leave holes the heap cannot give back, and the process grew from 7 to
    over 11 GB in 20 minutes without levelling off, so train.py asks for it only with
    --keep-freed-memory (one process, memory to spare). The same as MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=..., set from inside, so torchrun's and spawned ranks get it too."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
    except (OSError, TypeError, AttributeError):  # not glibc (musl, macOS): leave the allocator alone
        return False


class StopRequest:
    """Set by SIGTERM/SIGINT: training ends at the next optimiser step, evaluated and checkpointed."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        log.warning("%s: stopping after this step with a checkpoint", signal.Signals(signum).name)
        self.requested = True
