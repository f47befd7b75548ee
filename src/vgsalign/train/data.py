"""Training data: the feature shards of a split, joined caption -> image, and batches.

Shards are read read-only (format in docs/formats.md, "Feature shards"): audio shards hold
one row per caption (`utt_id`, `image_id`, `logmel`, `n_frames`, `pad_frames`), visual
shards one row per image (`image_id`, `features` (N, H, W, C)). A split is loaded into
memory whole (the demo's train split is about 0.7 GB; a refusal names the size when it
does not fit), then:

- on a GPU, the arrays are moved to GPU memory when they fit in half of the free memory,
  so a batch is an index_select on the device and the loader costs nothing; otherwise
  they stay in pinned host memory and a background thread prepares the next batch while
  the GPU works on the current one (non-blocking copies);
- on the CPU, a batch is a numpy gather.

Epoch order follows the original: each epoch every caption is used once, in rounds by
caption index (round r holds the r-th caption of every image, each image's captions in a
seeded random order), each round shuffled; batches are cut from the rounds in order, so
a batch rarely holds two captions of one image (the losses mask those anyway).
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import torch

from ..errors import InputError
from ..features.shards import check_compatible

AUDIO_DATASETS = ("utt_id", "image_id", "logmel", "n_frames", "pad_frames")
VISUAL_DATASETS = ("image_id", "features")
# checked between a split's shards and against the settings, when a shard records them
FRAME_ATTRS = {"max_frames": "max", "padding": "padding", "hop_s": "hop_s"}


@dataclass
class SplitData:
    """One split in memory: captions with the row of their image."""

    name: str
    audio_files: list[str]
    visual_files: list[str]
    utt_ids: np.ndarray  # (Nc,) str
    caption_image: np.ndarray  # (Nc,) row into image_ids/features
    logmel: np.ndarray  # (Nc, frames, n_mels)
    n_frames: np.ndarray  # (Nc,)
    pad_frames: np.ndarray  # (Nc,)
    image_ids: np.ndarray  # (Ni,) int64
    features: np.ndarray  # (Ni, H, W, C)
    audio_attrs: dict = field(default_factory=dict)
    visual_attrs: dict = field(default_factory=dict)
    n_images_without_captions: int = 0

    @property
    def n_captions(self) -> int:
        return len(self.utt_ids)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    def files(self) -> str:
        return ", ".join(self.audio_files[:2] + self.visual_files[:2]) + (" ..." if len(self.audio_files) > 2 else "")


def decode_ids(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def require_datasets(h5: h5py.File, path: str, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in h5]
    if missing:
        raise InputError(path, f"{what} shard lacks dataset(s) {missing} (see docs/formats.md, Feature shards)")


def _check_memory(nbytes: int, files: list[str]) -> None:
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if nbytes > 0.8 * available:
        raise InputError(
            files[0], f"the split's features need {nbytes / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB "
            f"of memory is free; training loads a split into memory"
        )


def load_split(name: str, audio_files: Sequence[str], visual_files: Sequence[str]) -> SplitData:
    """Read a split's shards, check them against each other and join captions to images."""
    audio_files = [str(p) for p in audio_files]
    visual_files = [str(p) for p in visual_files]
    if not audio_files or not visual_files:
        raise InputError(name, f"split has {len(audio_files)} audio and {len(visual_files)} visual shard files; need both")
    for path in audio_files + visual_files:
        if not Path(path).is_file():
            raise InputError(path, "feature shard not found")

    # shapes and attributes first (cheap), then the arrays
    # every extraction attribute must agree between a split's shards (vgsalign.features.shards)
    audio_attrs, visual_attrs = check_compatible(audio_files), check_compatible(visual_files)
    audio_meta, visual_meta = [], []
    nbytes = 0
    for path in audio_files:
        with h5py.File(path, "r") as h5:
            require_datasets(h5, path, AUDIO_DATASETS, "audio")
            audio_meta.append((path, audio_attrs, h5["logmel"].shape))
            nbytes += h5["logmel"].size * 4
    for path in visual_files:
        with h5py.File(path, "r") as h5:
            require_datasets(h5, path, VISUAL_DATASETS, "visual")
            visual_meta.append((path, visual_attrs, h5["features"].shape))
            nbytes += h5["features"].size * 4
    for meta, what in ((audio_meta, "audio"), (visual_meta, "visual")):
        for path, _, shape in meta[1:]:
            if tuple(shape[1:]) != tuple(meta[0][2][1:]):
                raise InputError(path, f"{what} rows shaped {tuple(shape[1:])}, but {meta[0][0]} has {tuple(meta[0][2][1:])}")
        for path, attrs, shape in meta:
            if what == "audio" and "n_mels" in attrs and int(attrs["n_mels"]) != shape[2]:
                raise InputError(path, f"attribute n_mels = {attrs['n_mels']} but logmel has {shape[2]} bands")
    _check_memory(nbytes, audio_files)

    utt_ids, cap_image_ids, logmel, n_frames, pad_frames = [], [], [], [], []
    for path in audio_files:
        with h5py.File(path, "r") as h5:
            utt_ids.append(decode_ids(h5["utt_id"][...]))
            cap_image_ids.append(h5["image_id"][...].astype(np.int64))
            logmel.append(np.asarray(h5["logmel"][...], dtype=np.float32))
            n_frames.append(h5["n_frames"][...].astype(np.int32))
            pad_frames.append(h5["pad_frames"][...].astype(np.int32))
    image_ids, features = [], []
    for path in visual_files:
        with h5py.File(path, "r") as h5:
            image_ids.append(h5["image_id"][...].astype(np.int64))
            features.append(np.asarray(h5["features"][...], dtype=np.float32))

    all_image_ids = np.concatenate(image_ids)
    row_of = {}
    for row, image_id in enumerate(all_image_ids.tolist()):
        if image_id in row_of:
            raise InputError(visual_files[0], f"image {image_id} appears twice in the {name} visual shards")
        row_of[image_id] = row
    all_cap_ids = np.concatenate(cap_image_ids)
    if len(all_cap_ids) == 0 or len(all_image_ids) == 0:
        raise InputError(audio_files[0], f"split {name} is empty ({len(all_cap_ids)} captions, {len(all_image_ids)} images)")
    unknown = [(i, c) for i, c in enumerate(all_cap_ids.tolist()) if c not in row_of]
    if unknown:
        ids = sorted({c for _, c in unknown})
        raise InputError(
            audio_files[0], f"{len(unknown)} caption(s) of split {name} refer to {len(ids)} image(s) missing from "
            f"its visual shards, first: {ids[:5]}"
        )
    caption_rows = np.array([row_of[c] for c in all_cap_ids.tolist()], dtype=np.int64)
    all_utts = np.concatenate(utt_ids)
    if len(set(all_utts.tolist())) != len(all_utts):
        raise InputError(audio_files[0], f"duplicate utt_id in the {name} audio shards")

    # images without any caption take no part in training or retrieval: drop them (counted)
    has_caption = np.zeros(len(all_image_ids), dtype=bool)
    has_caption[caption_rows] = True
    features_all = np.concatenate(features)
    new_row = np.cumsum(has_caption) - 1
    return SplitData(
        name=name, audio_files=audio_files, visual_files=visual_files,
        utt_ids=all_utts, caption_image=new_row[caption_rows],
        logmel=np.concatenate(logmel), n_frames=np.concatenate(n_frames), pad_frames=np.concatenate(pad_frames),
        image_ids=all_image_ids[has_caption], features=features_all[has_caption] if not has_caption.all() else features_all,
        audio_attrs=audio_attrs, visual_attrs=visual_attrs,
        n_images_without_captions=int((~has_caption).sum()),
    )


