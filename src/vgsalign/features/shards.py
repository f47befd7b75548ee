"""Feature shards: which images and captions go in which shard, writing, checks, readers.

Plan. The images of a split are the `images` of its MSCOCO instances JSON, sorted by id
(or permuted with `numpy.random.default_rng(features.shuffle_seed)` when
`features.shuffle`), and cut into consecutive shards of `features.shard_size`; a caption
goes to its image's shard. The shard count therefore depends only on the number of
images, which the workflow knows before any job runs (`n_shards`): the demo corpus has
`demo.n_images[split]` images, and a real instances JSON is counted once and the count
cached beside the results (`cached_image_count`). No checkpoint rule is needed; the
index job checks that the corpus still has the planned number of images.

Index (`python -m vgsalign.features.shards images|captions`, rules `features_images` and
`features_captions`): per split, `images.csv` (shard, position, image_id, file_name,
width, height) and `captions.csv` (shard, utt_id, image_id, wav), read once so the
shard jobs need not scan the corpus; visual shards depend on images.csv only.

Shards (`<modality>/<split>/shard_<k:05d>.h5`, format in docs/formats.md) are written
to a temporary name and renamed when complete. They are opened read-only; on NFS or
other file systems without working POSIX locks set `HDF5_USE_FILE_LOCKING=FALSE`.
Items that could not be read (`features.on_error: skip`) are listed in the shard's
`rejects` group (`id`, `path`, `problem`) and counted in its `n_rejected` attribute.

Readers: `check_compatible(paths, expected)` (every extraction attribute must agree
between shards and with what the caller expects, else InputError naming the files),
`ShardReader` (random access by row or id across shards) and `iter_shards`
(streaming, one shard in memory at a time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
import pandas as pd

from .. import __version__
from ..atomic import atomic_path, write_csv, write_json
from ..errors import InputError
from ..settings import settings_from_json

# attributes that describe one shard rather than the extraction (never compared)
PER_SHARD_ATTRS = {"split", "shard_index", "n_shards", "n_items", "n_rejected", "n_silent", "first_image_id",
                   "last_image_id", "vgsalign_version", "device", "amp", "logmel_impl"}
REJECT_COLUMNS = ["id", "path", "problem"]


@dataclasses.dataclass(frozen=True)
class ShardingSettings:
    """The `features` config section."""

    shard_size: int
    shuffle: bool
    shuffle_seed: int
    on_error: str


# ------------------------------------------------------------------ planning


def n_shards(n_images: int, shard_size: int) -> int:
    return max(1, math.ceil(n_images / shard_size))


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.h5"


def read_coco_images(instances_json: str | os.PathLike) -> pd.DataFrame:
    """image_id, file_name, width, height of every image listed in an instances JSON."""
    path = Path(instances_json)
    if not path.is_file():
        raise InputError(path, "instances JSON not found")
    try:
        data = json.loads(path.read_bytes())
        images = data["images"]
        rows = [(int(im["id"]), str(im["file_name"]), int(im.get("width", 0)), int(im.get("height", 0))) for im in images]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"`images` entries need id and file_name ({type(err).__name__}: {err})") from None
    table = pd.DataFrame(rows, columns=["image_id", "file_name", "width", "height"])
    if table["image_id"].duplicated().any():
        raise InputError(path, f"duplicate image ids, e.g. {table.loc[table['image_id'].duplicated(), 'image_id'].iloc[0]}")
    return table


def cached_image_count(instances_json: str | os.PathLike, cache_file: str | os.PathLike) -> int:
    """Images in an instances JSON, cached by the file's size and mtime (read at DAG time)."""
    path = Path(instances_json)
    stat = path.stat()
    key = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = Path(cache_file)
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return int(cached["n_images"])
    except (OSError, ValueError):
        pass
    count = len(read_coco_images(path))
    write_json({"key": key, "n_images": count}, cache)
    return count


