"""How a stage runs on its machine: the CPUs it may use, torch's threads, and progress.

Changes here can change results (thread counts change float reduction order), so the
rules that train, extract or dump hash this module with their own subpackage.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")

# the step that is running (set by vgsalign.cli), named at the start of each plain progress
# line, since a parallel workflow interleaves the lines of several steps on one terminal
STEP = ""
# seconds between plain progress lines when stderr is not a terminal (a log file, a pipe)
LOG_INTERVAL_S = float(os.environ.get("VGSALIGN_PROGRESS_INTERVAL", "15"))


_malloc_trim = None  # glibc's malloc_trim once looked up; False where there is none


def release_freed_memory() -> None:
    """Give the free pages of the C heap back to the system (glibc `malloc_trim(0)`; a no-op
    elsewhere).

    A training step frees its batch arrays (a few MB each) at once; glibc then raises its
    mmap threshold above their size and serves the next ones from the heap, whose freed
    pages it keeps: the peak RSS of one-epoch training grew with the number of steps (1,129
    MB after 78 steps, 1,223 MB after 312; 1,130 MB with a fixed threshold, 1,155 MB with this
    call). Called once per group of shards (about 8 ms)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a block that builds many objects and frees
    none, such as parsing a large JSON file: its collections, triggered by every few hundred
    new containers and passing over all the older ones now and then, cost as much as the
    parse itself (a 100 MB instances file: 4.4 s with them, 2.3 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a SLURM allocation, taskset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # no affinity API (macOS)
        return os.cpu_count() or 1


def set_torch_threads(requested: int) -> int:
    """torch's CPU threads: the request capped at the usable CPUs, since `--cores 8` on a
    2-core machine would ask for 8 and oversubscribed threads slow training by a third;
    0 keeps torch's default. Returns the number set."""
    import torch

    if requested > 0:
        torch.set_num_threads(max(1, min(requested, usable_cpus())))
    return torch.get_num_threads()


def _read_number(path: Path) -> int | None:
    """An integer from a cgroup file; None for "max", a missing file or junk."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cgroup_memory_left(*, proc_cgroup: Path = Path("/proc/self/cgroup"),
                       root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process's cgroup may still allocate (limit - usage), the tightest over its
    cgroup and the ancestors visible here; None when no limit is set. A SLURM job or a
    container is held to its cgroup limit, whatever the node has free. Reads cgroup v2
    (memory.max, memory.current) and v1 (memory.limit_in_bytes, memory.usage_in_bytes)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    candidates = []  # (folder, limit file, usage file)
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = Path(path.lstrip("/"))
        if hierarchy == "0" and controllers == "":
            base, files = root, ("memory.max", "memory.current")
            if (root / "unified").is_dir() and not (root / "memory.max").exists():
                base = root / "unified"
        elif "memory" in controllers.split(","):
            base, files = root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        folders = [base / relative, *(base / parent for parent in relative.parents)]
        candidates += [(folder, *files) for folder in folders]
    left = None
    for folder, limit_file, usage_file in candidates:
        limit = _read_number(folder / limit_file)
        if limit is None or limit >= 2**60:       # "max", or v1's "no limit" (about 2**63)
            continue
        usage = _read_number(folder / usage_file) or 0
        left = max(0, limit - usage) if left is None else min(left, max(0, limit - usage))
    return left


def memory_available() -> int | None:
    """Bytes this process can still allocate: the node's available memory (MemAvailable),
    capped by the cgroup limit when there is one; None when neither can be read."""
    node = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                node = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    cgroup = cgroup_memory_left()
    known = [n for n in (node, cgroup) if n is not None]
    return min(known) if known else None


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class LogLines:
    """Plain progress lines for a log file: `desc: n/total (pct) elapsed 0:42, eta 1:10`,
    at most one per LOG_INTERVAL_S and one at the end; no carriage returns."""

    def __init__(self, *, total: int | None, desc: str, unit: str, stream=None, interval_s: float = LOG_INTERVAL_S):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.n = 0
        self.start = self.last = time.monotonic()
        self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.start
        done = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        text = f"{STEP + ': ' if STEP else ''}{self.desc}: {done}"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        text += f", elapsed {_clock(elapsed)}"
        if self.total and 0 < self.n < self.total:
            text += f", eta {_clock(elapsed / self.n * (self.total - self.n))}"
        print(text, file=self.stream, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval_s:
            self.last = now
            self._line()

    def close(self) -> None:
        self._line()

    def __enter__(self) -> "LogLines":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(*, total: int | None, desc: str, unit: str = "it", stream=None):
    """A tqdm bar on a terminal, plain periodic lines (LogLines) in a log file or pipe.
    Use as a context manager with `.update(n)`."""
    stream = stream or sys.stderr
    if stream.isatty():
        return tqdm(total=total, desc=desc, unit=unit, mininterval=1, file=stream)
    return LogLines(total=total, desc=desc, unit=unit, stream=stream)


def progress(items: Iterable[T], *, total: int | None = None, desc: str, unit: str = "it",
             stream=None) -> Iterator[T]:
    """Iterate over `items` with progress_bar; `total` defaults to len(items) where it has one."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total=total, desc=desc, unit=unit, stream=stream) as bar:
        for item in items:
            yield item
            bar.update(1)
