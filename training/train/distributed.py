"""Several processes (torchrun) as one training run.

Launched by `torchrun` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
...), the trainer joins a process group: NCCL when every rank has a CUDA
device, gloo otherwise. Every rank draws the same global batch indices and
keeps its own slice (`training.methods.sampler`), so the global batch is split
without overlap. Gradients are summed over ranks by one all-reduce per step
(`allreduce_gradients`); each rank's loss is already scaled by the *global*
per-task sample counts, so the sum is exactly the single-process gradient
of the same global batch (BatchNorm statistics excepted: each rank
normalises over its own samples, as DistributedDataParallel does without
SyncBatchNorm). Loss values are all-reduced too, so DWA statistics, learned
loss weights and LWS's ranking of assignments (hence its probabilities) are
identical on every rank; random draws come from generators seeded by
(seed, iteration), the same on every rank. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from mtl_perception.exits import one_line
from mtl_perception.settings import SettingsError


class DistributedError(SettingsError):
    """torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR ...) or its rendezvous cannot
    be used: one line, exit 2, before anything is written."""


# What a collective raises when another process is gone (killed, crashed, its machine
# lost): gloo's "Connection reset by peer" / "Connection closed by peer", NCCL's
# errors; DistributedDataParallel's reducer re-raises them from the backward pass as a
# plain RuntimeError, so the text is all there is to tell them from a bug.
_PEER_FAILURE_WORDS = ("gloo", "nccl", "connection reset", "connection closed",
                       "connection refused", "broken pipe")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def choose_device(setting: str, local_rank: int = 0) -> torch.device:
    """`auto`: this rank's CUDA device where there is one, else the CPU."""
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(setting)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return device


def _env_int(name: str, default: str | None = None) -> int:
    """A whole number >= 0 from torchrun's environment, else DistributedError naming it."""
    text = os.environ.get(name, default)
    try:
        value = int(text or "")
    except ValueError:
        value = -1
    if value < 0:
        raise DistributedError(f"environment variable {name}={text!r} is not a whole number "
                               ">= 0 (torchrun sets it; unset RANK and WORLD_SIZE to train "
                               "in one process)")
    return value


def setup(device_setting: str) -> DistContext:
    """Join the torchrun process group if launched by torchrun; else a single process.

    A junk RANK/WORLD_SIZE/LOCAL_RANK (a traceback from int()), a rank outside the
    world (it waited for a rank 0 that was someone else's) and a rendezvous that fails
    (no MASTER_ADDR, a busy MASTER_PORT) are DistributedError, one line.
    """
    if not launched_by_torchrun():
        return DistContext(device=choose_device(device_setting))
    world = _env_int("WORLD_SIZE")
    if world <= 1:
        if world == 0:
            raise DistributedError("environment variable WORLD_SIZE='0': no process to train "
                                   "in (torchrun sets it to the number of processes)")
        return DistContext(device=choose_device(device_setting))
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", "0")
    if rank >= world:
        raise DistributedError(f"environment variable RANK={rank} is outside WORLD_SIZE="
                               f"{world} (ranks are 0..{world - 1})")
    device = choose_device(device_setting, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        except (ValueError, RuntimeError) as exc:  # DistNetworkError is a RuntimeError
            raise DistributedError(f"rank {rank} of {world} cannot join the process group "
                                   f"(MASTER_ADDR={os.environ.get('MASTER_ADDR')!r}, "
                                   f"MASTER_PORT={os.environ.get('MASTER_PORT')!r}): "
                                   f"{one_line(exc)}") from exc
    return DistContext(rank, world, local_rank, device)


def peer_failure(exc: BaseException) -> bool:
    """Is `exc` a collective that failed because another process is gone?"""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in _PEER_FAILURE_WORDS)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def allreduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum over ranks (a copy; the input is left alone). Identity in one process."""
    if not ctx.distributed:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def allreduce_gradients(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """Sum every parameter's gradient over ranks in one flat all-reduce.

    A parameter without a gradient on this rank (a head whose task has no
    sample here, an LWS copy no assignment used) contributes zeros, and gets
    the summed gradient, so every rank takes the same optimiser step.
    """
    if not ctx.distributed or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def broadcast_module(module: torch.nn.Module, ctx: DistContext) -> None:
    """Rank 0's parameters and buffers everywhere (a safety net: seeds already agree)."""
    if not ctx.distributed:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Rank 0's buffers (BatchNorm running statistics, LWS probabilities) everywhere.

    What DistributedDataParallel does before each forward: each rank's running
    statistics come from its own samples, and they must not drift apart (the
    LWS assignment step and validation use them; a resumed run restores rank 0's).
    """
    if not ctx.distributed:
        return
    for tensor in module.buffers():
        dist.broadcast(tensor.data, src=0)


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if it is true on one (e.g. Ctrl-C seen by one process)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def union(items: Iterable[str], ctx: DistContext) -> list[str]:
    """The sorted union of every rank's `items` (the same list on every rank).

    Each process reads its own slice of every batch, so a video that fails on one
    rank is known only there; the run's log and summary count the whole run's.
    """
    mine = sorted(set(items))
    if not ctx.distributed:
        return mine
    gathered: list[list[str] | None] = [None] * ctx.world_size
    dist.all_gather_object(gathered, mine)
    return sorted({item for part in gathered for item in part or []})


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
