"""The offline POS tagger: NLTK's data or the converted textblob-aptagger model."""

from __future__ import annotations

import collections
import json
import pickle
import subprocess

import pytest

from vgsalign.errors import InputError
from vgsalign.resources import tagger as resources


def test_restricted_unpickler_refuses_any_global_but_set(tmp_path):
    ok = tmp_path / "ok.pickle"
    ok.write_bytes(pickle.dumps(({"f": {"NN": 1.0}}, {"the": "DT"}, {"NN", "DT"})))
    weights, tagdict, classes = resources.load_aptagger_model(ok)
    assert classes == {"NN", "DT"} and tagdict == {"the": "DT"}
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps(({}, collections.OrderedDict(), set())))
    with pytest.raises(InputError, match="refusing global collections.OrderedDict"):
        resources.load_aptagger_model(evil)
    # the classic exploit: a reduce to os.system never gets resolved
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(InputError, match="refusing global os.system"):
        resources.load_aptagger_model(evil)


def test_aptagger_converts_to_nltk_json_and_pos_tag_works(tmp_path):
    import nltk
    from nltk.tag.perceptron import PerceptronTagger

    manifest = resources.provision_tagger("aptagger", tmp_path / "nltk_data")
    folder = tmp_path / "nltk_data" / resources.TAGGER_DIR
    # exactly the files NLTK's loader asks for
    assert sorted(p.name for p in folder.iterdir()) == sorted(PerceptronTagger(load=False).param_files("eng"))
    written = json.loads((tmp_path / "nltk_data" / "vgsalign_tagger.json").read_text())
    assert written == manifest and manifest["tagger"] == "aptagger"
    assert manifest["source"].endswith("trontagger-0.1.0.pickle") and "NNS" in manifest["classes"]
    resources.use_tagger(tmp_path / "nltk_data")
    tags = [t for _, t in nltk.pos_tag(["two", "dogs", "chase", "a", "cat"])]
    assert (tags[0], tags[1], tags[3], tags[4]) == ("CD", "NNS", "DT", "NN")
    # the converted weights are the pickle's
    weights, tagdict, _ = resources.load_aptagger_model(manifest["source"])
    tagger = PerceptronTagger(load=False)
    tagger.load_from_json(loc=str(folder.resolve()))
    assert tagger.tagdict == tagdict and len(tagger.model.weights) == len(weights)


def test_nltk_policy_needs_nltk_data(tmp_path):
    if resources.find_nltk_tagger() is not None:
        pytest.skip("NLTK's own tagger data is installed here")
    with pytest.raises(InputError, match="resources.tagger"):
        resources.provision_tagger("nltk", tmp_path / "nltk_data")
    # auto falls back to the packaged model
    assert resources.provision_tagger("auto", tmp_path / "nltk_data")["tagger"] == "aptagger"


def test_tagger_step_reads_the_resources_slice(tmp_path):
    proc = subprocess.run(["vgsalign", "tagger", "--resources", json.dumps({"tagger": "aptagger"}),
                           "--nltk-data", str(tmp_path / "nltk_data")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "nltk_data" / resources.MANIFEST_NAME).read_text())["tagger"] == "aptagger"
    bad = subprocess.run(["vgsalign", "tagger", "--resources", json.dumps({"tagger": "spacy"}),
                          "--nltk-data", str(tmp_path / "other")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("vgsalign tagger: error: resources.tagger")
