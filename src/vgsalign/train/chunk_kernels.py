"""numba kernels of vgsalign.train.chunks, in a module of their own so that numba is
imported (about a second) only by a process that reads through them."""

import numba
import numpy as np
from numba import uint32 as u32

BLOCK = 360  # HDF5 folds its sums every 360 byte pairs
# weight of each word of a full block in sum2: sum2 += sum1 after every word
WEIGHTS = (BLOCK - np.arange(BLOCK)).astype(np.uint32)


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=True)
def fletcher32(words, weights):
    """HDF5's H5_checksum_fletcher32 of one chunk, given as its little-endian uint16 words:
    HDF5 sums big-endian byte pairs in blocks of 360 with 32-bit wrap-around, folding both
    sums to 16 bits after each block and once more at the end, as here. Within a block,
    HDF5's `sum1 += w; sum2 += sum1` per word is written as two sums, the second weighted
    by how many words follow, which the compiler vectorises."""
    n = words.shape[0]
    s1 = u32(0)
    s2 = u32(0)
    full = n // BLOCK
    for b in range(full):
        base = b * BLOCK
        b1 = u32(0)
        b2 = u32(0)
        for k in range(BLOCK):
            v = u32(words[base + k])
            w = ((v << u32(8)) & u32(0xFF00)) | (v >> u32(8))  # HDF5 reads big-endian byte pairs
            b1 += w
            b2 += weights[k] * w
        s2 = s2 + u32(BLOCK) * s1 + b2
        s1 = s1 + b1
        s1 = (s1 & u32(0xFFFF)) + (s1 >> u32(16))
        s2 = (s2 & u32(0xFFFF)) + (s2 >> u32(16))
    rest = n - full * BLOCK
    if rest:
        base = full * BLOCK
        b1 = u32(0)
        b2 = u32(0)
        for k in range(rest):
            v = u32(words[base + k])
            w = ((v << u32(8)) & u32(0xFF00)) | (v >> u32(8))
            b1 += w
            b2 += u32(rest - k) * w
        s2 = s2 + u32(rest) * s1 + b2
        s1 = s1 + b1
        s1 = (s1 & u32(0xFFFF)) + (s1 >> u32(16))
        s2 = (s2 & u32(0xFFFF)) + (s2 >> u32(16))
    s1 = (s1 & u32(0xFFFF)) + (s1 >> u32(16))
    s2 = (s2 & u32(0xFFFF)) + (s2 >> u32(16))
    return (s2 << u32(16)) | s1


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=True)
def verify_rows(words, values, magnitude, exponent, stored, checksum_ok, finite):
    """Per row r: whether its checksum equals stored[r] (or stored[r] with the bytes of
    each half swapped, which HDF5 also accepts, for files of HDF5 before 1.6.3), and
    whether its values are all finite (the largest magnitude bits below those of inf)."""
    for r in range(words.shape[0]):
        sum_ = fletcher32(words[r], WEIGHTS)
        swapped = ((sum_ & u32(0x00FF00FF)) << u32(8)) | ((sum_ >> u32(8)) & u32(0x00FF00FF))
        checksum_ok[r] = stored[r] == sum_ or stored[r] == swapped
        row = values[r]
        largest = row[0] & magnitude
        for k in range(1, row.shape[0]):
            largest = max(largest, row[k] & magnitude)
        finite[r] = largest < exponent
