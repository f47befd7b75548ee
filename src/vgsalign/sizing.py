"""Cluster job sizes: memory and runtime of a rule's jobs from the size of their inputs.

The workflow gives each rule a JobSize (workflow/rules/common.smk, JOB_SIZES); SLURM then
asks for what the job's inputs need, and more on every retry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

# memory grows by this factor on every retry: a job killed for memory comes back bigger
RETRY_MEMORY_FACTOR = 1.5


def _sizes(paths: Iterable[str]) -> list[int]:
    """Bytes of each existing file among `paths` (missing ones are left out, as in a dry run)."""
    sizes = []
    for path in paths:
        try:
            sizes.append(os.path.getsize(path))
        except OSError:
            pass
    return sizes


def input_mb(paths: Iterable[str]) -> float:
    """Total size of the existing files among `paths`, in MB (missing ones count 0, as in a dry run)."""
    return sum(_sizes(paths)) / 1e6


@dataclass(frozen=True)
class JobSize:
    """A base plus a share per MB of input, for memory (MB) and runtime (minutes).
    `mem_mb` and `runtime` have the signature Snakemake gives resource callables."""

    mem_mb_base: int
    runtime_min_base: int
    mem_mb_per_input_mb: float = 0.0
    runtime_min_per_input_mb: float = 0.0

    def mem_mb(self, wildcards, input, attempt: int = 1) -> int:
        need = self.mem_mb_base + self.mem_mb_per_input_mb * input_mb(input)
        return int(need * RETRY_MEMORY_FACTOR ** (attempt - 1))

    def runtime(self, wildcards, input, attempt: int = 1) -> int:
        return int((self.runtime_min_base + self.runtime_min_per_input_mb * input_mb(input)) * attempt)


def largest_files_mb(paths: Iterable[str], count: int) -> float:
    """Total size in MB of the `count` largest existing files among `paths`."""
    sizes = _sizes(set(paths))        # a file listed twice is held once
    return sum(sorted(sizes, reverse=True)[:count]) / 1e6


@dataclass(frozen=True)
class StreamingJobSize(JobSize):
    """A job that holds a bounded number of its input files at once (training streams its
    shards a group at a time, the next group read ahead): memory is a base plus a share of
    the `files_held` largest inputs, whatever the number of inputs; runtime still grows
    with all of them."""

    files_held: int = 4

    def mem_mb(self, wildcards, input, attempt: int = 1) -> int:
        need = self.mem_mb_base + self.mem_mb_per_input_mb * largest_files_mb(input, self.files_held)
        return int(need * RETRY_MEMORY_FACTOR ** (attempt - 1))
