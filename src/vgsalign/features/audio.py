"""`vgsalign features-audio`: log-mel energies of one shard's captions into an HDF5 shard.

Reads the split's `captions.csv` plan (vgsalign.features.plan), loads the captions of
shard k (librosa: resampled to audio.sample_rate, folded to mono), computes their log-mel
energies (vgsalign.features.logmel), cuts/pads them onto the frames.max grid and writes
`utt_id`, `image_id`, `logmel`, `n_frames`, `pad_frames` with every setting as
attributes; log-mels are stored as `audio.dtype` (float32 or float16), every chunk
compressed as `features.compression` and checksummed (vgsalign.features.shard_writer).
Captions are computed in chunks of 64 by `--threads` worker processes (forked, so they
share the loaded libraries); a worker that dies fails the step at once with one line
naming the shard. Memory holds the shard's log-mel array and a few chunks in flight.
A missing, unreadable or empty wav stops the job naming the file, or with
`features.on_error: skip` is listed in the shard's rejects and counted. A silent wav is
kept (its energies are all at the floor), counted in `n_silent` and named in the log.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ..errors import InputError
from ..runtime import progress_bar
from ..settings import settings_from_json
from .logmel import PAD_VALUE, GridSettings, LogMelSettings, load_audio, logmel_librosa, logmel_torch, place_on_grid
from .plan import ShardingSettings, handle_problems
from .shard_writer import kept_rows, remove_leftovers, write_shard

CHUNK = 64  # captions handed to a worker process at a time
# torch.stft one caption at a time: 2.5-3x librosa's captions per CPU-second, wav loading
# included, and equal within 1e-4 dB on speech (benchmarks/bench_features.py); batching
# padded captions is slower on a CPU
LOGMEL_IMPL = "torch"


def audio_attrs(audio: LogMelSettings, grid: GridSettings, sharding: ShardingSettings) -> dict:
    """Every parameter that determines an audio shard's numbers (compared between shards)."""
    return {
        "modality": "audio",
        **dataclasses.asdict(audio),  # its hop_s equals frames.hop_s (checked in main)
        "max_frames": grid.max, "padding": grid.padding, "pad_value": PAD_VALUE,
        "shard_size": sharding.shard_size, "shuffle": sharding.shuffle, "shuffle_seed": sharding.shuffle_seed,
        "on_error": sharding.on_error,
        "logmel_definition": "10*log10(floored(melspectrogram(hann win_length, n_fft, centred, zero pad)))",
    }


def logmel_of(signal: np.ndarray, audio: LogMelSettings, impl: str = LOGMEL_IMPL) -> np.ndarray:
    """(frames, n_mels) log-mel energies of one signal with the stage's implementation."""
    return logmel_torch([signal], audio)[0] if impl == "torch" else logmel_librosa(signal, audio)


# Speech rises and falls by tens of dB between syllables and pauses; a wav whose frame
# energy stays within this spread (standard deviation, dB) over half a second or more is
# stationary noise, not speech (white noise: about 0.6 dB; the demo's speech: over 20 dB)
MIN_ENERGY_SPREAD_DB = 2.0
MIN_FRAMES_FOR_SPREAD = 50


def energy_spread_db(logmel: np.ndarray) -> float:
    """Standard deviation over frames of each frame's total energy (dB), from its log-mel."""
    frame_db = 10 * np.log10(np.sum(np.power(10.0, logmel.astype(np.float64) / 10), axis=1))
    return float(frame_db.std())


def _caption(utt_id: str, wav: str, audio: LogMelSettings, impl: str):
    """(log-mel, silent, problem) of one caption; an unreadable wav, or one that holds
    stationary noise rather than speech, gives a problem, not an exception."""
    try:
        signal = load_audio(wav, audio.sample_rate)
    except InputError as err:
        return None, False, {"id": utt_id, "path": wav, "problem": err.problem}
    logmel, silent = logmel_of(signal, audio, impl), not np.any(signal)
    if not silent and len(logmel) >= MIN_FRAMES_FOR_SPREAD:
        spread = energy_spread_db(logmel)
        if spread < MIN_ENERGY_SPREAD_DB:
            return None, False, {"id": utt_id, "path": wav, "problem": (
                f"no speech: the frame energy varies by {spread:.1f} dB (standard deviation) over "
                f"{len(logmel) * audio.hop_s:.1f} s, under the {MIN_ENERGY_SPREAD_DB} dB of any speech "
                f"(stationary noise?)")}
    return logmel, silent, None


def _chunk(items: list[tuple[str, str]], audio: LogMelSettings, impl: str) -> list[tuple]:
    """What `_caption` gives for each (utt_id, wav) of a chunk (in a worker process)."""
    return [_caption(utt_id, wav, audio, impl) for utt_id, wav in items]


def _worker_start() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    # parallel over captions, not inside one small FFT or matrix product: one thread each
    # for torch and for numpy's BLAS (several per worker oversubscribe the cores)
    torch.set_num_threads(1)
    threadpool_limits(1)


