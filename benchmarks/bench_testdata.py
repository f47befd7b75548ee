"""Throughput of the test-set steps (dataset -> pairs) on a 10x demo corpus, and peak memory.

    python benchmarks/bench_testdata.py [--scale 10] [--source results/demo/corpus] [--work /tmp/bench_testdata]

The 10x corpus is made from the demo corpus's test split (generated first if missing) by
cloning every caption `scale` times under new utterance and image ids: caption JSON copied,
wav hard-linked (the steps read only the wav header, so no speech is synthesised again),
instances JSON extended with the cloned images. The steps then run in this process, one
after the other, as the workflow runs them. Target: the full SPEECH-COCO val2014 split
(202,654 captions) in under 10 minutes on one core, i.e. >= 340 utterances/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_UTT_PER_S = 340.0


def ensure_demo(source: Path, split: str) -> None:
    if (source / f"manifest_{split}.json").is_file():
        return
    from vgsalign.config import load_config

    demo = load_config(ROOT / "config.yaml")["demo"]
    print(f"generating the demo corpus's {split} split under {source} ...", flush=True)
    subprocess.run(["vgsalign", "demo-corpus-split", "--demo", json.dumps(demo), "--split", split,
                    "--out", str(source), "--threads", str(os.cpu_count() or 1)], check=True)


def scale_corpus(source: Path, out: Path, split: str, scale: int) -> tuple[Path, Path, int]:
    """(speech_root, instances_json, n_captions) of the corpus cloned `scale` times."""
    if out.exists():
        shutil.rmtree(out)
    json_in, wav_in = source / "speech" / split / "json", source / "speech" / split / "wav"
    json_out, wav_out = out / "speech" / split / "json", out / "speech" / split / "wav"
    json_out.mkdir(parents=True)
    wav_out.mkdir(parents=True)
    instances = json.loads((source / "coco/annotations" / f"instances_{split}.json").read_text())
    offset = 10 ** len(str(max(i["id"] for i in instances["images"])))
    images, anns = list(instances["images"]), list(instances["annotations"])
    next_ann = max((a["id"] for a in anns), default=0) + 1
    for copy in range(1, scale):
        for image in instances["images"]:
            images.append({**image, "id": image["id"] + copy * offset})
        for ann in instances["annotations"]:
            anns.append({**ann, "id": next_ann, "image_id": ann["image_id"] + copy * offset})
            next_ann += 1
    n = 0
    for path in sorted(json_in.glob("*.json")):
        meta = json.loads(path.read_text())
        for copy in range(scale):
            stem = f"{path.stem}_x{copy}"
            clone = {**meta, "imgID": meta["imgID"] + copy * offset, "wavFilename": f"{stem}.wav"}
            (json_out / f"{stem}.json").write_text(json.dumps(clone))
            os.link(wav_in / meta["wavFilename"], wav_out / f"{stem}.wav")
            n += 1
    inst_path = out / "coco/annotations" / f"instances_{split}.json"
    inst_path.parent.mkdir(parents=True)
    inst_path.write_text(json.dumps({**instances, "images": images, "annotations": anns}))
    return out / "speech", inst_path, n


def main() -> int:
    from vgsalign.config import load_config
    from vgsalign.testdata import dataset

    from vgsalign.testdata import frames

    from vgsalign.testdata import labels

    from vgsalign.testdata import nouns

    from vgsalign.testdata import pairs

    from vgsalign.resources import tagger, vectors as word_vectors

    from vgsalign.testdata import similarities

    from vgsalign.testdata import summary as testdata_summary

    from vgsalign.testdata import vocab

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--source", type=Path, default=ROOT / "results/demo/corpus")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_testdata"))
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (slows every step several times)")
    args = parser.parse_args()
    config = load_config(ROOT / "config.yaml")
    split = config["dataset"]["splits"]["test"]
    ensure_demo(args.source, split)

    t0 = time.perf_counter()
    speech_root, instances, n_captions = scale_corpus(args.source, args.work / "corpus", split, args.scale)
    print(f"{args.scale}x corpus: {n_captions} captions, made in {time.perf_counter() - t0:.1f} s (no TTS)")

    res = args.work / "resources"
    t0 = time.perf_counter()
    tagger.provision_tagger(config["resources"]["tagger"], res / "nltk_data")
    vectors = res / "vectors" / f"{config['word_vectors']['source']}.kv"
    word_vectors.provision_vectors(config["word_vectors"]["source"], config["word_vectors"]["path"], vectors)
    print(f"resources (once, not counted below): {time.perf_counter() - t0:.1f} s")

    out, reports = args.work / "testdata", args.work / "testdata/reports"
    if args.tracemalloc:
        tracemalloc.start()
    steps = [
        ("dataset", lambda: dataset.build(dataset.DatasetSettings(source="speechcoco", alignments_root=None), speech_root,
                                          instances.parent.parent, split, out, reports / "dataset.json")),
        ("frames", lambda: frames.build(out / "utterances.csv", out / "words.csv",
                                        frames.FrameSettings(**config["frames"]),
                                        frames.WordSpanSettings(**config["word_spans"]), out / "frames.csv", reports / "frames.json")),
        ("nouns", lambda: nouns.build(out / "frames.csv", res / "nltk_data", nouns.NounSettings(**config["nouns"]),
                                      out / "nouns.csv", reports / "nouns.json")),
        ("vocab", lambda: vocab.build(out / "nouns.csv", vectors, vocab.VocabSettings(**config["vocab"]),
                                      out / "vocab.csv", reports / "vocab.json")),
        ("labels", lambda: labels.build(instances, out / "utterances.csv", out / "labels.csv", reports / "labels.json")),
        ("similarities", lambda: similarities.compute(out / "vocab.csv", out / "labels.csv", vectors,
                                                      out / "similarities.csv", reports / "similarities.json")),
        ("histogram", lambda: similarities.histogram(out / "similarities.csv", config["match"]["threshold"],
                                                     out / "similarities.png")),
        ("pairs", lambda: pairs.build(out / "similarities.csv", out / "vocab.csv", out / "utterances.csv",
                                      pairs.MatchSettings(**config["match"]), out / "pairs.csv", reports / "pairs.json")),
        ("summary", lambda: testdata_summary.build(reports, out / "summary.json", out / "summary.md")),
    ]
    times = {}
    start = time.perf_counter()
    for name, run in steps:
        t = time.perf_counter()
        run()
        times[name] = time.perf_counter() - t
    total = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = json.loads((out / "summary.json").read_text())["funnel"]

    print(f"\n{'step':14s} {'seconds':>8s} {'utt/s':>9s}")
    for name, seconds in times.items():
        print(f"{name:14s} {seconds:8.2f} {n_captions / seconds:9.0f}")
    rate = n_captions / total
    print(f"{'all steps':14s} {total:8.2f} {rate:9.0f}")
    print(f"\npairs: {summary['pairs (the test set)']}, utterances: {summary['utterances']}")
    traced = f", {traced_peak / 2**20:.0f} MB Python allocations (tracemalloc)" if traced_peak is not None else ""
    print(f"peak memory: {rss_mb:.0f} MB resident (ru_maxrss, includes the memory-mapped vectors touched){traced}")
    print(f"target >= {TARGET_UTT_PER_S:.0f} utt/s (SPEECH-COCO val2014 in 10 min): "
          f"{'met' if rate >= TARGET_UTT_PER_S else 'NOT met'} ({rate:.0f} utt/s; "
          f"val2014 would take {202654 / rate / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
