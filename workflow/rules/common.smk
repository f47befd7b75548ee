# Helpers shared by all rule files (config validation, paths, and how settings and
# package code reach the params of each step, so a change reruns exactly what it affects).

import hashlib
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from vgsalign.config import validate_config
from vgsalign.errors import InputError

try:
    validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except InputError as err:
    sys.stderr.write(f"vgsalign: {err}\n")
    sys.exit(1)


RESULTS = f"results/{config['dataset']['name']}"
LOGS = f"{RESULTS}/logs"
RESOURCES = "resources"
SPLITS = config["dataset"]["splits"]
# every split the workflow reads, each once (train, val and test may coincide)
USED_SPLITS = sorted(set(SPLITS.values()))
IS_DEMO = config["dataset"]["source"] == "demo"


def as_json(value):
    """A config slice as one shell-quoted JSON word for a `--settings` option."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def code_version(*parts):
    """Hash of the package code a rule runs, given as a param.

    Snakemake does not track imported modules; with this param (and the default
    `--rerun-triggers` including params) editing a stage's code reruns that stage and
    everything downstream. Each part is a subpackage of vgsalign (every file in it,
    package data included) or a top-level module; the small shared modules that cannot
    change a result (cli, errors, atomic, settings) are left out.
    """
    package = Path(workflow.basedir) / "src/vgsalign"
    digest = hashlib.sha256()
    for part in parts:
        folder = package / part
        files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if folder.is_dir() else [package / f"{part}.py"]
        for path in files:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def speech_root():
    """Folder holding the speech corpus (SPEECH-COCO layout for demo and speechcoco)."""
    return f"{RESULTS}/corpus/speech" if IS_DEMO else config["dataset"]["speech_root"]


def coco_root():
    """Folder holding images/<split>/ and annotations/instances_<split>.json."""
    return f"{RESULTS}/corpus/coco" if IS_DEMO else config["dataset"]["coco_root"]


def instances_json(split):
    return f"{coco_root()}/annotations/instances_{split}.json"


def corpus_ready(split):
    """Files that must exist before a split's corpus is read (the demo corpus manifest)."""
    return [f"{RESULTS}/corpus/manifest_{split}.json"] if IS_DEMO else []


def tagger_manifest():
    return f"{RESOURCES}/nltk_data/vgsalign_tagger.json"


def vectors_file():
    return f"{RESOURCES}/vectors/{config['word_vectors']['source']}.kv"
