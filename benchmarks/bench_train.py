"""Training throughput of CNNatt and the matchmap model, and of the streaming shard loader.

    python benchmarks/bench_train.py [--steps 4] [--batch-size 64] [--channels 112] [--grid 14]
                                     [--loader-shards 1 8] [--shard-images 200] [--demo-epoch] [--gpu-steps 30]

Models: both sizes, the original's (config/original_model.yaml) and config.yaml's demo
sizes; inputs 512 frames x 40 mels and a 14 x 14 grid (112 channels: EfficientNet-Lite0
stage 5; 512 for VGG16). On the CPU a few optimiser steps are timed; with CUDA the same
at bf16 autocast, with GPU utilisation sampled through nvidia-smi while the steps run.

Loader: synthetic shards in the documented format (`--shard-images` images x 5 captions
each, written with vgsalign.features.shard_writer.write_shard) are streamed for one epoch
through `training_batches` (groups of one shard, the next read in a background thread),
in a fresh process per shard count, which prints samples/s (wall, and per CPU-second of
all its threads, which other jobs' load moves less), its peak RSS and the load average;
the same for the whole split held in memory (`load_split`). Target: >= 10,000 samples/s on 2
cores, and a peak RSS that does not grow with the number of shards.
--demo-epoch also times one epoch + validation at config.yaml's settings on demo-shaped
data (240 train images x 5 captions).

Memory (--rss [--rss-sizes 5000 20000 80000] [--rss-work DIR]): for each size, synthetic
training shards of that many captions (250 images x 5 captions per shard, as the scale
rehearsal writes them) and test shards of half as many, written with the same writer;
then the real `vgsalign train-model` (one epoch, the rehearsal's small model and
validation settings) and `vgsalign tensors-dump` (every test caption in pairs.csv) run
as child processes, and their peak RSS (os.wait4) is printed with its growth from the
smallest to the largest size. Target: at most 1.3x from 5,000 to 80,000 captions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from measured import run_measured  # noqa: E402  (benchmarks/measured.py)
from vgsalign.features.shard_writer import write_shard  # noqa: E402
from vgsalign.settings import settings_from_dict  # noqa: E402
from vgsalign.train import chunks  # noqa: E402
from vgsalign.train.data import Batch, epoch_plan, load_split, training_batches  # noqa: E402
from vgsalign.train.loop import TrainSettings, batch_loss, build_parts, train_one_epoch  # noqa: E402
from vgsalign.train.models import InputShape, ModelSettings  # noqa: E402
from vgsalign.train.streaming import open_split  # noqa: E402
from vgsalign.train.validation import autocast, eval_set, evaluate  # noqa: E402

TARGET_GPU, TARGET_LOADER, TARGET_RSS_GROWTH = 3000.0, 10000.0, 1.3
RSS_SHARD_IMAGES, CAPTIONS_PER_IMAGE = 250, 5
CONFIG = ROOT / "config.yaml"
ORIGINAL = ROOT / "config/original_model.yaml"


def train_settings(**over) -> TrainSettings:
    """config.yaml's train slice, the schema's defaults for the rest, then `over`."""
    return settings_from_dict(TrainSettings, {**yaml.safe_load(CONFIG.read_text())["train"], **over}, section="train")


def model_sizes(arch: str) -> dict[str, ModelSettings]:
    demo = yaml.safe_load(CONFIG.read_text())["model"]
    original = {**demo, **yaml.safe_load(ORIGINAL.read_text())["model"]}
    return {size: settings_from_dict(ModelSettings, {**values, "arch": arch}, section="model")
            for size, values in (("original", original), ("demo config", demo))}


def write_shards(root: Path, n_shards: int, images: int, shape: InputShape, captions: int = 5, seed: int = 0,
                 id_base: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    audio, visual = [], []
    for s in range(n_shards):
        ids = np.arange(s * images, (s + 1) * images, dtype=np.int64) + 1 + id_base
        cap_ids = np.repeat(ids, captions)
        a, v = root / "audio" / f"shard_{s:05d}.h5", root / "visual" / f"shard_{s:05d}.h5"
        a.parent.mkdir(parents=True, exist_ok=True)
        v.parent.mkdir(parents=True, exist_ok=True)
        write_shard(a, {"utt_id": np.array([f"{i}_{k}" for i in ids for k in range(captions)]), "image_id": cap_ids,
                        "logmel": rng.normal(size=(len(cap_ids), shape.frames, shape.n_mels)).astype(np.float32),
                        "n_frames": np.full(len(cap_ids), shape.frames, np.int32), "pad_frames": np.zeros(len(cap_ids), np.int32)},
                    {"n_mels": shape.n_mels, "max_frames": shape.frames, "padding": "start", "hop_s": 0.01}, [])
        write_shard(v, {"image_id": ids, "features": rng.normal(size=(images, shape.grid_h, shape.grid_w, shape.channels)).astype(np.float32)},
                    {"backbone": "synthetic"}, [])
        audio.append(a)
        visual.append(v)
    return audio, visual


def stream_epoch(root: Path, mode: str, batch_size: int) -> dict:
    """One epoch of batches (no model): run in a fresh process by `loader_figures`.

    `mode`: `stream` or `memory`, then `-hdf5` (HDF5's checksummed reads) or `-direct`
    (direct chunk reads, vgsalign.train.chunks; the kernel is loaded before the clock
    starts, as the imports are: a one-off ~2 s per process that a full-size split repays)."""
    audio, visual = sorted((root / "audio").glob("*.h5")), sorted((root / "visual").glob("*.h5"))
    holding, reads = mode.split("-")
    direct = reads == "direct"
    if direct:
        chunks._compile()
        with tempfile.TemporaryDirectory() as tmp:  # first call: numba's cached machine code
            write_shards(Path(tmp), 1, 2, InputShape(frames=8, n_mels=4, grid_h=2, grid_w=2, channels=3))
            warm = open_split("warm", sorted(Path(tmp).glob("audio/*.h5")), sorted(Path(tmp).glob("visual/*.h5")))
            warm.direct_reads = True
            warm.read_group((0,))
    start, cpu_start = time.perf_counter(), time.process_time()  # CPU time of all threads, imports excluded
    if holding == "memory":
        split = load_split("bench", audio, visual, direct_reads=direct)
    else:
        split = open_split("bench", audio, visual)
        split.direct_reads = direct
    plans = epoch_plan(split, np.ones(split.n_captions, dtype=bool), 1, np.random.default_rng(0))
    n = 0
    for batch in training_batches(split, plans, batch_size, torch.device("cpu"), np.random.default_rng(1)):
        n += len(batch.image_rows)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start  # a figure the other jobs' load moves less than wall time
    return {"samples": n, "samples_per_s": n / seconds, "samples_per_cpu_s": n / cpu_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


LOADER_MODES = {"stream-hdf5": "streamed, 1 shard per group, HDF5 reads",
                "stream-direct": "streamed, 1 shard per group, direct reads",
                "memory-direct": "whole split in memory, direct reads"}


def loader_figures(shard_counts: list[int], images: int, shape: InputShape, batch_size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for count in shard_counts:
            root = Path(tmp) / f"n{count}"
            write_shards(root, count, images, shape)
            for mode, label in LOADER_MODES.items():
                out = subprocess.run([sys.executable, __file__, "--stream-epoch", str(root), mode, str(batch_size)],
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
                verdict = "meets" if r["samples_per_s"] >= TARGET_LOADER else "below"
                print(f"CPU  loader, {count} shard(s) of {images * 5} captions, {label}: {r['samples_per_s']:8,.0f} samples/s "
                      f"({verdict} the {TARGET_LOADER:,.0f} target; incl. reading; {r['samples_per_cpu_s']:,.0f} per "
                      f"CPU-second), peak RSS {r['peak_rss_mb']:,.0f} MB; load average {load}", flush=True)


def run_child(command: list[str], log: Path) -> tuple[float, float]:
    """Run a step in its own process; returns (its peak RSS in MB, wall seconds)."""
    figures = run_measured(command, log=log, src=ROOT / "src", name="bench_train")
    return figures["rss_mb"], figures["wall"]


def rss_corpus(work: Path, n_captions: int, shape: InputShape) -> tuple[list, list, list, list, Path]:
    """Training shards of n_captions captions and test shards of half as many (reused when present)."""
    per_shard = RSS_SHARD_IMAGES * CAPTIONS_PER_IMAGE
    splits = {}
    for split, count, seed in (("train", n_captions, 0), ("test", n_captions // 2, 1)):
        root = work / f"{n_captions}" / split
        n_shards = max(1, -(-count // per_shard))
        done = root / "complete"
        if not done.is_file():
            write_shards(root, n_shards, RSS_SHARD_IMAGES, shape, CAPTIONS_PER_IMAGE, seed=seed,
                         id_base=100_000_000 if split == "train" else 200_000_000)
            done.write_text("")
        splits[split] = sorted((root / "audio").glob("*.h5")), sorted((root / "visual").glob("*.h5"))
    pairs = work / f"{n_captions}" / "pairs.csv"
    if not pairs.is_file():  # every test caption once: the pairs grow with the test split
        rows = [f"{image}_{k},{image}" for image in range(200_000_001, 200_000_001 + len(splits["test"][0]) * RSS_SHARD_IMAGES)
                for k in range(CAPTIONS_PER_IMAGE)]
        pairs.write_text("utt_id,image_id\n" + "\n".join(rows) + "\n")
    return *splits["train"], *splits["test"], pairs


def rss_figures(sizes: list[int], work: Path | None, shape: InputShape, threads: int) -> None:
    """Peak RSS of train-model and tensors-dump per training-split size, and its growth."""
    model = json.dumps({"arch": "cnnatt", "embed_dim": 32, "audio_channels": [8, 16, 16, 32]})  # the rehearsal's
    train = json.dumps({"epochs": 1, "batch_size": 64, "eval_max_images": 200, "pool_size": 200, "pool_trials": 5,
                        "lr": 1e-3, "device": "cpu"})
    frames = json.dumps({"max": shape.frames, "padding": "start", "hop_s": 0.01})
    with tempfile.TemporaryDirectory(prefix="bench_rss_") as tmp:
        base = Path(work) if work else Path(tmp)
        measured: dict[str, list[tuple[int, float, float]]] = {"train-model": [], "tensors-dump": []}
        for n in sizes:
            train_audio, train_visual, test_audio, test_visual, pairs = rss_corpus(base, n, shape)
            out = base / f"{n}" / "run"
            out.mkdir(parents=True, exist_ok=True)
            step = [sys.executable, "-m", "vgsalign"]
            rss, wall = run_child(step + ["train-model", "--train-audio", *map(str, train_audio), "--train-visual",
                                          *map(str, train_visual), "--model", model, "--train", train, "--frames", frames,
                                          "--resume", "false", "--threads", str(threads), "--out-dir", str(out / "train")],
                                  out / "train.log")
            measured["train-model"].append((n, rss, wall))
            print(f"RSS  train-model, {n:,} training captions ({len(train_audio)} shards): peak {rss:,.0f} MB, "
                  f"{wall:.0f} s; load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
            rss, wall = run_child(step + ["tensors-dump", "--checkpoint", str(out / "train/checkpoint_best.pt"), "--pairs",
                                          str(pairs), "--audio", *map(str, test_audio), "--visual", *map(str, test_visual),
                                          "--model", model, "--frames", frames, "--device", "cpu", "--threads", str(threads),
                                          "--out", str(out / "tensors.h5")], out / "tensors.log")
            measured["tensors-dump"].append((n, rss, wall))
            print(f"RSS  tensors-dump, {n // 2:,} test captions ({len(test_audio)} shards): peak {rss:,.0f} MB, "
                  f"{wall:.0f} s; load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
            (out / "tensors.h5").unlink(missing_ok=True)
        for step_name, rows in measured.items():
            growth = rows[-1][1] / rows[0][1]
            verdict = "meets" if growth <= TARGET_RSS_GROWTH else "misses"
            print(f"RSS  {step_name}: {' / '.join(f'{r:,.0f}' for _, r, _ in rows)} MB at "
                  f"{' / '.join(f'{n:,}' for n, _, _ in rows)} training captions: {growth:.2f}x from the smallest to the "
                  f"largest ({verdict} the target of at most {TARGET_RSS_GROWTH}x)")


def synthetic_batch(shape: InputShape, batch_size: int, device: torch.device, rng: np.random.Generator) -> Batch:
    return Batch(torch.from_numpy(rng.normal(size=(batch_size, shape.frames, shape.n_mels)).astype(np.float32)).to(device),
                 torch.from_numpy(rng.normal(size=(batch_size, shape.grid_h, shape.grid_w, shape.channels)).astype(np.float32)).to(device),
                 np.arange(batch_size))


def time_steps(model_settings: ModelSettings, shape: InputShape, device: torch.device, steps: int, batch_size: int,
               loss: str = "triplet_random", warmup: int = 2) -> float:
    settings = train_settings(loss=loss, batch_size=batch_size, device=device.type)
    parts = build_parts(model_settings, settings, shape, device)
    rng = np.random.default_rng(0)
    batch = synthetic_batch(shape, batch_size, device, rng)
    parts.model.train()
    for i in range(steps + warmup):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast(device):
            value = batch_loss(parts.model, parts.loss_fn, settings, batch, rng)
        parts.optimizer.zero_grad(set_to_none=True)
        value.backward()
        parts.optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


class GpuUtilisation:
    """Samples nvidia-smi utilisation.gpu every 0.2 s in a thread."""

    def __init__(self):
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.samples.append(int(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        return f"{np.mean(self.samples):.0f}% mean ({len(self.samples)} samples)" if self.samples else "n/a"


def demo_epoch(shape: InputShape, device: torch.device) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        audio, visual = write_shards(Path(tmp), 1, 240, shape)
        split = open_split("demo-shaped", audio, visual)
        settings = train_settings(validation="heldout", device=device.type)
        use = np.ones(split.n_captions, dtype=bool)
        es = eval_set(split, np.arange(split.n_images) < 60, 1000, 0)
        for arch in ("cnnatt", "matchmap"):
            parts = build_parts(model_sizes(arch)["demo config"], settings, InputShape(**shape.as_dict()), device)
            _, n, seconds = train_one_epoch(parts, split, use, settings, 1, device)
            t0 = time.perf_counter()
            evaluate(parts.model, parts.log_temperature(), es, settings, device, 1)
            print(f"  demo-shaped epoch, {arch:8s} (demo config): train {n} captions in {seconds:.1f} s "
                  f"({n / seconds:.1f} samples/s), validation {len(es.captions)} x {len(es.images)} in {time.perf_counter() - t0:.1f} s")


def gpu_figures(shape: InputShape, args: argparse.Namespace) -> None:
    gpu = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    print(f"GPU: {torch.cuda.get_device_name(0)}, bf16 autocast")
    for arch in ("cnnatt", "matchmap"):
        for loss in ("triplet_random", "triplet_hardest"):
            with GpuUtilisation() as util:
                rate = time_steps(model_sizes(arch)["original"], shape, gpu, args.gpu_steps, args.gpu_batch_size, loss=loss, warmup=5)
            verdict = "" if arch != "cnnatt" else ("  (meets the target)" if rate >= TARGET_GPU else "  (below the target)")
            print(f"GPU  {arch:8s} {loss:15s}: {rate:8.0f} samples/s (batch {args.gpu_batch_size}); "
                  f"GPU utilisation {util.summary()}{verdict}")
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        audio, visual = write_shards(Path(tmp), 4, args.shard_images, shape)
        split = open_split("bench", audio, visual)
        plans = epoch_plan(split, np.ones(split.n_captions, dtype=bool), 1, np.random.default_rng(0))
        start, n = time.perf_counter(), 0
        for batch in training_batches(split, plans, args.gpu_batch_size, gpu, np.random.default_rng(1)):
            n += len(batch.image_rows)
        torch.cuda.synchronize()
        print(f"GPU  loader (streamed shards, pinned memory, non-blocking copies): {n / (time.perf_counter() - start):,.0f} samples/s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--gpu-steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--gpu-batch-size", type=int, default=256)
    p.add_argument("--channels", type=int, default=112)
    p.add_argument("--grid", type=int, default=14)
    p.add_argument("--loader-shards", type=int, nargs="*", default=[1, 8])
    p.add_argument("--shard-images", type=int, default=200)
    p.add_argument("--skip-models", action="store_true", help="loader figures only")
    p.add_argument("--demo-epoch", action="store_true")
    p.add_argument("--rss", action="store_true", help="peak RSS of train-model and tensors-dump per split size")
    p.add_argument("--rss-sizes", type=int, nargs="+", default=[5000, 20000, 80000], help="training captions")
    p.add_argument("--rss-work", type=Path, help="keep the synthetic shards here (reused when present)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the --rss steps")
    p.add_argument("--stream-epoch", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stream_epoch:
        print(json.dumps(stream_epoch(Path(args.stream_epoch[0]), args.stream_epoch[1], int(args.stream_epoch[2]))))
        return 0
    shape = InputShape(frames=512, n_mels=40, grid_h=args.grid, grid_w=args.grid, channels=args.channels)
    print(f"input: logmel 512 x 40, visual {args.grid} x {args.grid} x {args.channels}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    cpu = torch.device("cpu")
    if args.rss:
        rss_figures(args.rss_sizes, args.rss_work, shape, args.threads)
        return 0
    if not args.skip_models:
        for arch in ("cnnatt", "matchmap"):
            for size, model_settings in model_sizes(arch).items():
                rate = time_steps(model_settings, shape, cpu, args.steps, args.batch_size, warmup=1)
                print(f"CPU  {arch:8s} {size:11s} training: {rate:8.1f} samples/s (batch {args.batch_size}, {args.steps} steps)")
    loader_figures(args.loader_shards, args.shard_images, shape, args.batch_size)
    if args.demo_epoch:
        demo_epoch(shape, cpu)
    if not torch.cuda.is_available():
        print(f"no GPU here: the GPU figures (target >= {TARGET_GPU:,.0f} samples/s for CNNatt on one H100) need CUDA")
        return 0
    gpu_figures(shape, args)
    if args.demo_epoch:
        demo_epoch(shape, torch.device("cuda"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
