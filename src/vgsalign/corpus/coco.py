"""MSCOCO 2014 as unzipped: instances files (a pycocotools index, the image ids a split has) and image folders."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import ijson

from ..errors import InputError
from ..runtime import gc_paused


def open_coco(instances_json: Path):
    """A pycocotools COCO index of an instances file; a missing or malformed file is an InputError."""
    from pycocotools.coco import COCO

    if not instances_json.is_file():
        raise InputError(instances_json, "instances file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()), gc_paused():  # pycocotools prints progress
            return COCO(str(instances_json))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AssertionError) as err:
        raise InputError(instances_json, f"not a COCO instances file ({type(err).__name__}: {err})") from None


def instances_path(coco_root: Path, split: str) -> Path:
    """`annotations/instances_<split>.json`, as MSCOCO's annotation zip unpacks."""
    return Path(coco_root) / "annotations" / f"instances_{split}.json"


def image_folder(coco_root: Path, split: str) -> Path:
    """The folder of a split's images: `<coco_root>/<split>/` as MSCOCO's image zips unpack
    (train2014.zip -> train2014/COCO_train2014_<12-digit id>.jpg), else `<coco_root>/images/<split>/`
    (the built-in demo corpus). File names come from the instances file's `file_name`."""
    coco_root = Path(coco_root)
    unzipped = coco_root / split
    demo = coco_root / "images" / split
    return demo if demo.is_dir() and not unzipped.is_dir() else unzipped


def coco_image_ids(instances_json: Path) -> set[int]:
    """The image ids of an instances file, from its `images` list alone. MSCOCO's files hold
    that list before the annotations (nearly all of the file), so reading stops there:
    val2014's ids take a fraction of a second instead of the seconds of a full parse. (A file
    with its annotations first is read up to its images, more slowly.)"""
    if not instances_json.is_file():
        raise InputError(instances_json, "instances file not found")
    images = None
    try:
        with open(instances_json, "rb") as fh:
            for key, value in ijson.kvitems(fh, "", use_float=True):
                if key == "images":
                    images = value
                    break
    except ijson.JSONError as err:
        raise InputError(instances_json, f"not a COCO instances file (not valid JSON: {err})") from None
    if not isinstance(images, list):
        raise InputError(instances_json, "not a COCO instances file (no `images` list)")
    ids = set()
    for image in images:
        try:
            ids.add(int(image["id"]))
        except (TypeError, KeyError, ValueError):
            raise InputError(instances_json, f"an image entry has no integer `id`: {str(image)[:80]}") from None
    return ids
