"""Demo-corpus generation speed (captions/s) for the default size and a 10x larger corpus.

    python benchmarks/bench_demo_corpus.py [--threads N] [--full-10x] [--sample 60]

Default size: every split of config.yaml's demo section is generated for real (into a
temporary folder), timed end to end. 10x: by default, a random sample of the 10x corpus's
images is generated with the same code (each image and its captions are independent, so
time grows linearly with the number of images) and the total is extrapolated; the output
says so. `--full-10x` generates the whole 10x corpus instead (about 10x the default time).
Target: the default corpus in a few minutes on 2 cores (the whole pipeline runs in minutes).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vgsalign.demo import corpus as demo_corpus  # noqa: E402
from vgsalign.config import load_config  # noqa: E402
from vgsalign.demo.corpus import DemoSettings, ImageTask, generate_split, split_image_base, split_seed  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def full_run(settings: DemoSettings, threads: int, out: Path) -> tuple[float, int, int, float]:
    started = time.perf_counter()
    images = captions = 0
    audio = 0.0
    for split in sorted(settings.n_images):
        manifest = generate_split(out, split, settings=settings, threads=threads)
        images += manifest["counts"]["images"]
        captions += manifest["counts"]["captions"]
        audio += manifest["counts"]["audio_s"]
    return time.perf_counter() - started, images, captions, audio


def sampled_run(settings: DemoSettings, threads: int, out: Path, sample: int) -> tuple[float, int, int]:
    """Time `sample` images drawn at random from the (large) corpus; return (seconds, images, captions)."""
    import multiprocessing

    rng = np.random.default_rng(12345)
    tasks = []
    splits = sorted(settings.n_images)
    total = sum(settings.n_images.values())
    for split in splits:
        n = settings.n_images[split]
        k = max(1, round(sample * n / total))
        for i in sorted(rng.choice(n, size=min(k, n), replace=False)):
            tasks.append(ImageTask(split=split, split_seed=split_seed(settings.seed, split), index=int(i),
                                   image_id=split_image_base(split) + int(i) + 1, unannotated=False,
                                   settings=settings, out_root=str(out)))
    started = time.perf_counter()
    if threads == 1:
        results = [demo_corpus.make_image(t) for t in tasks]
    else:
        with multiprocessing.get_context("fork").Pool(threads) as pool:
            results = pool.map(demo_corpus.make_image, tasks, chunksize=1)
    elapsed = time.perf_counter() - started
    return elapsed, len(tasks), sum(len(r["truth_captions"]) for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--full-10x", action="store_true", help="generate the whole 10x corpus (slow)")
    parser.add_argument("--sample", type=int, default=60, help="images timed for the 10x extrapolation")
    parser.add_argument("--default-sample", type=int, default=0,
                        help="time only this many images of the default corpus and extrapolate (busy machines)")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    args = parser.parse_args()

    config = load_config(Path(args.config))  # the demo slice with the schema's defaults filled
    settings = DemoSettings(**config["demo"])
    big = DemoSettings(**{**config["demo"], "n_images": {k: 10 * v for k, v in settings.n_images.items()}})
    print(f"machine: {os.cpu_count()} CPU(s); threads: {args.threads}")

    load = os.getloadavg()[0]
    if load > 1.5:
        print(f"note: load average {load:.1f} at start: wall times include other processes; "
              "the CPU-time figures (CPU s per caption) are the ones to compare")
    target = 240.0
    with tempfile.TemporaryDirectory() as tmp:
        default_captions = sum(settings.n_images.values()) * settings.captions_per_image
        if args.default_sample:
            cpu0 = cpu_seconds()
            seconds, images, captions = sampled_run(settings, args.threads, Path(tmp) / "default", args.default_sample)
            cpu = cpu_seconds() - cpu0
            print(f"default corpus {settings.n_images} x {settings.captions_per_image} captions: measured a random "
                  f"sample of {images} images ({captions} captions) in {seconds:.1f} s = {captions / seconds:.2f} "
                  f"captions/s, {cpu / captions:.3f} CPU s per caption; EXTRAPOLATED: {default_captions} captions "
                  f"in about {default_captions / (captions / seconds):.0f} s here, "
                  f"{default_captions * cpu / captions / 2:.0f} s on 2 idle cores")
            estimate = default_captions * cpu / captions / 2
        else:
            cpu0 = cpu_seconds()
            seconds, images, captions, audio = full_run(settings, args.threads, Path(tmp) / "default")
            cpu = cpu_seconds() - cpu0
            print(f"default corpus {settings.n_images} x {settings.captions_per_image} captions: measured "
                  f"{images} images, {captions} captions ({audio / 60:.1f} min of speech) in {seconds:.1f} s "
                  f"= {captions / seconds:.2f} captions/s, {images / seconds:.2f} images/s, "
                  f"{cpu / captions:.3f} CPU s per caption (2 idle cores: about {cpu / 2:.0f} s)")
            estimate = min(seconds, cpu / 2)
        verdict = "meets" if estimate <= target else "misses"
        print(f"  target: default corpus within {target:.0f} s on 2 cores -> {verdict} (about {estimate:.0f} s)")

        big_captions = sum(big.n_images.values()) * big.captions_per_image
        if args.full_10x:
            seconds10, images10, captions10, _ = full_run(big, args.threads, Path(tmp) / "big")
            print(f"10x corpus {big.n_images}: measured {images10} images, {captions10} captions in "
                  f"{seconds10:.1f} s = {captions10 / seconds10:.2f} captions/s")
        else:
            cpu0 = cpu_seconds()
            seconds_s, images_s, captions_s = sampled_run(big, args.threads, Path(tmp) / "sample", args.sample)
            cpu = cpu_seconds() - cpu0
            rate = captions_s / seconds_s
            print(f"10x corpus {big.n_images}: measured a random sample of {images_s} of its images "
                  f"({captions_s} captions) in {seconds_s:.1f} s = {rate:.2f} captions/s; EXTRAPOLATED "
                  f"(linear, per-image work is independent): {big_captions} captions in about "
                  f"{big_captions / rate / 60:.1f} min here, {big_captions * cpu / captions_s / 2 / 60:.1f} min "
                  f"on 2 idle cores ({cpu / captions_s:.3f} CPU s per caption; --full-10x measures it all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
