"""The shard plan of a split: which images and captions go in which feature shard.

The images of a split are the `images` of its MSCOCO instances JSON, sorted by id (or
permuted with `numpy.random.default_rng(features.shuffle_seed)` when `features.shuffle`),
and cut into consecutive shards of `features.shard_size`; a caption goes to its image's
shard. The shard count therefore depends only on the number of images, which the
workflow knows before any job runs (`plan_shard_counts`): the demo corpus has
`demo.n_images[split]` images, and a real instances JSON is counted once and the count
cached beside the results (`cached_image_count`). No checkpoint rule is needed; the
images step checks that the corpus still has the planned number of images.

For SpokenCOCO the images of a split are those its Karpathy index names
(SpokenCOCO_<split>.json, counted once and cached the same way), each from the instances
file and image folder of its own COCO split: the train index's val2014 "restval" images are
read from val2014 (vgsalign.features.karpathy), and images.csv's file_name is relative to
coco_root. SPEECH-COCO and the demo corpus plan a split from its own instances file.

Steps (`vgsalign features-images`, `vgsalign features-captions`):
- images.csv (shard, position, image_id, file_name, width, height) lists every image of
  the plan; each image file is decoded (JPEG at reduced scale) so that a missing,
  truncated or corrupt one is found here, before any caption is planned: it stops the step, or with
  `features.on_error: skip` goes to images_rejected.csv (id, path, problem);
- captions.csv (shard, utt_id, image_id, wav) lists the captions whose image is usable,
  in image order; captions of an unknown or rejected image go to captions_rejected.csv,
  so training never meets a caption without image features. Visual shards hold only the
  images that have a caption in captions.csv.
With `on_error: skip`, more than `features.max_rejected_share` of the items rejected
stops the step (something is wrong with the corpus, not with a few files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..atomic import write_csv, write_json
from ..errors import InputError
from ..runtime import progress
from ..settings import settings_from_json
from .karpathy import index_summary, karpathy_images
from .shard_writer import REJECT_COLUMNS

# images are checked by decoding them small (JPEG draft mode: reduced scale, every byte still
# read); about 860 COCO-sized JPEGs per CPU-second here, a COCO split in about a minute on 2 threads
PROBE_SIZE = 64


@dataclasses.dataclass(frozen=True)
class ShardingSettings:
    """The `features` config section."""

    shard_size: int
    shuffle: bool
    shuffle_seed: int
    on_error: str
    max_rejected_share: float
    compression: str


def n_shards(n_images: int, shard_size: int) -> int:
    return max(1, math.ceil(n_images / shard_size))


# ------------------------------------------------------------------ images


def read_coco_images(instances_json: str | os.PathLike) -> pd.DataFrame:
    """image_id, file_name, width, height of every image listed in an instances JSON."""
    path = Path(instances_json)
    if not path.is_file():
        raise InputError(path, "instances JSON not found")
    try:
        images = json.loads(path.read_bytes())["images"]
        rows = [(int(im["id"]), str(im["file_name"]), int(im.get("width", 0)), int(im.get("height", 0))) for im in images]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"`images` entries need id and file_name ({type(err).__name__}: {err})") from None
    table = pd.DataFrame(rows, columns=["image_id", "file_name", "width", "height"])
    if table["image_id"].duplicated().any():
        raise InputError(path, f"duplicate image ids, e.g. {table.loc[table['image_id'].duplicated(), 'image_id'].iloc[0]}")
    return table


def cached_summary(path: str | os.PathLike, cache_file: str | os.PathLike, summarise: Callable[[Path], dict]) -> dict:
    """`summarise(path)`, cached by the file's size and mtime (read at DAG time)."""
    path = Path(path)
    stat = path.stat()
    key = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = Path(cache_file)
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached["summary"]
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    summary = summarise(path)
    write_json({"key": key, "summary": summary}, cache)
    return summary


def cached_image_count(instances_json: str | os.PathLike, cache_file: str | os.PathLike) -> int:
    """Images in an instances JSON, cached by the file's size and mtime."""
    return int(cached_summary(instances_json, cache_file, lambda p: {"n_images": len(read_coco_images(p))})["n_images"])


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """What the workflow knows of a split's images before any job runs."""

    n_shards: int
    coco_splits: list[str]  # the COCO splits whose instances files and images the plan reads


