"""COCO instances of the test images, checked as they are read, and their category masks.

Ground truth (docs/design.md): the mask of category c in an image is the union of all
non-crowd instances of c, rasterised at the image's own size with pycocotools. A
non-crowd annotation that pycocotools would rasterise wrongly without a word (an RLE of
another size, transposed or larger, changes the mask) or fail on late (an empty or
degenerate polygon, an unknown category id) is refused here with a line naming the file
and the annotation id, or with `on_error: skip` left out and counted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import InputError

ON_ERROR_CHOICES = ("stop", "skip")


@dataclass
class ImageAnnotations:
    image_id: int
    height: int
    width: int
    # category id -> segmentations of its non-crowd instances
    segmentations: dict[int, list] = field(default_factory=dict)


@dataclass
class Instances:
    path: str
    category_ids: dict[str, int]           # name -> id
    category_names: dict[int, str]         # id -> name
    images: dict[int, ImageAnnotations]
    # annotations left out under on_error "skip": problem -> count, and the first few named
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)


def _polygon_problem(polygon) -> tuple[str, str] | None:
    """Why a polygon (a list of coordinates as in the file, or the float64 array `_compact`
    made of it) cannot be rasterised faithfully, or None."""
    is_sequence = isinstance(polygon, (list, np.ndarray))
    if not is_sequence or len(polygon) < 6 or len(polygon) % 2:
        size = len(polygon) if is_sequence else type(polygon).__name__
        return "degenerate_polygon", f"degenerate polygon ({size} coordinates; needs an even number, at least 6)"
    try:
        xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        return "degenerate_polygon", "polygon with non-numeric coordinates"
    if not np.isfinite(xy).all():
        return "degenerate_polygon", "polygon with non-finite coordinates"
    x, y = xy[:, 0], xy[:, 1]
    if np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)) == 0:      # shoelace: twice the area
        return "degenerate_polygon", "degenerate polygon (zero area)"
    return None


def _rle_problem(rle: dict, height: int, width: int) -> tuple[str, str] | None:
    size = rle.get("size")
    if not isinstance(size, (list, tuple)) or [int(v) for v in size] != [height, width]:
        hint = " (transposed)" if isinstance(size, (list, tuple)) and list(size) == [width, height] else ""
        return "rle_size_mismatch", f"RLE size {size} differs from its image's (height, width) [{height}, {width}]{hint}"
    counts = rle.get("counts")
    if isinstance(counts, list):
        if any((not isinstance(c, int)) or c < 0 for c in counts) or sum(counts) != height * width:
            return "rle_counts", f"uncompressed RLE counts do not cover the image (sum {sum(map(int, counts))}, " \
                   f"height x width {height * width})"
    elif not isinstance(counts, (str, bytes)):
        return "rle_counts", f"RLE counts of type {type(counts).__name__} (expected a list or a string)"
    return None


def annotation_problem(ann: dict, image: ImageAnnotations, known_categories: set[int]) -> tuple[str, str] | None:
    """Why a non-crowd annotation cannot be rasterised faithfully at its image's size, or None.

    Checked here because pycocotools accepts these silently (an RLE of another size gives
    another mask) or fails late with an unrelated message."""
    if int(ann["category_id"]) not in known_categories:
        return "unknown_category", f"unknown category_id {ann['category_id']}"
    segm = ann.get("segmentation")
    if isinstance(segm, list):
        if not segm:
            return "empty_segmentation", "empty segmentation (no polygon)"
        problems = [p for p in map(_polygon_problem, segm) if p]
        return problems[0] if problems else None
    if isinstance(segm, dict):
        return _rle_problem(segm, image.height, image.width)
    return "bad_segmentation", f"segmentation of type {type(segm).__name__} (expected polygons or an RLE)"


# an annotation of an image not asked for, replaced while the file is parsed
_LEFT_OUT = object()


def _compact(obj: dict, keep: set[int] | None):
    """json.load's object_hook, called on each JSON object as soon as it is parsed: an
    annotation of an image not in `keep` is left out at once, and every polygon that is a
    flat list of numbers becomes one float64 array (what pycocotools makes of it anyway).

    A COCO file's polygons are most of it: as Python lists of floats they take about 32
    bytes a coordinate (7x a 22 MB file, 152 MB, for the rehearsal's 7,600 test images),
    and all of them were alive at once until the file was parsed. Anything unusual is left
    as it is, for the checks to name."""
    segmentation = obj.get("segmentation")
    if segmentation is None or "image_id" not in obj:
        return obj
    if keep is not None:
        try:
            if int(obj["image_id"]) not in keep:
                return _LEFT_OUT
        except (TypeError, ValueError):
            return obj
    if isinstance(segmentation, list):
        for k, polygon in enumerate(segmentation):
            if isinstance(polygon, list) and all(type(v) in (int, float) for v in polygon):
                segmentation[k] = np.asarray(polygon, dtype=np.float64)
    return obj


def load_instances(path: str | os.PathLike, image_ids: Iterable[int] | None = None,
                   on_error: str = "stop") -> Instances:
    """Read a COCO instances JSON, keeping only `image_ids` (all when None).

    A malformed non-crowd annotation of a kept image (see `annotation_problem`) stops with
    a line naming the file and the annotation, or with on_error "skip" is left out and
    counted in `Instances.skipped`."""
    keep = None if image_ids is None else {int(i) for i in image_ids}
    try:
        with open(path) as fh:
            data = json.load(fh, object_hook=lambda obj: _compact(obj, keep))
    except FileNotFoundError:
        raise InputError(path, "instances JSON not found") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise InputError(path, "not a COCO instances file (needs images, annotations, categories)")
    try:
        category_ids = {str(c["name"]): int(c["id"]) for c in data["categories"]}
        images = {
            int(im["id"]): ImageAnnotations(int(im["id"]), int(im["height"]), int(im["width"]))
            for im in data["images"]
            if keep is None or int(im["id"]) in keep
        }
        instances = Instances(path=str(path), category_ids=category_ids,
                              category_names={v: k for k, v in category_ids.items()}, images=images)
        known = set(category_ids.values())
        for ann in data["annotations"]:
            if ann is _LEFT_OUT:
                continue
            image = images.get(int(ann["image_id"]))
            if image is None or int(ann.get("iscrowd", 0)):
                continue
            problem = annotation_problem(ann, image, known)
            if problem is None:
                image.segmentations.setdefault(int(ann["category_id"]), []).append(ann["segmentation"])
                continue
            where = f"annotation {ann.get('id', '?')} (image {image.image_id})"
            kind, message = problem
            if on_error != "skip":
                raise InputError(path, f"{where}: {message} (scores.on_error: skip leaves such annotations out)")
            instances.skipped[kind] = instances.skipped.get(kind, 0) + 1
            if len(instances.skipped_examples) < 5:
                instances.skipped_examples.append(f"{where}: {message}")
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"malformed COCO instances entry ({type(err).__name__}: {err})") from None
    return instances


def category_mask(image: ImageAnnotations, category_id: int) -> np.ndarray:
    """Union of the non-crowd instances of a category at the image's size, (h, w) bool."""
    h, w = image.height, image.width
    rles = []
    for segm in image.segmentations.get(category_id, []):
        if isinstance(segm, list):                       # polygons
            rles.append(mask_utils.merge(mask_utils.frPyObjects(segm, h, w)))
        elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):  # uncompressed RLE
            rles.append(mask_utils.frPyObjects(segm, h, w))
        else:                                            # compressed RLE
            rles.append(segm)
    if not rles:
        return np.zeros((h, w), dtype=bool)
    return mask_utils.decode(mask_utils.merge(rles, intersect=False)).astype(bool)
