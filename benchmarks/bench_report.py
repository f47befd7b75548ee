"""Benchmark of `vgsalign report-html`: a run with 80 categories and 200,000 pairs.

Builds a synthetic results folder in the pipeline's layout (tests/helpers/report.py:
images with objects of the 80 COCO categories, captions, pairs, similarities, training
history, audio and visual shards, alignment tensors, and the scores of the real scorer
on them; tensors and log-mel rows are written for every 50th utterance only, the others
read as zeros), then times `vgsalign report-html` end to end as a command (start-up,
reading every table, 17 figures plus the alignment examples, the HTML) and reports its
peak resident memory. Target: under 60 s on 2 cores.

    python benchmarks/bench_report.py [--pairs 200000] [--categories 80] [--n-examples 6] [--threads N] [--keep DIR]

Building the inputs scores the 200,000 pairs once (a few minutes on 2 cores); with
--keep DIR they are kept and reused by the next run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.helpers.report import SyntheticRun, make_run  # noqa: E402

TARGET_SECONDS = 60.0
PAIRS_PER_CAPTION = 5
CAPTIONS_PER_IMAGE = 100


def build_inputs(folder: Path, n_pairs: int, n_categories: int, threads: int) -> SyntheticRun:
    marker = folder / f"inputs_{n_pairs}_{n_categories}.json"
    if marker.exists():
        saved = json.loads(marker.read_text())
        return SyntheticRun(root=Path(saved["root"]), results=Path(saved["results"]), instances=Path(saved["instances"]),
                            images=Path(saved["images"]), audio=[Path(p) for p in saved["audio"]],
                            visual=[Path(p) for p in saved["visual"]], rejects=[Path(p) for p in saved.get("rejects", [])])
    n_images = math.ceil(n_pairs / (PAIRS_PER_CAPTION * CAPTIONS_PER_IMAGE))
    run = make_run(folder, name="bench", n_categories=n_categories, n_images=n_images,
                   captions_per_image=CAPTIONS_PER_IMAGE, pairs_per_caption=PAIRS_PER_CAPTION, bootstrap=1000,
                   threads=threads, n_unscorable=5, dense_every=50, epochs=15, n_val_images=1000, n_rejected=3)
    marker.write_text(json.dumps({"root": str(run.root), "results": str(run.results), "instances": str(run.instances),
                                  "images": str(run.images), "audio": list(map(str, run.audio)),
                                  "visual": list(map(str, run.visual)), "rejects": list(map(str, run.rejects))}))
    return run


# Runs the command and writes the peak resident memory of its process tree (KB) to argv[1].
# A small launcher of its own, because a child's peak starts at the RSS of the process it
# was forked from: measured from here, it would include this benchmark's own inputs.
MEASURED_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def run_measured(command: list[str], env: dict) -> tuple[int, str, float, float]:
    """Run a command; its exit code, stderr, wall time (s) and peak resident memory (MB)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file, err_file = Path(tmp) / "peak", Path(tmp) / "stderr"
        with open(err_file, "w") as err:
            start = time.perf_counter()
            code = subprocess.call([sys.executable, "-c", MEASURED_LAUNCHER, str(peak_file), *command],
                                   stdout=subprocess.DEVNULL, stderr=err, env=env)
            wall = time.perf_counter() - start
        peak_mb = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
        return code, err_file.read_text(), wall, peak_mb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--categories", type=int, default=80)
    parser.add_argument("--n-examples", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="scoring processes while building inputs")
    parser.add_argument("--keep", help="folder for the synthetic inputs (kept and reused)")
    args = parser.parse_args(argv)

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_report_"))
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    run = build_inputs(folder, args.pairs, args.categories, args.threads)
    made = time.perf_counter() - start
    summary = json.loads((run.results / "scores/summary.json").read_text())
    counts = summary["counts"]
    print(f"inputs: {counts['pairs_in_table']:,} pairs ({counts['pairs_scored']:,} scored), "
          f"{counts['categories_scored']} categories, {counts['utterances_scored']:,} utterances, "
          f"{counts['images_scored']:,} images; ready in {made:.1f} s")

    out = folder / "report.html"
    command = [sys.executable, "-m", "vgsalign.cli", "report-html",
               *run.report_args(out, folder / "figures", n_examples=args.n_examples)]
    returncode, stderr, wall, peak_mb = run_measured(command, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
        return 1
    print(f"vgsalign report-html ({os.cpu_count()} cores, {args.n_examples} examples):")
    print(f"   wall time                 {wall:8.1f} s   (target < {TARGET_SECONDS:.0f} s: "
          f"{'met' if wall < TARGET_SECONDS else 'NOT met'})")
    print(f"   peak resident memory      {peak_mb:8.0f} MB")
    print(f"   page                      {out.stat().st_size / 1e6:8.1f} MB, "
          f"{len(list((folder / 'figures').glob('*.png')))} figures")
    for line in stderr.strip().splitlines()[-8:]:
        print(f"   | {line}")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
