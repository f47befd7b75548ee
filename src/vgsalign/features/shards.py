"""Reading feature shards: checks, random access and streaming (read-only).

Shards are written by vgsalign.features.shard_writer (format in docs/formats.md). Every
read goes through `open_shard`, which turns what HDF5 reports about a damaged file (a
chunk whose fletcher32 checksum does not match, a truncated file, a file that is not
HDF5) into one InputError line naming the file, and refuses shards without checksums.
On NFS or other file systems without working POSIX locks set `HDF5_USE_FILE_LOCKING=FALSE`.

- `check_compatible(paths, expected)`: every extraction attribute must agree between
  shards and with what the caller expects, else InputError naming the files;
- `ShardReader`: random access by row or id across shards;
- `iter_shards`: streaming, one shard in memory at a time;
- `read_rejects`: the items a shard left out (`features.on_error: skip`).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
import pandas as pd

from ..errors import InputError
from .shard_writer import INTEGRITY, REJECT_COLUMNS

# attributes that describe one shard rather than the extraction (never compared)
PER_SHARD_ATTRS = {"split", "shard_index", "n_shards", "n_items", "n_rejected", "n_silent", "first_image_id",
                   "last_image_id", "vgsalign_version", "device", "amp", "logmel_impl", "compression", "integrity"}
REBUILD = "delete it and run snakemake again to rebuild it"


def open_checked(path: str | os.PathLike) -> h5py.File:
    """A shard opened read-only after checking that it opens and records checksums."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "feature shard not found")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise InputError(path, f"not a readable HDF5 shard, truncated or damaged ({_first_line(err)}); {REBUILD}") from None
    if h5.attrs.get("integrity") != INTEGRITY:
        h5.close()
        raise InputError(path, f"shard records no checksums (written by an older vgsalign); {REBUILD}")
    return h5


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Turn HDF5's read errors in the block (a chunk failing its fletcher32 checksum, a
    chunk beyond a truncated end) into one InputError line naming the shard."""
    try:
        yield
    except OSError as err:
        raise InputError(path, f"shard data damaged: a chunk fails its checksum or cannot be read "
                               f"({_first_line(err)}); {REBUILD}") from None


@contextlib.contextmanager
def open_shard(path: str | os.PathLike) -> Iterator[h5py.File]:
    """`with open_shard(path) as h5:` opens a shard read-only; damage becomes one line naming it."""
    h5 = open_checked(path)
    try:
        with reading(path):
            yield h5
    finally:
        h5.close()


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    with open_shard(path) as h5:
        return {k: _plain(v) for k, v in h5.attrs.items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def check_compatible(paths: Sequence[str | os.PathLike], expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check that shards come from one extraction; return their shared attributes.

    Every extraction attribute (all but the per-shard counts) must be present and equal in
    all shards, and equal to `expected[key]` for each key given. Raises InputError naming
    the disagreeing files.
    """
    if not paths:
        raise InputError(None, "no feature shards given")
    reference_path = Path(paths[0])
    reference = {k: v for k, v in read_attrs(reference_path).items() if k not in PER_SHARD_ATTRS}
    for path in paths[1:]:
        attrs = {k: v for k, v in read_attrs(path).items() if k not in PER_SHARD_ATTRS}
        differing = sorted(k for k in set(reference) | set(attrs) if not _same(reference.get(k), attrs.get(k)))
        if differing:
            key = differing[0]
            raise InputError(path, f"shard extracted differently from {reference_path}: {key} = {attrs.get(key)!r} "
                                   f"vs {reference.get(key)!r}" + (f" (and {differing[1:]})" if len(differing) > 1 else ""))
    for key, value in (expected or {}).items():
        if key not in reference:
            raise InputError(reference_path, f"shard does not record {key!r}")
        if not _same(reference[key], value):
            raise InputError(reference_path, f"shard has {key} = {reference[key]!r} but {value!r} is expected "
                                             f"(features from other settings; rerun the features target)")
    return reference


def _decode(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object) if values.dtype.kind in ("O", "S") else values


class ShardReader:
    """Random access to the items of several shards of one modality (read-only).

    `key` is the id dataset (`utt_id` for audio, `image_id` for visual). Ids of all shards
    are read at open; `reader[i]` or `reader.get(id)` reads one item's datasets.
    `in_memory=True` loads the shards' arrays whole (fastest when they fit in memory).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], key: str, expected: dict[str, Any] | None = None,
                 in_memory: bool = False):
        self.paths = [Path(p) for p in paths]
        self.attrs = check_compatible(self.paths, expected)
        self.key = key
        self._files = [open_checked(p) for p in self.paths]
        ids, shard_of, row_of = [], [], []
        for s, h5 in enumerate(self._files):
            if key not in h5:
                raise InputError(self.paths[s], f"shard lacks dataset {key!r} (see docs/formats.md, Feature shards)")
            with reading(self.paths[s]):
                shard_ids = _decode(h5[key][...])
            ids.append(shard_ids)
            shard_of.append(np.full(len(shard_ids), s, dtype=np.int32))
            row_of.append(np.arange(len(shard_ids), dtype=np.int64))
        self.ids = np.concatenate(ids) if ids else np.array([])
        self._shard_of = np.concatenate(shard_of)
        self._row_of = np.concatenate(row_of)
        self._position = {v: i for i, v in enumerate(self.ids.tolist())}
        if len(self._position) != len(self.ids):
            raise InputError(self.paths[0], f"an id appears twice across the shards ({key})")
        self.fields = [name for name, obj in self._files[0].items() if isinstance(obj, h5py.Dataset)] if self._files else []
        self._memory = None
        if in_memory:
            self._memory = []
            for path, h5 in zip(self.paths, self._files):
                with reading(path):
                    self._memory.append({name: _decode(h5[name][...]) for name in self.fields})

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        shard, row = int(self._shard_of[index]), int(self._row_of[index])
        if self._memory is not None:
            return {name: values[row] for name, values in self._memory[shard].items()}
        h5 = self._files[shard]
        with reading(self.paths[shard]):
            return {name: _decode(h5[name][row:row + 1])[0] for name in self.fields}

    def index_of(self, item_id: Any) -> int:
        return self._position[item_id]

    def get(self, item_id: Any) -> dict[str, Any]:
        return self[self.index_of(item_id)]

    def close(self) -> None:
        for h5 in self._files:
            h5.close()
        self._files = []

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def iter_shards(paths: Sequence[str | os.PathLike], fields: Sequence[str] | None = None,
                expected: dict[str, Any] | None = None, shuffle_seed: int | None = None) -> Iterator[dict[str, Any]]:
    """Stream shards one at a time: yields {dataset: whole array} per shard (plus `path`).

    With `shuffle_seed` the shard order is permuted (items within a shard stay in order).
    """
    paths = [Path(p) for p in paths]
    check_compatible(paths, expected)
    order = np.arange(len(paths))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(paths))
    for index in order:
        with open_shard(paths[index]) as h5:
            names = fields or [n for n, obj in h5.items() if isinstance(obj, h5py.Dataset)]
            out = {name: _decode(h5[name][...]) for name in names}
        out["path"] = str(paths[index])
        yield out


def read_rejects(path: str | os.PathLike) -> pd.DataFrame:
    with open_shard(path) as h5:
        return pd.DataFrame({c: _decode(h5["rejects"][c][...]) for c in REJECT_COLUMNS}, columns=REJECT_COLUMNS)
