"""Writing a feature shard: datasets with a checksum per chunk, attributes, rejects.

Every dataset is chunked with h5py's fletcher32 filter, so each chunk carries a checksum
that HDF5 verifies whenever it is read (vgsalign.features.shards turns a mismatch into one
line naming the file). Arrays of items (log-mels, feature grids) have one item per chunk,
so random access reads exactly one item; `features.compression` (none, gzip or lzf)
applies to every chunk. Strings are stored as fixed-length UTF-8 bytes because
variable-length strings live in HDF5's global heap, which no filter checksums.

A shard is written under a temporary name (`.<stem>.*.part.h5`, vgsalign.atomic) and
renamed when complete; `remove_leftovers` deletes what a killed run left behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from .. import __version__
from ..atomic import atomic_path

REJECT_COLUMNS = ["id", "path", "problem"]
COMPRESSIONS = {"none": None, "gzip": "gzip", "lzf": "lzf"}
INTEGRITY = "fletcher32"  # recorded in every shard's `integrity` attribute; readers require it
ROW_CHUNK = 4096  # rows per chunk of one-dimensional datasets (ids, counts)


def _attr_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def _as_stored(values: np.ndarray) -> np.ndarray:
    """Strings as fixed-length UTF-8 bytes (checksummed like any chunk); other arrays unchanged."""
    if values.dtype.kind not in ("U", "O", "S"):
        return values
    encoded = [v if isinstance(v, bytes) else str(v).encode() for v in values.tolist()]
    width = max([len(v) for v in encoded] + [1])
    return np.array(encoded, dtype=f"S{width}")


def _create(group: h5py.Group, name: str, values: np.ndarray, compression: str | None) -> None:
    values = _as_stored(np.asarray(values))
    if values.ndim >= 2:
        chunks = (1, *values.shape[1:])  # one item per chunk
    else:
        chunks = (min(ROW_CHUNK, len(values)),)
    if len(values) == 0 or 0 in values.shape[1:]:
        chunks = None  # HDF5 cannot chunk an empty extent; nothing to checksum either
    group.create_dataset(name, data=values, chunks=chunks, fletcher32=chunks is not None,
                         compression=compression if chunks is not None else None)


def write_shard(path: str | os.PathLike, datasets: dict[str, np.ndarray], attrs: dict[str, Any],
                rejects: Sequence[dict], compression: str = "none") -> None:
    """Write one shard atomically: datasets, attributes, and the `rejects` group."""
    codec = COMPRESSIONS[compression]
    with atomic_path(path, suffix=".part.h5") as tmp:
        with h5py.File(tmp, "w") as h5:
            for name, values in datasets.items():
                _create(h5, name, values, codec)
            group = h5.create_group("rejects")
            for column in REJECT_COLUMNS:
                _create(group, column, np.array([str(r[column]) for r in rejects], dtype=object), None)
            for key, value in attrs.items():
                h5.attrs[key] = _attr_value(value)
            h5.attrs["n_rejected"] = len(rejects)
            h5.attrs["integrity"] = INTEGRITY
            h5.attrs["compression"] = compression
            h5.attrs["vgsalign_version"] = __version__


def kept_rows(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The rows of `values` where `keep`, moved to the front in place and returned as a view:
    a shard's big array is never copied whole (values[keep] would double its memory)."""
    rows = np.flatnonzero(keep)
    for position, row in enumerate(rows):
        if position != row:
            values[position] = values[row]
    return values[: len(rows)]


def remove_leftovers(out: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed run of this output left beside it; return them."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    leftovers = sorted(out.parent.glob(f".{out.stem}.*.part*"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers
