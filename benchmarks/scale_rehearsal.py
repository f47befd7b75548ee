"""Scale rehearsal: every stage at 1x, 4x and 16x of a base corpus, wall time and peak RSS
per stage, extrapolated to the full SPEECH-COCO.

    python benchmarks/scale_rehearsal.py [--base 5000] [--scales 1 4 16] [--work DIR]
                                         [--copy-features-above N] [--json FILE]
    python benchmarks/scale_rehearsal.py --table-from FILE     # the table of an earlier --json

The corpus is made in minutes, without speech synthesis: a small pool of demo captions is
synthesised once (the real demo generator), then each size gets real-format SPEECH-COCO
caption JSON (`<split>/json/`, `<split>/wav/`, file names
imageID_captionID_Speaker_DisfluencyPosition_Speed) and MSCOCO 2014 as unzipped
(`<split>/COCO_<split>_<12-digit id>.jpg`, `annotations/instances_<split>.json`) for N
images, whose wavs and jpgs are hard links into the pool. Every size then runs the real
workflow (`snakemake scores`) with a small model and one epoch; the time and memory of
each job come from the benchmark files the rules write (results/<name>/benchmarks/), with
Snakemake told to sample every job's process tree every 0.1 s (its own default thins out
to one sample every 30 s after a job's first 15 s). A job over before its Python process
was sampled is marked "too short to sample" and left out of the memory growth.

Sizes are captions of the training split (train2014); the test split (val2014) has half
as many, as in SPEECH-COCO (414,113 and 202,654). Time is extrapolated linearly in the
number of captions from the three sizes (a least-squares line); memory is printed as
measured, with its growth from the smallest to the largest size, since the stages are
meant to hold a bounded amount (a shard, a batch) whatever the corpus size. The
extrapolation is approximate and says so.

--copy-features-above N (off by default: every stage runs at every size). Above N
training captions the audio and visual feature jobs are not run: every wav and jpg of a
rehearsal corpus is a hard link to a pool file, so its features are exactly those of
the pool original, and the shards are written from the features the real feature step
computed at the smallest size (looked up by the file's inode), row by row in the order
the feature step uses (its shard plans, images.csv and captions.csv, do run), with the
real shard writer (`vgsalign.features.shard_writer.write_shard`) and the attributes the
feature step wrote into that size's shards (split, shard index, shard count and item
count set for the new shard). Snakemake is then told they are up to date with
`snakemake --touch` on the shard files, a dry run checks that no feature job would run,
and everything downstream runs for real through the workflow. The table marks those
cells "copied, not measured", and the features' time and memory are judged only on the
sizes where they ran.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS_PER_IMAGE = 5
FULL = {"train2014": 414_113, "val2014": 202_654}   # SPEECH-COCO captions per split
POOL_IMAGES = 40


def run(command: list[str], log: Path, cwd: Path | None = None) -> float:
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd)
    if proc.returncode:
        sys.exit(f"scale_rehearsal: {' '.join(command[:4])} ... failed (exit {proc.returncode}); see {log}")
    return time.monotonic() - start


def make_pool(work: Path, workers: int) -> Path:
    """A small demo corpus (the real synthesiser), made once and reused."""
    sys.path.insert(0, str(ROOT / "src"))
    from vgsalign.demo.corpus import generate_split

    pool = work / "pool"
    if (pool / "manifest_pool.json").is_file():
        return pool
    work.mkdir(parents=True, exist_ok=True)
    print(f"pool: synthesising {POOL_IMAGES} images x {CAPTIONS_PER_IMAGE} captions (once) ...", flush=True)
    generate_split(pool, "pool", n_images=POOL_IMAGES, captions_per_image=CAPTIONS_PER_IMAGE,
                   unannotated_share=0.0, threads=workers)
    return pool


def pool_image_file(pool: Path, file_name: str) -> Path:
    """A pool image, wherever the demo layout keeps it (coco/<split>/ or coco/images/<split>/)."""
    for folder in (pool / "coco/pool", pool / "coco/images/pool"):
        if (folder / file_name).is_file():
            return folder / file_name
    raise SystemExit(f"scale_rehearsal: pool image {file_name} not found under {pool / 'coco'}")


def link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.link(source, target)


def pool_images(pool: Path) -> tuple[dict, list[dict], dict[int, list[dict]]]:
    instances = json.loads((pool / "coco/annotations/instances_pool.json").read_text())
    by_image = defaultdict(list)
    for ann in instances["annotations"]:
        by_image[ann["image_id"]].append(ann)
    return instances, sorted(instances["images"], key=lambda i: i["id"]), by_image


def pool_captions(pool: Path) -> dict[int, list[tuple[dict, Path]]]:
    captions = defaultdict(list)
    for path in sorted((pool / "speech/pool/json").glob("*.json")):
        meta = json.loads(path.read_text())
        captions[int(meta["imgID"])].append((meta, pool / "speech/pool/wav" / meta["wavFilename"]))
    return captions


def make_split(pool: Path, corpus: Path, split: str, n_captions: int, id_base: int) -> None:
    """SPEECH-COCO + MSCOCO files of one split with n_captions captions (hard links into the pool)."""
    instances, images, annotations = pool_images(pool)
    captions = pool_captions(pool)
    n_images = max(1, n_captions // CAPTIONS_PER_IMAGE)
    out_images, out_annotations, caption_id = [], [], 0
    json_dir, wav_dir = corpus / "speech" / split / "json", corpus / "speech" / split / "wav"
    json_dir.mkdir(parents=True, exist_ok=True)
    wav_dir.mkdir(parents=True, exist_ok=True)
    for index in range(n_images):
        source = images[index % len(images)]
        image_id = id_base + index
        file_name = f"COCO_{split}_{image_id:012d}.jpg"
        out_images.append({**source, "id": image_id, "file_name": file_name})
        image = pool_image_file(pool, source["file_name"])
        link(image, corpus / "coco" / split / file_name)
        link(image, corpus / "coco/images" / split / file_name)   # the layout older readers expect
        for ann in annotations[source["id"]]:
            out_annotations.append({**ann, "id": len(out_annotations) + 1, "image_id": image_id})
        for meta, wav in captions[source["id"]]:
            caption_id += 1
            speed = meta["wavFilename"].rsplit("_", 1)[-1]          # e.g. 1-0.wav
            stem = f"{image_id}_{caption_id}_{meta['speaker']}_None_{speed[:-4]}"
            record = {**meta, "imgID": image_id, "captionID": caption_id, "wavFilename": f"{stem}.wav"}
            (json_dir / f"{stem}.json").write_text(json.dumps(record))
            link(wav, wav_dir / f"{stem}.wav")
    (corpus / "coco/annotations").mkdir(parents=True, exist_ok=True)
    (corpus / "coco/annotations" / f"instances_{split}.json").write_text(json.dumps(
        {**instances, "images": out_images, "annotations": out_annotations}))



# ---------------------------------------------------------------- copied feature shards


# Snakemake's benchmark samples a job's process tree every 0.5 s for its first 15 s, then
# every 30 s, so the peak of a long job (training, the tensor dump, the scores) can fall
# between two samples. The rehearsal runs Snakemake with every job sampled every 0.1 s
# from start to end (`benchmarked` is a context manager: its defaults sit on __wrapped__).
DENSE_SAMPLING_SNAKEMAKE = (
    "import sys, snakemake.benchmark as benchmark; "
    "benchmark.BENCHMARK_INTERVAL_SHORT = 0.1; "
    "benchmark.benchmarked.__wrapped__.__defaults__ = (None, None, float('inf')); "
    "from snakemake.cli import main; main(sys.argv[1:])"
)


def snakemake_command(workdir: Path, config: Path, cores: int, *extra: str) -> list[str]:
    return [sys.executable, "-c", DENSE_SAMPLING_SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
            "--configfile", str(ROOT / "config.yaml"), str(config), "--cores", str(cores), *extra]


def inode(path: Path) -> int:
    return os.stat(path).st_ino


def pool_features(results: Path, coco_root: Path) -> dict[str, dict]:
    """The real shards of a size whose feature jobs ran, by the inode of the file each
    row came from: {'audio': {inode: row}, 'visual': {inode: row}, 'attrs': ...}."""
    sys.path.insert(0, str(ROOT / "src"))
    from vgsalign.corpus.coco import image_folder

    found: dict[str, dict] = {"audio": {}, "visual": {}, "attrs": {}}
    for split_dir in sorted((results / "features/index").iterdir()):
        split = split_dir.name
        captions = pd.read_csv(split_dir / "captions.csv", dtype={"utt_id": str, "wav": str})
        wav_of = dict(zip(captions["utt_id"], captions["wav"]))
        images = pd.read_csv(split_dir / "images.csv", dtype={"file_name": str})
        file_of = dict(zip(images["image_id"], images["file_name"]))
        folder = image_folder(coco_root, split)
        for shard in sorted((results / "features/audio" / split).glob("shard_*.h5")):
            with h5py.File(shard, "r") as h5:
                found["attrs"][("audio", split)] = dict(h5.attrs)
                if h5.attrs["n_rejected"] or h5.attrs["n_silent"]:
                    sys.exit(f"scale_rehearsal: {shard} has rejected or silent captions; copying needs clean pool files")
                for k, utt_id in enumerate(h5["utt_id"][()].astype(str)):
                    found["audio"].setdefault(inode(Path(wav_of[utt_id])), (
                        h5["logmel"][k], int(h5["n_frames"][k]), int(h5["pad_frames"][k])))
        for shard in sorted((results / "features/visual" / split).glob("shard_*.h5")):
            with h5py.File(shard, "r") as h5:
                found["attrs"][("visual", split)] = dict(h5.attrs)
                if h5.attrs["n_rejected"]:
                    sys.exit(f"scale_rehearsal: {shard} has rejected images; copying needs clean pool files")
                for k, image_id in enumerate(h5["image_id"][()]):
                    found["visual"].setdefault(inode(folder / file_of[int(image_id)]), (
                        h5["features"][k], int(h5["width"][k]), int(h5["height"][k])))
    return found


# attributes write_shard sets itself
WRITER_ATTRS = {"n_rejected", "integrity", "compression", "vgsalign_version"}


def shard_attrs(reference: dict, split: str, shard: int, n_shards: int, n_items: int) -> dict:
    attrs = {k: v for k, v in reference.items() if k not in WRITER_ATTRS}
    attrs.update(split=split, shard_index=shard, n_shards=n_shards, n_items=n_items)
    return attrs


def write_copied_shards(results: Path, coco_root: Path, found: dict) -> tuple[list[Path], int]:
    """Every audio and visual shard of a size, from the pool's features; (paths, rows)."""
    sys.path.insert(0, str(ROOT / "src"))
    from vgsalign.corpus.coco import image_folder
    from vgsalign.features.shard_writer import write_shard

    written, rows = [], 0
    for split_dir in sorted((results / "features/index").iterdir()):
        split = split_dir.name
        captions = pd.read_csv(split_dir / "captions.csv", dtype={"utt_id": str, "wav": str})
        images = pd.read_csv(split_dir / "images.csv", dtype={"file_name": str})
        n_shards = int(images["shard"].max()) + 1
        folder = image_folder(coco_root, split)
        audio_ref, visual_ref = found["attrs"][("audio", split)], found["attrs"][("visual", split)]
        captioned = set(captions["image_id"].tolist())
        for shard in range(n_shards):
            # audio: the shard's captions in captions.csv order, as features-audio writes them
            part = captions[captions["shard"] == shard]
            source = [found["audio"][inode(Path(w))] for w in part["wav"]]
            path = results / "features/audio" / split / f"shard_{shard:05d}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_shard(path, {
                "utt_id": part["utt_id"].to_numpy(dtype=object), "image_id": part["image_id"].to_numpy(dtype=np.int64),
                "logmel": np.stack([r[0] for r in source]), "n_frames": np.array([r[1] for r in source], np.int32),
                "pad_frames": np.array([r[2] for r in source], np.int32),
            }, shard_attrs(audio_ref, split, shard, n_shards, len(part)), [],
                compression=str(audio_ref["compression"]))
            written.append(path)
            # visual: the shard's captioned images in images.csv order, as features-visual writes them
            part = images[(images["shard"] == shard) & images["image_id"].isin(captioned)]
            source = [found["visual"][inode(folder / f)] for f in part["file_name"]]
            path = results / "features/visual" / split / f"shard_{shard:05d}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_shard(path, {
                "image_id": part["image_id"].to_numpy(dtype=np.int64), "features": np.stack([r[0] for r in source]),
                "width": np.array([r[1] for r in source], np.int32),
                "height": np.array([r[2] for r in source], np.int32),
            }, shard_attrs(visual_ref, split, shard, n_shards, len(part)), [],
                compression=str(visual_ref["compression"]))
            written.append(path)
            rows += len(part)
    return written, rows


