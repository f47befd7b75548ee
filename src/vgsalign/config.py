"""The configuration: one schema holds every key's default, meaning and allowed values.

src/vgsalign/config.schema.yaml is the one source. This module
- merges layered config files as Snakemake merges `--configfile a.yaml b.yaml`,
- fills every missing key from the schema's defaults (`with_defaults`),
- checks the result: schema violations and checks that span several keys, all reported
  together, each problem once (`config_problems`, `validate_config`),
- generates the commented default config and docs/config.md from the schema.

The Snakefile fills and validates `config` before any rule reads it; `vgsalign
check-config` does the same for files given on the command line.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import InputError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.lru_cache(maxsize=4)
def _cached_schema(path: str) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def load_schema(schema_path: str | os.PathLike = SCHEMA_PATH) -> dict:
    """The schema as a dict (a fresh copy: callers may change it)."""
    return copy.deepcopy(_cached_schema(str(schema_path)))


# --------------------------------------------------------------------------- defaults

def _resolve(node: dict, schema: dict) -> dict:
    """A property's schema with a local `$ref` merged in (its own keys win)."""
    ref = node.get("$ref")
    if not ref:
        return node
    target = schema
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _fill(values: dict, node: dict, schema: dict) -> dict:
    """Fill the missing keys of `values` (in place) from the defaults under `node`."""
    for name, prop in node.get("properties", {}).items():
        if name not in values and "default" in prop:
            values[name] = copy.deepcopy(prop["default"])
        # an object's default is {}: its own keys' defaults fill it in turn
        if isinstance(values.get(name), dict) and "properties" in prop:
            _fill(values[name], prop, schema)
    return values


def section_schema(section: str | None, schema: dict | None = None) -> dict:
    """The schema of a dotted config path ("scores", "dataset.splits"); None: the whole."""
    schema = load_schema() if schema is None else schema
    node = schema
    for part in section.split(".") if section else []:
        properties = node.get("properties", {})
        if part not in properties:
            raise KeyError(f"no config section {section!r} in the schema")
        node = _resolve(properties[part], schema)
    return node


def with_defaults(config: dict, schema: dict | None = None) -> dict:
    """A copy of `config` with every missing key filled from the schema's defaults."""
    schema = load_schema() if schema is None else schema
    return _fill(copy.deepcopy(config), schema, schema)


def section_defaults(section: str, schema: dict | None = None) -> dict:
    """The default values of one config section (a dotted path), nested keys filled."""
    schema = load_schema() if schema is None else schema
    return _fill({}, section_schema(section, schema), schema)


def default_config(schema: dict | None = None) -> dict:
    """The whole default configuration."""
    return with_defaults({}, schema)


# --------------------------------------------------------------------------- layered files

