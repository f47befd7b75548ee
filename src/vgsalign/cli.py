"""`vgsalign <stage> ...`: one subcommand per stage module.

Each stage module exposes `main(argv) -> int` and also runs as `python -m vgsalign.<module>`.
Bad input (InputError) becomes one line on stderr naming the file and the problem, exit 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

from .errors import InputError

# subcommand -> module under vgsalign (each has main(argv))
COMMANDS: dict[str, str] = {
    "check-config": "config",
    "demo-corpus": "demo_corpus",
    "resources": "resources",
    "dataset": "dataset",
    "frames": "frames",
    "nouns": "nouns",
    "vocab": "vocab",
    "labels": "labels",
    "similarities": "similarities",
    "pairs": "pairs",
    "testdata-summary": "testdata_summary",
    "features-audio": "features_audio",
    "features-visual": "features_visual",
    "train": "train",
    "tensors": "tensors",
    "score": "scores",
    "report": "report",
}


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


def run_main(name: str, main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a stage's main, turning InputError into one clear line and exit status 2."""
    try:
        return int(main(argv) or 0)
    except InputError as err:
        print(f"vgsalign {name}: error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: vgsalign <command> [options]\n\ncommands:")
        for name, module in COMMANDS.items():
            print(f"  {name:18s} (vgsalign.{module})")
        return 0 if argv else 1
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"vgsalign {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vgsalign: unknown command {name!r}; run `vgsalign --help`", file=sys.stderr)
        return 1
    module = importlib.import_module(f".{COMMANDS[name]}", __package__)
    return run_main(name, module.main, rest)


if __name__ == "__main__":
    raise SystemExit(main())
