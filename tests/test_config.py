import subprocess
import sys

import pytest
import yaml

from vgsalign.config import validate_config
from vgsalign.errors import InputError


@pytest.fixture()
def schema(repo_root):
    return repo_root / "workflow/schemas/config.schema.yaml"


def test_default_config_is_valid(default_config, schema):
    validate_config(default_config, schema)


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("match", "threshold", "high", "match.threshold = 'high': expected type number"),
        ("frames", "padding", "middle", "frames.padding = 'middle': expected one of 'start', 'end'"),
        ("train", "batch_size", 1, "train.batch_size = 1: expected a number >= 2"),
        ("scores", "mode", "fast", "scores.mode = 'fast': expected one of 'reference', 'exact'"),
    ],
)
def test_invalid_value_names_key_value_and_expectation(default_config, schema, section, key, value, expected):
    default_config[section][key] = value
    with pytest.raises(InputError) as err:
        validate_config(default_config, schema)
    assert expected in str(err.value)


def test_missing_and_unknown_keys_are_named(default_config, schema):
    del default_config["audio"]["n_mels"]
    default_config["audio"]["nmels"] = 40
    with pytest.raises(InputError) as err:
        validate_config(default_config, schema)
    text = str(err.value)
    assert "audio.n_mels: missing" in text
    assert "audio.nmels: unknown setting" in text


def test_cross_key_checks(default_config, schema, tmp_path):
    default_config["audio"]["hop_s"] = 0.02
    with pytest.raises(InputError, match="audio.hop_s = 0.02: expected the same value as frames.hop_s"):
        validate_config(default_config, schema)
    default_config["audio"]["hop_s"] = 0.01
    default_config["dataset"]["source"] = "speechcoco"
    default_config["dataset"]["speech_root"] = str(tmp_path / "nowhere")
    with pytest.raises(InputError, match="dataset.speech_root = .*nowhere': expected an existing folder"):
        validate_config(default_config, schema)


def test_vgg16_without_weights_needs_explicit_random(default_config, schema):
    default_config["visual"]["backbone"] = "vgg16"
    with pytest.raises(InputError, match="allow_random_weights"):
        validate_config(default_config, schema)
    default_config["visual"]["allow_random_weights"] = True
    validate_config(default_config, schema)


def test_snakemake_stops_on_invalid_config_with_one_clear_message(repo_root, tmp_path, default_config):
    default_config["match"]["threshold"] = 7
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(default_config))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(bad), "-d", str(tmp_path)],
        cwd=repo_root, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "match.threshold = 7: expected a number <= 1" in proc.stdout + proc.stderr


def test_check_config_cli(repo_root, tmp_path, default_config):
    ok = subprocess.run(["vgsalign", "check-config", str(repo_root / "config.yaml")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    default_config["vocab"]["policy"] = "keep"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(default_config))
    proc = subprocess.run(["vgsalign", "check-config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "vocab.policy = 'keep': expected one of 'drop_utterance', 'drop_word'" in proc.stderr


def test_original_model_overlay_is_valid_and_matches_the_model_defaults(default_config, schema, repo_root):
    """config/original_model.yaml layered over config.yaml gives the docs/design.md sizes, which are
    also the defaults of ModelSettings / TrainSettings (so code and overlay cannot drift)."""
    from vgsalign.train.models import ModelSettings
    from vgsalign.train.loop import TrainSettings

    overlay = yaml.safe_load((repo_root / "config/original_model.yaml").read_text())
    merged = {**default_config, **{k: {**default_config[k], **v} for k, v in overlay.items()}}
    validate_config(merged, schema)
    for key, value in overlay["model"].items():
        assert getattr(ModelSettings(), key) == value, key
    for key, value in overlay["train"].items():
        assert getattr(TrainSettings(), key) == value, key
    assert merged["model"]["embed_dim"] == 512 and merged["model"]["dropout"] == 0.3
