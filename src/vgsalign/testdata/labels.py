"""Labels of each test image: the COCO category names of its non-crowd instances.

Read with pycocotools from `instances_<split>.json`. Crowd regions (`iscrowd: 1`) are not
objects a caption names one by one, so they give no label (the original did the same).
An annotation whose category or image is missing from the file is an error naming the file.
Images of the test utterances with no non-crowd instance are counted (their nouns cannot match).

Output `labels.csv`: image_id, category_id, category, supercategory, n_instances, label_tokens
(the name split into words for the word vectors, e.g. "dining table" -> "dining table").
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

from ..atomic import write_json
from ..errors import InputError
from ..corpus.coco import open_coco
from ..tables import read_table
from .csv_writer import write_table

LABEL_COLUMNS = ["image_id", "category_id", "category", "supercategory", "n_instances", "label_tokens"]


def label_tokens(name: str) -> list[str]:
    """Word-vector tokens of a category name: lower-cased, split at spaces, hyphens and underscores."""
    return [t for t in re.split(r"[\s_\-]+", name.lower()) if t]


def load_coco(instances_json: Path):
    coco = open_coco(instances_json)
    for ann in coco.dataset.get("annotations", []):
        if ann.get("category_id") not in coco.cats:
            raise InputError(instances_json, f"annotation {ann.get('id')} has category_id {ann.get('category_id')!r}, "
                                             "which is not among the file's categories")
        if ann.get("image_id") not in coco.imgs:
            raise InputError(instances_json, f"annotation {ann.get('id')} refers to image {ann.get('image_id')!r}, "
                                             "which is not among the file's images")
    return coco


def image_labels(coco, image_ids) -> tuple[pd.DataFrame, dict]:
    rows, no_labels, crowd_only = [], [], []
    for image_id in sorted(set(int(i) for i in image_ids)):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        counts: dict[int, int] = {}
        for ann in anns:
            if not ann.get("iscrowd", 0):
                counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
        if not counts:
            (crowd_only if anns else no_labels).append(image_id)
        for category_id, n in sorted(counts.items()):
            cat = coco.cats[category_id]
            rows.append({
                "image_id": image_id, "category_id": category_id, "category": cat["name"],
                "supercategory": cat.get("supercategory", ""), "n_instances": n,
                "label_tokens": " ".join(label_tokens(cat["name"])),
            })
    table = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    return table, {"images_without_annotations": no_labels, "images_crowd_only": crowd_only}


def build(instances_json: Path, utterances_csv: Path, out: Path, report_path: Path) -> dict:
    coco = load_coco(instances_json)
    utterances = read_table(utterances_csv, required=("utt_id", "image_id"))
    unknown = sorted(set(utterances["image_id"]) - set(coco.imgs))
    if unknown:
        raise InputError(instances_json, f"has no image entry for {len(unknown)} test image(s), e.g. {unknown[:5]}")
    table, unlabelled = image_labels(coco, utterances["image_id"])
    write_table(table, out)
    images = int(utterances["image_id"].nunique())
    without = unlabelled["images_without_annotations"] + unlabelled["images_crowd_only"]
    utts_without = int(utterances["image_id"].isin(without).sum())
    report = {
        "instances": str(instances_json), "images": images,
        "images_with_labels": int(table["image_id"].nunique()),
        "images_without_labels": len(without),
        "images_crowd_only": len(unlabelled["images_crowd_only"]),
        "utterances_of_images_without_labels": utts_without,
        "labels": len(table), "categories": sorted(table["category"].unique().tolist()),
        "image_ids_without_labels": sorted(without),
    }
    write_json(report, report_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign testdata-labels", description="COCO category names of each test image.")
    parser.add_argument("--instances", required=True, type=Path)
    parser.add_argument("--utterances", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    args = parser.parse_args(argv)
    report = build(args.instances, args.utterances, args.out, args.report)
    print(f"{report['images']} images: {report['labels']} labels, {report['images_without_labels']} without labels")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("labels", main))
