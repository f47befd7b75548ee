"""The images of a SpokenCOCO Karpathy split, each from its own COCO split.

SpokenCOCO_train.json names train2014 images and val2014 "restval" images
(`val2014/COCO_val2014_<id>.jpg`). The image plan of such a split holds every image the
index names; each is looked up in the instances file of the COCO split its path names
(`annotations/instances_<coco split>.json`) and read from that split's image folder
(`coco_root/<coco split>/`, or `coco_root/images/<coco split>/` where only that exists).
Its `file_name` in images.csv is therefore relative to coco_root, not to one split's folder.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..corpus.coco import image_folder, instances_path
from ..corpus.spokencoco import image_of, load_index


def index_images(index_path: Path) -> pd.DataFrame:
    """image_id, coco_split, entry (the index's image path) of every image the index names, once each."""
    rows, seen = [], set()
    for item in load_index(index_path):
        entry = str(item.get("image", "")) if isinstance(item, dict) else ""
        image_id, coco_split = image_of(entry, index_path)
        if image_id not in seen:  # an image listed twice is planned once
            seen.add(image_id)
            rows.append((image_id, coco_split, entry))
    return pd.DataFrame(rows, columns=["image_id", "coco_split", "entry"])


def index_summary(index_path: Path) -> dict:
    """{"n_images", "coco_splits"}: how many images the index names, and from which COCO splits."""
    images = index_images(index_path)
    return {"n_images": len(images), "coco_splits": sorted(set(images["coco_split"]))}


def karpathy_images(index_path: Path, coco_root: Path, read_instances) -> tuple[pd.DataFrame, list[dict]]:
    """(image_id, file_name, width, height) of every image the index names, file_name relative
    to coco_root, and the images their COCO split's instances file does not list (as rejects).

    `read_instances(path)` reads an instances file's images (`plan.read_coco_images`).
    """
    named = index_images(index_path)
    tables, problems = [], []
    for coco_split, group in named.groupby("coco_split", sort=True):
        instances = instances_path(coco_root, coco_split)
        listed = read_instances(instances).set_index("image_id")
        folder = image_folder(coco_root, coco_split).relative_to(coco_root)
        found = group[group["image_id"].isin(listed.index)]
        table = listed.loc[found["image_id"]].reset_index()
        table["file_name"] = [str(folder / name) for name in table["file_name"]]
        tables.append(table)
        # not in its instances file: it stays in the plan (the shard count is fixed), rejected
        missing = group[~group["image_id"].isin(listed.index)]
        tables.append(pd.DataFrame({"image_id": missing["image_id"],
                                    "file_name": [str(folder / Path(e).name) for e in missing["entry"]],
                                    "width": 0, "height": 0}))
        problems += [{"id": int(i), "path": str(index_path),
                      "problem": f"image {int(i)} ({e}) is not in {instances}"}
                     for i, e in zip(missing["image_id"], missing["entry"])]
    images = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["image_id", "file_name", "width", "height"])
    return images.astype({"image_id": "int64", "width": "int64", "height": "int64"}), problems