def plan_splits(config: dict, splits: Sequence[str], *, instances_json: Callable[[str], str],
                karpathy_index: Callable[[str], Path], cache_dir: str) -> dict[str, SplitPlan]:
    """Shards and COCO splits of each split (called by the workflow when it builds the DAG).

    The demo corpus has `demo.n_images[split]` images; a SPEECH-COCO split as many as its
    instances JSON lists (`instances_json(split)` gives the path); a SpokenCOCO split as many
    as its Karpathy index names (`karpathy_index(split)`), from the COCO splits their paths
    name. Real files are read once and the result cached.
    """
    plans = {}
    for split in splits:
        source, cache = config["dataset"]["source"], Path(cache_dir) / split / ".image_count.json"
        if source == "demo":
            summary = {"n_images": config["demo"]["n_images"][split], "coco_splits": [split]}
        elif source == "spokencoco":
            summary = cached_summary(karpathy_index(split), cache, index_summary)
        else:
            path = instances_json(split)
            if not Path(path).is_file():
                raise InputError(path, "instances JSON not found (needed to plan the feature shards)")
            summary = {"n_images": cached_image_count(path, cache), "coco_splits": [split]}
        plans[split] = SplitPlan(n_shards=n_shards(int(summary["n_images"]), config["features"]["shard_size"]),
                                 coco_splits=list(summary["coco_splits"]))
    return plans


def order_index(images: pd.DataFrame, settings: ShardingSettings) -> pd.DataFrame:
    """images.csv: shard, position, image_id, file_name, width, height in shard order."""
    order = np.sort(images["image_id"].to_numpy(dtype=np.int64))
    if settings.shuffle:
        order = order[np.random.default_rng(settings.shuffle_seed).permutation(len(order))]
    images = images.set_index("image_id").loc[order].reset_index()
    images.insert(0, "position", np.arange(len(images)))
    images.insert(0, "shard", images["position"] // settings.shard_size)
    return images


def probe_image(path: Path) -> str | None:
    """Why an image cannot be used, or None: the file is decoded whole, at reduced scale
    where the format allows (JPEG draft mode: every byte is still read and entropy-decoded,
    at a fraction of the cost), so a truncated or corrupt file is found here."""
    if not path.is_file():
        return "image file not found"
    try:
        with Image.open(path) as image:
            image.draft("RGB", (PROBE_SIZE, PROBE_SIZE))
            image.load()
    except Exception as err:  # PIL raises many types for a corrupt file
        return f"cannot read image ({type(err).__name__}: {err})"
    return None


def probe_images(images: pd.DataFrame, image_dir: str | os.PathLike, threads: int = 1) -> list[dict]:
    """The images whose file is missing or does not decode (in `threads` threads: PIL
    releases the GIL while decoding)."""
    paths = [Path(image_dir) / name for name in images["file_name"]]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        found = list(progress(pool.map(probe_image, paths), total=len(paths), desc="image files", unit="img"))
    return [{"id": image_id, "path": str(path), "problem": problem}
            for image_id, path, problem in zip(images["image_id"], paths, found) if problem is not None]


# ------------------------------------------------------------------ captions


def read_speech_captions(source: str, speech_root: str | os.PathLike, split: str) -> tuple[pd.DataFrame, list[dict]]:
    """(utt_id, image_id, wav) of every caption of a split, and the caption files that could not be read.

    Only what features need is read (`imgID`, `wavFilename`); word times are checked by the
    test-set stages, not here, so a caption unusable for the test set still gets features.
    """
    root = Path(speech_root)
    rows, problems = [], []
    if source in ("demo", "speechcoco"):
        json_dir, wav_dir = root / split / "json", root / split / "wav"
        if not json_dir.is_dir():
            raise InputError(json_dir, "caption JSON folder not found")
        for path in sorted(json_dir.glob("*.json")):
            try:
                meta = json.loads(path.read_text())
                rows.append((path.stem, int(meta["imgID"]), str(wav_dir / str(meta["wavFilename"]))))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                problems.append({"id": path.stem, "path": str(path), "problem": f"unreadable caption JSON ({type(err).__name__}: {err})"})
    elif source == "spokencoco":
        rows = _spokencoco_captions(root, split)
    else:
        raise InputError("dataset.source", f"{source!r}: expected demo, speechcoco or spokencoco")
    table = pd.DataFrame(rows, columns=["utt_id", "image_id", "wav"])
    if table["utt_id"].duplicated().any():
        raise InputError(root, f"duplicate caption id {table.loc[table['utt_id'].duplicated(), 'utt_id'].iloc[0]!r}")
    return table, problems


def _spokencoco_captions(root: Path, split: str) -> list[tuple[str, int, str]]:
    from ..testdata.dataset import spokencoco_index

    index = spokencoco_index(root, split)
    rows = []
    try:
        for entry in json.loads(Path(index).read_text())["data"]:
            image_id = int(re.search(r"(\d+)\.\w+$", entry["image"]).group(1))
            for caption in entry["captions"]:
                utt_id = str(caption.get("uttid") or Path(caption["wav"]).stem)  # as vgsalign.testdata.dataset
                rows.append((utt_id, image_id, str(root / caption["wav"])))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as err:
        raise InputError(index, f"unexpected SpokenCOCO index ({type(err).__name__}: {err})") from None
    return rows


def caption_index(images: pd.DataFrame, captions: pd.DataFrame,
                  rejected_images: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """captions.csv: each caption in its image's shard, ordered by image position then utt_id.

    Captions of images the instances file does not list, or whose image was rejected,
    are returned as problems.
    """
    position = pd.Series(images["position"].to_numpy(), index=images["image_id"].to_numpy())
    shard = pd.Series(images["shard"].to_numpy(), index=images["image_id"].to_numpy())
    image_problem = dict(zip(rejected_images["id"].astype(np.int64), rejected_images["problem"]))
    known = captions["image_id"].isin(position.index)
    usable = known & ~captions["image_id"].isin(list(image_problem))
    problems = [
        {"id": r.utt_id, "path": r.wav,
         "problem": f"its image {r.image_id} was rejected ({image_problem[r.image_id]})" if r.image_id in image_problem
         else f"image {r.image_id} is not in the instances file"}
        for r in captions[~usable].itertuples()
    ]
    captions = captions[usable].copy()
    captions["position"] = position.loc[captions["image_id"]].to_numpy()
    captions = captions.sort_values(["position", "utt_id"], kind="stable")
    captions.insert(0, "shard", shard.loc[captions["image_id"]].to_numpy())
    return captions.drop(columns="position").reset_index(drop=True), problems


def handle_problems(problems: list[dict], on_error: str) -> list[dict]:
    """Stop at the first problem (on_error stop) or return them all to be listed."""
    if problems and on_error == "stop":
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(first["path"], f"{first['problem']}{more}; set features.on_error: skip to list and skip such items")
    return problems


def check_rejected_share(n_rejected: int, n_items: int, settings: ShardingSettings, what: str, where: str) -> None:
    """Stop when more than features.max_rejected_share of the items were rejected."""
    share = n_rejected / n_items if n_items else 0.0
    if share > settings.max_rejected_share:
        raise InputError(where, f"{n_rejected} of {n_items} {what} rejected ({share:.1%}), more than "
                                f"features.max_rejected_share ({settings.max_rejected_share:.1%}); see the rejects table")


# ------------------------------------------------------------------ steps


def split_images(args: argparse.Namespace) -> tuple[pd.DataFrame, list[dict], Path, Path]:
    """(images, images missing from their instances file, the folder file_name is relative to,
    the file that lists the images): from one instances file, or from a SpokenCOCO index."""
    if args.karpathy_index is not None:
        if args.coco_root is None:
            raise InputError("--karpathy-index", "needs --coco-root (the folder of every COCO split)")
        images, problems = karpathy_images(args.karpathy_index, args.coco_root, read_coco_images)
        return images, problems, args.coco_root, args.karpathy_index
    if args.instances is None or args.image_dir is None:
        raise InputError("features-images", "expected --instances and --image-dir, or --karpathy-index and --coco-root")
    return read_coco_images(args.instances), [], args.image_dir, args.instances


def images_step(args: argparse.Namespace, settings: ShardingSettings) -> None:
    images, unlisted, image_root, listing = split_images(args)
    planned = n_shards(len(images), settings.shard_size)
    if planned != args.expected_shards:
        raise InputError(listing, f"{len(images)} images make {planned} shards, but the workflow planned "
                                  f"{args.expected_shards}; the corpus changed since the plan: run snakemake again")
    index = order_index(images, settings)
    unlisted_ids = {p["id"] for p in unlisted}
    probed = probe_images(index[~index["image_id"].isin(unlisted_ids)], image_root, args.threads)
    problems = handle_problems(unlisted + probed, settings.on_error)
    check_rejected_share(len(problems), len(index), settings, "images", listing)
    write_csv(pd.DataFrame(problems, columns=REJECT_COLUMNS), args.rejects)
    write_csv(index, args.out)
    print(f"{listing}: {len(images)} images in {planned} shard(s), {len(problems)} rejected")


def captions_step(args: argparse.Namespace, settings: ShardingSettings) -> None:
    images = pd.read_csv(args.images, dtype={"file_name": str})
    rejected_images = pd.read_csv(args.rejected_images, dtype={"path": str, "problem": str})
    captions, problems = read_speech_captions(args.source, args.speech_root, args.split)
    n_read = len(captions) + len(problems)
    captions, unusable = caption_index(images, captions, rejected_images)
    problems = handle_problems(problems + unusable, settings.on_error)
    check_rejected_share(len(problems), n_read, settings, "captions", args.speech_root)
    write_csv(pd.DataFrame(problems, columns=REJECT_COLUMNS), args.rejects)
    write_csv(captions, args.out)
    print(f"{args.split}: {len(captions)} captions indexed, {len(problems)} rejected")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign", description="Shard plan of a split.")
    sub = parser.add_subparsers(dest="command", required=True)
    images_cmd = sub.add_parser("images", prog="vgsalign features-images", help="order a split's images, assign them to shards, check their files")
    images_cmd.add_argument("--instances", type=Path, help="MSCOCO instances_<split>.json")
    images_cmd.add_argument("--image-dir", type=Path, help="folder holding the split's image files")
    images_cmd.add_argument("--karpathy-index", type=Path,
                            help="instead of --instances/--image-dir: a SpokenCOCO index whose images are planned, "
                                 "each from the instances file and image folder of its own COCO split")
    images_cmd.add_argument("--coco-root", type=Path, help="with --karpathy-index: holds annotations/ and the COCO split folders")
    images_cmd.add_argument("--features", required=True, help="the features config section as JSON")
    images_cmd.add_argument("--expected-shards", type=int, required=True, help="shard count the workflow planned")
    images_cmd.add_argument("--threads", type=int, default=1, help="image files checked in parallel")
    images_cmd.add_argument("--out", required=True, help="images.csv")
    images_cmd.add_argument("--rejects", required=True, help="images_rejected.csv: images left out and why")
    captions_cmd = sub.add_parser("captions", prog="vgsalign features-captions", help="put each caption of a split in its image's shard")
    captions_cmd.add_argument("--images", required=True, help="images.csv")
    captions_cmd.add_argument("--rejected-images", required=True, help="images_rejected.csv")
    captions_cmd.add_argument("--source", required=True, choices=["demo", "speechcoco", "spokencoco"])
    captions_cmd.add_argument("--speech-root", required=True)
    captions_cmd.add_argument("--split", required=True)
    captions_cmd.add_argument("--features", required=True, help="the features config section as JSON")
    captions_cmd.add_argument("--out", required=True, help="captions.csv")
    captions_cmd.add_argument("--rejects", required=True, help="captions_rejected.csv: captions left out and why")
    args = parser.parse_args(argv)

    settings = settings_from_json(ShardingSettings, args.features, "--features", section="features")
    (images_step if args.command == "images" else captions_step)(args, settings)
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("features-images", main))
