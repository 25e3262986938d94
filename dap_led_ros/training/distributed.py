"""Devices and torch.distributed (torchrun / DDP) for training; the resumable sampler."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when launched by torchrun; else a single process."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return DistInfo()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        if name == "cuda":
            name = f"cuda:{local_rank}"
        torch.cuda.set_device(torch.device(name))
    elif name != "cpu":
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


class ResumableSampler(Sampler[int]):
    """A DistributedSampler epoch from item `skip` on (to resume mid-epoch), at most `limit` items
    (so a run that stops mid-epoch ends its loader cleanly instead of abandoning its workers)."""

    def __init__(self, base: DistributedSampler, skip: int = 0, limit: int | None = None) -> None:
        self.base = base
        self.skip = skip
        self.limit = limit

    def _indices(self) -> list[int]:
        rest = list(self.base)[self.skip:]
        return rest if self.limit is None else rest[:self.limit]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        n = max(0, len(self.base) - self.skip)
        return n if self.limit is None else min(n, self.limit)


