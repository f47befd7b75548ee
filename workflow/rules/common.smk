# Helpers shared by all rule files (config validation, paths, and how settings and
# package code reach the params of each step, so a change reruns exactly what it affects).

import hashlib
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from vgsalign.config import validate_config, with_defaults
from vgsalign.errors import InputError
from vgsalign.sizing import JobSize, StreamingJobSize

# Every key a config file leaves out takes its default from src/vgsalign/config.schema.yaml,
# before anything reads `config`: rules always pass complete slices.
config.update(with_defaults(config))
try:
    validate_config(config)
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
IS_SPOKENCOCO = config["dataset"]["source"] == "spokencoco"


def as_json(value):
    """A config slice as one shell-quoted JSON word for its `--<slice>` option."""
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
    """Folder holding annotations/instances_<split>.json and the images (image_dir)."""
    return f"{RESULTS}/corpus/coco" if IS_DEMO else config["dataset"]["coco_root"]


def image_dir(split):
    """A split's image folder: <coco_root>/<split>/ as MSCOCO 2014 unzips (or images/<split>/
    where only that exists); the demo corpus writes images/<split>/."""
    from vgsalign.corpus.coco import image_folder

    return f"{coco_root()}/images/{split}" if IS_DEMO else str(image_folder(Path(coco_root()), split))


def instances_json(split):
    return f"{coco_root()}/annotations/instances_{split}.json"



def karpathy_index(split):
    """SpokenCOCO_<split>.json, the Karpathy index whose images a SpokenCOCO split's plan holds."""
    from vgsalign.corpus.spokencoco import spokencoco_index

    return spokencoco_index(Path(speech_root()), split)


def feature_instances(split):
    """The instances files the image plan of a split reads: for SpokenCOCO, those of every
    COCO split its index names (IMAGE_PLANS, features.smk); else the split's own."""
    return [instances_json(s) for s in IMAGE_PLANS[split].coco_splits] if IS_SPOKENCOCO else [instances_json(split)]


def feature_image_root(split):
    """The folder images.csv's file_name is relative to: coco_root for SpokenCOCO (its
    images come from several COCO splits), else the split's image folder."""
    return coco_root() if IS_SPOKENCOCO else image_dir(split)


def feature_images_args(split):
    """Where `vgsalign features-images` finds a split's images, as its options."""
    if IS_SPOKENCOCO:
        options = ["--karpathy-index", str(karpathy_index(split)), "--coco-root", coco_root()]
    else:
        options = ["--instances", instances_json(split), "--image-dir", image_dir(split)]
    return " ".join(shlex.quote(option) for option in options)


def corpus_ready(split):
    """Inputs of every step that reads a split's corpus: the demo corpus manifest (which
    makes the demo corpus first), and the split's corpus state (workflow/rules/corpus.smk),
    which changes when a file of the corpus does."""
    manifest = [f"{RESULTS}/corpus/manifest_{split}.json"] if IS_DEMO else []
    return manifest + [corpus_state_file(split)]


def corpus_state_file(split):
    return f"{RESULTS}/corpus/state_{split}.json"


def corpus_watch(split):
    """The files and folders of a split's corpus whose changes rerun the steps that read them."""
    speech = Path(speech_root())
    # a SpokenCOCO index mixes COCO splits (val2014 "restval" images in the train index)
    coco_splits = USED_SPLITS if IS_SPOKENCOCO else [split]
    watch = [speech / split if (speech / split).is_dir() else speech] + [Path(instances_json(s)) for s in coco_splits]
    coco = Path(coco_root())
    watch += [folder for s in coco_splits for folder in (coco / s, coco / "images" / s) if folder.is_dir()]
    if not IS_DEMO and config["dataset"]["alignments_root"]:
        watch.append(Path(config["dataset"]["alignments_root"]))
    return [str(p) for p in watch]


def tagger_manifest():
    return f"{RESOURCES}/nltk_data/vgsalign_tagger.json"


