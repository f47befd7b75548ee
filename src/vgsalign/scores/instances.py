"""COCO instances of the test images, checked as they are read, and their category masks.

Ground truth (docs/design.md): the mask of category c in an image is the union of all
non-crowd instances of c, rasterised at the image's own size with pycocotools. A
non-crowd annotation that pycocotools would rasterise wrongly without a word (an RLE of
another size, transposed or larger, changes the mask) or fail on late (an empty or
degenerate polygon, an unknown category id) is refused here with a line naming the file
and the annotation id, or with `on_error: skip` left out and counted.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Iterable

import ijson
import numpy as np
import pandas as pd
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
    images: ImageStore                     # image id -> ImageAnnotations
    # annotations left out under on_error "skip": problem -> count, and the first few named
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)

    def annotated(self, image_ids: np.ndarray, category_ids: np.ndarray) -> np.ndarray:
        """Per (image, category) pair: whether the image has a kept instance of the category."""
        return self.images.annotated(image_ids, category_ids)


def _polygon_problem(polygon) -> tuple[str, str] | None:
    """Why a polygon (a list of coordinates as in the file, or the float64 array
    `_polygons_as_arrays` made of it) cannot be rasterised faithfully, or None."""
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


class ImageStore(Mapping[int, ImageAnnotations]):
    """The kept images' annotations, image id -> `ImageAnnotations`, with the segmentations
    in an unlinked temporary file.

    Memory holds each image's size and, per annotation, four numbers (image, category,
    where its record lies): the polygons and RLEs, most of a COCO file, are read back an
    image at a time when a chunk of work needs them, so the parent of a scoring run does
    not hold the whole test split's geometry."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="vgsalign-instances-")
        self._end = 0
        self.sizes: dict[int, tuple[int, int]] = {}        # image id -> (height, width)
        self._parts: list[np.ndarray] = []                  # (k, 4) int64 blocks of records
        self._pending: list[tuple[int, int, int, int]] = []
        self._records = np.zeros((0, 4), dtype=np.int64)    # image, category, offset, length; sorted

    def add_image(self, image_id: int, height: int, width: int) -> None:
        self.sizes[image_id] = (height, width)

    def add(self, image_id: int, category_id: int, segmentation) -> None:
        blob = pickle.dumps(segmentation, protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(blob)
        self._pending.append((image_id, category_id, self._end, len(blob)))
        self._end += len(blob)
        if len(self._pending) >= 4096:                      # tuples in bulk cost far more than arrays
            self._parts.append(np.array(self._pending, dtype=np.int64))
            self._pending = []

    def seal(self) -> None:
        """Done adding: sort the records by image (then category, then file order)."""
        self._file.flush()
        if self._pending:
            self._parts.append(np.array(self._pending, dtype=np.int64))
            self._pending = []
        records = np.concatenate(self._parts) if self._parts else np.zeros((0, 4), dtype=np.int64)
        self._parts = []
        self._records = records[np.lexsort((records[:, 1], records[:, 0]))]   # stable: file order kept

    def annotated(self, image_ids: np.ndarray, category_ids: np.ndarray) -> np.ndarray:
        """Per (image, category): whether the image has a kept instance of the category."""
        have = pd.MultiIndex.from_arrays([self._records[:, 0], self._records[:, 1]])
        return pd.MultiIndex.from_arrays([np.asarray(image_ids, dtype=np.int64),
                                          np.asarray(category_ids, dtype=np.int64)]).isin(have)

    def __getitem__(self, image_id: int) -> ImageAnnotations:
        image_id = int(image_id)
        height, width = self.sizes[image_id]
        image = ImageAnnotations(image_id, height, width)
        first, last = np.searchsorted(self._records[:, 0], [image_id, image_id + 1])
        for _, category_id, offset, length in self._records[first:last].tolist():
            segmentation = pickle.loads(os.pread(self._file.fileno(), length, offset))
            image.segmentations.setdefault(category_id, []).append(segmentation)
        return image

    def __iter__(self) -> Iterator[int]:
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)

    def __contains__(self, image_id) -> bool:
        return image_id in self.sizes

    def close(self) -> None:
        self._file.close()


def _polygons_as_arrays(segmentation):
    """Every polygon that is a flat list of numbers as one float64 array (what pycocotools
    makes of it anyway); anything unusual is left as it is, for the checks to name."""
    if isinstance(segmentation, list):
        return [np.asarray(p, dtype=np.float64)
                if isinstance(p, list) and all(type(v) in (int, float) for v in p) else p
                for p in segmentation]
    return segmentation


def _stream(path: str | os.PathLike, prefix: str) -> Iterator:
    """The items under `prefix` of a JSON file, one at a time (ijson's C parser), so that
    no more than one of them is in memory."""
    try:
        with open(path, "rb") as fh:
            yield from ijson.items(fh, prefix, use_float=True)
    except FileNotFoundError:
        raise InputError(path, "instances JSON not found") from None
    except ijson.JSONError as err:
        raise InputError(path, f"not valid JSON ({err})") from None


def load_instances(path: str | os.PathLike, image_ids: Iterable[int] | None = None,
                   on_error: str = "stop") -> Instances:
    """Read a COCO instances JSON, keeping only `image_ids` (all when None).

    The file is streamed, one pass over its categories, images and annotations each: an
    annotation of an image not kept is never held, and the kept ones go to an `ImageStore`.
    A malformed non-crowd annotation of a kept image (see `annotation_problem`) stops with
    a line naming the file and the annotation, or with on_error "skip" is left out and
    counted in `Instances.skipped`."""
    keep = None if image_ids is None else {int(i) for i in image_ids}
    store = ImageStore()
    try:
        category_ids = {str(c["name"]): int(c["id"]) for c in _stream(path, "categories.item")}
        n_images = 0
        for im in _stream(path, "images.item"):
            n_images += 1
            if keep is None or int(im["id"]) in keep:
                store.add_image(int(im["id"]), int(im["height"]), int(im["width"]))
        missing = [name for name, n in (("categories", len(category_ids)), ("images", n_images)) if not n]
        if missing:
            raise InputError(path, f"not a COCO instances file (needs images, annotations, categories; "
                                   f"found no {' and no '.join(missing)})")
        instances = Instances(path=str(path), category_ids=category_ids,
                              category_names={v: k for k, v in category_ids.items()}, images=store)
        known = set(category_ids.values())
        for ann in _stream(path, "annotations.item"):
            image_id = int(ann["image_id"])
            if image_id not in store.sizes or int(ann.get("iscrowd", 0)):
                continue
            ann["segmentation"] = _polygons_as_arrays(ann.get("segmentation"))
            height, width = store.sizes[image_id]
            problem = annotation_problem(ann, ImageAnnotations(image_id, height, width), known)
            if problem is None:
                store.add(image_id, int(ann["category_id"]), ann["segmentation"])
                continue
            where = f"annotation {ann.get('id', '?')} (image {image_id})"
            kind, message = problem
            if on_error != "skip":
                raise InputError(path, f"{where}: {message} (scores.on_error: skip leaves such annotations out)")
            instances.skipped[kind] = instances.skipped.get(kind, 0) + 1
            if len(instances.skipped_examples) < 5:
                instances.skipped_examples.append(f"{where}: {message}")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        store.close()
        raise InputError(path, f"malformed COCO instances entry ({type(err).__name__}: {err})") from None
    except InputError:
        store.close()
        raise
    store.seal()
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
