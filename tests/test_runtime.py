"""Torch's CPU threads never exceed the CPUs the process may use (`--cores 8` on 2 cores)."""

import os

import torch

from vgsalign.runtime import set_torch_threads, usable_cpus


def test_threads_are_capped_at_the_usable_cpus():
    before = torch.get_num_threads()
    try:
        assert usable_cpus() == len(os.sched_getaffinity(0))
        assert set_torch_threads(usable_cpus() + 6) == usable_cpus()
        assert set_torch_threads(1) == 1
        assert set_torch_threads(0) == 1          # 0 leaves the current setting
    finally:
        torch.set_num_threads(before)
