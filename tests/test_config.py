import dataclasses
import subprocess
import sys

import pytest
import yaml

from vgsalign.config import SCHEMA_PATH, default_config as schema_default_config, load_config, load_schema, \
    merge_layers, section_defaults, validate_config, with_defaults
from vgsalign.errors import InputError
from vgsalign.settings import settings_from_dict, settings_from_json


@pytest.fixture()
def schema():
    return SCHEMA_PATH


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


def test_missing_key_takes_its_default_and_unknown_key_is_named(default_config, schema):
    del default_config["audio"]["n_mels"]
    default_config["audio"]["nmels"] = 40
    with pytest.raises(InputError) as err:
        validate_config(with_defaults(default_config), schema)
    text = str(err.value)
    assert "audio.n_mels" not in text
    assert "audio.nmels: unknown setting; expected one of: floor, hop_s, n_fft, n_mels" in text
    del default_config["audio"]["nmels"]
    assert with_defaults(default_config)["audio"]["n_mels"] == 40


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


def test_original_model_overlay_gives_the_original_sizes_and_keeps_the_rest(schema, repo_root):
    merged = load_config(repo_root / "config.yaml", repo_root / "config/original_model.yaml")
    validate_config(merged, schema)
    demo = load_config(repo_root / "config.yaml")
    assert merged["model"]["embed_dim"] == 512 and merged["model"]["dropout"] == 0.3
    assert merged["model"]["audio_channels"] == [128, 256, 256, 512]
    assert (merged["train"]["lr"], merged["train"]["batch_size"]) == (1.0e-4, 64)
    # keys the overlay does not set keep the base's values
    assert merged["train"]["loss"] == demo["train"]["loss"] and merged["dataset"] == demo["dataset"]
    assert merged["model"]["arch"] == demo["model"]["arch"]


def _walk_properties(node, path=()):
    for name, prop in node.get("properties", {}).items():
        yield (*path, name), prop
        yield from _walk_properties(prop, (*path, name))


def test_every_key_has_a_default_and_a_description():
    for path, prop in _walk_properties(load_schema()):
        assert "default" in prop, ".".join(path)
        assert prop.get("description", "").strip(), ".".join(path)
        if "properties" in prop:
            assert prop["default"] == {}, ".".join(path)


def test_short_demo_config_fills_to_the_full_default_config(repo_root):
    short = yaml.safe_load((repo_root / "config.yaml").read_text())
    assert set(short) < set(schema_default_config())   # the demo file sets only a few sections
    full = load_config(repo_root / "config.yaml")
    assert full == schema_default_config()
    validate_config(full)


def test_with_defaults_fills_nested_keys_and_keeps_given_values():
    filled = with_defaults({"dataset": {"splits": {"test": "test2014"}}, "scores": {"mode": "exact"}})
    assert filled["dataset"]["splits"] == {"train": "train2014", "val": "val2014", "test": "test2014"}
    assert filled["scores"]["mode"] == "exact" and filled["scores"]["grid"] == 224
    assert filled["report"] == {"n_examples": 6, "seed": 0}
    # a mapping-valued key given in full is not merged with its default
    assert with_defaults({"demo": {"n_images": {"a": 3}}})["demo"]["n_images"] == {"a": 3}


def test_merge_layers_overrides_recursively_and_replaces_lists():
    base = {"model": {"embed_dim": 128, "audio_channels": [1, 2, 3, 4]}, "train": {"lr": 0.1}}
    overlay = {"model": {"audio_channels": [5, 6, 7, 8]}, "scores": {"mode": "exact"}}
    assert merge_layers(base, overlay) == {
        "model": {"embed_dim": 128, "audio_channels": [5, 6, 7, 8]}, "train": {"lr": 0.1}, "scores": {"mode": "exact"}}
    assert base["model"]["audio_channels"] == [1, 2, 3, 4]   # inputs unchanged


@dataclasses.dataclass
class _Scores:
    mode: str
    grid: int
    seed: int


def test_settings_fill_a_partial_slice_from_the_schema_defaults():
    settings = settings_from_json(_Scores, '{"mode": "exact"}', "--scores", section="scores")
    assert settings == _Scores(mode="exact", grid=section_defaults("scores")["grid"], seed=0)
    assert settings_from_dict(_Scores, {"grid": 7}, "--scores", section="scores").grid == 7


def test_settings_without_section_need_every_key():
    with pytest.raises(InputError, match=r"missing setting\(s\) \['grid', 'seed'\]"):
        settings_from_dict(_Scores, {"mode": "exact"}, "--scores")


def test_settings_refuse_an_unknown_key_by_name_even_with_defaults():
    with pytest.raises(InputError) as err:
        settings_from_json(_Scores, '{"mode": "exact", "gird": 3}', "--scores", section="scores")
    assert "--scores" in str(err.value) and "unknown setting(s) ['gird']" in str(err.value)
