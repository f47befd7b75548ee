"""`vgsalign tensors-dump`: the alignment tensor of every test utterance with its own image.

For each unique utt_id of the test set (pairs.csv, in order of first appearance) the
trained model's alignment tensor at its native resolution goes into one HDF5 file
(docs/formats.md, "Alignment tensors"): CNNatt gives its audio x image attention scores
before the softmax, the matchmap model its matchmap, shaped (T, H, W).

Streaming: a first pass reads only the ids of the test split's shards; then each audio
shard's wanted rows are read a batch at a time, with the features of their images, so
memory holds one batch, never a shard or a split.

Time mapping (file attributes): tensor frame k covers input frames
[input_frames_offset + k * input_frames_per_frame, ... + (k + 1) * input_frames_per_frame),
cells centred on the receptive-field centres of the audio branch (vgsalign.train.geometry).

Integrity: every numeric dataset is chunked with h5py's fletcher32 checksum (attribute
`integrity: fletcher32`), which HDF5 verifies on each read; the file is written under a
temporary name and renamed into place when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_path
from ..errors import InputError
from ..runtime import progress_bar, set_torch_threads
from ..settings import settings_from_json
from .data import AUDIO_DATASETS, VISUAL_DATASETS, decode_ids, require_datasets
from .device import DEVICE_NAMES, autocast, pick_device
from .loop import FrameSettings, load_checkpoint, model_from_checkpoint
from .models import InputShape, ModelSettings, VGSModel

INTEGRITY = "fletcher32"
BATCH_SIZE = 64


def read_test_utterances(pairs_csv: str | Path) -> pd.DataFrame:
    """Unique (utt_id, image_id) of the test set, in order of first appearance."""
    try:
        pairs = pd.read_csv(pairs_csv, dtype={"utt_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(pairs_csv, f"cannot read the pairs table ({err})") from None
    for column in ("utt_id", "image_id"):
        if column not in pairs.columns:
            raise InputError(pairs_csv, f"missing column {column!r}")
    utts = pairs[["utt_id", "image_id"]].drop_duplicates("utt_id", keep="first").reset_index(drop=True)
    conflicting = pairs.groupby("utt_id")["image_id"].nunique()
    if (conflicting > 1).any():
        raise InputError(pairs_csv, f"utt_id(s) with more than one image_id: {conflicting[conflicting > 1].index[:5].tolist()}")
    return utts


def _damaged(path: str, what: str, err: OSError) -> InputError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InputError(path, f"{what} shard cannot be read, truncated or damaged ({first})")


@contextlib.contextmanager
def open_shard(path: str, names: tuple[str, ...], what: str) -> Iterator[h5py.File]:
    """A feature shard opened read-only (HDF5 damage on opening becomes one line naming it)."""
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise _damaged(path, what, err) from None
    with h5:
        require_datasets(h5, path, names, what)
        yield h5


def read_block(h5: h5py.File, name: str, rows: np.ndarray | slice, what: str) -> np.ndarray:
    """Rows of one dataset; a chunk failing its checksum or beyond a truncated end is one line naming the shard."""
    try:
        return h5[name][rows]
    except OSError as err:
        raise _damaged(h5.filename, what, err) from None


@dataclass
class AudioRows:
    """The wanted rows of one audio shard (sorted, as h5py reads them) and their output positions."""

    path: str
    rows: np.ndarray
    positions: np.ndarray


def index_audio(utts: pd.DataFrame, audio_files: list[str], shape: InputShape) -> tuple[list[AudioRows], np.ndarray, np.ndarray]:
    """Where each test utterance lives, reading only ids and counts; checks shapes and image ids."""
    position = {u: i for i, u in enumerate(utts["utt_id"])}
    expected_image = utts["image_id"].to_numpy(dtype=np.int64)
    n_frames = np.full(len(utts), -1, dtype=np.int32)
    pad_frames = np.zeros(len(utts), dtype=np.int32)
    found: list[AudioRows] = []
    for path in audio_files:
        with open_shard(path, AUDIO_DATASETS, "audio") as h5:
            if h5["logmel"].shape[1:] != (shape.frames, shape.n_mels):
                raise InputError(path, f"logmel rows shaped {h5['logmel'].shape[1:]}, the checkpoint expects "
                                       f"{(shape.frames, shape.n_mels)}")
            ids = decode_ids(read_block(h5, "utt_id", slice(None), "audio"))
            rows = np.array([r for r, u in enumerate(ids) if u in position], dtype=np.int64)
            if len(rows) == 0:
                continue
            positions = np.array([position[ids[r]] for r in rows], dtype=np.int64)
            images = read_block(h5, "image_id", slice(None), "audio")[rows].astype(np.int64)
            wrong = np.flatnonzero(images != expected_image[positions])
            if len(wrong):
                first = [(ids[rows[j]], int(expected_image[positions[j]]), int(images[j])) for j in wrong[:3]]
                raise InputError(path, f"{len(wrong)} utterance(s) whose image_id differs from the pairs table, "
                                       f"first (utt_id, pairs, shard): {first}")
            n_frames[positions] = read_block(h5, "n_frames", slice(None), "audio")[rows]
            pad_frames[positions] = read_block(h5, "pad_frames", slice(None), "audio")[rows]
            found.append(AudioRows(path=path, rows=rows, positions=positions))
    missing = [u for u, n in zip(utts["utt_id"], n_frames) if n < 0]
    if missing:
        raise InputError(
            audio_files[0] if audio_files else "audio shards",
            f"{len(missing)} test utterance(s) from the pairs table are not in the test-split audio shards "
            f"({len(audio_files)} files), first: {missing[:5]}",
        )
    return found, n_frames, pad_frames


def index_visual(image_ids: set[int], visual_files: list[str], shape: InputShape) -> dict[int, tuple[str, int]]:
    """image_id -> (visual shard, row) for the test images, reading only ids."""
    where: dict[int, tuple[str, int]] = {}
    grid = (shape.grid_h, shape.grid_w, shape.channels)
    for path in visual_files:
        with open_shard(path, VISUAL_DATASETS, "visual") as h5:
            if h5["features"].shape[1:] != grid:
                raise InputError(path, f"visual rows shaped {h5['features'].shape[1:]}, the checkpoint expects {grid}")
            for row, image_id in enumerate(read_block(h5, "image_id", slice(None), "visual").astype(np.int64)):
                if int(image_id) in image_ids:
                    where.setdefault(int(image_id), (path, row))
    missing = sorted(image_ids - set(where))
    if missing:
        raise InputError(
            visual_files[0] if visual_files else "visual shards",
            f"{len(missing)} test image(s) are not in the test-split visual shards, first: {missing[:5]}",
        )
    return where


def read_features(image_ids: np.ndarray, where: dict[int, tuple[str, int]], shards: contextlib.ExitStack,
                  open_files: dict[str, h5py.File]) -> np.ndarray:
    """(len(image_ids), H, W, C) float32 features, each visual shard read once with sorted rows."""
    by_shard: dict[str, list[int]] = {}
    for image_id in set(int(i) for i in image_ids):
        by_shard.setdefault(where[image_id][0], []).append(image_id)
    row_of: dict[int, np.ndarray] = {}
    for path, ids in by_shard.items():
        if path not in open_files:
            open_files[path] = shards.enter_context(open_shard(path, VISUAL_DATASETS, "visual"))
        rows = np.array(sorted(where[i][1] for i in ids), dtype=np.int64)
        block = read_block(open_files[path], "features", rows, "visual")
        for image_id in ids:
            row_of[image_id] = block[int(np.searchsorted(rows, where[image_id][1]))]
    return np.stack([row_of[int(i)] for i in image_ids]).astype(np.float32, copy=False)


def checked_model(checkpoint: str | Path, model_settings: ModelSettings, frames: FrameSettings) -> tuple[VGSModel, dict]:
    state = load_checkpoint(checkpoint, model_settings.arch)
    unrecorded = sorted({f.name for f in dataclasses.fields(ModelSettings)} - set(state["model_settings"]))
    if unrecorded:
        raise InputError(checkpoint, f"checkpoint records no model setting(s) {unrecorded} "
                                     "(written by an older vgsalign); retrain it")
    model = model_from_checkpoint(state, checkpoint, model_settings)
    recorded = state["frames"]
    if recorded["max"] != frames.max or recorded["padding"] != frames.padding or abs(recorded["hop_s"] - frames.hop_s) > 1e-12:
        raise InputError(checkpoint, f"checkpoint trained with frames {recorded}, config has {frames.__dict__}")
    return model, state


def time_attrs(model: VGSModel, frames: FrameSettings) -> dict:
    """The time mapping of the tensor frames, from the audio branch's geometry."""
    geometry = model.time_geometry
    return {
        "input_frames_per_frame": float(geometry.stride), "input_frames_offset": float(geometry.offset),
        "seconds_per_frame": float(geometry.stride * frames.hop_s), "hop_s": float(frames.hop_s),
        "max_frames": int(frames.max), "padding": frames.padding, "pooling": model.settings.pooling,
    }