def chunk_results(items: list[tuple[str, str]], audio: LogMelSettings, impl: str, threads: int,
                  where: str) -> Iterator[tuple[int, list[tuple]]]:
    """(first row, results) per chunk of CHUNK captions, in order.

    With threads > 1 the chunks go to that many worker processes, at most two per worker
    in flight (memory: a few chunks of signals). A worker that dies (killed, out of
    memory) breaks the pool: the step stops at once with one line naming the shard.
    """
    starts = list(range(0, len(items), CHUNK))
    if threads <= 1 or len(starts) <= 1:
        for start in starts:
            yield start, _chunk(items[start:start + CHUNK], audio, impl)
        return
    # the first chunk here: the libraries' lazy set-up (compiled resamplers, filterbanks) is
    # then done once and inherited by every forked worker instead of repeated in each
    yield 0, _chunk(items[:CHUNK], audio, impl)
    starts = starts[1:]
    context = multiprocessing.get_context("fork")  # workers inherit the loaded libraries
    with ProcessPoolExecutor(max_workers=threads, mp_context=context, initializer=_worker_start) as pool:
        pending: collections.deque = collections.deque()
        try:
            for start in starts + [None] * (2 * threads):
                if start is not None:
                    pending.append((start, pool.submit(_chunk, items[start:start + CHUNK], audio, impl)))
                if pending and (start is None or len(pending) >= 2 * threads):
                    first, future = pending.popleft()
                    try:
                        results = future.result()
                    except BrokenProcessPool:
                        raise InputError(where, f"an audio worker process died while computing captions {first}-"
                                                f"{min(first + CHUNK, len(items)) - 1} of the shard (out of memory "
                                                f"or killed?); rerun, or lower the step's threads") from None
                    yield first, results
        finally:  # stopped early (a bad wav, a dead worker): drop the chunks not started
            for _, future in pending:
                future.cancel()


def extract(captions: pd.DataFrame, audio: LogMelSettings, grid: GridSettings, on_error: str,
            threads: int = 1, impl: str = LOGMEL_IMPL,
            where: str = "audio shard") -> tuple[dict[str, np.ndarray], list[dict], list[str]]:
    """Datasets of the captions' shard, the rejected items and the silent captions' ids.

    Captions are loaded and transformed in chunks, in `threads` worker processes, in order.
    Memory: the shard's log-mel array and a few chunks in flight.
    """
    n = len(captions)
    logmel = np.zeros((n, grid.max, audio.n_mels), dtype=np.dtype(audio.dtype))
    n_frames = np.zeros(n, dtype=np.int32)
    pad_frames = np.zeros(n, dtype=np.int32)
    keep = np.zeros(n, dtype=bool)
    rejects, silent = [], []
    items = list(zip(captions["utt_id"].astype(str), captions["wav"].astype(str)))
    with progress_bar(total=n, desc="captions", unit="cap") as bar:
        for start, results in chunk_results(items, audio, impl, threads, where):
            for row, (matrix, is_silent, problem) in enumerate(results, start=start):
                if problem is not None:
                    handle_problems([problem], on_error)
                    rejects.append(problem)
                    continue
                if is_silent:
                    silent.append(items[row][0])
                logmel[row], n_frames[row], pad_frames[row] = place_on_grid(matrix, grid)
                keep[row] = True
            bar.update(len(results))
    datasets = {
        "utt_id": captions["utt_id"].to_numpy(dtype=object)[keep],
        "image_id": captions["image_id"].to_numpy(dtype=np.int64)[keep],
        "logmel": kept_rows(logmel, keep), "n_frames": n_frames[keep], "pad_frames": pad_frames[keep],
    }
    return datasets, rejects, silent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign features-audio", description="Log-mel features of one shard.")
    parser.add_argument("--captions", required=True, help="captions.csv of the split (shard index)")
    parser.add_argument("--split", required=True)
    parser.add_argument("--shard", type=int, required=True, help="shard number k")
    parser.add_argument("--n-shards", type=int, required=True)
    parser.add_argument("--audio", required=True, help="the audio config section as JSON")
    parser.add_argument("--frames", required=True, help="the frames config section as JSON")
    parser.add_argument("--features", required=True, help="the features config section as JSON")
    parser.add_argument("--threads", type=int, default=1, help="worker processes computing captions (1: in this one)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    audio = settings_from_json(LogMelSettings, args.audio, "--audio", section="audio")
    audio.check()
    grid = settings_from_json(GridSettings, args.frames, "--frames", section="frames")
    sharding = settings_from_json(ShardingSettings, args.features, "--features", section="features")
    if abs(audio.hop_s - grid.hop_s) > 1e-12:
        raise InputError("audio.hop_s", f"{audio.hop_s} differs from frames.hop_s {grid.hop_s}")

    for leftover in remove_leftovers(args.out):
        print(f"removed {leftover}, left by an interrupted run", file=sys.stderr)
    import torch

    torch.set_num_threads(1)  # parallel over captions (processes), not inside one small FFT
    index = pd.read_csv(args.captions, dtype={"utt_id": str, "wav": str})
    captions = index[index["shard"] == args.shard]
    datasets, rejects, silent = extract(captions, audio, grid, sharding.on_error, threads=args.threads,
                                        where=f"{args.out} (shard {args.shard})")
    for utt_id in silent:
        print(f"warning: caption {utt_id} is silent (all samples zero); its log-mel is at the floor", file=sys.stderr)
    attrs = {
        **audio_attrs(audio, grid, sharding), "split": args.split, "shard_index": args.shard, "n_shards": args.n_shards,
        "n_items": len(datasets["utt_id"]), "n_silent": len(silent), "logmel_impl": LOGMEL_IMPL,
    }
    write_shard(Path(args.out), datasets, attrs, rejects, compression=sharding.compression)
    print(f"{args.out}: {len(datasets['utt_id'])} captions, {len(rejects)} rejected, {len(silent)} silent")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("features-audio", main))