def check_splits_agree(train: SplitData, val: SplitData) -> None:
    """Train and validation features must come from the same extraction."""
    if train.logmel.shape[1:] != val.logmel.shape[1:]:
        raise InputError(
            val.audio_files[0], f"logmel rows shaped {val.logmel.shape[1:]}, but {train.audio_files[0]} has {train.logmel.shape[1:]}"
        )
    if train.features.shape[1:] != val.features.shape[1:]:
        raise InputError(
            val.visual_files[0], f"visual rows shaped {val.features.shape[1:]}, but {train.visual_files[0]} has {train.features.shape[1:]}"
        )
    check_compatible([train.audio_files[0], val.audio_files[0]])
    check_compatible([train.visual_files[0], val.visual_files[0]])


def check_frames(data: SplitData, frames_max: int, padding: str, hop_s: float) -> None:
    """The shards' frame layout must be the one the config (and the test set) uses."""
    if data.logmel.shape[1] != frames_max:
        raise InputError(data.audio_files[0], f"logmel has {data.logmel.shape[1]} frames per row; frames.max is {frames_max}")
    expected = {"max": frames_max, "padding": padding, "hop_s": hop_s}
    for attr, key in FRAME_ATTRS.items():
        if attr in data.audio_attrs:
            value = data.audio_attrs[attr]
            same = abs(float(value) - float(expected[key])) < 1e-9 if key == "hop_s" else value == expected[key]
            if not same:
                raise InputError(data.audio_files[0], f"attribute {attr} = {value!r} but frames.{key} is {expected[key]!r}")


