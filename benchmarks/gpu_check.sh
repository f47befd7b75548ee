#!/usr/bin/env bash
# GPU check: what one GPU gives the pipeline, in under 8 minutes.
#
#   bash benchmarks/gpu_check.sh            # on a GPU machine, from anywhere in the repo
#   GPU_CHECK_SMOKE=1 bash benchmarks/gpu_check.sh   # the same code on the CPU at tiny sizes
#
# Prints:
#   1. CNNatt training samples/s at the original size (config/original_model.yaml over
#      config.yaml: 512 frames x 40 mels, a 14 x 14 x 512 VGG16 grid) with bf16 autocast,
#      at the configured batch and at 4x it, and GPU utilisation sampled by nvidia-smi;
#   2. VGG16 (block5_conv3) feature extraction in images/s, bf16, RANDOM weights (the
#      speed does not depend on the weights; nothing is downloaded);
#   3. the streaming shard loader (vgsalign.train.data.training_batches onto the GPU) in
#      samples/s on synthetic shards in the documented format, against the training rate:
#      it keeps up when it delivers at least as many samples/s as training consumes.
# Targets (issue sizes): CNNatt >= 3,000 samples/s on one H100-class GPU; loader faster.
#
# Needs only the repository: installs torch==2.13.0 and the package (pip install -e .)
# from PyPI when they are missing. Without a GPU it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
SMOKE="${GPU_CHECK_SMOKE:-0}"

if [[ "$SMOKE" != "1" ]]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no GPU on this machine (nvidia-smi finds none); nothing measured"
    exit 0
  fi
  nvidia-smi -L
fi

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "gpu_check: installing torch==2.13.0"
  "$PY" -m pip install -q "torch==2.13.0"
fi
if ! "$PY" -c "import vgsalign" >/dev/null 2>&1; then
  echo "gpu_check: installing the package (pip install -e .)"
  "$PY" -m pip install -q -e .
fi

exec timeout 470 "$PY" - <<'PYTHON'
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from vgsalign.config import load_config
from vgsalign.features.backbones import load_backbone, normalise
from vgsalign.settings import settings_from_dict
from vgsalign.train.data import Batch, epoch_plan, training_batches
from vgsalign.train.device import autocast, pick_device
from vgsalign.train.loop import TrainSettings, batch_loss, build_parts
from vgsalign.train.models import InputShape, ModelSettings
from vgsalign.train.streaming import open_split

SMOKE = os.environ.get("GPU_CHECK_SMOKE") == "1"
SECONDS = 2.0 if SMOKE else 20.0          # timed part of each measurement
TARGET = 3000.0
# what the figures are: the smoke run is the same code at tiny sizes, on the CPU, in float32
SIZE = "SMOKE tiny size, CPU float32" if SMOKE else "original size, bf16 autocast"
PRECISION = "SMOKE CPU float32" if SMOKE else "bf16"


