"""Config validation with messages that name the key, the value and what is expected.

The Snakefile calls `validate_config` before building any job. JSON-schema checks come
from workflow/schemas/config.schema.yaml; checks that span several keys live here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import InputError


def load_schema(schema_path: str | os.PathLike) -> dict:
    with open(schema_path) as fh:
        return yaml.safe_load(fh)


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
    return error.message


def schema_errors(config: dict, schema: dict) -> list[str]:
    """All schema violations, one readable line each (empty list: valid)."""
    validator = jsonschema.Draft7Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        key = _key(error.absolute_path)
        if error.validator == "required":
            missing = [k for k in error.validator_value if k not in error.instance]
            for name in missing:
                lines.append(f"{_key([*error.absolute_path, name])}: missing (a required setting)")
        elif error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            for name in extra:
                allowed = ", ".join(sorted(error.schema.get("properties", {})))
                lines.append(f"{_key([*error.absolute_path, name])}: unknown setting; expected one of: {allowed}")
        else:
            lines.append(f"{key} = {error.instance!r}: expected {_expected(error)}")
    return lines


def cross_checks(config: dict) -> list[str]:
    """Rules that involve several keys (run only on a schema-valid config)."""
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


def validate_config(config: dict, schema_path: str | os.PathLike, source: str = "config") -> None:
    """Raise InputError listing every problem, one per line; return None when valid."""
    lines = schema_errors(config, load_schema(schema_path))
    if not lines:
        lines = cross_checks(config)
    if lines:
        raise InputError(source, "invalid configuration:\n  " + "\n  ".join(lines))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="vgsalign check-config", description="Validate a config file.")
    parser.add_argument("config", help="config.yaml to check")
    parser.add_argument("--schema", default=str(Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"))
    args = parser.parse_args(argv)
    with open(args.config) as fh:
        config: Any = yaml.safe_load(fh)
    validate_config(config, args.schema, source=args.config)
    print(f"{args.config}: valid")
    return 0