def epoch_order(caption_image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every caption once, in rounds by caption index (see module doc)."""
    n_images = int(caption_image.max()) + 1
    per_image: list[list[int]] = [[] for _ in range(n_images)]
    for c, i in enumerate(caption_image.tolist()):
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


class BatchSource:
    """Gives (logmel, features, image_rows) tensors on the device for batches of caption indices."""

    def __init__(self, data: SplitData, device: torch.device, gpu_share: float = 0.5):
        self.device = device
        self.caption_image = data.caption_image
        self.on_device = False
        logmel, features = torch.from_numpy(data.logmel), torch.from_numpy(data.features)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if (logmel.nbytes + features.nbytes) < gpu_share * free:
                logmel, features = logmel.to(device), features.to(device)
                self.on_device = True
            else:
                logmel, features = logmel.pin_memory(), features.pin_memory()
        self.logmel, self.features = logmel, features
        self.mode = "device-resident" if self.on_device else ("pinned host + prefetch" if device.type == "cuda" else "host")

    def batch(self, captions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_rows = torch.from_numpy(self.caption_image[captions])
        caps = torch.from_numpy(captions)
        if self.on_device:
            caps, rows = caps.to(self.device), image_rows.to(self.device)
            return self.logmel.index_select(0, caps), self.features.index_select(0, rows), image_rows
        logmel = self.logmel.index_select(0, caps)
        features = self.features.index_select(0, image_rows)
        if self.device.type == "cuda":
            logmel = logmel.pin_memory().to(self.device, non_blocking=True)
            features = features.pin_memory().to(self.device, non_blocking=True)
        return logmel, features, image_rows

    def images(self, rows: np.ndarray) -> torch.Tensor:
        t = self.features.index_select(0, torch.from_numpy(rows).to(self.features.device))
        return t.to(self.device, non_blocking=True)

    def captions(self, idx: np.ndarray) -> torch.Tensor:
        t = self.logmel.index_select(0, torch.from_numpy(idx).to(self.logmel.device))
        return t.to(self.device, non_blocking=True)

    def iterate(
        self, batches: list[np.ndarray], prefetch: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches in order; from pinned host memory (or with `prefetch`) the next ones are
        prepared in a background thread while the current one trains."""
        if self.on_device or not (prefetch or self.device.type == "cuda"):
            for b in batches:
                yield self.batch(b)
            return
        ready: queue.Queue = queue.Queue(maxsize=3)

        def produce() -> None:
            for b in batches:
                ready.put(self.batch(b))
            ready.put(None)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        while (item := ready.get()) is not None:
            yield item
        thread.join()
