"""Streaming a split's feature shards: an index of where each caption and image lives, and
groups of shards read a few at a time, the next group in a background thread.

`open_split` reads only the ids of every shard (cheap), checks the shards against each
other and joins captions to images. Training and validation then read *groups* of audio
shards (`read_group`): a group's log-mels, and the features of the images its captions
show, held in memory while its batches run; `prefetched` reads the next group in a
background thread meanwhile, so at most two groups are in memory, whatever the split's
size. Every array read is checked for NaN and inf, naming the shard and the row, before
any batch of it is trained on.

Epoch order (`epoch_plan`, docs/training.md "Streaming"): per epoch a seeded permutation
of the audio shards, cut into groups of `train.shards_per_group`; within a group every
caption once, in rounds by caption index as the original did (`data.epoch_order`), and
batches cut from that order. The order is a function of (seed, epoch, shards, group
size) alone, so a split streamed from disk and the same split held in memory
(`data.SplitData`) give the same batches.
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import h5py
import numpy as np
import torch

from ..errors import InputError
from ..features.shards import check_compatible, open_shard
from ..runtime import release_freed_memory
from . import chunks

AUDIO_DATASETS = ("utt_id", "image_id", "logmel", "n_frames", "pad_frames")
VISUAL_DATASETS = ("image_id", "features")


def decode_ids(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def require_datasets(h5: h5py.File, path: str, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in h5]
    if missing:
        raise InputError(path, f"{what} shard lacks dataset(s) {missing} (see docs/formats.md, Feature shards)")


@dataclass
class ShardedSplit:
    """Where every caption and image of a split lives: shard and row (no arrays loaded)."""

    name: str
    audio_files: list[str]
    visual_files: list[str]
    utt_ids: np.ndarray  # (Nc,) str
    caption_image: np.ndarray  # (Nc,) row into image_ids
    caption_shard: np.ndarray  # (Nc,) audio shard index
    caption_row: np.ndarray  # (Nc,) row within that shard
    n_frames: np.ndarray  # (Nc,)
    pad_frames: np.ndarray  # (Nc,)
    image_ids: np.ndarray  # (Ni,) int64, images with at least one caption
    image_shard: np.ndarray  # (Ni,) visual shard index
    image_row: np.ndarray  # (Ni,) row within that shard
    logmel_shape: tuple[int, int]  # (frames, n_mels) of one caption
    feature_shape: tuple[int, int, int]  # (H, W, C) of one image
    audio_attrs: dict = field(default_factory=dict)
    visual_attrs: dict = field(default_factory=dict)
    n_images_without_captions: int = 0
    logmel_dtype: np.dtype = np.dtype(np.float32)  # as stored (float16 with audio.dtype float16)
    feature_dtype: np.dtype = np.dtype(np.float32)
    # rows read straight from their chunks (vgsalign.train.chunks); None: once the process
    # has read enough through HDF5 to pay for loading the checksum kernel
    direct_reads: bool | None = None

    @property
    def n_captions(self) -> int:
        return len(self.utt_ids)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    @property
    def n_audio_shards(self) -> int:
        return len(self.audio_files)

    def read_group(self, shards: Sequence[int], pin: bool = False, buffers: "BufferPool | None" = None) -> "Group":
        """Log-mels of the given audio shards and the features of their captions' images.

        Each shard's rows are read straight into one preallocated array per modality
        (`read_block`), as stored (float16 stays float16 until the batch or the device);
        the arrays come from `buffers` when given (memory of groups done with)."""
        captions = np.flatnonzero(np.isin(self.caption_shard, shards))
        images = np.unique(self.caption_image[captions])
        allocate = buffers.array if buffers is not None else np.empty
        logmel = allocate((len(captions), *self.logmel_shape), self.logmel_dtype)
        features = allocate((len(images), *self.feature_shape), self.feature_dtype)
        fill_by_shard(logmel, "logmel", self.audio_files, self.caption_shard[captions], self.caption_row[captions],
                      self.utt_ids[captions], self.direct_reads)
        fill_by_shard(features, "features", self.visual_files, self.image_shard[images], self.image_row[images],
                      self.image_ids[images], self.direct_reads)
        group = Group.build(self, captions, images, logmel, features, pin)
        if pin and buffers is not None:  # pinning copied them
            buffers.give_back(logmel)
            buffers.give_back(features)
        return group


def fill_by_shard(out: np.ndarray, name: str, files: Sequence[str], shard: np.ndarray, row: np.ndarray,
                  labels: np.ndarray, direct: bool | None = None) -> None:
    """`out[k]` = row `row[k]` of shard `shard[k]`; `shard` is non-decreasing and rows ascend
    within a shard (as every index of a split is), so each shard fills one block of `out`."""
    bounds = np.flatnonzero(np.diff(shard)) + 1
    for lo, hi in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(shard)].tolist()):
        read_block(files[int(shard[lo])], name, row[lo:hi], labels[lo:hi], out[lo:hi], direct)


def read_block(path: str, name: str, rows: np.ndarray, labels: np.ndarray, out: np.ndarray,
               direct: bool | None = None) -> None:
    """Ascending `rows` of one dataset of a shard into `out`, refusing NaN or inf by row.

    A run of consecutive rows (a whole audio shard, an aligned visual shard) goes straight
    into `out`: with `direct` (None: `chunks.direct_now` decides), from its chunks with
    the checksums and the NaN/inf check verified in one pass (vgsalign.train.chunks);
    otherwise, or where that declines, with
    one HDF5 `read_direct` (no intermediate array: h5py's fancy-indexed reads and a
    read-then-copy cost more than the read itself)."""
    if not len(rows):
        return
    first, last = int(rows[0]), int(rows[-1]) + 1
    with open_shard(path) as h5:  # checksums verified: damage is one line naming the file
        dataset = h5[name]
        if last - first == len(rows) and dataset.dtype == out.dtype:
            if direct is None:
                direct = chunks.direct_now(out.nbytes)
            done, finite = chunks.read_rows(path, dataset, first, out) if direct else (False, None)
            if done:
                refuse_nonfinite(path, name, finite, rows, labels)
                return
            dataset.read_direct(out, source_sel=np.s_[first:last])
        else:  # rows with gaps, or another dtype: read the span, keep the rows (numpy converts)
            out[...] = dataset[first:last][rows - first]
    check_finite(path, name, out, rows, labels)


def all_finite(values: np.ndarray) -> bool:
    """One cheap pass: a float32 sum (NaN and inf propagate; an overflow only sends the
    caller to the exact check), float16 by its exponent bits."""
    if values.dtype == np.float16:
        return bool(np.bitwise_and(values.view(np.uint16), 0x7FFF).max(initial=0) < 0x7C00)
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(values.sum()))


def check_finite(path: str, name: str, values: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> None:
    if not all_finite(values):
        refuse_nonfinite(path, name, np.isfinite(values.reshape(len(values), -1)).all(1), rows, labels)


def refuse_nonfinite(path: str, name: str, finite: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> None:
    """InputError naming the first row that is not finite (`finite`: bool per row), if any."""
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise InputError(path, f"row {int(rows[bad])} ({labels[bad]}) of {name} holds NaN or inf "
                               f"({int((~finite).sum())} row(s) in all); the shard is damaged: rebuild it")


@dataclass
class Group:
    """One group of shards in memory: captions and images by their index into the split."""

    captions: np.ndarray  # split caption indices held, ascending
    images: np.ndarray  # split image rows held, ascending
    logmel: np.ndarray | torch.Tensor  # (len(captions), frames, n_mels), as stored: numpy on the CPU
    features: np.ndarray | torch.Tensor  # (len(images), H, W, C), as stored; tensors for a GPU
    caption_position: np.ndarray  # (Nc,) position in `captions`, -1 if not held
    image_position: np.ndarray  # (Ni,) position in `images`, -1 if not held
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # captions to use, in order

    @classmethod
    def build(cls, split: ShardedSplit, captions: np.ndarray, images: np.ndarray, logmel: np.ndarray,
              features: np.ndarray, pin: bool) -> "Group":
        caption_position = np.full(split.n_captions, -1, dtype=np.int64)
        caption_position[captions] = np.arange(len(captions))
        image_position = np.full(split.n_images, -1, dtype=np.int64)
        image_position[images] = np.arange(len(images))
        if pin:  # page-locked tensors, so the copy to the GPU runs without blocking
            logmel, features = torch.from_numpy(logmel).pin_memory(), torch.from_numpy(features).pin_memory()
        return cls(captions, images, logmel, features, caption_position, image_position)

    def to(self, device: torch.device) -> "Group":
        if device.type == "cpu":
            return self
        return Group(self.captions, self.images, self.logmel.to(device, non_blocking=True),
                     self.features.to(device, non_blocking=True), self.caption_position, self.image_position, self.order)

    def caption_tensor(self, captions: np.ndarray) -> torch.Tensor:
        return _gather(self.logmel, self.caption_position[captions])

    def image_tensor(self, images: np.ndarray) -> torch.Tensor:
        return _gather(self.features, self.image_position[images])


def _gather(values: np.ndarray | torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """Rows as float32; numpy's take is several times faster than index_select on the CPU."""
    if isinstance(values, np.ndarray):
        return torch.from_numpy(np.take(values, rows, axis=0).astype(np.float32, copy=False))
    return values.index_select(0, torch.from_numpy(rows).to(values.device)).float()


