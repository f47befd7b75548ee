"""Tiny synthetic feature shards (docs/formats.md layout) whose audio and images share a
hidden class, so that a small model can learn to match them; plus tiny model settings."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from vgsalign.train.models import ModelSettings

FRAMES = 32
N_MELS = 8
GRID = (4, 4)
CHANNELS = 6


def tiny_model(arch: str = "cnnatt", similarity: str = "misa", pooling: str = "torch") -> ModelSettings:
    return ModelSettings(
        arch=arch, similarity=similarity, embed_dim=16, dropout=0.1,
        audio_channels=[8, 8, 12, 12], audio_kernels=[3, 3, 5, 5, 5], pooling=pooling,
    )


def tiny_train_settings(**over) -> dict:
    values = dict(
        loss="triplet_random", margin=0.1, lr=3e-3, batch_size=16, epochs=3, seed=0, select_by="val_loss",
        resume=False, device="cpu", pool_size=1000, pool_trials=5, eval_max_images=1000,
        validation="heldout", heldout_share=0.25, shards_per_group=2, impostors="batch", loss_reduction="mean",
    )
    values.update(over)
    return values


def tiny_frames() -> dict:
    return {"hop_s": 0.01, "max": FRAMES, "padding": "start"}


def checked_dataset(h5: h5py.File, name: str, values: np.ndarray) -> None:
    """A dataset chunked with fletcher32 checksums, as the feature shards' writer stores them."""
    h5.create_dataset(name, data=values, chunks=(1, *values.shape[1:]) if values.ndim > 1 else True, fletcher32=True)


def write_split(
    root: Path, split: str, n_images: int, captions_per_image: int = 3, n_classes: int = 4, seed: int = 0,
    images_per_shard: int = 10, first_image_id: int = 1000, frames: int = FRAMES, n_mels: int = N_MELS,
    grid: tuple[int, int] = GRID, channels: int = CHANNELS, audio_attrs: dict | None = None,
) -> tuple[list[Path], list[Path]]:
    """Write audio + visual shards of one split; returns (audio files, visual files)."""
    rng = np.random.default_rng(seed)
    # one prototype per class: a logmel pattern and an image feature pattern
    proto_rng = np.random.default_rng(1234)
    audio_proto = proto_rng.normal(size=(n_classes, 8, n_mels)).astype(np.float32) * 2
    visual_proto = proto_rng.normal(size=(n_classes, channels)).astype(np.float32) * 2
    image_ids = np.arange(first_image_id, first_image_id + n_images, dtype=np.int64)
    classes = rng.integers(n_classes, size=n_images)
    audio_files, visual_files = [], []
    for shard, start in enumerate(range(0, n_images, images_per_shard)):
        rows = np.arange(start, min(n_images, start + images_per_shard))
        feats = rng.normal(size=(len(rows), *grid, channels)).astype(np.float32)
        utts, cap_img, logmel, n_frames, pad = [], [], [], [], []
        for j, r in enumerate(rows):
            y, x = rng.integers(grid[0]), rng.integers(grid[1])
            feats[j, y, x] += visual_proto[classes[r]]  # the object sits in one cell
            for c in range(captions_per_image):
                n = int(rng.integers(frames // 2, frames + 1))
                m = rng.normal(size=(frames, n_mels)).astype(np.float32) * 0.5
                m[: frames - n] = 0.0  # padding at the start
                onset = frames - n + int(rng.integers(0, n - 8 + 1))
                m[onset:onset + 8] += audio_proto[classes[r]]  # the word naming it
                utts.append(f"{split}_{image_ids[r]}_{c}")
                cap_img.append(image_ids[r])
                logmel.append(m)
                n_frames.append(n)
                pad.append(frames - n)
        a_path = root / "audio" / split / f"shard_{shard:05d}.h5"
        v_path = root / "visual" / split / f"shard_{shard:05d}.h5"
        a_path.parent.mkdir(parents=True, exist_ok=True)
        v_path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(a_path, "w") as h5:
            h5["utt_id"] = np.array(utts, dtype=h5py.string_dtype())
            checked_dataset(h5, "image_id", np.array(cap_img, dtype=np.int64))
            checked_dataset(h5, "logmel", np.stack(logmel))
            checked_dataset(h5, "n_frames", np.array(n_frames, dtype=np.int32))
            checked_dataset(h5, "pad_frames", np.array(pad, dtype=np.int32))
            attrs = {"n_mels": n_mels, "max_frames": frames, "padding": "start", "hop_s": 0.01,
                     "sample_rate": 16000, "n_rejected": 0, "split": split, "integrity": "fletcher32"}
            attrs.update(audio_attrs or {})
            h5.attrs.update(attrs)
        with h5py.File(v_path, "w") as h5:
            checked_dataset(h5, "image_id", image_ids[rows])
            checked_dataset(h5, "features", feats)
            checked_dataset(h5, "width", np.full(len(rows), 640, dtype=np.int32))
            checked_dataset(h5, "height", np.full(len(rows), 480, dtype=np.int32))
            h5.attrs.update({"backbone": "synthetic", "random_weights": True, "n_rejected": 0, "split": split,
                             "integrity": "fletcher32"})
        audio_files.append(a_path)
        visual_files.append(v_path)
    return audio_files, visual_files


def write_pairs(path: Path, utt_ids: list[str], image_ids: list[int]) -> None:
    """A pairs.csv with two word rows per utterance (the tensor dump takes unique utt_ids)."""
    import pandas as pd

    rows = []
    for u, i in zip(utt_ids, image_ids):
        for w in range(2):
            rows.append({"utt_id": u, "image_id": i, "word_index": w, "word": "dog", "category": "dog",
                         "category_id": 18, "similarity": 0.9, "onset_s": 0.1 * w, "offset_s": 0.1 * w + 0.1,
                         "onset_frame": 10 * w, "offset_frame": 10 * w + 10, "pad_frames": 0, "n_frames": FRAMES,
                         "duration_s": 0.32})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