def merge_layers(base: dict, overlay: dict) -> dict:
    """`overlay` over `base`, as Snakemake layers config files: mappings merge key by key
    (recursively), every other value (lists included) is replaced."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_layers(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_config_file(path: str | os.PathLike) -> dict:
    """One YAML config file as a mapping (an empty file sets nothing)."""
    try:
        with open(path) as fh:
            values = yaml.safe_load(fh)
    except OSError as err:
        raise InputError(path, f"cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({str(err).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(path, "expected a mapping of settings at the top level")
    return values


def load_config(*paths: str | os.PathLike, schema: dict | None = None) -> dict:
    """Config files layered in order (later ones override), then defaults filled."""
    merged: dict = {}
    for path in paths:
        merged = merge_layers(merged, read_config_file(path))
    return with_defaults(merged, schema)


# --------------------------------------------------------------------------- schema checks

def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _expected(error: jsonschema.ValidationError) -> str:
    kind, value = error.validator, error.validator_value
    if kind == "enum":
        return "one of " + ", ".join(repr(v) for v in value)
    if kind == "type":
        return f"type {value if isinstance(value, str) else ' or '.join(value)}"
    if kind == "minimum":
        return f"a number >= {value}"
    if kind == "maximum":
        return f"a number <= {value}"
    if kind == "exclusiveMinimum":
        return f"a number > {value}"
    if kind == "exclusiveMaximum":
        return f"a number < {value}"
    if kind == "pattern":
        return f"text matching {value}"
    if kind in ("minItems", "minLength", "minProperties"):
        return f"at least {value} item(s)"
    if kind == "maxItems":
        return f"at most {value} item(s)"
    return error.message


def _error_lines(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """(key, line) for each problem one schema error stands for."""
    if error.validator == "required":
        return [(_key([*error.absolute_path, name]), f"{_key([*error.absolute_path, name])}: missing (a required setting)")
                for name in error.validator_value if name not in error.instance]
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        return [(_key([*error.absolute_path, name]),
                 f"{_key([*error.absolute_path, name])}: unknown setting; expected one of: {', '.join(known)}")
                for name in sorted(set(error.instance) - set(known))]
    key = _key(error.absolute_path)
    return [(key, f"{key} = {error.instance!r}: expected {_expected(error)}")]


def schema_problems(config: dict, schema: dict) -> list[tuple[str, str]]:
    """(key, line) per schema violation, each line once, sorted by key."""
    seen: dict[str, str] = {}
    for error in jsonschema.Draft7Validator(schema).iter_errors(config):
        for key, line in _error_lines(error):
            seen.setdefault(line, key)
    return sorted(((key, line) for line, key in seen.items()), key=lambda kl: (kl[0], kl[1]))


def schema_errors(config: dict, schema: dict) -> list[str]:
    """All schema violations, one readable line each (empty list: valid)."""
    return [line for _, line in schema_problems(config, schema)]


# --------------------------------------------------------------------------- cross-key checks

def cross_checks(config: dict) -> list[str]:
    """Rules that involve several keys (on a config with its defaults filled)."""
    lines = []
    ds = config["dataset"]
    if ds["source"] != "demo":
        for key in ("speech_root", "coco_root"):
            if not ds[key]:
                lines.append(f"dataset.{key} = None: expected a folder when dataset.source is {ds['source']!r}")
            elif not Path(ds[key]).is_dir():
                lines.append(f"dataset.{key} = {ds[key]!r}: expected an existing folder")
        if ds["source"] == "spokencoco" and not ds["alignments_root"]:
            lines.append("dataset.alignments_root = None: expected the TextGrid folder when dataset.source is 'spokencoco'")
    else:
        for role, split in ds["splits"].items():
            if split not in config["demo"]["n_images"]:
                lines.append(
                    f"dataset.splits.{role} = {split!r}: expected a split the demo corpus generates "
                    f"(demo.n_images has {sorted(config['demo']['n_images'])})"
                )
    wv = config["word_vectors"]
    if wv["source"] == "word2vec":
        if not wv["path"]:
            lines.append("word_vectors.path = None: expected a word2vec binary when word_vectors.source is 'word2vec'")
        elif not Path(wv["path"]).is_file():
            lines.append(f"word_vectors.path = {wv['path']!r}: expected an existing file")
    if abs(config["audio"]["hop_s"] - config["frames"]["hop_s"]) > 1e-12:
        lines.append(
            f"audio.hop_s = {config['audio']['hop_s']!r}: expected the same value as frames.hop_s "
            f"({config['frames']['hop_s']!r}); word frames and feature frames must coincide"
        )
    if config["audio"]["win_s"] < config["audio"]["hop_s"]:
        lines.append(f"audio.win_s = {config['audio']['win_s']!r}: expected >= audio.hop_s")
    vis = config["visual"]
    if vis["backbone"] == "vgg16" and not vis["weights"] and not vis["allow_random_weights"]:
        lines.append(
            "visual.weights = None: expected a VGG16 state dict (.pth) for visual.backbone 'vgg16' "
            "(or set visual.allow_random_weights: true to run with random weights)"
        )
    if vis["weights"] and not Path(vis["weights"]).is_file():
        lines.append(f"visual.weights = {vis['weights']!r}: expected an existing file")
    return lines


def validate_config(config: dict, schema_path: str | os.PathLike = SCHEMA_PATH, source: str = "config") -> None:
    """Raise InputError listing every problem, one per line; return None when valid.

    `config` is checked as given: fill it with `with_defaults` first.
    """
    lines = schema_errors(config, load_schema(schema_path))
    if not lines:
        lines = cross_checks(config)
    if lines:
        raise InputError(source, "invalid configuration:\n  " + "\n  ".join(lines))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="vgsalign check-config", description="Validate a config file.")
    parser.add_argument("config", help="config.yaml to check")
    parser.add_argument("--schema", default=str(SCHEMA_PATH))
    args = parser.parse_args(argv)
    schema = load_schema(args.schema)
    config: Any = load_config(args.config, schema=schema)
    validate_config(config, args.schema, source=args.config)
    print(f"{args.config}: valid")
    return 0
