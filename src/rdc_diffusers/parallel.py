"""Data parallelism for folder jobs under ``accelerate launch``: each process takes a share of the files.

Launch with ``accelerate launch --multi_gpu --num_processes N -m rdc_diffusers.cli eval ...`` (torchrun underneath;
on a machine without CUDA the processes form a CPU ``gloo`` group), or ``torchrun --nproc_per_node N``.
Without a launcher (one process) these helpers run everything locally. With N processes, the sorted
file list is cut into N contiguous shares (``PartialState.split_between_processes``), each process works on its
share, and the per-file results are gathered (``accelerate.utils.gather_object``) so every process holds all of
them, in file order; the caller writes outputs on the main process only. The processes must see the same
filesystem (one machine, or a shared one across nodes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["finish", "map_shards", "state"]


def state():
    """accelerate's :class:`~accelerate.PartialState`: the processes of ``accelerate launch``, or just this one."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # PartialState only forms a CPU process group (gloo) when told cpu=True; Accelerator reads this flag itself.
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def map_shards(work: Callable[[list[T]], list[R]], items: Sequence[T]) -> list[R]:
    """Run ``work`` on this process's share of ``items`` and return everyone's results, concatenated in order."""
    from accelerate.utils import gather_object

    current = state()
    with current.split_between_processes(list(items)) as share:
        local = list(work(list(share)))
    return gather_object(local) if current.num_processes > 1 else local


def finish() -> None:
    """Tear the process group down before the interpreter exits. Left to exit-time destructors, gloo's threads
    could still be joinable and the worker died with "terminate called without an active exception" (SIGABRT):
    the flaky two-process test, once in a few heavily loaded runs. Nothing to do in one process."""
    import sys

    if "torch.distributed" not in sys.modules:  # never imported: no group (and `rdc info` stays light)
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # local: the others may still be writing, or have left
        dist.destroy_process_group()
