"""Feature extraction throughput: captions/s (librosa vs torch log-mel) and images/s per backbone.

Run: `python benchmarks/bench_features.py [--captions 400] [--images 64] [--threads 2]`.
Measures, on this machine's CPU, the whole per-item path (decode file + compute):
- audio: the stage's path (wav loading with librosa at 16 kHz + log-mel + placement on the
  512-frame grid, captions in parallel threads) with librosa and with torch.stft, and torch
  on padded batches of 64;
- visual: JPEG decoding + resize in DataLoader workers + the backbone, for each backbone;
and, when CUDA is available, images/s with batching and autocast (bf16/fp16) on the GPU.
Peak memory is the process's peak resident set (ru_maxrss) growth during each measurement.
Rates per CPU-second (process CPU time) are printed too: on a shared, busy machine the
wall-clock rates understate what idle cores do. (Visual CPU runs decode in the main
process so that its CPU time is counted.)
Targets: audio >= 200 captions/s on 2 cores; VGG16 >= 1,500 images/s on one H100 end to end.

Storage (`--storage results/<name>/features`): the shards of a finished run rewritten with
each stored precision (float32, float16) and `features.compression` (none, gzip, lzf):
total size, write time, and the time to read every shard whole, per modality.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vgsalign.features.backbones import load_backbone  # noqa: E402
from vgsalign.features.shard_writer import write_shard  # noqa: E402
from vgsalign.features.shards import iter_shards, read_attrs, read_rejects  # noqa: E402
from vgsalign.features.visual import extract as extract_visual  # noqa: E402
from vgsalign.features.visual import pick_device  # noqa: E402
from vgsalign.features.audio import extract as extract_audio  # noqa: E402
from vgsalign.features.logmel import GridSettings, LogMelSettings, load_audio, logmel_torch  # noqa: E402

AUDIO = LogMelSettings(sample_rate=16000, n_mels=40, win_s=0.025, hop_s=0.01, power=2.0, floor=1e-10, floor_mode="clip",
                       n_fft=512, dtype="float32")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the audio step's worker processes)."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_wavs(folder: Path, n: int) -> list[Path]:
    """Speech-like test captions: 2-6 s (SPEECH-COCO captions last about 4 s), 16 kHz PCM16."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        seconds = rng.uniform(2.0, 6.0)
        t = np.arange(int(seconds * 16000)) / 16000
        signal = 0.2 * np.sin(2 * np.pi * (150 + 100 * np.sin(3 * t)) * t) + 0.02 * rng.standard_normal(len(t))
        path = folder / f"cap_{i:05d}.wav"
        soundfile.write(path, signal.astype(np.float32), 16000, subtype="PCM_16")
        paths.append(path)
    return paths


def make_jpegs(folder: Path, n: int) -> list[str]:
    """COCO-sized JPEGs (640 x 480)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
        path = folder / f"img_{i:05d}.jpg"
        Image.fromarray(small).resize((640, 480), Image.BICUBIC).save(path, quality=90)
        paths.append(str(path))
    return paths


def bench_audio(paths: list[Path], threads: int) -> None:
    """The stage's own path (features_audio.extract: load + log-mel + grid, `threads` threads)."""
    captions = pd.DataFrame({"utt_id": [p.stem for p in paths], "image_id": 0, "wav": [str(p) for p in paths]})
    grid = GridSettings(hop_s=0.01, max=512, padding="start")
    torch.set_num_threads(1)  # as the stage: parallel over captions
    extract_audio(captions[:8], AUDIO, grid, "stop", threads=threads, impl="librosa")  # warm up
    extract_audio(captions[:8], AUDIO, grid, "stop", threads=threads, impl="torch")
    results = {}
    for impl in ("librosa", "torch"):
        before, start, cpu_start = peak_mb(), time.perf_counter(), cpu_seconds()
        results[impl], _, _ = extract_audio(captions, AUDIO, grid, "stop", threads=threads, impl=impl)
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        print(f"audio  {impl:8s} {len(paths) / elapsed:8.1f} captions/s   peak RSS +{peak_mb() - before:6.1f} MB"
              f"   (load + log-mel + grid, {threads} worker processes; {len(paths) / cpu:.1f} captions per CPU-second,"
              f" i.e. about {threads * len(paths) / cpu:.0f}/s on {threads} idle cores)")
    signals = [load_audio(p, 16000) for p in paths[:128]]
    cpu_start = time.process_time()
    for i in range(0, len(signals), 64):
        logmel_torch(signals[i:i + 64], AUDIO)
    print(f"audio  torch batches of 64 (padded), log-mel only: {len(signals) / (time.process_time() - cpu_start):.1f} "
          f"captions per CPU-second (slower than one caption at a time on a CPU)")
    diff = float(np.abs(results["librosa"]["logmel"] - results["torch"]["logmel"]).max())
    print(f"audio  max |librosa - torch| = {diff:.2e} dB over {len(paths)} speech-like captions")
    print("audio  target >= 200 captions/s on 2 cores")