@dataclass
class GroupPlan:
    """Which audio shards to read together, and the captions to use from them, in order."""

    shards: tuple[int, ...]
    order: np.ndarray


def open_split(name: str, audio_files: Sequence[str], visual_files: Sequence[str]) -> ShardedSplit:
    """Read a split's ids, check the shards against each other and join captions to images."""
    audio_files, visual_files = [str(p) for p in audio_files], [str(p) for p in visual_files]
    if not audio_files or not visual_files:
        raise InputError(name, f"split has {len(audio_files)} audio and {len(visual_files)} visual shard files; need both")
    for path in audio_files + visual_files:
        if not Path(path).is_file():
            raise InputError(path, "feature shard not found")
    # every extraction attribute must agree between a split's shards (vgsalign.features.shards)
    audio_attrs, visual_attrs = check_compatible(audio_files), check_compatible(visual_files)
    audio = _read_ids(audio_files, "audio", AUDIO_DATASETS, "logmel", ("utt_id", "image_id", "n_frames", "pad_frames"))
    visual = _read_ids(visual_files, "visual", VISUAL_DATASETS, "features", ("image_id",))
    logmel_shape, feature_shape = audio["shape"], visual["shape"]
    if "n_mels" in audio_attrs and int(audio_attrs["n_mels"]) != logmel_shape[1]:
        raise InputError(audio_files[0], f"attribute n_mels = {audio_attrs['n_mels']} but logmel has {logmel_shape[1]} bands")
    image_ids = visual["image_id"].astype(np.int64)
    cap_image_ids = audio["image_id"].astype(np.int64)
    if len(cap_image_ids) == 0 or len(image_ids) == 0:
        raise InputError(audio_files[0], f"split {name} is empty ({len(cap_image_ids)} captions, {len(image_ids)} images)")
    caption_rows = _join(name, audio_files, visual_files, audio["utt_id"], cap_image_ids, image_ids)
    # images without any caption take no part in training or retrieval: drop them (counted)
    has_caption = np.zeros(len(image_ids), dtype=bool)
    has_caption[caption_rows] = True
    new_row = np.cumsum(has_caption) - 1
    return ShardedSplit(
        name=name, audio_files=audio_files, visual_files=visual_files,
        utt_ids=decode_ids(audio["utt_id"]), caption_image=new_row[caption_rows],
        caption_shard=audio["shard"], caption_row=audio["row"],
        n_frames=audio["n_frames"].astype(np.int32), pad_frames=audio["pad_frames"].astype(np.int32),
        image_ids=image_ids[has_caption], image_shard=visual["shard"][has_caption], image_row=visual["row"][has_caption],
        logmel_shape=logmel_shape, feature_shape=feature_shape, audio_attrs=audio_attrs, visual_attrs=visual_attrs,
        n_images_without_captions=int((~has_caption).sum()), logmel_dtype=audio["dtype"], feature_dtype=visual["dtype"],
    )