def vectors_file():
    return f"{RESOURCES}/vectors/{config['word_vectors']['source']}.kv"


# --------------------------------------------------------------------------- training inputs

def train_slice(seed=None):
    """The train config slice less train.resume (operational) and train.seeds (which models
    are trained, not how), with train.seed replaced by `seed` when given."""
    values = {k: v for k, v in config["train"].items() if k not in ("resume", "seeds")}
    if seed is not None:
        values["seed"] = int(seed)
    return as_json(values)


def compared_seeds():
    """The seeds of the comparison across seeds: train.seed first, then train.seeds in
    their order, each once; [] when train.seeds is empty (one model, no comparison)."""
    if not config["train"]["seeds"]:
        return []
    return list(dict.fromkeys([config["train"]["seed"], *config["train"]["seeds"]]))


def seed_folder(seed):
    """Where the model of one seed of the comparison is trained and scored: train.seed's is
    the run's main model, at the run's own paths; any other seed's is under seeds/seed_<k>/."""
    return RESULTS if int(seed) == config["train"]["seed"] else f"{RESULTS}/seeds/seed_{seed}"


def validation_shards(modality):
    """The validation split's shards, needed only with train.validation: split."""
    if config["train"]["validation"] != "split":
        return []
    return FEATURE_SHARDS[(modality, SPLITS["val"])]   # defined in features.smk



# --------------------------------------------------------------------------- job sizes
# SLURM sizes each job from its inputs (vgsalign.sizing.JobSize): memory and runtime grow
# linearly with the input files' size, and memory grows by half on every retry (the slurm
# profile sets `retries`). The figures are per rule in JOB_SIZES;
# each job also writes a benchmark file (wall time, max RSS) under
# results/<name>/benchmarks/ to check them against (docs/cluster.md).

BENCHMARKS = f"{RESULTS}/benchmarks"

# Per rule: memory is bounded by what a job holds at once (a shard, a batch, its output
# tables), so only the steps whose outputs grow with their inputs get a per-MB share.
JOB_SIZES = {
    "demo_corpus_split": JobSize(mem_mb_base=2500, runtime_min_base=60),
    "corpus_state": JobSize(mem_mb_base=1000, runtime_min_base=30),
    "tagger": JobSize(mem_mb_base=1000, runtime_min_base=10),
    "word_vectors": JobSize(mem_mb_base=8000 if config["word_vectors"]["source"] == "word2vec" else 2000, runtime_min_base=30),
    # the test-set steps hold their tables: ~10 bytes of memory per byte of CSV read
    "testdata": JobSize(mem_mb_base=2000, runtime_min_base=20, mem_mb_per_input_mb=10.0, runtime_min_per_input_mb=0.05),
    "features_index": JobSize(mem_mb_base=2000, runtime_min_base=20, mem_mb_per_input_mb=5.0, runtime_min_per_input_mb=0.02),
    "features_audio": JobSize(mem_mb_base=3000, runtime_min_base=60),
    "features_visual": JobSize(mem_mb_base=6000, runtime_min_base=120),
    # training holds two groups of train.shards_per_group shards (one trained on, one read
    # ahead): a share of the largest shard files, however many the split has
    "train_model": StreamingJobSize(mem_mb_base=4000, runtime_min_base=240, runtime_min_per_input_mb=0.05,
                                    mem_mb_per_input_mb=1.5, files_held=4 * config["train"]["shards_per_group"]),
    "tensors_dump": JobSize(mem_mb_base=6000, runtime_min_base=30, runtime_min_per_input_mb=0.002),
    "score_pairs": JobSize(mem_mb_base=3000, runtime_min_base=20, mem_mb_per_input_mb=0.5, runtime_min_per_input_mb=0.01),
    "seeds_summary": JobSize(mem_mb_base=1000, runtime_min_base=10),
    "report_html": JobSize(mem_mb_base=2000, runtime_min_base=15, mem_mb_per_input_mb=2.0),
}