def copy_features(workdir: Path, config: Path, cores: int, results: Path, coco_root: Path, found: dict,
                  log_dir: Path) -> float:
    """Shard plans for real, shards copied, Snakemake told they are current; seconds spent."""
    start = time.monotonic()
    indexes = [str(results.relative_to(workdir) / "features/index" / split / name)
               for split in ("train2014", "val2014") for name in ("images.csv", "captions.csv")]
    run(snakemake_command(workdir, config, cores, *indexes), log_dir / "snakemake_index.log")
    shards, _ = write_copied_shards(results, coco_root, found)
    relative = [str(p.relative_to(workdir)) for p in shards]
    run(snakemake_command(workdir, config, cores, "--touch", *relative), log_dir / "snakemake_touch.log")
    # the feature jobs must not run again: a dry run of the scores lists every job it would run
    dry = subprocess.run(snakemake_command(workdir, config, cores, "-n", "scores"), capture_output=True, text=True)
    (log_dir / "snakemake_dry_run.log").write_text(dry.stdout + dry.stderr)
    planned = [line.split()[0] for line in (dry.stdout + dry.stderr).splitlines()
               if line.startswith(("features_audio ", "features_visual ", "rule features_audio", "rule features_visual"))]
    if dry.returncode or planned:
        sys.exit(f"scale_rehearsal: after copying the shards Snakemake would still run {planned or dry.stderr[-500:]}")
    return time.monotonic() - start


