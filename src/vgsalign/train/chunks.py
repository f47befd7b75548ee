"""Reading a shard's rows straight from its chunks, checksums verified here.

Through HDF5, a checksummed read of a log-mel shard costs about twice what the data
needs: HDF5 reads each chunk into its own buffer, verifies the chunk's fletcher32 sum
with a loop over byte pairs, then copies the chunk into the caller's array, all under
h5py's global lock. For the layout the shard writer uses (one row per chunk, fletcher32
as the only filter, little-endian floats) this module instead asks HDF5 where each chunk
lies (`chunk_iter`, the public direct-chunk API), reads the chunks with `os.preadv`
straight into the rows of the caller's array and their 4-byte checksums beside them, and
verifies every checksum with HDF5's own fletcher32 definition compiled by numba, together
with the NaN/inf check, while the rows are still in cache. Neither step holds the GIL.

Anything else falls back to HDF5's own read (`read_rows` returns False): another layout
or filter (compression), a chunk of unexpected size or filter mask, a short read (a
truncated file), and any row whose checksum does not match, so that damage is always
judged and reported by HDF5 itself, in the message the other readers give. numba comes
with librosa; without it, every read goes through HDF5.
"""

from __future__ import annotations

import os
from typing import Callable

import h5py
import numpy as np

# A process reads its first bytes through HDF5 and switches to direct reads once it has
# read this many: importing numba and loading the kernel costs about 2 s once per process,
# which the direct reads save back (about 27 ms per 82 MB shard) over a few GiB.
SWITCH_AFTER_BYTES = 4 << 30
IOV_MAX = 1024  # iovecs per preadv call (Linux); two per row
# per stored type: the unsigned type of its bits, the bits of its magnitude, those of inf
_FLOAT_BITS = {np.dtype("<f4"): (np.uint32, 0x7FFFFFFF, 0x7F800000), np.dtype("<f2"): (np.uint16, 0x7FFF, 0x7C00)}
_verify_rows: Callable | bool | None = None  # the kernel once imported; False without numba
_hdf5_bytes = 0  # read through HDF5 so far by this process, while direct reads were automatic


def direct_now(nbytes: int) -> bool:
    """Automatic choice for a read of `nbytes`: direct once the process has read
    SWITCH_AFTER_BYTES through HDF5 (counted here) and the kernel is available."""
    global _hdf5_bytes
    if _hdf5_bytes >= SWITCH_AFTER_BYTES:
        return _compile() is not None
    _hdf5_bytes += nbytes
    return False


def _compile() -> Callable | None:
    """The numba kernel (vgsalign.train.chunk_kernels), compiled or loaded from numba's
    cache on first use; None without numba."""
    global _verify_rows
    if _verify_rows is None:
        try:
            from .chunk_kernels import verify_rows
        except ImportError:  # pragma: no cover - librosa depends on numba
            verify_rows = False
        _verify_rows = verify_rows
    return _verify_rows or None


def eligible(dataset: h5py.Dataset, out: np.ndarray) -> bool:
    """The writer's layout: one row per chunk, fletcher32 its only filter, stored as `out` is."""
    if dataset.ndim < 2 or dataset.chunks != (1, *dataset.shape[1:]) or dataset.dtype != out.dtype:
        return False
    if out.dtype not in _FLOAT_BITS or not out.flags.c_contiguous:
        return False
    plist = dataset.id.get_create_plist()
    return plist.get_nfilters() == 1 and plist.get_filter(0)[0] == h5py.h5z.FILTER_FLETCHER32


def chunk_places(dataset: h5py.Dataset, first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """File offset, stored size and filter mask of the chunks of rows [first, last)."""
    n = last - first
    offset, size, mask = np.full(n, -1, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)

    def record(info) -> None:
        row = info.chunk_offset[0] - first
        if 0 <= row < n:
            offset[row], size[row], mask[row] = info.byte_offset, info.size, info.filter_mask

    try:
        dataset.id.chunk_iter(record)
    except (AttributeError, NotImplementedError):  # HDF5 older than 1.14: one lookup per chunk
        for row in range(n):
            info = dataset.id.get_chunk_info_by_coord((first + row,) + (0,) * (dataset.ndim - 1))
            if info.byte_offset is None:
                return None
            offset[row], size[row], mask[row] = info.byte_offset, info.size, info.filter_mask
    return offset, size, mask


def read_rows(path: str, dataset: h5py.Dataset, first: int, out: np.ndarray) -> tuple[bool, np.ndarray]:
    """Rows [first, first + len(out)) of `dataset` into `out`, each chunk's checksum verified.

    Returns (True, finite per row) when every row was read and verified here; (False, _)
    when the caller must read through HDF5 instead (see the module doc)."""
    n = len(out)
    row_bytes = out[0].nbytes if n else 0
    if n == 0 or not eligible(dataset, out):
        return False, np.zeros(0, bool)
    verify_rows = _compile()
    if verify_rows is None:
        return False, np.zeros(0, bool)
    places = chunk_places(dataset, first, first + n)
    if places is None:
        return False, np.zeros(0, bool)
    offset, size, mask = places
    if (offset < 0).any() or (size != row_bytes + 4).any() or mask.any():
        return False, np.zeros(0, bool)
    stored = np.empty(n, dtype="<u4")
    if not _scatter_read(path, offset, row_bytes, out, stored):
        return False, np.zeros(0, bool)
    checksum_ok, finite = np.empty(n, bool), np.empty(n, bool)
    value_type, magnitude, exponent = _FLOAT_BITS[out.dtype]
    verify_rows(out.reshape(n, -1).view(np.uint16), out.reshape(n, -1).view(value_type), value_type(magnitude),
                value_type(exponent), stored, checksum_ok, finite)
    if not checksum_ok.all():
        return False, np.zeros(0, bool)
    return True, finite


def _scatter_read(path: str, offset: np.ndarray, row_bytes: int, out: np.ndarray, stored: np.ndarray) -> bool:
    """preadv each run of chunks that lie back to back in the file: a chunk's data into
    its row of `out`, its 4 checksum bytes into `stored`. False on a short read."""
    rows = memoryview(out.reshape(len(out), -1).view(np.uint8).reshape(-1))
    sums = memoryview(stored.view(np.uint8))
    breaks = np.flatnonzero(np.diff(offset) != row_bytes + 4) + 1
    starts = np.r_[0, breaks].tolist()
    ends = np.r_[breaks, len(offset)].tolist()
    fd = os.open(path, os.O_RDONLY)
    try:
        for lo, hi in zip(starts, ends):
            for a in range(lo, hi, IOV_MAX // 2):
                b = min(hi, a + IOV_MAX // 2)
                buffers = []
                for r in range(a, b):
                    buffers += [rows[r * row_bytes:(r + 1) * row_bytes], sums[4 * r:4 * r + 4]]
                if os.preadv(fd, buffers, int(offset[a])) != (b - a) * (row_bytes + 4):
                    return False
    finally:
        os.close(fd)
    return True