def device() -> torch.device:
    if SMOKE:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        print("gpu_check: nvidia-smi sees a GPU but torch does not (CPU-only torch build?); nothing measured")
        sys.exit(0)
    chosen = pick_device("cuda")
    print(f"device: {torch.cuda.get_device_name(chosen)}, torch {torch.__version__}")
    torch.backends.cudnn.benchmark = True
    return chosen


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class Utilisation:
    """nvidia-smi sampling (every 200 ms) while the block runs: mean and max GPU utilisation."""

    def __init__(self, dev: torch.device):
        self.dev, self.samples, self.proc = dev, [], None

    def __enter__(self):
        if self.dev.type == "cuda":
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
            index = visible[self.dev.index or 0] if visible != [""] else str(self.dev.index or 0)
            self.proc = subprocess.Popen(
                ["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            if line.strip().isdigit():
                self.samples.append(int(line.strip()))

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    def line(self) -> str:
        if not self.samples:
            return "GPU utilisation: not sampled" + (" (CPU smoke run)" if SMOKE else "")
        return f"GPU utilisation: mean {np.mean(self.samples):.0f}%, max {max(self.samples)}% ({len(self.samples)} samples)"


def settings():
    config = load_config("config.yaml", "config/original_model.yaml")
    model = settings_from_dict(ModelSettings, {**config["model"], "arch": "cnnatt"}, "model", section="model")
    train = settings_from_dict(TrainSettings, {**config["train"], "device": "cpu" if SMOKE else "cuda"}, "train", section="train")
    if SMOKE:
        model = settings_from_dict(ModelSettings, {"arch": "cnnatt", "embed_dim": 16, "audio_channels": [8, 8, 8, 8]},
                                   "model", section="model")
    return model, train


def shape() -> InputShape:
    if SMOKE:
        return InputShape(frames=64, n_mels=8, grid_h=4, grid_w=4, channels=16)
    return InputShape(frames=512, n_mels=40, grid_h=14, grid_w=14, channels=512)


def timed(step, dev: torch.device, warmup: int = 3) -> tuple[int, float]:
    for _ in range(warmup):
        step()
    sync(dev)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < SECONDS:
        step()
        steps += 1
        if steps % 5 == 0:
            sync(dev)
    sync(dev)
    return steps, time.perf_counter() - start


def training_rate(dev: torch.device, batch_size: int) -> float:
    model_settings, train = settings()
    s = shape()
    parts = build_parts(model_settings, train, s, dev)
    parts.model.train()
    rng = np.random.default_rng(0)
    batch = Batch(torch.randn(batch_size, s.frames, s.n_mels, device=dev),
                  torch.randn(batch_size, s.grid_h, s.grid_w, s.channels, device=dev), np.arange(batch_size))

    def step():
        parts.optimizer.zero_grad(set_to_none=True)
        with autocast(dev):
            loss = batch_loss(parts.model, parts.loss_fn, train, batch, rng)
        loss.backward()
        parts.optimizer.step()

    with Utilisation(dev) as util:
        steps, seconds = timed(step, dev)
    rate = steps * batch_size / seconds
    print(f"CNNatt training, {SIZE}, batch {batch_size}: {rate:,.0f} samples/s "
          f"({steps} steps in {seconds:.1f} s; target {TARGET:,.0f}); {util.line()}")
    del parts, batch
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return rate


def vgg16_rate(dev: torch.device) -> None:
    backbone = load_backbone("vgg16", None, allow_random_weights=True)
    net = backbone.extractor.to(dev).eval()
    size, batch_size = (64, 4) if SMOKE else (backbone.spec.input_size, 64)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    pixels = torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8, device=dev)

    @torch.inference_mode()
    def step():
        x = normalise(pixels, backbone.spec)
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(dev):
            net(x)

    with Utilisation(dev) as util:
        steps, seconds = timed(step, dev)
    print(f"VGG16 block5_conv3 features, RANDOM weights, {PRECISION}, batch {batch_size} at {size}x{size}: "
          f"{steps * batch_size / seconds:,.0f} images/s (decoding and resizing not included); {util.line()}")


# the synthetic shards of benchmarks/bench_train.py (same format, same seed)
sys.path.insert(0, "benchmarks")
from bench_train import write_shards  # noqa: E402


def loader_rate(dev: torch.device, batch_size: int, shards_per_group: int) -> float:
    s = shape()
    n_shards, images = (2, 20) if SMOKE else (6, 300)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        audio, visual = write_shards(Path(tmp), n_shards, images, s)
        split = open_split("gpu_check", audio, visual)
        plans = epoch_plan(split, np.ones(split.n_captions, dtype=bool), shards_per_group, np.random.default_rng(0))
        start, n = time.perf_counter(), 0
        for batch in training_batches(split, plans, batch_size, dev, np.random.default_rng(1)):
            n += len(batch.image_rows)
        sync(dev)
        seconds = time.perf_counter() - start
    rate = n / seconds
    print(f"streaming loader onto {dev.type}, {n_shards} shards x {images * 5} captions, groups of {shards_per_group}: "
          f"{rate:,.0f} samples/s ({n} samples in {seconds:.1f} s, first group's read included)")
    return rate


def main() -> None:
    dev = device()
    _, train = settings()
    t0 = time.perf_counter()
    rates = [training_rate(dev, train.batch_size), training_rate(dev, 4 * train.batch_size)]
    vgg16_rate(dev)
    loader = loader_rate(dev, train.batch_size, train.shards_per_group)
    fastest = max(rates)
    verdict = "keeps up" if loader >= fastest else f"does NOT keep up ({loader / fastest:.2f}x of training)"
    print(f"loader vs training: {loader:,.0f} vs {fastest:,.0f} samples/s: the loader {verdict}")
    print(f"gpu_check: done in {time.perf_counter() - t0:.0f} s" + (" (CPU smoke run: no GPU figures)" if SMOKE else ""))


main()
PYTHON