def bench_visual(paths: list[str], threads: int, backbones: list[str], gpu_images: int) -> None:
    torch.set_num_threads(threads)
    for name in backbones:
        loaded = load_backbone(name, None, allow_random_weights=True)  # vgg16: random weights, same cost
        extract_visual(paths[:4], loaded.extractor, loaded.spec, "stop", batch_size=4, num_workers=0,
                       device=torch.device("cpu"), amp=None)  # warm up
        before, start, cpu_start = peak_mb(), time.perf_counter(), time.process_time()
        extract_visual(paths, loaded.extractor, loaded.spec, "stop", batch_size=16, num_workers=0,
                       device=torch.device("cpu"), amp=None)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        print(f"visual {name:18s} CPU {len(paths) / elapsed:7.1f} images/s   peak RSS +{peak_mb() - before:6.1f} MB"
              f"   (decode + resize + forward, {threads} threads, batch 16; {len(paths) / cpu:.1f} images per CPU-second)")
    device, amp = pick_device()
    if device.type != "cuda":
        print("visual GPU: no GPU here (the VGG16 target of >= 1,500 images/s on one H100 cannot be measured on this machine)")
        return
    gpu_paths = (paths * (gpu_images // len(paths) + 1))[:gpu_images]
    for name in backbones:
        loaded = load_backbone(name, None, allow_random_weights=True)
        extract_visual(gpu_paths[:256], loaded.extractor, loaded.spec, "stop", batch_size=128,
                       num_workers=max(1, threads - 1), device=device, amp=amp)  # warm up, cudnn autotune
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        extract_visual(gpu_paths, loaded.extractor, loaded.spec, "stop", batch_size=128,
                       num_workers=max(1, threads - 1), device=device, amp=amp)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        print(f"visual {name:18s} GPU {len(gpu_paths) / elapsed:7.1f} images/s end to end   "
              f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB   ({torch.cuda.get_device_name()}, "
              f"autocast {amp}, batch 128, {max(1, threads - 1)} decoding workers)")
        # the model alone, on images already on the GPU: the ceiling decoding must feed
        x = torch.randn(128, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
        net = loaded.extractor.to(device).to(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=amp):
            for _ in range(3):
                net(x)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(20):
                net(x)
            torch.cuda.synchronize()
        print(f"visual {name:18s} GPU {20 * 128 / (time.perf_counter() - start):7.1f} images/s model only")
    print("visual target: VGG16 >= 1,500 images/s on one H100, end to end")


ARRAYS = {"audio": "logmel", "visual": "features"}


def bench_storage(features_dir: Path, folder: Path) -> None:
    """Every (precision, compression) of a run's shards: size, write and whole-read times."""
    print("| modality | shards | items | dtype | compression | size (MB) | vs float32/none | write (s) | read (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for modality, array in ARRAYS.items():
        files = sorted(features_dir.glob(f"{modality}/*/shard_*.h5"))
        if not files:
            continue
        shards = [(read_attrs(f), read_rejects(f).to_dict("records"), data) for f, data in zip(files, iter_shards(files))]
        n_items = sum(len(data[array]) for _, _, data in shards)
        baseline = None
        for dtype in ("float32", "float16"):
            for compression in ("none", "gzip", "lzf"):
                out = folder / f"{modality}_{dtype}_{compression}"
                start = time.perf_counter()
                for k, (attrs, rejects, data) in enumerate(shards):
                    datasets = {name: values for name, values in data.items() if name != "path"}
                    datasets[array] = datasets[array].astype(dtype)
                    write_shard(out / f"shard_{k:05d}.h5", datasets, attrs, rejects, compression=compression)
                written = time.perf_counter() - start
                size = sum(p.stat().st_size for p in out.glob("*.h5")) / 2**20
                baseline = baseline or size
                start = time.perf_counter()
                for part in iter_shards(sorted(out.glob("*.h5")), fields=[array]):
                    assert part[array].dtype == np.dtype(dtype)
                read = time.perf_counter() - start
                print(f"| {modality} | {len(files)} | {n_items} | {dtype} | {compression} | {size:.2f} | "
                      f"{size / baseline:.2f} | {written:.2f} | {read:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=400)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--gpu-images", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "vgg16"])
    parser.add_argument("--storage", type=Path, default=None,
                        help="a run's features folder: measure precision and compression on its shards only")
    args = parser.parse_args()
    if args.storage is not None:
        with tempfile.TemporaryDirectory() as folder:
            bench_storage(args.storage, Path(folder))
        return 0
    print(f"torch {torch.__version__}, {args.threads} threads, CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        bench_audio(make_wavs(folder, args.captions), args.threads)
        bench_visual(make_jpegs(folder, args.images), args.threads, args.backbones, args.gpu_images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
