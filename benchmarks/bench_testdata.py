"""Throughput and peak memory of test-set construction (the testdata_* steps), run as the
workflow runs them: one process per step, one after the other.

    python benchmarks/bench_testdata.py [--scales 10 100 676] [--source results/demo/corpus]
        [--work /tmp/bench_testdata] [--baseline-src DIR]

Each scale's corpus is made from the demo corpus's test split (generated first if missing)
by cloning every caption `scale` times under new utterance and image ids: caption JSON
copied, wav hard-linked (the steps read only the wav header, so no speech is synthesised
again), instances JSON extended with the cloned images; a corpus already made for the same
scale and source is reused. Scale 676 of the default demo corpus (300 test captions) gives
202,800 captions, the size of SPEECH-COCO val2014 (202,654). The clones repeat the demo's
texts, so a step that reused work across identical texts would look faster here than on
SPEECH-COCO, whose captions are nearly all distinct; no step does.

Every step runs as `python -m vgsalign.cli testdata-<step> ...` with the arguments its rule
passes. Per step: wall seconds, CPU seconds (user + system, from wait4) and peak RSS of its
process. The throughput is the split's captions divided by the summed wall time of the
steps; the target is >= 2,000 captions/s on 2 cores. The per-step fixed cost (interpreter
start, imports, loading the tagger and the vectors) is the intercept of a line fitted
through the scales' times; CPU time is less moved than wall time by other work on the
machine, and the 1-minute load average is printed beside each run.

With --baseline-src DIR (the `src` folder of another checkout, e.g. a `git worktree` of an
earlier commit), every scale is also run with that code, interleaved with this checkout's
(baseline first at one scale, this checkout first at the next), and every output file of
the two runs is compared byte for byte.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from measured import run_measured  # noqa: E402  (benchmarks/measured.py)
TARGET_CAPTIONS_PER_S = 2000.0
THREADS = 2   # the testdata_dataset rule's threads (its caption readers)
VAL2014_CAPTIONS = 202_654   # SPEECH-COCO val2014
STEPS = ("dataset", "frames", "nouns", "vocab", "labels", "similarities", "histogram", "pairs", "summary")


def ensure_demo(source: Path, split: str) -> None:
    if (source / f"manifest_{split}.json").is_file():
        return
    sys.path.insert(0, str(ROOT / "src"))
    from vgsalign.config import load_config

    demo = load_config(ROOT / "config.yaml")["demo"]
    print(f"generating the demo corpus's {split} split under {source} ...", flush=True)
    subprocess.run([sys.executable, "-m", "vgsalign.cli", "demo-corpus-split", "--demo", json.dumps(demo),
                    "--split", split, "--out", str(source), "--threads", str(os.cpu_count() or 1)], check=True)


def scale_corpus(source: Path, out: Path, split: str, scale: int) -> tuple[Path, Path, int]:
    """(speech_root, coco_root, n_captions) of the corpus cloned `scale` times (reused when made before)."""
    stamp = out / "made.json"
    key = {"source": str(source.resolve()), "split": split, "scale": scale,
           "source_mtime": (source / f"manifest_{split}.json").stat().st_mtime}
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        return out / "speech", out / "coco", json.loads(stamp.read_text())["captions"]
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
    stamp.write_text(json.dumps({"key": key, "captions": n}))
    return out / "speech", out / "coco", n


def step_commands(config: dict, speech_root: Path, coco_root: Path, split: str, out: Path,
                  resources: Path) -> dict[str, list[str]]:
    """Each step's arguments as its rule in workflow/rules/testdata.smk passes them."""
    def js(value) -> str:
        return json.dumps(value, sort_keys=True)

    dataset = {key: config["dataset"][key] for key in ("source", "on_error", "max_rejected_share")}
    dataset |= {"source": "speechcoco", "alignments_root": None}
    vectors = str(resources / "vectors" / f"{config['word_vectors']['source']}.kv")
    tagger = str(resources / "nltk_data" / "vgsalign_tagger.json")
    t, r = out, out / "reports"
    return {
        "dataset": ["testdata-dataset", "--dataset", js(dataset), "--speech-root", str(speech_root),
                    "--coco-root", str(coco_root), "--split", split, "--out-dir", str(t),
                    "--report", str(r / "dataset.json"), "--rejects", str(t / "rejects_dataset.csv")],
        "frames": ["testdata-frames", "--utterances", str(t / "utterances.csv"), "--words", str(t / "words.csv"),
                   "--frames", js(config["frames"]), "--word-spans", js(config["word_spans"]),
                   "--out", str(t / "frames.csv"), "--report", str(r / "frames.json")],
        "nouns": ["testdata-nouns", "--frames", str(t / "frames.csv"), "--tagger", tagger,
                  "--nouns", js(config["nouns"]), "--out", str(t / "nouns.csv"), "--report", str(r / "nouns.json")],
        "vocab": ["testdata-vocab", "--nouns", str(t / "nouns.csv"), "--vectors", vectors,
                  "--vocab", js(config["vocab"]), "--out", str(t / "vocab.csv"), "--report", str(r / "vocab.json")],
        "labels": ["testdata-labels", "--instances", str(coco_root / "annotations" / f"instances_{split}.json"),
                   "--utterances", str(t / "utterances.csv"), "--out", str(t / "labels.csv"),
                   "--report", str(r / "labels.json")],
        "similarities": ["testdata-similarities", "--vocab", str(t / "vocab.csv"), "--labels", str(t / "labels.csv"),
                         "--vectors", vectors, "--out", str(t / "similarities.csv"),
                         "--report", str(r / "similarities.json")],
        "histogram": ["testdata-histogram", "--similarities", str(t / "similarities.csv"),
                      "--match", js(config["match"]), "--word-vectors", js(config["word_vectors"]),
                      "--out", str(t / "similarities.png")],
        "pairs": ["testdata-pairs", "--similarities", str(t / "similarities.csv"), "--vocab", str(t / "vocab.csv"),
                  "--utterances", str(t / "utterances.csv"), "--match", js(config["match"]),
                  "--out", str(t / "pairs.csv"), "--report", str(r / "pairs.json")],
        "summary": ["testdata-summary", "--reports", str(r), "--pairs", str(t / "pairs.csv"),
                    "--out-json", str(t / "summary.json"), "--out-md", str(t / "summary.md")],
    }


