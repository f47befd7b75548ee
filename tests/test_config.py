import copy
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
    line = next(line for line in text.splitlines() if "audio.nmels" in line)
    assert line.strip().startswith("audio.nmels: unknown setting (did you mean 'n_mels'?); expected one of: ")
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
    assert (proc.stdout + proc.stderr).count("match.threshold = 7") == 1


def test_snakemake_fills_defaults_of_a_short_config(repo_root, tmp_path):
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump({"dataset": {"name": "short"}, "scores": {"mode": "exact"}}))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(short), "-d", str(tmp_path), "scores"],
        cwd=repo_root, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "results/short/scores" in proc.stdout


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
    assert (merged["train"]["lr"], merged["train"]["batch_size"]) == (1.0e-4, 40)
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


@pytest.mark.parametrize("base, overlay", [
    ({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}, "d": 4}),
    ({"a": 3}, {"a": {"b": 1}}),
    ({"a": 3}, {"a": {}}),
    ({"a": {"b": {"c": 1, "d": 2}}}, {"a": {"b": {"d": None}}}),
    ({"a": {"b": 1}}, {"a": None}),
    ({}, {"a": {"b": {}}}),
])
def test_merge_layers_agrees_with_snakemake(base, overlay):
    from snakemake.utils import update_config

    expected = copy.deepcopy(base)
    update_config(expected, copy.deepcopy(overlay))
    assert merge_layers(base, overlay) == expected


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


# --------------------------------------------------------------------------- check-config

def _check_config(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["vgsalign", "check-config", *args], capture_output=True, text=True)


def test_check_config_layers_files_as_snakemake_does(repo_root, tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"train": {"lr": 5.0, "epochs": 3}, "scores": {"mode": "exact"}}))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"train": {"lr": 0.01}}))
    alone = _check_config(str(base))
    assert alone.returncode == 0, alone.stderr     # lr has no upper bound: valid
    merged = load_config(base, overlay)
    assert merged["train"]["lr"] == 0.01 and merged["train"]["epochs"] == 3 and merged["scores"]["mode"] == "exact"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"epochs": 0}}))
    layered = _check_config(str(base), str(overlay), str(bad))
    assert layered.returncode == 2
    assert f"{base} + {overlay} + {bad}" in layered.stderr and "train.epochs = 0: expected a number >= 1" in layered.stderr
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    assert _check_config(str(base), str(bad), str(fixed)).returncode == 0   # a later file repairs an earlier one


def test_check_config_prints_each_problem_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    # one broken key read by the schema and by a cross-key check; and the same mistake in two layers
    bad.write_text(yaml.safe_dump({"audio": {"hop_s": "ten ms"}, "vocab": {"policy": "keep"}}))
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump({"vocab": {"policy": "keep"}}))
    proc = _check_config(str(bad), str(again))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert sum("audio.hop_s" in line for line in lines) == 1, proc.stderr
    assert sum("vocab.policy = 'keep'" in line for line in lines) == 1, proc.stderr
    assert len(lines) == len(set(lines))


def test_cross_key_problem_is_reported_with_schema_errors(default_config):
    default_config["match"]["threshold"] = "high"     # a schema error
    default_config["audio"]["hop_s"] = 0.02           # a cross-key problem with frames.hop_s
    default_config["frames"]["max"] = 500             # and one with scores.mode reference
    with pytest.raises(InputError) as err:
        validate_config(default_config)
    text = str(err.value)
    assert "match.threshold = 'high': expected type number" in text
    assert "audio.hop_s = 0.02: expected the same value as frames.hop_s (0.01)" in text
    assert "frames.max = 500: expected a multiple of 8 (e.g. 496 or 504)" in text
    assert text.count("\n") == 3   # the heading line and one line per problem


def test_unknown_top_level_section_and_unreadable_file_give_one_line(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("scorse:\n  mode: exact\n")
    proc = _check_config(str(typo))
    assert proc.returncode == 2
    assert "scorse: unknown setting (did you mean 'scores'?); expected one of: audio, dataset" in proc.stderr
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    proc = _check_config(str(listing))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert f"{listing}: expected a mapping of settings at the top level" in proc.stderr


def test_check_config_defaults_prints_the_commented_default_config():
    proc = _check_config("--defaults")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout) == schema_default_config()
    assert "# outputs go to results/<name>/\n  name: demo\n" in proc.stdout


def test_docs_config_md_is_generated_from_the_schema(repo_root):
    from vgsalign.config_docs import config_markdown

    committed = (repo_root / "docs/config.md").read_text()
    assert committed == config_markdown(), "regenerate: python -m vgsalign.config_docs > docs/config.md"
    for path, prop in _walk_properties(load_schema()):
        if "properties" not in prop:
            assert f"| `{'.'.join(path)}` |" in committed


# --------------------------------------------------------------------------- cross-key checks

def _problems(config: dict) -> list[str]:
    from vgsalign.config import config_problems

    return config_problems(with_defaults(config))


