"""Read alignment tensors: the pipeline's tensors.h5, or a model's own .npy / .mat files.

- `.h5` (docs/formats.md): dataset `avt` (N, T, H, W), `utt_id` (N,), optional
  `image_id`, `pad_frames`, `n_frames`, and the time mapping in attributes
  (`input_frames_per_frame`, `hop_s`, `max_frames`, ...). Read a few rows at a time.
- `.npy`: (N, T, H, W), or (N, T, H*W) with a square grid; memory-mapped. Utterance ids
  one per line in a sidecar `<name>.utt_ids.txt` or the file given as `utt_ids`.
- `.mat`: variable `out_layer` (N, T, H*W) with a square grid, as the original's
  scripts saved it, plus the id list as for `.npy`. MATLAB v7.3 files are HDF5 and are
  read with h5py (MATLAB stores them transposed, (H*W, T, N); that is undone).

A reader is opened in each worker process (HDF5 handles do not survive a fork). A file
that cannot be read (truncated, corrupted, a compressed chunk that does not inflate, a
fletcher32 checksum that does not match) stops with one line naming it and the rows.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import InputError


@dataclass
class TensorInfo:
    path: str
    format: str                          # h5 | npy | mat
    utt_ids: list[str]
    shape: tuple[int, int, int, int]     # (N, T, H, W)
    attrs: dict[str, Any] = field(default_factory=dict)
    pad_frames: np.ndarray | None = None
    image_ids: np.ndarray | None = None


def _read_ids(path: Path, n_rows: int, where: Path) -> list[str]:
    if not path.exists():
        raise InputError(where, f"needs an utterance-id list (one id per line): {path} not found; give --utt-ids")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(ids) != n_rows:
        raise InputError(path, f"{len(ids)} utterance ids for {n_rows} tensors in {where}")
    return ids


def _square_grid(n_cells: int, where: Path) -> int:
    side = math.isqrt(n_cells)
    if side * side != n_cells:
        raise InputError(where, f"{n_cells} pixel cells per frame is not a square grid; save (N, T, H, W) instead")
    return side


def _check_unique(ids: list[str], where: Path) -> None:
    if len(set(ids)) != len(ids):
        seen, dup = set(), []
        for i in ids:
            if i in seen:
                dup.append(i)
            seen.add(i)
        raise InputError(where, f"{len(dup)} duplicate utterance id(s), first: {dup[:5]}")


def _decode(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _mat_is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n" or h5py.is_hdf5(path)


def inspect_tensors(path: str | os.PathLike, utt_ids_path: str | os.PathLike | None = None) -> TensorInfo:
    """Shape, ids and time mapping of a tensor file, without reading the tensors."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "tensor file not found")
    suffix = path.suffix.lower()
    sidecar = Path(utt_ids_path) if utt_ids_path else path.with_name(path.stem + ".utt_ids.txt")
    if suffix in (".h5", ".hdf5"):
        try:
            with h5py.File(path, "r") as h5:
                if "avt" not in h5:
                    raise InputError(path, "no dataset 'avt' (N, T, H, W)")
                shape = h5["avt"].shape
                if len(shape) != 4:
                    raise InputError(path, f"'avt' has rank {len(shape)} {shape}; expected (N, T, H, W)")
                if utt_ids_path:
                    ids = _read_ids(sidecar, shape[0], path)
                elif "utt_id" in h5:
                    ids = _decode(h5["utt_id"][()])
                else:
                    raise InputError(path, "no dataset 'utt_id'; give --utt-ids")
                attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in h5.attrs.items()}
                attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
                if attrs.get("integrity") == "fletcher32" and not h5["avt"].fletcher32:
                    # the pipeline's dump checksums every chunk; without them damage would go unseen
                    raise InputError(path, "records integrity fletcher32, but 'avt' carries no checksums")
                pad = h5["pad_frames"][()].astype(np.int64) if "pad_frames" in h5 else None
                images = h5["image_id"][()].astype(np.int64) if "image_id" in h5 else None
        except OSError as err:
            raise InputError(path, f"cannot read as HDF5 ({err})") from None
        if len(ids) != shape[0]:
            raise InputError(path, f"{len(ids)} utt_id entries for {shape[0]} tensors")
        info = TensorInfo(str(path), "h5", ids, tuple(int(s) for s in shape), attrs, pad, images)
    elif suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except ValueError as err:
            raise InputError(path, f"cannot read as .npy ({err})") from None
        if array.ndim == 3:
            side = _square_grid(array.shape[2], path)
            shape = (array.shape[0], array.shape[1], side, side)
        elif array.ndim == 4:
            shape = array.shape
        else:
            raise InputError(path, f"array has rank {array.ndim} {array.shape}; expected (N, T, H, W)")
        info = TensorInfo(str(path), "npy", _read_ids(sidecar, shape[0], path), tuple(int(s) for s in shape))
    elif suffix == ".mat":
        array = load_mat(path)
        side = _square_grid(array.shape[2], path)
        shape = (array.shape[0], array.shape[1], side, side)
        info = TensorInfo(str(path), "mat", _read_ids(sidecar, shape[0], path), shape)
    else:
        raise InputError(path, "unknown tensor format; expected .h5, .npy or .mat")
    if min(info.shape) < 1:
        raise InputError(path, f"empty tensor array {info.shape}")
    _check_unique(info.utt_ids, path)
    return info


