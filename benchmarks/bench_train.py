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

from vgsalign.features.shard_writer import write_shard  # noqa: E402
from vgsalign.settings import settings_from_dict  # noqa: E402
from vgsalign.train.data import Batch, epoch_plan, load_split, training_batches  # noqa: E402
from vgsalign.train.loop import TrainSettings, batch_loss, build_parts, train_one_epoch  # noqa: E402
from vgsalign.train.models import InputShape, ModelSettings  # noqa: E402
from vgsalign.train.streaming import open_split  # noqa: E402
from vgsalign.train.validation import autocast, eval_set, evaluate  # noqa: E402

TARGET_GPU, TARGET_LOADER = 3000.0, 10000.0
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


def write_shards(root: Path, n_shards: int, images: int, shape: InputShape, captions: int = 5, seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    audio, visual = [], []
    for s in range(n_shards):
        ids = np.arange(s * images, (s + 1) * images, dtype=np.int64) + 1
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
    """One epoch of batches (no model): run in a fresh process by `loader_figures`."""
    audio, visual = sorted((root / "audio").glob("*.h5")), sorted((root / "visual").glob("*.h5"))
    start, cpu_start = time.perf_counter(), time.process_time()  # CPU time of all threads, imports excluded
    split = load_split("bench", audio, visual) if mode == "memory" else open_split("bench", audio, visual)
    plans = epoch_plan(split, np.ones(split.n_captions, dtype=bool), 1, np.random.default_rng(0))
    n = 0
    for batch in training_batches(split, plans, batch_size, torch.device("cpu"), np.random.default_rng(1)):
        n += len(batch.image_rows)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start  # a figure the other jobs' load moves less than wall time
    return {"samples": n, "samples_per_s": n / seconds, "samples_per_cpu_s": n / cpu_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def loader_figures(shard_counts: list[int], images: int, shape: InputShape, batch_size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for count in shard_counts:
            root = Path(tmp) / f"n{count}"
            write_shards(root, count, images, shape)
            for mode in ("stream", "memory"):
                out = subprocess.run([sys.executable, __file__, "--stream-epoch", str(root), mode, str(batch_size)],
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                label = "streamed, 1 shard per group" if mode == "stream" else "whole split in memory"
                load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
                print(f"CPU  loader, {count} shard(s) of {images * 5} captions, {label}: {r['samples_per_s']:8,.0f} samples/s "
                      f"(incl. reading; {r['samples_per_cpu_s']:,.0f} per CPU-second), peak RSS {r['peak_rss_mb']:,.0f} MB; "
                      f"load average {load}")


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
    p.add_argument("--stream-epoch", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stream_epoch:
        print(json.dumps(stream_epoch(Path(args.stream_epoch[0]), args.stream_epoch[1], int(args.stream_epoch[2]))))
        return 0
    shape = InputShape(frames=512, n_mels=40, grid_h=args.grid, grid_w=args.grid, channels=args.channels)
    print(f"input: logmel 512 x 40, visual {args.grid} x {args.grid} x {args.channels}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    cpu = torch.device("cpu")
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
