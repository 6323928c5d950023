"""Distributed data-parallel training on torch DDP, launched by ``torchrun``.

Two ways in, one engine:

* ``mrl train --nproc N ...`` checks ``N`` and re-launches itself through
  ``python -m torch.distributed.run --standalone --nproc_per_node N -m mrl.train ...``;
* ``torchrun --standalone --nproc_per_node N -m mrl.train ...`` directly.

Every rank runs :func:`mrl.train.loop.train`; it reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set by
torchrun (:func:`init_distributed`). The contract:

* ``batch_size`` is the **global** batch: each step, the same ``(seed, epoch)`` permutation as a
  single-process run is cut into global batches and rank ``r`` takes the ``r``-th contiguous slice
  (:func:`shard_batch`, a ``DistributedSampler`` that keeps the single-process batches), so the
  data order does not depend on the world size; only batch-norm statistics (per rank) do.
* gloo on CPU, NCCL on CUDA (one GPU per rank, ``cuda:LOCAL_RANK``).
* seeding: torch's global generator gets the same seed on every rank (model initialisation and the
  dims sampled by ``n_dims_per_step`` must agree), python's and numpy's get ``seed + rank``.
* a learned weighting's parameters are averaged over ranks after backward; adaptive statistics
  (per-step losses, epoch means) are all-reduced first, so every rank holds the same weights.
* a checkpoint records the world size; resuming with another one works (same global batches).
* rank 0 alone writes checkpoints, metrics and the model; metrics are all-reduced first.

This is plain torch DDP rather than accelerate because the image loop keeps its own atomic
safetensors checkpoints, which accelerate's ``save_state`` does not provide (see :mod:`mrl.train.loop`).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mrl.errors import MRLError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job; ``world_size == 1`` means plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    owns_group: bool = False  # True when this process created the process group (and must destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise MRLError(f"environment variable {name}={value!r} is not an integer; launch with torchrun.") from exc


def init_distributed(device: torch.device) -> DistContext:
    """Join the torchrun job described by the environment (no-op without one).

    Uses NCCL when ``device`` is CUDA, gloo otherwise. Returns the :class:`DistContext`.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        owns = True
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world, owns_group=owns)


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """One GPU per rank: ``cuda`` becomes ``cuda:LOCAL_RANK``; CPU stays CPU."""
    if device.type != "cuda" or not ctx.enabled:
        return device
    if ctx.local_rank >= torch.cuda.device_count():
        raise MRLError(f"local rank {ctx.local_rank} has no GPU (only {torch.cuda.device_count()} visible); use --nproc <= the number of GPUs.")
    torch.cuda.set_device(ctx.local_rank)
    return torch.device("cuda", ctx.local_rank)


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group if this process created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``t`` over ranks (a new tensor; ``t`` is left untouched). Any shape."""
    if not ctx.enabled:
        return t
    out = t.to(_comm_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def _comm_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo works on CPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_mean(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of ``t`` over ranks (a new tensor). Any shape."""
    return all_reduce_sum(t, ctx) / ctx.world_size if ctx.enabled else t


def average_gradients(params: Sequence[nn.Parameter], ctx: DistContext) -> None:
    """Average the gradients of parameters that DDP does not manage (e.g. a learned weighting)."""
    if not ctx.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(ctx.world_size)


def broadcast_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank, e.g. before evaluation."""
    if not ctx.enabled:
        return
    for b in model.buffers():
        dist.broadcast(b, src=0)


def check_global_batch(batch_size: int, ctx: DistContext) -> None:
    if batch_size % ctx.world_size != 0:
        raise MRLError(f"batch_size={batch_size} is the global batch and must be divisible by the number of processes ({ctx.world_size}); e.g. batch_size={batch_size - batch_size % ctx.world_size or ctx.world_size}.")


def shard_batch(idx: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices.

    Shape: ``idx`` ``[B]`` (``B`` divisible by the world size) -> ``[B / world_size]``.
    """
    if not ctx.enabled:
        return idx
    per = idx.shape[0] // ctx.world_size
    return idx[ctx.rank * per : (ctx.rank + 1) * per]


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_nproc(nproc: int, *, force: bool = False, use_cuda: bool = False) -> None:
    """Refuse a process count the machine cannot serve (unless ``force``)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise MRLError(f"--nproc must be a positive integer, got {nproc!r}.")
    if use_cuda:
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise MRLError(f"--nproc {nproc} is more than the {gpus} visible GPU(s); each rank needs its own GPU. Use --nproc {gpus} or --set device=cpu.")
        return
    cores = available_cpus()
    if nproc > cores and not force:
        raise MRLError(f"--nproc {nproc} is more than the {cores} CPU core(s) available, which would only slow training down; use --nproc {cores} or pass --force.")


def torchrun_command(nproc: int, args: Sequence[str]) -> list[str]:
    """The command that runs ``python -m mrl.train ARGS`` on ``nproc`` local ranks via torchrun."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "mrl.train", *args]


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run :func:`torchrun_command` in a child process; returns its exit code."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, available_cpus() // nproc)))
    return subprocess.run(torchrun_command(nproc, args), env=env, check=False).returncode


def gather_with_grad(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0, in rank order, keeping gradients.

    Contrastive losses need the whole global batch: each rank gathers all embeddings and computes
    the same loss; backward sums each slice's gradients back to the rank that owns it
    (``torch.distributed._functional_collectives.all_gather_single_autograd``, which works on gloo
    and NCCL), and DDP's averaging then gives exactly the single-process gradient.

    Shape: ``[B / world_size, ...]`` on each rank -> ``[B, ...]``.
    """
    if not ctx.enabled:
        return t
    from torch.distributed._functional_collectives import all_gather_single_autograd

    return all_gather_single_autograd(t.contiguous(), 0, dist.group.WORLD)
