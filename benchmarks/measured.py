"""Running a benchmarked step as its own process: wall time, CPU time and peak RSS.

The step is started from a small Python launcher, not from the benchmark itself: a
child's ru_maxrss counts the RSS of the process that spawned it (Linux keeps the old
address space's peak across exec), and a benchmark holds the inputs it made. The step's
stdout goes to its log with its stderr, so the launcher's stdout holds only the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

LAUNCHER = """
import json, os, sys
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_DUP2, 2, 1)])  # the step's stdout to the log
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss,
                  "cpu": usage.ru_utime + usage.ru_stime}))
"""


def run_measured(command: list[str], *, log: Path, src: Path, name: str) -> dict:
    """Run `command` with `src` first on PYTHONPATH, its output in `log`; exits naming the log
    when it fails. Returns wall s, CPU s (user + system) and peak RSS (MB) of its process."""
    env = {**os.environ, "PYTHONPATH": str(src) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "w") as fh:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, *command], stdout=subprocess.PIPE, stderr=fh,
                              env=env, text=True)
        wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    usage = json.loads(lines[-1]) if lines else {"exit": proc.returncode}
    if proc.returncode or usage["exit"]:
        sys.exit(f"{name}: {' '.join(command[2:4])} failed (exit {usage['exit']}); see {log}")
    return {"wall": wall, "cpu": usage["cpu"], "rss_mb": usage["maxrss_kb"] / 1024}