def create_datasets(h5: h5py.File, n: int, shape: InputShape) -> h5py.Dataset:
    t, h, w = shape.tensor_frames, shape.grid_h, shape.grid_w
    return h5.create_dataset("avt", shape=(n, t, h, w), dtype="float32", chunks=(1, t, h, w),
                             compression="gzip", compression_opts=4, shuffle=True, fletcher32=True)


def write_column(h5: h5py.File, name: str, values: np.ndarray) -> None:
    h5.create_dataset(name, data=values, chunks=(min(len(values), 4096),), fletcher32=True)


def dump_tensors(
    checkpoint: str | Path, pairs_csv: str | Path, audio_files: list[str], visual_files: list[str],
    model_settings: ModelSettings, frames: FrameSettings, out: str | Path, device_name: str = "auto",
    batch_size: int = BATCH_SIZE,
) -> int:
    model, state = checked_model(checkpoint, model_settings, frames)
    utts = read_test_utterances(pairs_csv)
    if utts.empty:
        raise InputError(pairs_csv, "the test set has no utterances")
    shape = model.shape
    audio, n_frames, pad_frames = index_audio(utts, list(map(str, audio_files)), shape)
    image_ids = utts["image_id"].to_numpy(dtype=np.int64)
    where = index_visual(set(int(i) for i in image_ids), list(map(str, visual_files)), shape)
    device = pick_device(device_name)
    model.to(device).eval()
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        avt = create_datasets(h5, len(utts), shape)
        with torch.no_grad(), autocast(device), progress_bar(total=len(utts), desc="tensors-dump", unit="utt") as bar:
            for shard in audio:
                # the visual shards this audio shard's images live in (usually one), closed
                # with it: each open shard holds HDF5 caches, so keeping every one open
                # would grow with the test split
                open_files: dict[str, h5py.File] = {}
                with open_shard(shard.path, AUDIO_DATASETS, "audio") as h5a, contextlib.ExitStack() as visual_shards:
                    for chunk in np.array_split(np.arange(len(shard.rows)), -(-len(shard.rows) // batch_size)):
                        positions = shard.positions[chunk]
                        logmel = read_block(h5a, "logmel", shard.rows[chunk], "audio").astype(np.float32, copy=False)
                        features = read_features(image_ids[positions], where, visual_shards, open_files)
                        a = torch.from_numpy(logmel).to(device, non_blocking=True)
                        v = torch.from_numpy(features).to(device, non_blocking=True)
                        tensors = model.alignment(model.encode_audio(a), model.encode_image(v)).float().cpu().numpy()
                        for position, tensor in zip(positions, tensors):
                            avt[int(position)] = tensor
                        bar.update(len(chunk))
        h5["utt_id"] = np.array(utts["utt_id"].tolist(), dtype=h5py.string_dtype())
        write_column(h5, "image_id", image_ids)
        write_column(h5, "pad_frames", pad_frames)
        write_column(h5, "n_frames", n_frames)
        what = "attention scores before softmax" if state["arch"] == "cnnatt" else f"matchmap ({state['model_settings']['similarity']})"
        h5.attrs.update(time_attrs(model, frames) | {
            "model": state["arch"], "integrity": INTEGRITY,
            "source": f"vgsalign tensors-dump: {what} of checkpoint {checkpoint} (epoch {state['epoch']})",
        })
    return len(utts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vgsalign tensors-dump", description="Dump alignment tensors of the test utterances.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--pairs", required=True, help="the test set, pairs.csv")
    p.add_argument("--audio", nargs="+", required=True, help="audio shards of the test split")
    p.add_argument("--visual", nargs="+", required=True, help="visual shards of the test split")
    p.add_argument("--model", required=True, help="the model config slice as JSON")
    p.add_argument("--frames", required=True, help="the frames config slice as JSON")
    p.add_argument("--device", default="auto", choices=list(DEVICE_NAMES))
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch, at most the CPUs this process may use (0: torch's default)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    set_torch_threads(args.threads)
    n = dump_tensors(
        args.checkpoint, args.pairs, args.audio, args.visual,
        settings_from_json(ModelSettings, args.model, "--model", section="model"),
        settings_from_json(FrameSettings, args.frames, "--frames", section="frames"),
        args.out, args.device,
    )
    print(f"vgsalign tensors-dump: wrote {n} alignment tensors to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("tensors-dump", main))