def run_step(argv: list[str], src: Path, log: Path) -> dict:
    """Run one step in its own process: wall s, CPU s (user + system) and peak RSS (MB)."""
    return run_measured([sys.executable, "-m", "vgsalign.cli", *argv], log=log, src=src, name="bench_testdata")


def run_steps(commands: dict[str, list[str]], src: Path, out: Path, keep: Path) -> dict[str, dict]:
    """All steps into `out` (so every report names the same paths), then moved to `keep`."""
    if out.exists():
        shutil.rmtree(out)
    (out / "reports").mkdir(parents=True)
    logs = keep.parent / f"{keep.name}.logs"
    logs.mkdir(parents=True, exist_ok=True)
    figures = {}
    for name in STEPS:
        argv = commands[name]
        if name == "dataset" and "--threads" in (src / "vgsalign/testdata/dataset.py").read_text():
            argv = [*argv, "--threads", str(THREADS)]   # as the rule runs it (older code has no such flag)
        figures[name] = run_step(argv, src, logs / f"{name}.log")
        figures[name]["load"] = os.getloadavg()[0]
    if keep.exists():
        shutil.rmtree(keep)
    out.rename(keep)
    return figures


def compare_outputs(a: Path, b: Path) -> list[str]:
    """Files that differ or exist on one side only (relative paths); empty when identical."""
    names = {p.relative_to(a) for p in a.rglob("*") if p.is_file()} | {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    return sorted(str(n) for n in names
                  if not ((a / n).is_file() and (b / n).is_file() and filecmp.cmp(a / n, b / n, shallow=False)))


def print_run(label: str, scale: int, captions: int, figures: dict[str, dict], load_before: float) -> float:
    total_wall = sum(f["wall"] for f in figures.values())
    total_cpu = sum(f["cpu"] for f in figures.values())
    rate = captions / total_wall
    print(f"\n{label}, scale {scale}: {captions} captions; 1-min load {load_before:.2f} before, "
          f"{figures['summary']['load']:.2f} after")
    print(f"  {'step':13s} {'wall s':>7s} {'CPU s':>7s} {'captions/s':>10s} {'peak RSS MB':>11s}")
    for name, f in figures.items():
        print(f"  {name:13s} {f['wall']:7.2f} {f['cpu']:7.2f} {captions / f['wall']:10.0f} {f['rss_mb']:11.0f}")
    print(f"  {'all steps':13s} {total_wall:7.2f} {total_cpu:7.2f} {rate:10.0f} "
          f"{max(f['rss_mb'] for f in figures.values()):11.0f}")
    return rate


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares (intercept s, slope s per caption) of seconds against captions."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - slope * mx, slope


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[10, 100, 676])
    parser.add_argument("--source", type=Path, default=ROOT / "results/demo/corpus")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_testdata"))
    parser.add_argument("--baseline-src", type=Path, help="the src folder of the code to compare against")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from vgsalign.config import load_config
    from vgsalign.resources import tagger, vectors as word_vectors

    config = load_config(ROOT / "config.yaml")
    split = config["dataset"]["splits"]["test"]
    ensure_demo(args.source, split)
    resources = args.work / "resources"
    t0 = time.perf_counter()
    if not (resources / "nltk_data" / "vgsalign_tagger.json").is_file():
        tagger.provision_tagger(config["resources"]["tagger"], resources / "nltk_data")
    vectors = resources / "vectors" / f"{config['word_vectors']['source']}.kv"
    if not vectors.is_file():
        word_vectors.provision_vectors(config["word_vectors"]["source"], config["word_vectors"]["path"], vectors)
    print(f"resources (once, not counted): {time.perf_counter() - t0:.1f} s")

    codes = [("this checkout", ROOT / "src")]
    if args.baseline_src:
        codes.insert(0, ("baseline", args.baseline_src.resolve()))
    results: dict[str, list[tuple[int, int, dict]]] = {label: [] for label, _ in codes}
    identical = True
    for position, scale in enumerate(sorted(args.scales)):
        t0 = time.perf_counter()
        scale_dir = args.work / f"scale{scale}"
        speech_root, coco_root, captions = scale_corpus(args.source, scale_dir / "corpus", split, scale)
        print(f"\nscale {scale}: {captions} captions ({time.perf_counter() - t0:.1f} s to make or find, not counted)")
        commands = step_commands(config, speech_root, coco_root, split, scale_dir / "testdata", resources)
        order = codes if position % 2 == 0 else codes[::-1]
        for label, src in order:
            load_before = os.getloadavg()[0]
            keep = scale_dir / ("testdata.baseline" if label == "baseline" else "testdata.current")
            figures = run_steps(commands, src, scale_dir / "testdata", keep)
            print_run(label, scale, captions, figures, load_before)
            results[label].append((scale, captions, figures))
        if args.baseline_src:
            differ = compare_outputs(scale_dir / "testdata.baseline", scale_dir / "testdata.current")
            n_files = sum(1 for p in (scale_dir / "testdata.current").rglob("*") if p.is_file())
            identical &= not differ
            print(f"  outputs of baseline and this checkout: "
                  f"{'all ' + str(n_files) + ' files byte-identical' if not differ else 'DIFFER: ' + ', '.join(differ)}")

    print("\nsummary (captions / summed wall time of the steps; target >= "
          f"{TARGET_CAPTIONS_PER_S:.0f} captions/s on 2 cores, at the largest scale)")
    for label, runs in results.items():
        scale, captions, figures = runs[-1]
        wall = sum(f["wall"] for f in figures.values())
        cpu = sum(f["cpu"] for f in figures.values())
        rate = captions / wall
        line = (f"  {label}: {rate:.0f} captions/s at scale {scale} ({captions} captions, {wall:.1f} s wall, "
                f"{cpu:.1f} s CPU, peak RSS {max(f['rss_mb'] for f in figures.values()):.0f} MB): "
                f"target {'met' if rate >= TARGET_CAPTIONS_PER_S else 'NOT met'}")
        print(line)
        if len(runs) >= 2:
            fixed, per_caption = fit([(c, sum(f["wall"] for f in fig.values())) for _, c, fig in runs])
            fixed_cpu, per_caption_cpu = fit([(c, sum(f["cpu"] for f in fig.values())) for _, c, fig in runs])
            print(f"    line through the scales: {fixed:.1f} s fixed + {per_caption * 1e6:.0f} us per caption wall "
                  f"({fixed_cpu:.1f} s + {per_caption_cpu * 1e6:.0f} us CPU); SPEECH-COCO val2014 "
                  f"({VAL2014_CAPTIONS} captions) extrapolated: {fixed + per_caption * VAL2014_CAPTIONS:.0f} s wall, "
                  f"{VAL2014_CAPTIONS / (fixed + per_caption * VAL2014_CAPTIONS):.0f} captions/s")
    if args.baseline_src:
        print(f"  outputs byte-identical at every scale: {'yes' if identical else 'NO'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
