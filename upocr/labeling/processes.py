"""Several processes labelling one folder (``torchrun --nproc_per_node N -m upocr label``):
joining a gloo group, barriers, and the summary of the whole run."""

from __future__ import annotations

import os
from datetime import timedelta

from .config import LabelSummary



class ProcessGroup:
    """The processes of a ``torchrun`` launch (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joined
    over gloo so that they can wait for each other; a single process when ``WORLD_SIZE`` is unset
    or 1 (every call is then a no-op)."""

    #: How long a process waits at a barrier for the slowest one.
    TIMEOUT = timedelta(days=7)

    def __init__(self, environ: dict | None = None):
        env = os.environ if environ is None else environ
        self.world_size = int(env.get("WORLD_SIZE", "1") or 1)
        self.rank = int(env.get("RANK", "0") or 0)
        self.local_rank = int(env.get("LOCAL_RANK", str(self.rank)) or 0)
        if not 0 <= self.rank < max(1, self.world_size):
            raise ValueError(f"RANK={self.rank} is not in WORLD_SIZE={self.world_size}")
        self._joined = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def join(self) -> None:
        if not self.distributed or self._joined:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=self.TIMEOUT)
        self._joined = True

    def barrier(self) -> None:
        if self._joined:
            import torch.distributed as dist

            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every process (each passes its own)."""
        if not self._joined:
            return bool(flag)
        import torch
        import torch.distributed as dist

        value = torch.tensor([1 if flag else 0], dtype=torch.int64)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def gather_summary(self, summary: LabelSummary) -> LabelSummary:
        """The sum of every process's counts (the longest time) on every process."""
        if not self._joined:
            return summary
        import torch
        import torch.distributed as dist

        counts = torch.tensor([float(getattr(summary, n)) for n in LabelSummary.COUNTS], dtype=torch.float64)
        dist.all_reduce(counts)
        seconds = torch.tensor([summary.seconds], dtype=torch.float64)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        total = LabelSummary(task=summary.task, seconds=float(seconds.item()))
        for name, value in zip(LabelSummary.COUNTS, counts.tolist()):
            setattr(total, name, int(value))
        return total

    def leave(self) -> None:
        if self._joined:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._joined = False
