"""Benchmark of `vgsalign score-pairs`: native-resolution scorer vs a plain upsampled one.

1. Same random inputs (64 x 14 x 14 tensors, 224 x 224 masks, 512 input frames): the
   native scorer and a straightforward implementation that upsamples S and Q by
   repetition to 512 x 224 x 224 (as the original did) must give the same scores;
   pairs/s of each, one process each, and the ratio (target >= 100x).
2. End to end: `vgsalign score-pairs` on 200,000 synthetic pairs (64 x 14 x 14 tensors in
   an HDF5 file, synthetic COCO instances JSON with 480 x 640 images) with all cores:
   wall time (target < 120 s on 2 cores) and peak memory of the process tree,
   proportional set size summed over the processes (target < 2 GB).
3. Memory at scale (--scales 1,4,16): `vgsalign score-pairs` as its own process on
   base x scale pairs (--base-pairs, default 5,000); peak PSS of the process tree, peak
   RSS of its largest process, and their growth from the smallest scale (target: at most
   1.3x from 1x to 16x).

    python benchmarks/bench_scores.py [--pairs 200000] [--threads N] [--keep DIR]
    python benchmarks/bench_scores.py --only-scales [--base-pairs 5000] [--scales 1,4,16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vgsalign.scores.alignment import (  # noqa: E402
    SCORE_NAMES, prepare_tensor, reference_frame_bounds, reference_frame_totals, reference_word_weights,
    score_regions,
)
from vgsalign.scores.masks import CellGrid  # noqa: E402
from vgsalign.scores.plan import score_settings  # noqa: E402
from vgsalign.scores.run import run_scores  # noqa: E402

TARGET_RATIO = 100.0
TARGET_SECONDS = 120.0
TARGET_MEMORY_GB = 2.0
TARGET_GROWTH = 1.3          # peak memory from the smallest to the largest scale


# ---------------------------------------------------------------- 1. native vs upsampled


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def upsampled_scores_of_utterance(avt, words, masks, n_input=512, grid=224):
    """The straightforward way: S and Q upsampled by repetition to n_input x grid x grid
    (float64, as the original), then the definitions of docs/design.md on that grid."""
    t, h, w = avt.shape
    flat = avt.reshape(t, h * w)
    s = _softmax(flat, 1).reshape(t, h, w)
    q = _softmax(flat, 0).reshape(t, h, w)
    frames = (np.arange(n_input) * t) // n_input
    rows, cols = (np.arange(grid) * h) // grid, (np.arange(grid) * w) // grid
    s_up = s[frames][:, rows][:, :, cols]
    q_up = q[frames][:, rows][:, :, cols]
    out = []
    for (onset, offset), mask in zip(words, masks):
        s_word = s_up[onset:offset]
        as_object = float(np.mean(s_word[:, mask].sum(axis=1) / s_word.reshape(len(s_word), -1).sum(axis=1)))
        glance = s_word.sum(axis=0)
        gs_object = float(glance[mask].sum() / glance.sum())
        q_mask = q_up[:, mask]                                  # (frames, mask pixels)
        as_word = float(np.mean(q_mask[onset:offset].sum(axis=0) / q_mask.sum(axis=0)))
        curve = q_mask.sum(axis=1)
        gs_word = float(curve[onset:offset].sum() / curve.sum())
        out.append({"as_object": as_object, "as_word": as_word, "gs_object": gs_object, "gs_word": gs_word})
    return out


def native_scores_of_utterance(avt, words, masks, n_input=512, grid=224):
    t, h, w = avt.shape
    cells = CellGrid.reference(h, w, grid)
    bounds = reference_frame_bounds(t, n_input)
    weights = reference_word_weights([a for a, _ in words], [b for _, b in words], bounds)
    regions = cells.weights(np.stack(masks))
    scores = score_regions(prepare_tensor(avt.reshape(t, h * w), "both"), weights, reference_frame_totals(bounds),
                           regions, cells.totals(), "object")
    return [{name: float(scores[name][j, j]) for name in SCORE_NAMES} for j in range(len(words))]


def random_inputs(n_utterances, pairs_per_utterance, seed=0):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n_utterances):
        avt = rng.normal(scale=2.0, size=(64, 14, 14))
        words, masks = [], []
        for _ in range(pairs_per_utterance):
            onset = int(rng.integers(0, 480))
            words.append((onset, int(min(512, onset + rng.integers(10, 60)))))
            y0, x0 = rng.integers(0, 150, size=2)
            mask = np.zeros((224, 224), dtype=bool)
            mask[y0:y0 + rng.integers(20, 74), x0:x0 + rng.integers(20, 74)] = True
            masks.append(mask)
        cases.append((avt, words, masks))
    return cases


def compare_native_and_upsampled(n_utterances: int, pairs_per_utterance: int) -> dict:
    cases = random_inputs(n_utterances, pairs_per_utterance)
    n_pairs = n_utterances * pairs_per_utterance
    start = time.perf_counter()
    upsampled = [s for case in cases for s in upsampled_scores_of_utterance(*case)]
    upsampled_s = time.perf_counter() - start
    repeats = 20                                                 # the native scorer is too quick to time once
    start = time.perf_counter()
    for _ in range(repeats):
        native = [s for case in cases for s in native_scores_of_utterance(*case)]
    native_s = (time.perf_counter() - start) / repeats
    worst = max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-300) for a, b in zip(native, upsampled) for k in SCORE_NAMES)
    return {"pairs": n_pairs, "upsampled_pairs_per_s": n_pairs / upsampled_s, "native_pairs_per_s": n_pairs / native_s,
            "ratio": upsampled_s / native_s, "max_relative_difference": worst}


# ---------------------------------------------------------------- 2. end to end


def make_synthetic_inputs(folder: Path, n_pairs: int, pairs_per_utterance: int, captions_per_image: int,
                          seed: int = 0) -> dict[str, Path]:
    """An h5 of 64 x 14 x 14 tensors, a pairs.csv and a COCO instances JSON (polygons)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_utt = -(-n_pairs // pairs_per_utterance)
    n_images = -(-n_utt // captions_per_image)
    categories = [(1, "person"), (17, "cat"), (18, "dog"), (62, "chair"), (67, "dining table"), (3, "car")]
    images, annotations = [], []
    image_categories = []
    for i in range(n_images):
        image_id = 100000 + i
        images.append({"id": image_id, "height": 480, "width": 640, "file_name": f"{image_id}.jpg"})
        chosen = rng.choice(len(categories), size=3, replace=False)
        image_categories.append([categories[c] for c in chosen])
        for c in chosen:
            x0, y0 = rng.integers(0, 400), rng.integers(0, 300)
            x1, y1 = x0 + rng.integers(40, 240), y0 + rng.integers(40, 180)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": categories[c][0],
                                "iscrowd": 0, "area": float((x1 - x0) * (y1 - y0)), "bbox": [0, 0, 0, 0],
                                "segmentation": [[float(v) for v in (x0, y0, x1, y0, (x0 + x1) / 2, y1, x0, y1)]]})
    (folder / "instances.json").write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": c, "name": n, "supercategory": "x"} for c, n in categories]}))

    utt_ids = [f"utt{u:07d}" for u in range(n_utt)]
    image_of = np.arange(n_utt) // captions_per_image
    pads = rng.integers(0, 200, size=n_utt)
    rows = []
    for u in range(n_utt):
        cats = image_categories[image_of[u]]
        for p in range(pairs_per_utterance):
            if len(rows) == n_pairs:
                break
            cid, name = cats[p % len(cats)]
            onset_frame = int(pads[u] + rng.integers(0, 512 - pads[u] - 60))
            offset_frame = onset_frame + int(rng.integers(10, 60))
            rows.append((utt_ids[u], 100000 + int(image_of[u]), p, name.split()[-1], name, cid,
                         (onset_frame - pads[u]) * 0.01, (offset_frame - pads[u]) * 0.01, onset_frame, offset_frame,
                         int(pads[u])))
    pairs = pd.DataFrame(rows, columns=["utt_id", "image_id", "word_index", "word", "category", "category_id",
                                        "onset_s", "offset_s", "onset_frame", "offset_frame", "pad_frames"])
    pairs.to_csv(folder / "pairs.csv", index=False)

    with h5py.File(folder / "tensors.h5", "w") as h5:
        avt = h5.create_dataset("avt", shape=(n_utt, 64, 14, 14), dtype="float32", chunks=(min(64, n_utt), 64, 14, 14))
        for start in range(0, n_utt, 4096):
            stop = min(n_utt, start + 4096)
            avt[start:stop] = rng.normal(scale=2.0, size=(stop - start, 64, 14, 14)).astype(np.float32)
        h5["utt_id"] = np.array(utt_ids, dtype=h5py.string_dtype())
        h5["image_id"] = (100000 + image_of).astype(np.int64)
        h5["pad_frames"] = pads.astype(np.int32)
        h5["n_frames"] = (512 - pads).astype(np.int32)
        h5.attrs.update({"input_frames_per_frame": 8.0, "seconds_per_frame": 0.08, "hop_s": 0.01,
                         "max_frames": 512, "padding": "start", "model": "synthetic", "source": "bench_scores"})
    return {"tensors": folder / "tensors.h5", "pairs": folder / "pairs.csv", "instances": folder / "instances.json"}


