"""Atomic output: write to a temporary name beside the target, rename when complete.

An interrupted stage therefore never leaves a half-written file under the final name,
and a file that existed before is only replaced once its successor is whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last: some writers (h5py, matplotlib, PIL) pick the format by it
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=suffix if suffix is not None else ".part" + path.suffix,
        dir=path.parent,
    )
    os.close(fd)
    # mkstemp creates 0600; give the output the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs: Any) -> None:
    """`df.to_csv(path, index=False)`, atomically. For tables of millions of rows,
    `vgsalign.testdata.csv_writer.write_table` writes the same bytes several times faster."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kwargs)


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, Paths
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
