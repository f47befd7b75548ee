"""`vgsalign tensors`: the alignment tensor of every test utterance with its own image.

For each unique utt_id of the test set (pairs.csv, in order of first appearance) the
trained model's alignment tensor at its native resolution goes into one HDF5 file
(docs/formats.md, "Alignment tensors"): CNNatt gives its audio x image attention scores
before the softmax, the matchmap model its matchmap, shaped (T, H, W). Only the needed
rows are read from the test split's shards.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_path
from ..runtime import set_torch_threads
from ..errors import InputError
from .models import ModelSettings
from ..settings import settings_from_json
from .loop import FrameSettings, autocast, load_checkpoint, model_from_checkpoint, pick_device
from .data import AUDIO_DATASETS, VISUAL_DATASETS, decode_ids, require_datasets


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


def gather_rows(
    utts: pd.DataFrame, audio_files: list[str], visual_files: list[str]
) -> tuple[dict, dict, dict, dict]:
    """Read logmel/n_frames/pad_frames of the wanted utterances and features of their images."""
    wanted = set(utts["utt_id"])
    logmel, n_frames, pad_frames, image_of = {}, {}, {}, {}
    for path in audio_files:
        with h5py.File(path, "r") as h5:
            require_datasets(h5, path, AUDIO_DATASETS, "audio")
            ids = decode_ids(h5["utt_id"][...])
            rows = np.flatnonzero([u in wanted for u in ids])
            if len(rows) == 0:
                continue
            block = h5["logmel"][rows]  # sorted indices, as h5py needs
            nf, pf, im = h5["n_frames"][rows], h5["pad_frames"][rows], h5["image_id"][rows]
            for j, r in enumerate(rows):
                logmel[ids[r]] = np.asarray(block[j], dtype=np.float32)
                n_frames[ids[r]], pad_frames[ids[r]], image_of[ids[r]] = int(nf[j]), int(pf[j]), int(im[j])
    missing = [u for u in utts["utt_id"] if u not in logmel]
    if missing:
        raise InputError(
            audio_files[0] if audio_files else "audio shards",
            f"{len(missing)} test utterance(s) from the pairs table are not in the test-split audio shards "
            f"({len(audio_files)} files), first: {missing[:5]}",
        )
    wrong = [(u, i, image_of[u]) for u, i in zip(utts["utt_id"], utts["image_id"]) if image_of[u] != int(i)]
    if wrong:
        raise InputError(audio_files[0], f"{len(wrong)} utterance(s) whose image_id differs from the pairs table, first (utt_id, pairs, shard): {wrong[:3]}")
    wanted_images = set(int(i) for i in utts["image_id"])
    features = {}
    for path in visual_files:
        with h5py.File(path, "r") as h5:
            require_datasets(h5, path, VISUAL_DATASETS, "visual")
            ids = h5["image_id"][...].astype(np.int64)
            rows = np.flatnonzero([int(i) in wanted_images for i in ids])
            if len(rows):
                block = h5["features"][rows]
                for j, r in enumerate(rows):
                    features[int(ids[r])] = np.asarray(block[j], dtype=np.float32)
    missing_images = sorted(wanted_images - set(features))
    if missing_images:
        raise InputError(
            visual_files[0] if visual_files else "visual shards",
            f"{len(missing_images)} test image(s) are not in the test-split visual shards, first: {missing_images[:5]}",
        )
    return logmel, n_frames, pad_frames, features


def dump_tensors(
    checkpoint: str | Path, pairs_csv: str | Path, audio_files: list[str], visual_files: list[str],
    model_settings: ModelSettings, frames: FrameSettings, out: str | Path, device_name: str = "auto",
    batch_size: int = 64,
) -> int:
    state = load_checkpoint(checkpoint, model_settings.arch)
    model = model_from_checkpoint(state, checkpoint, model_settings)
    recorded = state["frames"]
    if recorded["max"] != frames.max or recorded["padding"] != frames.padding or abs(recorded["hop_s"] - frames.hop_s) > 1e-12:
        raise InputError(checkpoint, f"checkpoint trained with frames {recorded}, config has {frames.__dict__}")
    utts = read_test_utterances(pairs_csv)
    if utts.empty:
        raise InputError(pairs_csv, "the test set has no utterances")
    logmel, n_frames, pad_frames, features = gather_rows(utts, list(map(str, audio_files)), list(map(str, visual_files)))
    shape = model.shape
    first = next(iter(logmel.values()))
    if first.shape != (shape.frames, shape.n_mels):
        raise InputError(audio_files[0], f"logmel rows shaped {first.shape}, the checkpoint expects {(shape.frames, shape.n_mels)}")
    first_v = next(iter(features.values()))
    if first_v.shape != (shape.grid_h, shape.grid_w, shape.channels):
        raise InputError(visual_files[0], f"visual rows shaped {first_v.shape}, the checkpoint expects {(shape.grid_h, shape.grid_w, shape.channels)}")

    device = pick_device(device_name)
    model.to(device).eval()
    ids = utts["utt_id"].tolist()
    image_ids = [int(i) for i in utts["image_id"]]
    n, t = len(ids), shape.tensor_frames
    r = shape.frames / t
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        avt = h5.create_dataset(
            "avt", shape=(n, t, shape.grid_h, shape.grid_w), dtype="float32",
            chunks=(1, t, shape.grid_h, shape.grid_w), compression="gzip", compression_opts=4, shuffle=True,
        )
        with torch.no_grad(), autocast(device):
            for start in range(0, n, batch_size):
                batch = ids[start:start + batch_size]
                a = torch.from_numpy(np.stack([logmel[u] for u in batch])).to(device)
                v = torch.from_numpy(np.stack([features[i] for i in image_ids[start:start + batch_size]])).to(device)
                avt[start:start + len(batch)] = model.alignment(model.encode_audio(a), model.encode_image(v)).float().cpu().numpy()
        h5["utt_id"] = np.array(ids, dtype=h5py.string_dtype())
        h5["image_id"] = np.array(image_ids, dtype=np.int64)
        h5["pad_frames"] = np.array([pad_frames[u] for u in ids], dtype=np.int32)
        h5["n_frames"] = np.array([n_frames[u] for u in ids], dtype=np.int32)
        what = "attention scores before softmax" if state["arch"] == "cnnatt" else f"matchmap ({state['model_settings']['similarity']})"
        h5.attrs.update({
            "input_frames_per_frame": float(r), "seconds_per_frame": float(r * frames.hop_s),
            "hop_s": float(frames.hop_s), "max_frames": int(frames.max), "padding": frames.padding,
            "model": state["arch"],
            "source": f"vgsalign tensors: {what} of checkpoint {checkpoint} (epoch {state['epoch']})",
        })
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vgsalign tensors", description="Dump alignment tensors of the test utterances.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--pairs", required=True, help="the test set, pairs.csv")
    p.add_argument("--audio", nargs="+", required=True, help="audio shards of the test split")
    p.add_argument("--visual", nargs="+", required=True, help="visual shards of the test split")
    p.add_argument("--model", required=True, help="the model config slice as JSON")
    p.add_argument("--frames", required=True, help="the frames config slice as JSON")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch, at most the CPUs this process may use (0: torch's default)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    set_torch_threads(args.threads)
    n = dump_tensors(
        args.checkpoint, args.pairs, args.audio, args.visual,
        settings_from_json(ModelSettings, args.model, "--model"), settings_from_json(FrameSettings, args.frames, "--frames"),
        args.out, args.device,
    )
    print(f"wrote {n} alignment tensors to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("tensors", main))
