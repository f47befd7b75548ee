"""Which device a step computes on, and bf16 autocast on it.

A GPU step uses the GPU it was given:

- the scheduler's choice first: CUDA numbers the devices in CUDA_VISIBLE_DEVICES (set by
  SLURM, or by hand) from 0, so with one visible device there is nothing to choose;
- with several visible devices (a local `snakemake --resources gpu=N` run on a multi-GPU
  machine, where every job sees every GPU) each process claims one: it takes an exclusive
  `flock` on a lock file per device (named by the device's CUDA_VISIBLE_DEVICES entry, so
  jobs with different visible lists never collide) and holds it until it exits. The
  kernel drops the lock when a process dies, so a crashed job never leaves a device
  claimed. When every device is claimed (more jobs than `gpu=N` allows) the process
  shares the one with the most free memory and says so.

Lock files live in $VGSALIGN_GPU_LOCK_DIR, else <tmp>/vgsalign-gpu-locks.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, TextIO

import torch

from ..errors import InputError

DEVICE_NAMES = ("auto", "cpu", "cuda")
LOCK_DIR_ENV = "VGSALIGN_GPU_LOCK_DIR"

# the claim of this process: open lock files stay open (and locked) until it exits
_CLAIMS: dict[int, TextIO] = {}


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "vgsalign-gpu-locks")


def visible_names(count: int, visible: str | None) -> list[str]:
    """A name per visible device: its CUDA_VISIBLE_DEVICES entry (an index or a UUID), else its index."""
    entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
    if len(entries) >= count:
        return entries[:count]
    return [str(i) for i in range(count)]


def try_claim(name: str, directory: Path) -> TextIO | None:
    """An open, exclusively locked lock file for device `name`, or None if another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    handle = open(directory / f"gpu-{safe}.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def claim_device(count: int, *, visible: str | None, directory: Path,
                 free_memory: Callable[[int], int], log: Callable[[str], None]) -> int:
    """Index (0-based, as CUDA numbers the visible devices) of the device this process uses."""
    if count == 1:
        return 0
    if _CLAIMS:
        return next(iter(_CLAIMS))
    for index, name in enumerate(visible_names(count, visible)):
        handle = try_claim(name, directory)
        if handle is not None:
            _CLAIMS[index] = handle
            return index
    index = max(range(count), key=free_memory)
    log(f"all {count} visible GPUs are claimed by other vgsalign jobs; sharing cuda:{index} "
        "(the one with the most free memory); limit the jobs with --resources gpu=N")
    return index


def release_claims() -> None:
    """Give up this process's device claim (tests; a process's claim ends when it exits anyway)."""
    for handle in _CLAIMS.values():
        handle.close()
    _CLAIMS.clear()


def _free_memory(index: int) -> int:
    return torch.cuda.mem_get_info(index)[0]


def pick_device(name: str) -> torch.device:
    """The device for `train.device` (auto | cpu | cuda): the GPU this job was given, or the CPU."""
    if name not in DEVICE_NAMES:
        raise InputError("train.device", f"{name!r} is not one of {list(DEVICE_NAMES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device", "cuda requested but no CUDA device is available")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    index = claim_device(torch.cuda.device_count(), visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
                         directory=lock_dir(), free_memory=_free_memory,
                         log=lambda line: print(f"vgsalign: {line}", file=sys.stderr))
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed), full precision on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