def overlay(name: str, corpus: Path) -> dict:
    """The rehearsal's settings over config.yaml: the real SPEECH-COCO reader, a small
    model for one epoch (training time is a GPU matter; this measures the data path)."""
    return {
        "dataset": {"name": name, "source": "speechcoco", "speech_root": str(corpus / "speech"),
                    "coco_root": str(corpus / "coco"),
                    "splits": {"train": "train2014", "val": "val2014", "test": "val2014"}},
        # small shards, so that the largest size has 16 of them and training streams groups of them
        "features": {"shard_size": 250},
        "model": {"embed_dim": 32, "audio_channels": [8, 16, 16, 32]},
        "train": {"epochs": 1, "batch_size": 64, "eval_max_images": 200, "pool_size": 200, "pool_trials": 5},
    }


def read_benchmarks(results: Path) -> dict[str, dict[str, float]]:
    """Per rule: summed wall seconds of its jobs and the peak max_rss (MB) of any of them."""
    per_rule: dict[str, dict[str, float]] = defaultdict(lambda: {"s": 0.0, "max_rss": 0.0, "jobs": 0})
    for path in sorted((results / "benchmarks").glob("*.tsv")):
        rule = next((r for r in RULE_ORDER if path.stem == r or path.stem.startswith(r + "_")), path.stem)
        with open(path) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        for row in rows:
            entry = per_rule[rule]
            entry["s"] += float(row["s"])
            rss = row.get("max_rss", "NA")
            entry["max_rss"] = max(entry["max_rss"], float(rss) if rss not in ("NA", "-", "") else 0.0)
            entry["jobs"] += 1
    return dict(per_rule)