def plan_shard_counts(config: dict, splits: Sequence[str], instances_json, cache_dir: str) -> dict[str, int]:
    """Shards per split, known before any job runs (called by the workflow when it builds the DAG).

    The demo corpus has `demo.n_images[split]` images; a real split has as many as its
    instances JSON lists (`instances_json(split)` gives the path), counted once and cached.
    """
    counts = {}
    for split in splits:
        if config["dataset"]["source"] == "demo":
            n_images = config["demo"]["n_images"][split]
        else:
            path = instances_json(split)
            if not Path(path).is_file():
                raise InputError(path, "instances JSON not found (needed to plan the feature shards)")
            n_images = cached_image_count(path, Path(cache_dir) / split / ".image_count.json")
        counts[split] = n_shards(n_images, config["features"]["shard_size"])
    return counts


def order_images(image_ids: np.ndarray, settings: ShardingSettings) -> np.ndarray:
    """Image ids in shard order: sorted, then permuted with the seed if shuffling."""
    ordered = np.sort(np.asarray(image_ids, dtype=np.int64))
    if settings.shuffle:
        ordered = ordered[np.random.default_rng(settings.shuffle_seed).permutation(len(ordered))]
    return ordered


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
        from ..testdata.dataset import spokencoco_index

        index = spokencoco_index(root, split)
        try:
            data = json.loads(Path(index).read_text())["data"]
            for entry in data:
                image_id = int(re.search(r"(\d+)\.\w+$", entry["image"]).group(1))
                for caption in entry["captions"]:
                    utt_id = str(caption.get("uttid") or Path(caption["wav"]).stem)  # as vgsalign.testdata.dataset
                    rows.append((utt_id, image_id, str(root / caption["wav"])))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as err:
            raise InputError(index, f"unexpected SpokenCOCO index ({type(err).__name__}: {err})") from None
    else:
        raise InputError("dataset.source", f"{source!r}: expected demo, speechcoco or spokencoco")
    table = pd.DataFrame(rows, columns=["utt_id", "image_id", "wav"])
    if table["utt_id"].duplicated().any():
        raise InputError(root, f"duplicate caption id {table.loc[table['utt_id'].duplicated(), 'utt_id'].iloc[0]!r}")
    return table, problems


def order_index(images: pd.DataFrame, settings: ShardingSettings) -> pd.DataFrame:
    """images.csv: shard, position, image_id, file_name, width, height in shard order."""
    order = order_images(images["image_id"].to_numpy(), settings)
    images = images.set_index("image_id").loc[order].reset_index()
    images.insert(0, "position", np.arange(len(images)))
    images.insert(0, "shard", images["position"] // settings.shard_size)
    return images


def caption_index(images: pd.DataFrame, captions: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """captions.csv: each caption in its image's shard, ordered by image position then utt_id.

    Captions of images that the instances file does not list are returned as problems.
    """
    position = pd.Series(images["position"].to_numpy(), index=images["image_id"].to_numpy())
    shard = pd.Series(images["shard"].to_numpy(), index=images["image_id"].to_numpy())
    known = captions["image_id"].isin(position.index)
    problems = [{"id": r.utt_id, "path": r.wav, "problem": f"image {r.image_id} is not in the instances file"}
                for r in captions[~known].itertuples()]
    captions = captions[known].copy()
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


# ------------------------------------------------------------------ writing


def _attr_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def write_shard(path: str | os.PathLike, datasets: dict[str, np.ndarray], attrs: dict[str, Any],
                rejects: Sequence[dict]) -> None:
    """Write one shard atomically: datasets, attributes, and the `rejects` group."""
    string = h5py.string_dtype()
    with atomic_path(path, suffix=".part.h5") as tmp:
        with h5py.File(tmp, "w") as h5:
            for name, values in datasets.items():
                values = np.asarray(values)
                if values.dtype.kind in ("U", "O"):
                    h5.create_dataset(name, data=values.astype(object), dtype=string)
                elif values.ndim >= 3:
                    # one item per chunk: random access reads exactly one item
                    h5.create_dataset(name, data=values, chunks=(1, *values.shape[1:]) if len(values) else None)
                else:
                    h5.create_dataset(name, data=values)
            group = h5.create_group("rejects")
            for column in REJECT_COLUMNS:
                group.create_dataset(column, data=np.array([str(r[column]) for r in rejects], dtype=object), dtype=string)
            for key, value in attrs.items():
                h5.attrs[key] = _attr_value(value)
            h5.attrs["n_rejected"] = len(rejects)
            h5.attrs["vgsalign_version"] = __version__


# ------------------------------------------------------------------ reading


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    with h5py.File(path, "r") as h5:
        return {k: _plain(v) for k, v in h5.attrs.items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def check_compatible(paths: Sequence[str | os.PathLike], expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check that shards come from one extraction; return their shared attributes.

    Every extraction attribute (all but the per-shard counts) must be present and equal in
    all shards, and equal to `expected[key]` for each key given. Raises InputError naming
    the disagreeing files.
    """
    if not paths:
        raise InputError(None, "no feature shards given")
    reference_path = Path(paths[0])
    reference = {k: v for k, v in read_attrs(reference_path).items() if k not in PER_SHARD_ATTRS}
    for path in paths[1:]:
        attrs = {k: v for k, v in read_attrs(path).items() if k not in PER_SHARD_ATTRS}
        differing = sorted(k for k in set(reference) | set(attrs) if not _same(reference.get(k), attrs.get(k)))
        if differing:
            key = differing[0]
            raise InputError(path, f"shard extracted differently from {reference_path}: {key} = {attrs.get(key)!r} "
                                   f"vs {reference.get(key)!r}" + (f" (and {differing[1:]})" if len(differing) > 1 else ""))
    for key, value in (expected or {}).items():
        if key not in reference:
            raise InputError(reference_path, f"shard does not record {key!r}")
        if not _same(reference[key], value):
            raise InputError(reference_path, f"shard has {key} = {reference[key]!r} but {value!r} is expected "
                                             f"(features from other settings; rerun the features target)")
    return reference


def shard_paths(features_dir: str | os.PathLike, modality: str, split: str) -> list[Path]:
    """The shards of a modality and split, in shard order."""
    return sorted(Path(features_dir, modality, split).glob("shard_*.h5"))


def _decode(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object) if values.dtype.kind in ("O", "S") else values


class ShardReader:
    """Random access to the items of several shards of one modality (read-only).

    `key` is the id dataset (`utt_id` for audio, `image_id` for visual). Ids of all shards
    are read at open; `reader[i]` or `reader.get(id)` reads one item's datasets.
    `in_memory=True` loads the shards' arrays whole (fastest when they fit in memory).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], key: str, expected: dict[str, Any] | None = None,
                 in_memory: bool = False):
        self.paths = [Path(p) for p in paths]
        self.attrs = check_compatible(self.paths, expected)
        self.key = key
        self._files = [h5py.File(p, "r") for p in self.paths]
        ids, shard_of, row_of = [], [], []
        for s, h5 in enumerate(self._files):
            if key not in h5:
                raise InputError(self.paths[s], f"shard lacks dataset {key!r} (see docs/formats.md, Feature shards)")
            shard_ids = _decode(h5[key][...])
            ids.append(shard_ids)
            shard_of.append(np.full(len(shard_ids), s, dtype=np.int32))
            row_of.append(np.arange(len(shard_ids), dtype=np.int64))
        self.ids = np.concatenate(ids) if ids else np.array([])
        self._shard_of = np.concatenate(shard_of)
        self._row_of = np.concatenate(row_of)
        self._position = {v: i for i, v in enumerate(self.ids.tolist())}
        if len(self._position) != len(self.ids):
            raise InputError(self.paths[0], f"an id appears twice across the shards ({key})")
        self.fields = [name for name, obj in self._files[0].items() if isinstance(obj, h5py.Dataset)] if self._files else []
        self._memory = None
        if in_memory:
            self._memory = [{name: _decode(h5[name][...]) for name in self.fields} for h5 in self._files]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        shard, row = int(self._shard_of[index]), int(self._row_of[index])
        if self._memory is not None:
            return {name: values[row] for name, values in self._memory[shard].items()}
        h5 = self._files[shard]
        return {name: _decode(h5[name][row:row + 1])[0] for name in self.fields}

    def index_of(self, item_id: Any) -> int:
        return self._position[item_id]

    def get(self, item_id: Any) -> dict[str, Any]:
        return self[self.index_of(item_id)]

    def close(self) -> None:
        for h5 in self._files:
            h5.close()
        self._files = []

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def iter_shards(paths: Sequence[str | os.PathLike], fields: Sequence[str] | None = None,
                expected: dict[str, Any] | None = None, shuffle_seed: int | None = None) -> Iterator[dict[str, Any]]:
    """Stream shards one at a time: yields {dataset: whole array} per shard (plus `path`).

    With `shuffle_seed` the shard order is permuted (items within a shard stay in order).
    """
    paths = [Path(p) for p in paths]
    check_compatible(paths, expected)
    order = np.arange(len(paths))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(paths))
    for index in order:
        with h5py.File(paths[index], "r") as h5:
            names = fields or [n for n, obj in h5.items() if isinstance(obj, h5py.Dataset)]
            out = {name: _decode(h5[name][...]) for name in names}
        out["path"] = str(paths[index])
        yield out


def read_rejects(path: str | os.PathLike) -> pd.DataFrame:
    with h5py.File(path, "r") as h5:
        return pd.DataFrame({c: _decode(h5["rejects"][c][...]) for c in REJECT_COLUMNS}, columns=REJECT_COLUMNS)


# ------------------------------------------------------------------ index stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vgsalign.features.shards", description="Shard index of a split.")
    sub = parser.add_subparsers(dest="command", required=True)
    images_cmd = sub.add_parser("images", help="order a split's images and assign them to shards")
    images_cmd.add_argument("--instances", required=True, help="MSCOCO instances_<split>.json")
    images_cmd.add_argument("--settings", required=True, help="the features config section as JSON")
    images_cmd.add_argument("--expected-shards", type=int, required=True, help="shard count the workflow planned")
    images_cmd.add_argument("--out", required=True, help="images.csv")
    captions_cmd = sub.add_parser("captions", help="put each caption of a split in its image's shard")
    captions_cmd.add_argument("--images", required=True, help="images.csv")
    captions_cmd.add_argument("--source", required=True, choices=["demo", "speechcoco", "spokencoco"])
    captions_cmd.add_argument("--speech-root", required=True)
    captions_cmd.add_argument("--split", required=True)
    captions_cmd.add_argument("--settings", required=True, help="the features config section as JSON")
    captions_cmd.add_argument("--out", required=True, help="captions.csv")
    captions_cmd.add_argument("--rejects", required=True, help="rejects.csv: captions left out and why")
    args = parser.parse_args(argv)

    settings = settings_from_json(ShardingSettings, args.settings)
    if args.command == "images":
        images = read_coco_images(args.instances)
        planned = n_shards(len(images), settings.shard_size)
        if planned != args.expected_shards:
            raise InputError(args.instances, f"{len(images)} images make {planned} shards, but the workflow planned "
                                             f"{args.expected_shards}; the corpus changed since the plan: run snakemake again")
        write_csv(order_index(images, settings), args.out)
        print(f"{args.instances}: {len(images)} images in {planned} shard(s)")
        return 0
    images = pd.read_csv(args.images, dtype={"file_name": str})
    captions, problems = read_speech_captions(args.source, args.speech_root, args.split)
    captions, unknown = caption_index(images, captions)
    problems = handle_problems(problems + unknown, settings.on_error)
    write_csv(captions, args.out)
    write_csv(pd.DataFrame(problems, columns=REJECT_COLUMNS), args.rejects)
    print(f"{args.split}: {len(captions)} captions indexed, {len(problems)} rejected")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("features-index", main))
