"""The configuration: one schema holds every key's default, meaning and allowed values.

src/vgsalign/config.schema.yaml is the one source. This module
- merges layered config files as Snakemake merges `--configfile a.yaml b.yaml`,
- fills every missing key from the schema's defaults (`with_defaults`),
- checks the result: schema violations and checks that span several keys, all reported
  together, each problem once (`config_problems`, `validate_config`).
vgsalign.config_docs generates the commented default config and docs/config.md from it.

The Snakefile fills and validates `config` before any rule reads it; `vgsalign
check-config` does the same for files given on the command line.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from pathlib import Path

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

def resolve_ref(node: dict, schema: dict) -> dict:
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
        node = resolve_ref(properties[part], schema)
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
        if isinstance(value, dict):
            under = merged.get(key, {})
            # as snakemake.utils.update_config: a non-mapping under a mapping is dropped
            # once the mapping sets a key (an empty mapping changes nothing)
            merged[key] = merge_layers(under if isinstance(under, dict) else {}, value) if value else under
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
        lines = []
        for name in sorted(set(error.instance) - set(known)):
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            key = _key([*error.absolute_path, name])
            lines.append((key, f"{key}: unknown setting{hint}; expected one of: {', '.join(known)}"))
        return lines
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
# Each check reads the keys it names and returns problem lines. A check runs only when
# none of its keys has a schema error, so it can trust their types, and every problem of
# a config is reported in one go (schema errors and cross-key problems together).

# Frames of audio input per frame of the alignment tensor: the audio branch has three
# max-pools of stride 2 (vgsalign.train.models.POOL_AFTER), 2 ** 3.
AUDIO_TIME_STRIDE = 8


def _demo_splits(c: dict) -> list[str]:
    """`dataset.splits.*` must be splits the demo corpus generates (`demo.n_images`) when
    `dataset.source` is `demo`."""
    if c["dataset"]["source"] != "demo":
        return []
    generated = c["demo"]["n_images"]
    return [f"dataset.splits.{role} = {split!r}: expected a split the demo corpus generates "
            f"(demo.n_images has {sorted(generated)})"
            for role, split in c["dataset"]["splits"].items() if split not in generated]


def _corpus_folders(c: dict) -> list[str]:
    """For a real corpus, `dataset.speech_root` and `dataset.coco_root` must be existing
    folders, and `spokencoco` needs `dataset.alignments_root` unless the workflow makes the
    alignments itself (`dataset.mfa.run`)."""
    ds, lines = c["dataset"], []
    if ds["source"] == "demo":
        return lines
    for key in ("speech_root", "coco_root"):
        if not ds[key]:
            lines.append(f"dataset.{key} = None: expected a folder when dataset.source is {ds['source']!r}")
        elif not Path(ds[key]).is_dir():
            lines.append(f"dataset.{key} = {ds[key]!r}: expected an existing folder")
    if ds["source"] == "spokencoco" and not ds["alignments_root"] and not ds["mfa"]["run"]:
        lines.append("dataset.alignments_root = None: expected the TextGrid folder when dataset.source is "
                     "'spokencoco' (or dataset.mfa.run: true to align with MFA in the workflow)")
    return lines


def _word_vectors(c: dict) -> list[str]:
    """`word_vectors.path` must be an existing file when `word_vectors.source` is `word2vec`."""
    wv = c["word_vectors"]
    if wv["source"] != "word2vec":
        return []
    if not wv["path"]:
        return ["word_vectors.path = None: expected a word2vec binary when word_vectors.source is 'word2vec'"]
    if not Path(wv["path"]).is_file():
        return [f"word_vectors.path = {wv['path']!r}: expected an existing file"]
    return []


def _audio_frames(c: dict) -> list[str]:
    """`audio.hop_s` must equal `frames.hop_s` and be a whole number of samples at
    `audio.sample_rate`; `audio.win_s` >= `audio.hop_s`; `audio.n_fft` >= the window in
    samples."""
    audio, frames, lines = c["audio"], c["frames"], []
    if abs(audio["hop_s"] - frames["hop_s"]) > 1e-12:
        lines.append(f"audio.hop_s = {audio['hop_s']!r}: expected the same value as frames.hop_s "
                     f"({frames['hop_s']!r}); word frames and feature frames must coincide")
    hop_samples = audio["hop_s"] * audio["sample_rate"]
    if abs(hop_samples - round(hop_samples)) > 1e-6:
        # the hop is rounded to whole samples: feature frames would drift from the word times
        lines.append(f"audio.hop_s = {audio['hop_s']!r}: expected a whole number of samples at audio.sample_rate "
                     f"{audio['sample_rate']} (it is {hop_samples:g})")
    if audio["win_s"] < audio["hop_s"]:
        lines.append(f"audio.win_s = {audio['win_s']!r}: expected >= audio.hop_s")
    window = int(round(audio["win_s"] * audio["sample_rate"]))
    if audio["n_fft"] < window:
        lines.append(f"audio.n_fft = {audio['n_fft']!r}: expected >= the window audio.win_s x audio.sample_rate "
                     f"({window} samples)")
    return lines


def _frames_max(c: dict) -> list[str]:
    """`frames.max` must be at least 8, the audio branch's time stride (three stride-2
    max-pools; fewer input frames than one tensor frame train at chance and leave no test
    word), and a multiple of 8 when `scores.mode` is `reference`: the reference grid gives
    each of the frames.max / 8 tensor frames 8 input frames, so with any other length the
    last tensor frame reaches past the cut and the grid is not the original's."""
    most, stride = c["frames"]["max"], AUDIO_TIME_STRIDE
    if most < stride:
        return [f"frames.max = {most!r}: expected at least {stride}, the audio branch's time stride "
                f"(its three stride-2 max-pools)"]
    if c["scores"]["mode"] == "reference" and most % stride:
        lower, upper = most - most % stride, most - most % stride + stride
        return [f"frames.max = {most!r}: expected a multiple of {stride} (e.g. {lower} or {upper}) when "
                f"scores.mode is 'reference', where each tensor frame stands for {stride} input frames "
                f"(or set scores.mode: exact)"]
    return []