RULE_ORDER = ["corpus_state", "tagger", "word_vectors", "testdata_dataset", "testdata_frames", "testdata_nouns",
              "testdata_vocab", "testdata_labels", "testdata_similarities", "testdata_histogram", "testdata_pairs",
              "testdata_summary", "features_images", "features_captions", "features_audio", "features_visual",
              "train_model", "tensors_dump", "score_pairs"]


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var if var else 0.0
    return mean_y - slope * mean_x, slope


COPIED = "copied, not measured"
# Every step is a Python process that imports numpy and pandas (over 50 MB resident); a
# peak below this means the job ended before a sample saw more than the shell that
# started it, and that size says nothing about the step's memory.
UNSAMPLED_MB = 50.0
UNSAMPLED = "too short to sample"
FEATURE_RULES = ("features_audio", "features_visual")


def extrapolate(sizes: list[int], values: list[float], *, per_caption_if_one: bool) -> float:
    """A least-squares line through (captions, value), read at the full training split. A
    value that does not grow keeps its largest measurement; one measured size is taken as
    proportional to the captions (`per_caption_if_one`) or as constant."""
    if len(sizes) > 1:
        intercept, slope = fit_line([float(n) for n in sizes], values)
    elif per_caption_if_one:
        intercept, slope = 0.0, values[0] / sizes[0]
    else:
        intercept, slope = values[0], 0.0
    return intercept + slope * FULL["train2014"] if slope > 0 else max(values)


