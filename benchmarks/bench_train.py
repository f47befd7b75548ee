"""Training throughput of CNNatt and the matchmap model, and of the batch loader.

    python benchmarks/bench_train.py [--steps 4] [--batch-size 64] [--channels 112] [--grid 14]
                                     [--demo-epoch] [--gpu-steps 30]

Both model sizes: the original's (ModelSettings defaults, config/original_model.yaml) and
config.yaml's demo sizes; inputs 512 frames x 40 mels and a 14 x 14 grid (112
channels: EfficientNet-Lite0 stage 5; 512 for VGG16). On the CPU a few optimiser steps
are timed; with CUDA the same at bf16 autocast with the data resident on the GPU, with
GPU utilisation sampled through nvidia-smi while the steps run. The loader is timed on
its own (gathering batches, host -> device copies where there is a GPU).
--demo-epoch also times one full epoch + validation with config.yaml's model and train
settings on synthetic data of the demo corpus's shape (240 train images x 5 captions, 60
validation images x 5).
Target: >= 3,000 samples/s for CNNatt on one H100 with the loader keeping up.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import yaml  # noqa: E402

from vgsalign.train.models import InputShape, ModelSettings, build_model  # noqa: E402
from vgsalign.train.loop import TrainSettings, autocast, batch_loss, train_one_epoch, evaluate, eval_set  # noqa: E402
from vgsalign.train.data import BatchSource, SplitData  # noqa: E402

TARGET = 3000.0
CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


def model_sizes(arch: str) -> dict[str, ModelSettings]:
    """The original sizes (dataclass defaults) and config.yaml's (the demo's)."""
    from vgsalign.config import load_config

    demo = load_config(CONFIG)["model"]
    return {"original": ModelSettings(arch=arch), "demo config": ModelSettings(**{**demo, "arch": arch})}


def synthetic_split(n_images: int, captions: int, shape: InputShape, seed: int = 0) -> SplitData:
    rng = np.random.default_rng(seed)
    n = n_images * captions
    return SplitData(
        name="synthetic", audio_files=["<memory>"], visual_files=["<memory>"],
        utt_ids=np.array([f"u{i}" for i in range(n)], dtype=object),
        caption_image=np.repeat(np.arange(n_images), captions),
        logmel=rng.normal(size=(n, shape.frames, shape.n_mels)).astype(np.float32),
        n_frames=np.full(n, shape.frames, np.int32), pad_frames=np.zeros(n, np.int32),
        image_ids=np.arange(n_images, dtype=np.int64),
        features=rng.normal(size=(n_images, shape.grid_h, shape.grid_w, shape.channels)).astype(np.float32),
    )


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


def time_steps(model_settings: ModelSettings, shape: InputShape, data: SplitData, device: torch.device, steps: int,
               batch_size: int, loss: str = "triplet_random", warmup: int = 2) -> float:
    torch.manual_seed(0)
    model = build_model(model_settings, shape).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    settings = TrainSettings(loss=loss, batch_size=batch_size)
    source = BatchSource(data, device)
    rng = np.random.default_rng(0)
    order = rng.permutation(data.n_captions)
    batches = [order[(i * batch_size) % (len(order) - batch_size):][:batch_size] for i in range(steps + warmup)]
    model.train()
    start = None
    for i, (logmel, feats, rows) in enumerate(source.iterate(batches)):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast(device):
            a, v = model.encode_audio(logmel), model.encode_image(feats)
            value = batch_loss(model, None, settings, a, v, rows.numpy(), rng)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def time_loader(data: SplitData, device: torch.device, batch_size: int, n_batches: int = 50) -> tuple[float, str]:
    source = BatchSource(data, device)
    rng = np.random.default_rng(1)
    batches = [rng.choice(data.n_captions, batch_size, replace=False) for _ in range(n_batches)]
    start = time.perf_counter()
    for logmel, feats, _ in source.iterate(batches):
        pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_batches * batch_size / (time.perf_counter() - start), source.mode


def demo_epoch(shape: InputShape, device: torch.device) -> None:
    train = synthetic_split(240, 5, shape)
    val = synthetic_split(60, 5, shape, seed=1)
    train_config = yaml.safe_load(CONFIG.read_text())["train"]
    settings = TrainSettings(**{**train_config, "resume": False})
    for arch in ("cnnatt", "matchmap"):
        torch.manual_seed(0)
        model = build_model(model_sizes(arch)["demo config"], shape).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
        _, n, seconds = train_one_epoch(model, None, opt, BatchSource(train, device), train, settings, 1, device)
        t0 = time.perf_counter()
        evaluate(model, None, BatchSource(val, device), val, eval_set(val, 1000, 0), settings, device, 1)
        print(f"  demo-shaped epoch, {arch:8s} (demo config): train {n} captions in {seconds:.1f} s "
              f"({n / seconds:.1f} samples/s), validation {val.n_captions} x {len(val.image_ids)} "
              f"in {time.perf_counter() - t0:.1f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--gpu-steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--gpu-batch-size", type=int, default=256)
    p.add_argument("--channels", type=int, default=112)
    p.add_argument("--grid", type=int, default=14)
    p.add_argument("--demo-epoch", action="store_true")
    args = p.parse_args()
    shape = InputShape(frames=512, n_mels=40, grid_h=args.grid, grid_w=args.grid, channels=args.channels)
    print(f"input: logmel 512 x 40, visual {args.grid} x {args.grid} x {args.channels}; GPU: original sizes; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    cpu = torch.device("cpu")
    data = synthetic_split(64, 5, shape)
    for arch in ("cnnatt", "matchmap"):
        for size, model_settings in model_sizes(arch).items():
            rate = time_steps(model_settings, shape, data, cpu, args.steps, args.batch_size, warmup=1)
            print(f"CPU  {arch:8s} {size:11s} training: {rate:8.1f} samples/s "
                  f"(batch {args.batch_size}, {args.steps} steps)")
    rate, mode = time_loader(data, cpu, args.batch_size)
    print(f"CPU  loader ({mode}): {rate:,.0f} samples/s")
    if args.demo_epoch:
        demo_epoch(shape, cpu)
    if not torch.cuda.is_available():
        print(f"no GPU here: the GPU figures (target >= {TARGET:,.0f} samples/s for CNNatt on one H100) need CUDA")
        return 0
    gpu = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    print(f"GPU: {torch.cuda.get_device_name(0)}, bf16 autocast")
    gdata = synthetic_split(2000, 5, shape)
    for arch in ("cnnatt", "matchmap"):
        for loss in ("triplet_random", "triplet_hardest"):
            with GpuUtilisation() as util:
                rate = time_steps(ModelSettings(arch=arch), shape, gdata, gpu, args.gpu_steps, args.gpu_batch_size,
                                  loss=loss, warmup=5)
            verdict = "" if arch != "cnnatt" else ("  (meets the target)" if rate >= TARGET else "  (below the target)")
            print(f"GPU  {arch:8s} {loss:15s}: {rate:8.0f} samples/s (batch {args.gpu_batch_size}); "
                  f"GPU utilisation {util.summary()}{verdict}")
    for name, g in (("device-resident", 0.5), ("pinned host + prefetch thread", 0.0)):
        source = BatchSource(gdata, gpu, gpu_share=g)
        rng = np.random.default_rng(1)
        batches = [rng.choice(gdata.n_captions, args.gpu_batch_size, replace=False) for _ in range(40)]
        start = time.perf_counter()
        for _ in source.iterate(batches):
            pass
        torch.cuda.synchronize()
        print(f"GPU  loader ({source.mode}): {40 * args.gpu_batch_size / (time.perf_counter() - start):,.0f} samples/s")
    if args.demo_epoch:
        demo_epoch(shape, gpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
