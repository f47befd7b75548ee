"""Training data: a split's captions joined to their images, the epoch order, and batches.

A split is opened by its ids (`streaming.open_split`) and streamed a few shards at a time
(see vgsalign.train.streaming). `load_split` instead holds a whole split in memory
(`SplitData`: the tensor dump, tests and benchmarks); it serves the same groups from
memory, so both give the same batches.

Epoch order follows the original within a group of shards: each epoch every caption is
used once, in rounds by caption index (round r holds the r-th caption of every image of
the group, each image's captions in a seeded random order), each round shuffled; batches
are cut from the rounds in order, so a batch rarely holds two captions of one image (the
losses mask those anyway). The groups themselves come from a seeded permutation of the
shards per epoch (`epoch_plan`), so captions are shuffled across shards as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..features.shards import check_compatible
from ..runtime import memory_available
from .streaming import (AUDIO_DATASETS, VISUAL_DATASETS, Group, GroupPlan, ShardedSplit, decode_ids, group_reader,
                        fill_by_shard, open_split, prefetched, require_datasets, shard_groups)

__all__ = ["AUDIO_DATASETS", "VISUAL_DATASETS", "decode_ids", "require_datasets", "SplitData", "load_split"]
# checked between a split's shards and against the settings, when a shard records them
FRAME_ATTRS = {"max_frames": "max", "padding": "padding", "hop_s": "hop_s"}


@dataclass
class SplitData(ShardedSplit):
    """A whole split in memory (float32): `logmel[c]` of caption c, `features[i]` of image row i."""

    logmel: np.ndarray | None = None  # (Nc, frames, n_mels)
    features: np.ndarray | None = None  # (Ni, H, W, C)

    def read_group(self, shards: Sequence[int], pin: bool = False, buffers=None) -> Group:
        """Views of the split in memory (consecutive rows) or copies; `buffers` is not used."""
        captions = np.flatnonzero(np.isin(self.caption_shard, shards))
        images = np.unique(self.caption_image[captions])
        return Group.build(self, captions, images, rows_of(self.logmel, captions), rows_of(self.features, images), pin)


def rows_of(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows] for ascending rows: a view when they are consecutive (a group of one shard)."""
    if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows):
        return values[int(rows[0]):int(rows[-1]) + 1]
    return values[rows]


def load_split(name: str, audio_files: Sequence[str], visual_files: Sequence[str],
               direct_reads: bool | None = None) -> SplitData:
    """Read a split's shards whole into memory (after the checks of `open_split`);
    `direct_reads` as ShardedSplit's (None: automatic)."""
    index = open_split(name, audio_files, visual_files)
    index.direct_reads = direct_reads
    frames, n_mels = index.logmel_shape
    nbytes = 4 * (index.n_captions * frames * n_mels + index.n_images * int(np.prod(index.feature_shape)))
    available = memory_available()
    if available is not None and nbytes > 0.8 * available:
        raise InputError(index.audio_files[0], f"the split's features need {nbytes / 2**30:.1f} GiB but only "
                                               f"{available / 2**30:.1f} GiB of memory is free to hold them whole")
    # preallocated float32, each shard read straight into its block (no per-shard copies to join)
    logmel = np.empty((index.n_captions, frames, n_mels), dtype=np.float32)
    features = np.empty((index.n_images, *index.feature_shape), dtype=np.float32)
    fill_by_shard(logmel, "logmel", index.audio_files, index.caption_shard, index.caption_row, index.utt_ids,
                  index.direct_reads)
    fill_by_shard(features, "features", index.visual_files, index.image_shard, index.image_row, index.image_ids,
                  index.direct_reads)
    return SplitData(**vars(index), logmel=logmel, features=features)