def table_rows(measured: dict[int, dict[str, dict[str, float]]], copied: dict[int, float]) -> list[dict]:
    sizes = sorted(measured)
    rows = []
    for rule in RULE_ORDER:
        ran = [n for n in sizes if rule in measured[n]]
        if not ran or any(n not in ran and not (rule in FEATURE_RULES and n in copied) for n in sizes):
            continue
        secs = [measured[n][rule]["s"] for n in ran]
        rss = [measured[n][rule]["max_rss"] for n in ran]
        sampled = [n for n, mb in zip(ran, rss) if mb >= UNSAMPLED_MB]
        sampled_rss = [mb for mb in rss if mb >= UNSAMPLED_MB]
        growth = sampled_rss[-1] / sampled_rss[0] if len(sampled) > 1 else None
        rows.append({"stage": rule, "sizes": ran, "seconds": secs, "max_rss_mb": rss, "rss_growth": growth,
                     "rss_growth_sizes": [sampled[0], sampled[-1]] if growth else [],
                     "unsampled_sizes": [n for n in ran if n not in sampled],
                     "copied_sizes": [n for n in sizes if n not in ran],
                     # a step whose time does not grow with the corpus (resources, fixed-size
                     # shards run one after another here) keeps its largest measured time
                     "full_seconds_extrapolated": extrapolate(ran, secs, per_caption_if_one=rule in FEATURE_RULES),
                     "full_max_rss_mb_extrapolated": (extrapolate(sampled, sampled_rss, per_caption_if_one=False)
                                                      if sampled else None),
                     "jobs": [measured[n][rule]["jobs"] for n in ran]})
    return rows


def print_table(rows: list[dict], sizes: list[int], copied: dict[int, float], cores: int) -> None:
    print(f"\nScale rehearsal on {cores} cores (training-split captions; the test split has half as many)")
    if copied:
        print(f"feature shards at {', '.join(map(str, sorted(copied)))} captions: {COPIED} (written from the "
              f"features of the {sizes[0]}-caption run, whose files they link to)")
    header = (["stage"] + [f"{n} cap: s / MB" for n in sizes]
              + ["RSS growth", "full SPEECH-COCO: s / MB per job (extrapolated)"])
    print(" | ".join(header))
    for row in rows:
        at = dict(zip(row["sizes"], zip(row["seconds"], row["max_rss_mb"])))
        cells = [COPIED if n not in at
                 else f"{at[n][0]:.1f} / {UNSAMPLED}" if n in row["unsampled_sizes"]
                 else f"{at[n][0]:.1f} / {at[n][1]:.0f}" for n in sizes]
        sampled = [n for n in row["sizes"] if n not in row["unsampled_sizes"]]
        growth = row["rss_growth"]
        growth_text = (f"{growth:.2f}x ({sampled[0]}-{sampled[-1]})" if growth
                       else "one size measured" if len(row["sizes"]) == 1
                       else f"sampled at {len(sampled)} of {len(row['sizes'])} sizes")
        full_mb = row.get("full_max_rss_mb_extrapolated")
        full_text = f"{row['full_seconds_extrapolated']:.0f} / " + (f"{full_mb:.0f}" if full_mb else UNSAMPLED)
        print(" | ".join([row["stage"], *cells, growth_text, full_text]))
    total_full = sum(max(0.0, r["full_seconds_extrapolated"]) for r in rows)
    print(f"\nfull SPEECH-COCO on this machine, all stages one after another: about {total_full / 3600:.1f} h "
          f"(linear extrapolation from {sizes[0]}-{sizes[-1]} captions, the feature steps from the sizes where they "
          f"ran; approximate; training is one epoch of a small model on CPU here, a GPU matter at full size)")
    print("memory per job at full size: a least-squares line through the measured peaks, read at "
          f"{FULL['train2014']:,} training captions; approximate, and an upper estimate for the steps that hold "
          "a bounded number of shards by design (their measured growth is carried on as if it went on)")