def load_mat(path: Path) -> np.ndarray:
    """`out_layer` of a .mat file as (N, T, H*W)."""
    if _mat_is_hdf5(path):
        try:
            with h5py.File(path, "r") as h5:
                if "out_layer" not in h5:
                    raise InputError(path, "no variable 'out_layer' (N, T, H*W)")
                array = h5["out_layer"][()].transpose()        # MATLAB column-major
        except OSError as err:
            raise InputError(path, f"cannot read as MATLAB v7.3 / HDF5 ({err})") from None
    else:
        from scipy.io import loadmat

        try:
            contents = loadmat(path, variable_names=["out_layer"])
        except (ValueError, NotImplementedError) as err:
            raise InputError(path, f"cannot read as .mat ({err})") from None
        if "out_layer" not in contents:
            raise InputError(path, "no variable 'out_layer' (N, T, H*W)")
        array = contents["out_layer"]
    if array.ndim != 3:
        raise InputError(path, f"'out_layer' has rank {array.ndim} {array.shape}; expected (N, T, H*W)")
    return array


class TensorReader:
    """Reads rows of a tensor file as float64 (n, T, H, W); open one per process.

    `preloaded`: the whole array already in memory (a .mat file, read once before the
    worker processes start, which then share it)."""

    def __init__(self, info: TensorInfo, preloaded: np.ndarray | None = None):
        self.info = info
        self._h5 = None
        self._array = preloaded

    def _open(self) -> None:
        if self.info.format == "h5":
            try:
                self._h5 = h5py.File(self.info.path, "r")
                self._array = self._h5["avt"]
            except (OSError, KeyError) as err:
                raise InputError(self.info.path, f"cannot open the tensors ({err})") from None
        elif self.info.format == "npy":
            self._array = np.load(self.info.path, mmap_mode="r")
        else:
            self._array = load_mat(Path(self.info.path))

    def _block(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):        # contiguous: one slice
            return self._array[int(rows[0]): int(rows[-1]) + 1]
        if len(rows) and rows[-1] - rows[0] + 1 <= 4 * len(rows):    # nearly contiguous: slice, then pick
            return self._array[int(rows[0]): int(rows[-1]) + 1][rows - rows[0]]
        if len(rows):
            return np.stack([self._array[int(r)] for r in rows])
        return np.zeros((0,) + self.info.shape[1:])

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows in increasing order (the caller sorts them)."""
        if self._array is None:
            self._open()
        rows = np.asarray(rows, dtype=np.int64)
        try:
            block = self._block(rows)
        except (OSError, ValueError) as err:     # h5py: a truncated file, a bad chunk or checksum
            span = f"rows {int(rows[0])}-{int(rows[-1])}" if len(rows) else "no rows"
            raise InputError(self.info.path, f"cannot read the tensors ({span}): "
                                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}; "
                                             "the file is damaged, rebuild it") from None
        n, t, h, w = (len(rows),) + self.info.shape[1:]
        return np.asarray(block, dtype=np.float64).reshape(n, t, h, w)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
        self._h5 = None
        self._array = None