def _visual_weights(c: dict) -> list[str]:
    """`visual.backbone: vgg16` needs `visual.weights` (an existing file) unless
    `visual.allow_random_weights` is true."""
    vis, lines = c["visual"], []
    if vis["backbone"] == "vgg16" and not vis["weights"] and not vis["allow_random_weights"]:
        lines.append("visual.weights = None: expected a VGG16 state dict (.pth) for visual.backbone 'vgg16' "
                     "(or set visual.allow_random_weights: true to run with random weights)")
    if vis["weights"] and not Path(vis["weights"]).is_file():
        lines.append(f"visual.weights = {vis['weights']!r}: expected an existing file")
    return lines


def _validation_pools(c: dict) -> list[str]:
    """`train.pool_size` must be at most `train.eval_max_images`: the recall pools are drawn
    from the evaluated images."""
    train = c["train"]
    if train["pool_size"] > train["eval_max_images"]:
        # pools are drawn from the evaluated images: a larger pool is silently smaller
        return [f"train.pool_size = {train['pool_size']!r}: expected at most train.eval_max_images "
                f"({train['eval_max_images']!r}); the recall pools are drawn from the evaluated images"]
    return []


CROSS_CHECKS = [
    (("dataset.source", "dataset.splits", "demo.n_images"), _demo_splits),
    (("dataset.source", "dataset.speech_root", "dataset.coco_root", "dataset.alignments_root", "dataset.mfa.run"),
     _corpus_folders),
    (("word_vectors",), _word_vectors),
    (("audio", "frames.hop_s"), _audio_frames),
    (("frames.max", "scores.mode"), _frames_max),
    (("visual.backbone", "visual.weights", "visual.allow_random_weights"), _visual_weights),
    (("train.pool_size", "train.eval_max_images"), _validation_pools),
]


def _touches(keys: tuple[str, ...], broken: set[str]) -> bool:
    """Whether a check reading `keys` would read a key with a schema error (or a parent
    or child of one)."""
    return any(b == k or b.startswith(k + ".") or k.startswith(b + ".") or b == "<top level>"
               for k in keys for b in broken)


def cross_checks(config: dict, broken: set[str] = frozenset()) -> list[str]:
    """Problems that involve several keys, on a config with its defaults filled; checks
    that read a key in `broken` (keys with schema errors) are left out."""
    lines = []
    for keys, check in CROSS_CHECKS:
        if _touches(keys, set(broken)):
            continue
        try:
            lines += check(config)
        except (KeyError, TypeError, AttributeError):
            continue   # a section missing or of the wrong type: the schema already said so
    return lines


def config_problems(config: dict, schema: dict | None = None) -> list[str]:
    """Every problem of a (filled) config, schema and cross-key together, each line once."""
    schema = load_schema() if schema is None else schema
    found = schema_problems(config, schema)
    lines = [line for _, line in found] + cross_checks(config, {key for key, _ in found})
    return list(dict.fromkeys(lines))


def validate_config(config: dict, schema_path: str | os.PathLike = SCHEMA_PATH, source: str = "config") -> None:
    """Raise InputError listing every problem, one per line; return None when valid.

    `config` is checked as given: fill it with `with_defaults` first.
    """
    lines = config_problems(config, load_schema(schema_path))
    if lines:
        raise InputError(source, "invalid configuration:\n  " + "\n  ".join(lines))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="vgsalign check-config",
        description="Check config files as the workflow reads them: later files override earlier ones key by "
                    "key (as `snakemake --configfile a.yaml b.yaml`), missing keys take their defaults, and every "
                    "problem is printed once.")
    parser.add_argument("configs", nargs="*", metavar="config.yaml", help="config files, in layering order")
    parser.add_argument("--defaults", action="store_true",
                        help="print the full default config as commented YAML (from the schema) and exit")
    parser.add_argument("--schema", default=str(SCHEMA_PATH), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    schema = load_schema(args.schema)
    if args.defaults:
        from .config_docs import defaults_yaml

        print(defaults_yaml(schema), end="")
        return 0
    if not args.configs:
        parser.error("give at least one config file (or --defaults)")
    source = " + ".join(args.configs)
    validate_config(load_config(*args.configs, schema=schema), args.schema, source=source)
    print(f"{source}: valid")
    return 0