def _read_ids(files: list[str], what: str, required: Sequence[str], array: str, names: Sequence[str]) -> dict:
    """The small datasets of every shard, concatenated, with shard and row of each item."""
    out: dict = {n: [] for n in names} | {"shard": [], "row": []}
    shape, dtypes = None, []
    for index, path in enumerate(files):
        with open_shard(path) as h5:  # checksums verified: damage is one line naming the file
            require_datasets(h5, path, required, what)
            item_shape = tuple(h5[array].shape[1:])
            if shape is not None and item_shape != shape:
                raise InputError(path, f"{what} rows shaped {item_shape}, but {files[0]} has {shape}")
            shape = item_shape
            dtypes.append(h5[array].dtype)
            for n in names:
                out[n].append(h5[n][...])
            count = len(out[names[0]][-1])
        out["shard"].append(np.full(count, index, dtype=np.int32))
        out["row"].append(np.arange(count, dtype=np.int64))
    joined = {n: np.concatenate(v) for n, v in out.items()}
    joined["shape"], joined["dtype"] = shape, np.result_type(*dtypes)  # shards of mixed dtypes widen, as numpy would
    return joined


def _join(name: str, audio_files: list[str], visual_files: list[str], utt_ids: np.ndarray,
          cap_image_ids: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    """Row of each caption's image; refuses duplicates and captions of unknown images."""
    row_of: dict[int, int] = {}
    for row, image_id in enumerate(image_ids.tolist()):
        if image_id in row_of:
            raise InputError(visual_files[0], f"image {image_id} appears twice in the {name} visual shards")
        row_of[image_id] = row
    unknown = sorted({c for c in cap_image_ids.tolist() if c not in row_of})
    if unknown:
        count = int(np.isin(cap_image_ids, unknown).sum())
        raise InputError(audio_files[0], f"{count} caption(s) of split {name} refer to {len(unknown)} image(s) missing "
                                         f"from its visual shards, first: {unknown[:5]}")
    if len(set(utt_ids.tolist())) != len(utt_ids):
        raise InputError(audio_files[0], f"duplicate utt_id in the {name} audio shards")
    return np.array([row_of[c] for c in cap_image_ids.tolist()], dtype=np.int64)


def prefetched(read: Callable[[GroupPlan], Group], plans: Sequence[GroupPlan]) -> Iterator[Group]:
    """The groups of `plans` in order, each read while the one before is in use (one thread).

    At most two groups are alive at once if the caller drops each group before asking for
    the next (as `training_batches` and `validation.encode` do).
    """
    if not plans:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-reader") as pool:
        future = pool.submit(read, plans[0])
        for index in range(len(plans)):
            group = future.result()
            future = pool.submit(read, plans[index + 1]) if index + 1 < len(plans) else None
            yield group
            del group


class BufferPool:
    """Memory of groups done with, lent again to the next group read.

    Fresh memory costs a page fault and the zeroing of every page when first written:
    about 15% of reading a group directly (9 of 61 ms per 1,000 log-mels). At most two
    groups are alive, so the pool holds at most `keep` buffers, the largest given back; a
    buffer is lent for any array of at most its size."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._free: list[np.ndarray] = []  # flat uint8 buffers
        self._lent: dict[int, tuple[weakref.ref, np.ndarray]] = {}  # id of an array lent -> (it, its buffer)
        self._lock = threading.Lock()  # lent in the reader thread, given back in the training thread

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        with self._lock:
            fits = [k for k, buffer in enumerate(self._free) if buffer.nbytes >= nbytes]
            buffer = self._free.pop(min(fits, key=lambda k: self._free[k].nbytes)) if fits else None
        if buffer is None:
            buffer = np.empty(max(nbytes, 1), dtype=np.uint8)
        array = buffer[:nbytes].view(dtype).reshape(shape)
        with self._lock:
            self._lent[id(array)] = weakref.ref(array), buffer
        return array

    def give_back(self, array: np.ndarray | torch.Tensor) -> None:
        """Return an array this pool lent (others, e.g. views of a split in memory, are ignored);
        the caller must hold no other view of it."""
        with self._lock:
            ref, buffer = self._lent.get(id(array), (None, None)) if isinstance(array, np.ndarray) else (None, None)
            if ref is not None and ref() is array:
                del self._lent[id(array)]
                self._free = sorted([*self._free, buffer], key=lambda b: -b.nbytes)[:self.keep]


class GroupReader:
    """Reads a planned group (in the background thread): pinned host memory for a GPU; the
    arrays of a group handed back with `release` are reused for a later group."""

    def __init__(self, split: ShardedSplit, device: torch.device):
        self.split, self.pin, self.buffers = split, device.type == "cuda", BufferPool()

    def __call__(self, plan: GroupPlan) -> Group:
        group = self.split.read_group(plan.shards, pin=self.pin, buffers=self.buffers)
        group.order = plan.order
        return group

    def release(self, group: Group) -> None:
        """The caller is done with `group` and holds no view of its arrays (batches are
        copies): its arrays go back to the pool, and the memory its batches freed back to
        the system (`release_freed_memory`)."""
        self.buffers.give_back(group.logmel)
        self.buffers.give_back(group.features)
        release_freed_memory()


def group_reader(split: ShardedSplit, device: torch.device) -> GroupReader:
    return GroupReader(split, device)


def shard_groups(shard_order: np.ndarray, shards_per_group: int) -> list[tuple[int, ...]]:
    return [tuple(sorted(shard_order[i:i + shards_per_group].tolist())) for i in range(0, len(shard_order), shards_per_group)]


def in_order_plan(split: ShardedSplit, captions: np.ndarray, shards_per_group: int) -> list[GroupPlan]:
    """Groups in shard order holding `captions` (validation and retrieval: no shuffling)."""
    plans = []
    for shards in shard_groups(np.arange(split.n_audio_shards), shards_per_group):
        held = captions[np.isin(split.caption_shard[captions], shards)]
        if len(held):
            plans.append(GroupPlan(shards, held))
    return plans
