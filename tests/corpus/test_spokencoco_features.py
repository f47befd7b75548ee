"""The workflow plans SpokenCOCO's feature index from the Karpathy indexes (dry run on the
hand-written fixtures): the train split's image plan reads the instances files of both COCO
splits its index names, and the val split's only val2014's."""

from __future__ import annotations

import re

import yaml

import tests.helpers.corpus as fx
from tests.helpers.workflow import ROOT, output_of, snakemake


def features_images_jobs(text: str) -> dict[str, tuple[list[str], str]]:
    """split -> (inputs, shell command) of each features_images job a dry run prints."""
    jobs = {}
    for block in text.split("rule features_images:")[1:]:
        inputs = re.search(r"input: (.*)", block).group(1).split(", ")
        command = re.search(r"Shell command: (vgsalign features-images .*)", block).group(1)
        split = re.search(r"features/index/(\w+)/images\.csv", block).group(1)
        jobs[split] = (inputs, command)
    return jobs


def test_train_split_plans_its_restval_images_from_val2014(tmp_path):
    speech, grids = fx.spokencoco_corpus(tmp_path)
    coco = fx.coco_corpus(tmp_path)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({
        "dataset": {"name": "sc_plan", "speech_root": str(speech), "coco_root": str(coco),
                    "alignments_root": str(grids)},
        "visual": {"backbone": "efficientnet_lite0", "weights": None},
        "word_vectors": {"source": "glove-6b-50d", "path": None},
        "features": {"shard_size": 1},
    }))
    proc = snakemake(tmp_path, ROOT / "config.yaml", str(ROOT / "config/spokencoco.yaml"), str(overlay),
                     "-n", "-p", "features")
    assert proc.returncode == 0, output_of(proc)
    jobs = features_images_jobs(proc.stdout + proc.stderr)
    instances = {s: str(coco / f"annotations/instances_{s}.json") for s in ("train2014", "val2014")}
    train_inputs, train_command = jobs["train2014"]
    assert instances["train2014"] in train_inputs and instances["val2014"] in train_inputs
    assert f"--karpathy-index {speech / 'SpokenCOCO_train.json'} --coco-root {coco}" in train_command
    # two images (9 from train2014, restval 42 from val2014) in shards of one
    assert "--expected-shards 2" in train_command
    val_inputs, val_command = jobs["val2014"]
    assert instances["val2014"] in val_inputs and instances["train2014"] not in val_inputs
    assert "--expected-shards 1" in val_command