def check_splits_agree(train: ShardedSplit, val: ShardedSplit) -> None:
    """Train and validation features must come from the same extraction."""
    if train.logmel_shape != val.logmel_shape:
        raise InputError(val.audio_files[0], f"logmel rows shaped {val.logmel_shape}, but {train.audio_files[0]} has {train.logmel_shape}")
    if train.feature_shape != val.feature_shape:
        raise InputError(val.visual_files[0], f"visual rows shaped {val.feature_shape}, but {train.visual_files[0]} has {train.feature_shape}")
    check_compatible([train.audio_files[0], val.audio_files[0]])
    check_compatible([train.visual_files[0], val.visual_files[0]])


def check_frames(data: ShardedSplit, frames_max: int, padding: str, hop_s: float) -> None:
    """The shards' frame layout must be the one the config (and the test set) uses."""
    if data.logmel_shape[0] != frames_max:
        raise InputError(data.audio_files[0], f"logmel has {data.logmel_shape[0]} frames per row; frames.max is {frames_max}")
    expected = {"max": frames_max, "padding": padding, "hop_s": hop_s}
    for attr, key in FRAME_ATTRS.items():
        if attr in data.audio_attrs:
            value = data.audio_attrs[attr]
            same = abs(float(value) - float(expected[key])) < 1e-9 if key == "hop_s" else value == expected[key]
            if not same:
                raise InputError(data.audio_files[0], f"attribute {attr} = {value!r} but frames.{key} is {expected[key]!r}")


def epoch_order(caption_image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every caption once, in rounds by caption index (see module doc); indices into caption_image."""
    _, image = np.unique(caption_image, return_inverse=True)
    per_image: list[list[int]] = [[] for _ in range(int(image.max()) + 1)]
    for c, i in enumerate(image.tolist()):
        per_image[i].append(c)
    for captions in per_image:
        rng.shuffle(captions)
    rounds = []
    for r in range(max(len(c) for c in per_image)):
        this_round = np.array([c[r] for c in per_image if len(c) > r], dtype=np.int64)
        rng.shuffle(this_round)
        rounds.append(this_round)
    return np.concatenate(rounds)


def cut_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches; a last batch of one item joins the one before (batch norm needs 2)."""
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return batches


def epoch_plan(split: ShardedSplit, use: np.ndarray, shards_per_group: int, rng: np.random.Generator) -> list[GroupPlan]:
    """One epoch's groups: a permutation of the shards cut into groups, each group's used
    captions (`use`: bool per caption) in the original's round order."""
    plans = []
    for shards in shard_groups(rng.permutation(split.n_audio_shards), shards_per_group):
        captions = np.flatnonzero(use & np.isin(split.caption_shard, shards))
        if len(captions):
            plans.append(GroupPlan(shards, captions[epoch_order(split.caption_image[captions], rng)]))
    return plans


@dataclass
class Batch:
    """One training batch on the device; impostors only when drawn from the chunk."""

    logmel: torch.Tensor
    features: torch.Tensor
    image_rows: np.ndarray  # split image row of each pair (to mask same-image pairs)
    impostor_logmel: torch.Tensor | None = None
    impostor_features: torch.Tensor | None = None


def training_batches(
    split: ShardedSplit, plans: list[GroupPlan], batch_size: int, device: torch.device,
    rng: np.random.Generator, chunk_impostors: bool = False,
) -> Iterator[Batch]:
    """Batches of every planned group, streamed (see vgsalign.train.streaming).

    With `chunk_impostors` each pair also gets one random caption and one random image of
    its group (the original's 10k-image chunk), possibly its own."""
    reader = group_reader(split, device)
    for group in prefetched(reader, plans):
        on_device = group.to(device)
        chunk_images = np.unique(split.caption_image[group.order])
        for captions in cut_batches(group.order, batch_size):
            batch = Batch(on_device.caption_tensor(captions), on_device.image_tensor(split.caption_image[captions]),
                          split.caption_image[captions])
            if chunk_impostors:
                batch.impostor_logmel = on_device.caption_tensor(group.order[rng.integers(len(group.order), size=len(captions))])
                batch.impostor_features = on_device.image_tensor(chunk_images[rng.integers(len(chunk_images), size=len(captions))])
            yield batch
        reader.release(group)  # every batch is a copy
        del group, on_device
