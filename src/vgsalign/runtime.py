"""How a stage runs on its machine: the CPUs it may use, torch's threads, and progress.

Changes here can change results (thread counts change float reduction order), so the
rules that train, extract or dump hash this module with their own subpackage.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")

# the step that is running (set by vgsalign.cli), named at the start of each plain progress
# line, since a parallel workflow interleaves the lines of several steps on one terminal
STEP = ""
# seconds between plain progress lines when stderr is not a terminal (a log file, a pipe)
LOG_INTERVAL_S = float(os.environ.get("VGSALIGN_PROGRESS_INTERVAL", "15"))


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
