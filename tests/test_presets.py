"""The config presets under config/: each layers cleanly over config.yaml, and
config/original.yaml sets every original-protocol switch to the original's value."""

import subprocess
from pathlib import Path

import pytest
import yaml

from vgsalign.config import config_problems, default_config, load_config, merge_layers, read_config_file, \
    schema_problems, load_schema

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "config").glob("*.yaml"))
ORIGINAL = ROOT / "config/original.yaml"

# The original's value of every switch, as read in the original code (docs/fidelity.md).
ORIGINAL_VALUES = {
    "word_spans.end": "next_onset",
    "audio.n_fft": 400,
    "audio.floor_mode": "min_nonzero",
    "visual.backbone": "vgg16",
    "visual.channel_order": "bgr",
    "match.threshold": 0.5,
    "model.embed_dim": 512,
    "model.dropout": 0.3,
    "model.audio_channels": [128, 256, 256, 512],
    "model.pooling": "tf_same",
    "train.lr": 1.0e-4,
    "train.batch_size": 40,
    "train.epochs": 100,
    "train.impostors": "chunk",
    "train.loss_reduction": "sum",
    "train.validation": "heldout",
    "scores.as_word_normalization": "image",
    "scores.random_baseline": "original",
}
# Switches whose vgsalign default already is the original's value (set to pin them).
ORIGINAL_BY_DEFAULT = {"train.validation", "model.audio_kernels"}
# What stands in offline for what the original used (said in the file and in the run).
OFFLINE_STAND_INS = {"visual.allow_random_weights": True, "word_vectors.source": "glove-6b-50d"}


def get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def leaf_keys(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in node.items():
        dotted = f"{prefix}{name}"
        keys += leaf_keys(value, dotted + ".") if isinstance(value, dict) else [dotted]
    return keys


def with_existing_paths(config: dict, tmp_path: Path) -> dict:
    """The config with every corpus or model path it names pointed at a folder or file that
    exists, so that the checks between keys judge the settings, not this machine's disks."""
    folder = tmp_path / "folder"
    folder.mkdir(exist_ok=True)
    file = tmp_path / "file.bin"
    file.write_bytes(b"")
    paths = {"dataset": {k: str(folder) for k in ("speech_root", "coco_root", "alignments_root")
                         if config["dataset"].get(k)}}
    if config["visual"].get("weights"):
        paths["visual"] = {"weights": str(file)}
    if config["word_vectors"].get("path"):
        paths["word_vectors"] = {"path": str(file)}
    return merge_layers(config, paths)


def test_there_are_presets_and_original_is_one():
    assert ORIGINAL in PRESETS and len(PRESETS) >= 2


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_layers_cleanly_over_the_demo_config(preset, tmp_path):
    raw = read_config_file(preset)
    assert raw, f"{preset.name} sets nothing"
    config = load_config(ROOT / "config.yaml", preset)
    assert schema_problems(config, load_schema()) == []
    assert config_problems(with_existing_paths(config, tmp_path)) == []
    for key in leaf_keys(raw):          # every key it sets reaches the merged config unchanged
        assert get(config, key) == get(raw, key), key


@pytest.mark.parametrize("corpus", [p for p in PRESETS if p.name in ("speechcoco.yaml", "spokencoco.yaml")],
                         ids=lambda p: p.name)
def test_original_layers_under_a_corpus_preset(corpus, tmp_path):
    config = load_config(ROOT / "config.yaml", ORIGINAL, corpus)
    assert config_problems(with_existing_paths(config, tmp_path)) == []
    # the corpus file brings the real backbone weights and word vectors
    assert config["visual"]["weights"] and config["word_vectors"]["source"] == "word2vec"
    assert (config["visual"]["backbone"], config["visual"]["channel_order"]) == ("vgg16", "bgr")


def test_original_sets_each_switch_to_the_originals_value():
    config = load_config(ROOT / "config.yaml", ORIGINAL)
    defaults = default_config()
    for key, value in ORIGINAL_VALUES.items():
        assert get(config, key) == value, key
        if key not in ORIGINAL_BY_DEFAULT:
            assert get(defaults, key) != value, f"{key}: no longer a difference from the default"
    for key, value in OFFLINE_STAND_INS.items():
        assert get(config, key) == value, key


def test_original_sets_nothing_but_the_switches_and_the_stand_in():
    raw = read_config_file(ORIGINAL)
    expected = set(ORIGINAL_VALUES) | ORIGINAL_BY_DEFAULT | {"visual.allow_random_weights"}
    assert set(leaf_keys(raw)) == expected


def test_original_comments_every_switch_with_the_default():
    lines = ORIGINAL.read_text().splitlines()
    text = ORIGINAL.read_text()
    for key in leaf_keys(read_config_file(ORIGINAL)):
        name = key.split(".")[-1]
        line = next(line for line in lines if line.lstrip().startswith(f"{name}:"))
        assert "#" in line, f"{key} has no comment"
    assert text.count("default") >= len(ORIGINAL_VALUES) - 2   # each names vgsalign's default


def test_original_model_is_the_model_part_of_original():
    model_part = read_config_file(ROOT / "config/original_model.yaml")
    original = read_config_file(ORIGINAL)
    for key in leaf_keys(model_part):
        assert get(original, key) == get(model_part, key), key


def test_fidelity_doc_names_every_switch():
    doc = (ROOT / "docs/fidelity.md").read_text()
    for key in ORIGINAL_VALUES:
        assert f"`{key}`" in doc, key


def test_check_config_accepts_the_original_preset():
    proc = subprocess.run(["vgsalign", "check-config", str(ROOT / "config.yaml"), str(ORIGINAL)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_yaml_of_presets_parses_as_mappings():
    for preset in PRESETS:
        assert isinstance(yaml.safe_load(preset.read_text()), dict), preset.name


@pytest.mark.parametrize("source, says_stand_in", [("glove-6b-50d", True), ("word2vec", False)])
def test_the_test_set_step_says_when_glove_stands_in_for_word2vec(tmp_path, source, says_stand_in):
    import json

    import pandas as pd

    sims = pd.DataFrame({"utt_id": ["u", "v"], "image_id": [1, 2], "word_index": [1, 0], "word": ["dog", "car"],
                         "category_id": [18, 3], "category": ["dog", "car"], "similarity": [0.9, 0.4]})
    sims.to_csv(tmp_path / "similarities.csv", index=False)
    vectors = {"source": source, "path": str(tmp_path / "w2v.bin") if source == "word2vec" else None}
    proc = subprocess.run(["vgsalign", "testdata-histogram", "--similarities", str(tmp_path / "similarities.csv"),
                           "--match", json.dumps({"threshold": 0.5}), "--word-vectors", json.dumps(vectors),
                           "--out", str(tmp_path / "h.png")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    notice = "GloVe 6B 50d stands in for the original's GoogleNews word2vec (match.threshold 0.5"
    assert (notice in proc.stdout) == says_stand_in