class TreeMemory:
    """Samples the summed proportional set size (PSS) of a process and its children, and
    the resident set size (RSS) of the largest one."""

    def __init__(self, interval: float = 0.2, root: int | None = None):
        self.interval, self.peak_bytes, self.peak_rss_bytes = interval, 0, 0
        self.peak_root_rss_bytes, self.peak_child_rss_bytes = 0, 0
        self.root = os.getpid() if root is None else root
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _field(pid: int, name: str, file: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    @staticmethod
    def _tree(pid: int) -> list[int]:
        pids, todo = [], [pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            for task in Path(f"/proc/{p}/task").glob("*"):
                try:
                    todo.extend(int(c) for c in (task / "children").read_text().split())
                except OSError:
                    pass
        return pids

    def _run(self):
        while not self._stop.is_set():
            tree = self._tree(self.root)
            self.peak_bytes = max(self.peak_bytes, sum(self._field(p, "Pss:", "smaps_rollup") for p in tree))
            rss = [self._field(p, "VmRSS:", "status") for p in tree]
            self.peak_rss_bytes = max([self.peak_rss_bytes] + rss)
            self.peak_root_rss_bytes = max(self.peak_root_rss_bytes, rss[0])
            self.peak_child_rss_bytes = max([self.peak_child_rss_bytes] + rss[1:])
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure_scales(folder: Path, base_pairs: int, scales: list[int], workers: int, args) -> list[dict]:
    """Peak memory of `vgsalign score-pairs` (its own process tree) at each scale."""
    rows = []
    for scale in scales:
        inputs = folder / f"x{scale}"
        inputs.mkdir(parents=True, exist_ok=True)
        marker = inputs / "inputs.done"
        if not marker.exists():
            make_synthetic_inputs(inputs, base_pairs * scale, args.pairs_per_utterance, args.captions_per_image)
            marker.touch()
        command = [sys.executable, "-m", "vgsalign.cli", "score-pairs", "--tensors", str(inputs / "tensors.h5"),
                   "--pairs", str(inputs / "pairs.csv"), "--instances", str(inputs / "instances.json"),
                   "--out", str(inputs / "out"), "--threads", str(workers), "--bootstrap", str(args.bootstrap)]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        with TreeMemory(interval=0.1, root=process.pid) as memory:
            _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"score-pairs failed at scale {scale}: {err[-2000:]}")
        rows.append({"scale": scale, "pairs": base_pairs * scale, "seconds": time.perf_counter() - start,
                     "tensors_gb": (inputs / "tensors.h5").stat().st_size / 1e9,
                     "pss_gb": memory.peak_bytes / 1e9, "rss_gb": memory.peak_rss_bytes / 1e9,
                     "parent_gb": memory.peak_root_rss_bytes / 1e9, "worker_gb": memory.peak_child_rss_bytes / 1e9})
    return rows


def print_scales(rows: list[dict], workers: int) -> None:
    print(f"\n3. memory at scale ({workers} worker process(es); PSS summed over the tree, RSS of the largest process)")
    print("   scale    pairs  tensors.h5  wall s  peak PSS tree  RSS parent  RSS worker    PSS   parent  worker"
          "  (vs 1x)")
    first = rows[0]
    for row in rows:
        print(f"   {row['scale']:>4}x {row['pairs']:>8} {row['tensors_gb']:8.2f} GB {row['seconds']:7.1f}"
              f"  {row['pss_gb'] * 1e3:10.0f} MB {row['parent_gb'] * 1e3:8.0f} MB {row['worker_gb'] * 1e3:8.0f} MB"
              f"  {row['pss_gb'] / first['pss_gb']:5.2f}x {row['parent_gb'] / first['parent_gb']:7.2f}x"
              f" {row['worker_gb'] / first['worker_gb']:6.2f}x")
    last = rows[-1]
    growth = max(last[k] / first[k] for k in ("pss_gb", "parent_gb", "worker_gb"))
    print(f"   largest growth {first['scale']}x -> {last['scale']}x: {growth:.2f}x (target <= {TARGET_GROWTH:.1f}x: "
          f"{'met' if growth <= TARGET_GROWTH else 'NOT met'})")


def print_comparison(args) -> None:
    print("1. native vs upsampled on the same random inputs (64 x 14 x 14, 512 frames, 224 x 224 masks)")
    cmp = compare_native_and_upsampled(args.compare_utterances, 5)
    print(f"   pairs compared            {cmp['pairs']}")
    print(f"   max relative difference   {cmp['max_relative_difference']:.2e}  (equal: {cmp['max_relative_difference'] < 1e-9})")
    print(f"   upsampled                 {cmp['upsampled_pairs_per_s']:10.1f} pairs/s")
    print(f"   native                    {cmp['native_pairs_per_s']:10.1f} pairs/s")
    print(f"   ratio                     {cmp['ratio']:10.0f} x   (target >= {TARGET_RATIO:.0f} x: "
          f"{'met' if cmp['ratio'] >= TARGET_RATIO else 'NOT met'})")


def end_to_end(args) -> None:
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_scores_"))
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"inputs_{args.pairs}_{args.pairs_per_utterance}_{args.captions_per_image}.done"
    start = time.perf_counter()
    if not marker.exists():
        make_synthetic_inputs(folder, args.pairs, args.pairs_per_utterance, args.captions_per_image)
        marker.touch()
    made = time.perf_counter() - start
    size_gb = (folder / "tensors.h5").stat().st_size / 1e9
    print(f"\n2. end to end: {args.pairs} pairs, {args.threads} worker(s); inputs ready in {made:.1f} s "
          f"(tensors.h5 {size_gb:.2f} GB)")
    settings = score_settings(bootstrap=args.bootstrap)
    with TreeMemory() as memory:
        start = time.perf_counter()
        summary = run_scores(tensors=folder / "tensors.h5", pairs_csv=folder / "pairs.csv",
                             instances_json=folder / "instances.json", out_dir=folder / "out",
                             settings=settings, threads=args.threads)
        wall = time.perf_counter() - start
    peak_gb = memory.peak_bytes / 1e9
    scored = summary["counts"]["pairs_scored"]
    print(f"   pairs scored              {scored}  (excluded {summary['counts']['excluded_by_reason']})")
    print(f"   wall time                 {wall:10.1f} s   (target < {TARGET_SECONDS:.0f} s: "
          f"{'met' if wall < TARGET_SECONDS else 'NOT met'})")
    print(f"   throughput                {scored / wall:10.0f} pairs/s")
    print(f"   peak memory (PSS, tree)   {peak_gb:10.2f} GB  (target < {TARGET_MEMORY_GB:.0f} GB: "
          f"{'met' if peak_gb < TARGET_MEMORY_GB else 'NOT met'})")
    overall = summary["overall"]
    print("   means (random tensors, so scores ~ random ~ chance): " + ", ".join(
        f"{s} {overall[f'{s}_mean']:.4f}/{overall[f'random_{s}_mean']:.4f}/{overall[f'chance_{s}_mean']:.4f}"
        for s in SCORE_NAMES))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--pairs-per-utterance", type=int, default=5)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="worker processes of the step")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--compare-utterances", type=int, default=6, help="utterances for the upsampled comparison")
    parser.add_argument("--keep", help="folder for the synthetic inputs (kept and reused)")
    parser.add_argument("--scales", default="1,4,16", help="section 3: multiples of --base-pairs")
    parser.add_argument("--base-pairs", type=int, default=5000, help="section 3: pairs at scale 1")
    parser.add_argument("--only-scales", action="store_true", help="run section 3 only")
    args = parser.parse_args(argv)
    if args.only_scales:
        folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_scores_"))
        rows = measure_scales(folder, args.base_pairs, [int(s) for s in args.scales.split(",")], args.threads, args)
        print_scales(rows, args.threads)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        return 0

    print_comparison(args)
    end_to_end(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