def measurements_from_json(path: Path) -> tuple[dict[int, dict[str, dict[str, float]]], dict[int, float], int]:
    """The per-size measurements and copied sizes kept in a --json file."""
    saved = json.loads(path.read_text())
    measured: dict[int, dict[str, dict[str, float]]] = {n: {} for n in saved["sizes"]}
    for row in saved["rows"]:
        for n, secs, rss, jobs in zip(row["sizes"], row["seconds"], row["max_rss_mb"], row["jobs"]):
            measured[n][row["stage"]] = {"s": secs, "max_rss": rss, "jobs": jobs}
    copied = {int(n): secs for n, secs in saved.get("copied_seconds", {}).items()}
    return measured, copied, saved["cores"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=5000, help="training-split captions at 1x")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vgsalign-rehearsal"))
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--copy-features-above", type=int, default=None, metavar="N",
                        help="above N training captions, write the feature shards from the pool's features "
                             "instead of running the feature jobs (default: run them at every size)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--table-from", type=Path, metavar="JSON",
                        help="print the table of an earlier run's --json file and run nothing")
    args = parser.parse_args()
    if args.table_from:
        measured, copied, cores = measurements_from_json(args.table_from)
        print_table(table_rows(measured, copied), sorted(measured), copied, cores)
        return 0
    scales = sorted(args.scales)
    if args.copy_features_above is not None and args.base * scales[0] > args.copy_features_above:
        parser.error("--copy-features-above: the smallest size must run the feature jobs (its shards are copied)")

    pool = make_pool(args.work, args.cores)
    measured: dict[int, dict[str, dict[str, float]]] = {}
    copied: dict[int, float] = {}            # size -> seconds spent writing its shards
    found = None
    for scale in scales:
        n_train = args.base * scale
        name = f"rehearsal_{n_train}"
        corpus = args.work / "corpora" / name
        if not (corpus / "coco/annotations/instances_val2014.json").is_file():
            shutil.rmtree(corpus, ignore_errors=True)
            make_split(pool, corpus, "train2014", n_train, id_base=100_000_000)
            make_split(pool, corpus, "val2014", n_train // 2, id_base=200_000_000)
        workdir = args.work / "runs" / name
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "rehearsal.yaml"
        config.write_text(yaml.safe_dump(overlay(name, corpus)))
        results = workdir / "results" / name
        if args.copy_features_above is not None and n_train > args.copy_features_above:
            print(f"{scale}x: writing the feature shards from the pool's features ...", flush=True)
            copied[n_train] = copy_features(workdir, config, args.cores, results, corpus / "coco", found, workdir)
            print(f"{scale}x: shards written and touched in {copied[n_train]:.0f} s", flush=True)
        print(f"{scale}x: {n_train} + {n_train // 2} captions, running `snakemake scores` ...", flush=True)
        wall = run(snakemake_command(workdir, config, args.cores, "scores"), workdir / "snakemake.log")
        measured[n_train] = read_benchmarks(results)
        if found is None and args.copy_features_above is not None:
            found = pool_features(results, corpus / "coco")
        print(f"{scale}x: done in {wall:.0f} s", flush=True)

    rows = table_rows(measured, copied)
    print_table(rows, sorted(measured), copied, args.cores)
    if args.json:
        args.json.write_text(json.dumps({"sizes": sorted(measured), "cores": args.cores, "rows": rows,
                                         "copy_features_above": args.copy_features_above,
                                         "copied_seconds": {str(k): v for k, v in copied.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