def test_audio_time_stride_matches_the_model_geometry():
    from vgsalign.config import AUDIO_TIME_STRIDE
    from vgsalign.train.models import POOL_AFTER, InputShape

    assert AUDIO_TIME_STRIDE == 2 ** len(POOL_AFTER)
    for frames in (8, 64, 512, 1024):
        shape = InputShape(frames=frames, n_mels=40, grid_h=14, grid_w=14, channels=8)
        assert shape.tensor_frames * AUDIO_TIME_STRIDE == frames
    # not a multiple: the tensor frames do not stand for a whole number of input frames
    assert (500 / InputShape(frames=500, n_mels=40, grid_h=14, grid_w=14, channels=8).tensor_frames) % 1


@pytest.mark.parametrize("frames_max, mode, expected", [
    (7, "exact", "frames.max = 7: expected at least 8, the audio branch's time stride"),
    (7, "reference", "frames.max = 7: expected at least 8"),
    (500, "reference", "frames.max = 500: expected a multiple of 8 (e.g. 496 or 504) when scores.mode is 'reference'"),
])
def test_frames_max_against_the_audio_stride(frames_max, mode, expected):
    problems = _problems({"frames": {"max": frames_max}, "scores": {"mode": mode}})
    assert len(problems) == 1 and expected in problems[0]


def test_frames_max_not_a_multiple_is_fine_in_exact_mode():
    assert _problems({"frames": {"max": 500}, "scores": {"mode": "exact"}}) == []


@pytest.mark.parametrize("audio, expected", [
    ({"n_fft": 256}, "audio.n_fft = 256: expected >= the window audio.win_s x audio.sample_rate (400 samples)"),
    ({"sample_rate": 22050, "n_fft": 1024}, "audio.hop_s = 0.01: expected a whole number of samples at audio.sample_rate 22050"),
    ({"win_s": 0.005}, "audio.win_s = 0.005: expected >= audio.hop_s"),
])
def test_audio_settings_that_cannot_work_together(audio, expected):
    problems = _problems({"audio": audio})
    assert any(expected in line for line in problems), problems


def test_validation_pools_cannot_exceed_the_evaluated_images():
    problems = _problems({"train": {"pool_size": 500, "eval_max_images": 200}})
    assert problems == ["train.pool_size = 500: expected at most train.eval_max_images (200); "
                        "the recall pools are drawn from the evaluated images"]
    assert _problems({"train": {"pool_size": 200, "eval_max_images": 200}}) == []


def test_demo_splits_must_be_generated():
    problems = _problems({"dataset": {"splits": {"test": "test2014"}}})
    assert problems == ["dataset.splits.test = 'test2014': expected a split the demo corpus generates "
                        "(demo.n_images has ['train2014', 'val2014'])"]


def test_cross_checks_skip_keys_with_schema_errors_instead_of_crashing():
    problems = _problems({"frames": {"max": "many"}, "train": {"pool_size": None}, "dataset": {"splits": 3}})
    assert problems == sorted(problems) and len(problems) == 3, problems
    assert all(": expected type" in line for line in problems)


def test_every_data_file_of_the_package_is_installed_with_it(repo_root):
    """Files the code reads at run time (the schema, the report's CSS) must be package data,
    or an installed vgsalign would not find them."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = repo_root / "src/vgsalign"
    data = [p for p in package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert package / "config.schema.yaml" in data
    for path in data:
        owner = ".".join(["vgsalign", *path.parent.relative_to(package).parts])
        assert any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns.get(owner, [])), path


def test_a_schema_error_leaves_the_other_cross_checks_running(tmp_path):
    problems = _problems({"dataset": {"name": "bad name!", "source": "speechcoco",
                                      "speech_root": str(tmp_path / "nowhere"), "coco_root": str(tmp_path)}})
    assert len(problems) == 2, problems
    assert problems[0].startswith("dataset.name = 'bad name!': expected text matching")
    assert problems[1] == f"dataset.speech_root = '{tmp_path / 'nowhere'}': expected an existing folder"


def test_spokencoco_needs_alignments_root_unless_the_workflow_aligns(tmp_path):
    dataset = {"source": "spokencoco", "speech_root": str(tmp_path), "coco_root": str(tmp_path),
               "alignments_root": None}
    (problem,) = _problems({"dataset": dataset})
    assert problem.startswith("dataset.alignments_root = None: expected the TextGrid folder")
    assert _problems({"dataset": {**dataset, "mfa": {"run": True}}}) == []
    assert _problems({"dataset": {**dataset, "alignments_root": str(tmp_path), "mfa": {"run": False}}}) == []
    # SPEECH-COCO has its word times in its captions: no alignments needed either way
    assert _problems({"dataset": {**dataset, "source": "speechcoco"}}) == []


@pytest.mark.parametrize("text, problem", [("{mode: exact}", "not valid JSON"), ("[1, 2]", "expected a JSON object")])
def test_settings_from_json_names_the_option_on_bad_json(text, problem):
    with pytest.raises(InputError) as err:
        settings_from_json(_Scores, text, "--scores", section="scores")
    assert str(err.value).startswith("--scores: ") and problem in str(err.value)

