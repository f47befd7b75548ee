"""`snakemake --cores 2 scores` on a small corpus in each real layout (SPEECH-COCO and SpokenCOCO
with MFA-shaped TextGrids, MSCOCO 2014 as unzipped), made from a tiny demo corpus, with the
example configs and the demo's resources (packaged GloVe, EfficientNet-Lite0) by an overlay."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

import tests.helpers.corpus as fx
from tests.helpers.demo import make_tiny_corpus
from tests.helpers.workflow import ROOT, output_of, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory.mktemp("demo_source"))


def overlay(path, name: str, **dataset):
    """The tiny sizes and the demo's resources over an example config; one split for all."""
    split = "val2014"
    values = {
        "dataset": {"name": name, "splits": {"train": split, "val": split, "test": split}, **dataset},
        "visual": {"backbone": "efficientnet_lite0", "weights": None, "batch_size": 4, "num_workers": 1},
        "word_vectors": {"source": "glove-6b-50d", "path": None},
        "match": {"threshold": 0.7},
        "features": {"shard_size": 4},
    }
    path.write_text(yaml.safe_dump(values))
    return path


def run_scores(tmp_path, example: str, overlay_path) -> None:
    """config.yaml, then the example config, then the overlay (as --configfile layers them)."""
    proc = snakemake(tmp_path, ROOT / "config.yaml", str(ROOT / "config" / example), str(overlay_path),
                     "--cores", "2", "scores", timeout=1500)
    assert proc.returncode == 0, output_of(proc, 6000)


def true_times(demo) -> pd.DataFrame:
    return pd.DataFrame([{"utt_id": c["utt_id"], "word_index": w["word_index"], "t_on": w["onset_s"],
                          "t_off": w["offset_s"]} for c in demo.truth["captions"] for w in c["words"]])


def check_run(tmp_path, name: str, demo) -> None:
    out = tmp_path / "results" / name
    words = pd.read_csv(out / "testdata/words.csv", na_filter=False)
    both = words.merge(true_times(demo), on=["utt_id", "word_index"], validate="one_to_one")
    assert len(both) == len(words) > 0
    assert (both["onset_s"] - both["t_on"]).abs().max() < 1e-3
    assert (both["offset_s"] - both["t_off"]).abs().max() < 1e-3
    assert len(pd.read_csv(out / "testdata/pairs.csv")) > 0
    summary = json.loads((out / "scores/summary.json").read_text())
    assert summary["counts"]["pairs_in_table"] == len(pd.read_csv(out / "testdata/pairs.csv"))
    assert summary["counts"]["pairs_scored"] > 0
    assert pd.read_csv(out / "testdata/rejects_dataset.csv").empty


def test_speechcoco_layout_runs_to_the_scores(tmp_path, demo):
    speech = tmp_path / "speechcoco"
    fx.link_tree(demo.speech_root, speech)
    coco = fx.coco_from_demo(demo, tmp_path)
    layer = overlay(tmp_path / "overlay.yaml", "rl_speechcoco", speech_root=str(speech), coco_root=str(coco))
    run_scores(tmp_path, "speechcoco.yaml", layer)
    check_run(tmp_path, "rl_speechcoco", demo)


def test_spokencoco_layout_runs_to_the_scores(tmp_path, demo):
    speech, grids = fx.spokencoco_from_demo(demo, tmp_path)
    coco = fx.coco_from_demo(demo, tmp_path)
    layer = overlay(tmp_path / "overlay.yaml", "rl_spokencoco", speech_root=str(speech), coco_root=str(coco),
                    alignments_root=str(grids))
    run_scores(tmp_path, "spokencoco.yaml", layer)
    check_run(tmp_path, "rl_spokencoco", demo)
