"""Step `tagger`: the NLTK POS tagger, provisioned offline under resources/nltk_data.

Nothing is downloaded. The tagger is NLTK's own averaged-perceptron data when it is installed,
otherwise the same kind of model shipped by the `textblob-aptagger` package (a pickle of
weights, tag dictionary and classes), converted to NLTK 3.9's JSON files so that
`nltk.pos_tag` works unchanged once the folder is on `nltk.data.path`. The pickle is read
with a restricted unpickler that can build nothing but builtin sets: loading it can never
run code.

    vgsalign tagger --resources '{"tagger": "auto"}' --nltk-data resources/nltk_data
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_path, write_json
from ..errors import InputError
from ..settings import settings_from_json

POLICIES = ("auto", "nltk", "aptagger")
TAGGER_RESOURCE = "taggers/averaged_perceptron_tagger_eng/"
TAGGER_DIR = Path("taggers") / "averaged_perceptron_tagger_eng"
# NLTK's PerceptronTagger.param_files("eng"): weights, tagdict, classes
TAGGER_FILES = {
    "weights": "averaged_perceptron_tagger_eng.weights.json",
    "tagdict": "averaged_perceptron_tagger_eng.tagdict.json",
    "classes": "averaged_perceptron_tagger_eng.classes.json",
}
APTAGGER_PICKLE = "trontagger-0.1.0.pickle"
MANIFEST_NAME = "vgsalign_tagger.json"


class _SetOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves no global except the builtin `set` (the pickle's only one)."""

    def find_class(self, module: str, name: str):
        if name == "set" and module in ("builtins", "__builtin__"):
            return set
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in the tagger pickle")


def aptagger_pickle_path() -> Path:
    """The model file inside the installed textblob-aptagger package, found without importing it
    (its import is broken with current textblob)."""
    spec = importlib.util.find_spec("textblob_aptagger")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("textblob-aptagger", "package not installed; it ships the offline POS tagger model")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / APTAGGER_PICKLE
        if candidate.is_file():
            return candidate
    raise InputError("textblob-aptagger", f"package has no {APTAGGER_PICKLE}")


def load_aptagger_model(path: str | Path) -> tuple[dict, dict, set]:
    """(weights, tagdict, classes) from the textblob-aptagger pickle, via the restricted unpickler."""
    try:
        with open(path, "rb") as fh:
            model = _SetOnlyUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise InputError(path, f"not a usable tagger model ({err})") from None
    if not (isinstance(model, tuple) and len(model) == 3):
        raise InputError(path, "expected a (weights, tagdict, classes) tuple")
    weights, tagdict, classes = model
    if not (isinstance(weights, dict) and isinstance(tagdict, dict) and isinstance(classes, set)):
        raise InputError(path, "expected weights dict, tagdict dict and classes set")
    return weights, tagdict, classes


def write_nltk_tagger(weights: dict, tagdict: dict, classes: set, nltk_data: str | Path) -> Path:
    """Write the three JSON files NLTK's PerceptronTagger.load_from_json reads."""
    folder = Path(nltk_data) / TAGGER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in (("weights", weights), ("tagdict", tagdict), ("classes", sorted(classes))):
        with atomic_path(folder / TAGGER_FILES[key]) as tmp:
            tmp.write_text(json.dumps(value, sort_keys=True))
    return folder


def find_nltk_tagger() -> str | None:
    """Where NLTK's own tagger data is, or None when it is not installed.

    Folders this module converted (they hold our manifest) are not NLTK's own data.
    """
    import nltk

    paths = [p for p in nltk.data.path if not (Path(p) / MANIFEST_NAME).exists()]
    try:
        return str(nltk.data.find(TAGGER_RESOURCE, paths=paths))
    except LookupError:
        return None


def provision_tagger(policy: str, nltk_data: str | Path) -> dict:
    """Make a POS tagger available under `nltk_data` (or confirm NLTK's own) and write the manifest."""
    import nltk

    nltk_data = Path(nltk_data)
    nltk_data.mkdir(parents=True, exist_ok=True)
    converted = nltk_data / TAGGER_DIR
    own = find_nltk_tagger() if policy in ("auto", "nltk") else None
    if policy == "nltk" and own is None:
        raise InputError(
            "resources.tagger", "'nltk' requires NLTK's averaged_perceptron_tagger_eng data, which is not "
            "installed (use 'auto' or 'aptagger' to convert the packaged model)",
        )
    if own is not None:
        manifest = {"tagger": "nltk", "source": own, "nltk_data": None}
    else:
        source = aptagger_pickle_path()
        weights, tagdict, classes = load_aptagger_model(source)
        write_nltk_tagger(weights, tagdict, classes, nltk_data)
        manifest = {
            "tagger": "aptagger",
            "source": str(source),
            "source_sha256": _sha256(source),
            "nltk_data": str(converted),
            "files": sorted(TAGGER_FILES.values()),
            "n_features": len(weights),
            "classes": sorted(classes),
        }
    manifest.update({"policy": policy, "nltk_version": nltk.__version__})
    # check it tags before declaring success
    use_tagger(nltk_data)
    sample = nltk.pos_tag(["a", "dog", "on", "the", "grass"])
    manifest["check"] = " ".join(f"{w}/{t}" for w, t in sample)
    write_json(manifest, nltk_data / MANIFEST_NAME)
    return manifest


def use_tagger(nltk_data: str | Path) -> None:
    """Put the provisioned data folder first on NLTK's search path (then nltk.pos_tag works)."""
    import nltk

    folder = str(Path(nltk_data).resolve())
    if folder not in nltk.data.path:
        nltk.data.path.insert(0, folder)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ResourceSettings:
    """The `resources` config section."""

    tagger: str

    def __post_init__(self) -> None:
        if self.tagger not in POLICIES:
            raise InputError("resources.tagger", f"{self.tagger!r}: expected one of {POLICIES}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign tagger", description="Provision the NLTK POS tagger offline.")
    parser.add_argument("--resources", required=True, help="the resources config slice as JSON")
    parser.add_argument("--nltk-data", required=True, help="folder to hold the NLTK data and the manifest")
    args = parser.parse_args(argv)
    settings = settings_from_json(ResourceSettings, args.resources, where="--resources", section="resources")
    manifest = provision_tagger(settings.tagger, args.nltk_data)
    print(f"tagger: {manifest['tagger']} from {manifest['source']}; check: {manifest['check']}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("tagger", main))
