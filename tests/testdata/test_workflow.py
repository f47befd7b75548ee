"""`snakemake testdata` end to end: a hand-made SPEECH-COCO corpus, the demo corpus against its
ground truth, and which steps a changed setting reruns."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

import tests.helpers.testdata as h
from tests.helpers.workflow import jobs_planned
from vgsalign.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    """A finished `snakemake testdata` on the hand-made corpus (threshold 0.7, frames.max 200)."""
    tmp = tmp_path_factory.mktemp("testdata_wf")
    speech, coco = h.make_corpus(tmp / "corpus")
    vectors = h.write_word2vec(tmp / "vectors" / "tiny.bin", h.glove_vectors(h.corpus_vocabulary()))
    config = h.workflow_config(tmp, speech, coco, vectors, match={"threshold": 0.7})
    proc = h.snakemake(tmp, config, "testdata")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, config


def test_pairs_and_funnel_of_the_hand_made_corpus(fixture_run):
    tmp, _ = fixture_run
    out = tmp / "results/fixture/testdata"
    pairs = pd.read_csv(out / "pairs.csv")
    got = sorted(zip(pairs["utt_id"], pairs["word"], pairs["category"]))
    assert got == [
        ("1_101_Voice_None_1-0", "dining", "dining table"),  # "table" itself is past the 2 s cut
        ("1_101_Voice_None_1-0", "dog", "dog"),
        ("1_104_Voice_None_1-0", "table", "dining table"),
        ("2_102_Voice_None_1-0", "car", "car"),
        ("2_102_Voice_None_1-0", "man", "person"),  # a synonym above the threshold
    ]
    dog = pairs[pairs["word"] == "dog"].iloc[0]
    assert (dog["onset_s"], dog["offset_s"], dog["onset_frame"], dog["offset_frame"]) == (0.25, 0.6, 25, 60)
    summary = json.loads((out / "summary.json").read_text())["funnel"]
    assert summary["captions read"] == 6 and summary["captions dropped while reading"] == 1
    assert summary["utterances cut by length"] == 3
    assert summary["words partly past the cut (dropped)"] == 2 and summary["words past the cut (dropped)"] == 1
    assert summary["utterances dropped by vocabulary"] == 1  # zorbleflax takes "person" with it
    assert summary["images without labels"] == 1 and summary["pairs (the test set)"] == 5
    assert "| dining table | 2 |" in (out / "summary.md").read_text()
    assert (out / "similarities.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("section, key, value, expected", [
    ("match", "threshold", 0.6, {"testdata_pairs", "testdata_histogram", "testdata_summary", "testdata"}),
    ("resources", "tagger", "aptagger", {"tagger", "testdata_nouns", "testdata_vocab", "testdata_similarities",
                                         "testdata_pairs", "testdata_histogram", "testdata_summary", "testdata"}),
])
def test_a_changed_setting_reruns_its_step_and_what_follows(fixture_run, section, key, value, expected):
    tmp, config = fixture_run
    changed = yaml.safe_load(config.read_text())
    changed[section][key] = value
    path = tmp / f"changed_{section}.yaml"
    path.write_text(yaml.safe_dump(changed))
    planned = jobs_planned(h.snakemake(tmp, path, "-n", "testdata"))
    assert set(planned) == expected


def test_other_vectors_rerun_from_vocab_on(fixture_run):
    tmp, config = fixture_run
    other = h.write_word2vec(tmp / "vectors" / "other.bin", h.glove_vectors(h.corpus_vocabulary() | {"zorble"}))
    changed = yaml.safe_load(config.read_text())
    changed["word_vectors"]["path"] = str(other)
    path = tmp / "changed_vectors.yaml"
    path.write_text(yaml.safe_dump(changed))
    planned = jobs_planned(h.snakemake(tmp, path, "-n", "testdata"))
    assert set(planned) == {"word_vectors", "testdata_vocab", "testdata_similarities", "testdata_pairs",
                            "testdata_histogram", "testdata_summary", "testdata"}
    assert jobs_planned(h.snakemake(tmp, config, "-n", "testdata")) == {}


def demo_precision_recall(truth: dict, pairs: pd.DataFrame) -> dict:
    """Noun-to-object matching against the generator's truth: which word of which caption names
    which annotated category."""
    named = {(c["utt_id"], w["word_index"], w["category"]) for c in truth["captions"] for w in c["words"]
             if w["role"] == "object"}
    found = set(zip(pairs["utt_id"], pairs["word_index"], pairs["category"]))
    hits = len(named & found)
    return {"pairs": len(found), "truth": len(named), "hits": hits,
            "precision": hits / len(found) if found else 0.0, "recall": hits / len(named) if named else 0.0}


def test_demo_corpus_end_to_end_against_ground_truth(tmp_path, repo_root):
    pytest.importorskip("tests.helpers.demo")
    config = load_config(repo_root / "config.yaml")  # with the schema's defaults
    config["dataset"]["name"] = "tinydemo"
    config["dataset"]["splits"] = {"train": "val2014", "val": "val2014", "test": "val2014"}
    config["demo"].update(n_images={"val2014": 8}, captions_per_image=2)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = h.snakemake(tmp_path, path, "testdata", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "results/tinydemo"
    truth = json.loads((out / "corpus/ground_truth/val2014.json").read_text())
    pairs = pd.read_csv(out / "testdata/pairs.csv")
    scores = demo_precision_recall(truth, pairs)
    print(f"demo noun-object matching at threshold {config['match']['threshold']}: {scores}")
    assert scores["truth"] >= 15
    assert scores["precision"] >= 0.85 and scores["recall"] >= 0.6
    # word times agree with the generator's (the last word included)
    words = pd.read_csv(out / "testdata/words.csv", na_filter=False)
    true_words = pd.DataFrame([{"utt_id": c["utt_id"], "word_index": w["word_index"], "t_on": w["onset_s"],
                                "t_off": w["offset_s"]} for c in truth["captions"] for w in c["words"]])
    both = words.merge(true_words, on=["utt_id", "word_index"], validate="one_to_one")
    assert len(both) == len(words) == len(true_words)
    assert (both["onset_s"] - both["t_on"]).abs().max() < 1e-3
    assert (both["offset_s"] - both["t_off"]).abs().max() < 1e-3


def test_default_demo_run_against_ground_truth(repo_root):
    """The pairs of the default demo run (`snakemake --cores 8 testdata`), when it has been run here."""
    out = repo_root / "results/demo"
    if not (out / "testdata/pairs.csv").is_file():
        pytest.skip("needs the default demo test set: run `snakemake --cores all testdata` in this checkout first (about 6 minutes on 2 cores)")
    truth = json.loads((out / "corpus/ground_truth/val2014.json").read_text())
    scores = demo_precision_recall(truth, pd.read_csv(out / "testdata/pairs.csv"))
    print(f"default demo: {scores}")
    assert scores["precision"] >= 0.95 and scores["recall"] >= 0.55
