"""`vgsalign <step> ...`: one subcommand per workflow rule, named as the rule is.

Each step's module exposes `main(argv) -> int` and also runs as `python -m vgsalign.<module>`.
Bad input (InputError) becomes one line on stderr naming the file and the problem, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Callable

from .errors import InputError


@dataclass(frozen=True)
class Command:
    name: str                   # the rule's name, with "-" for "_"
    module: str                 # under vgsalign, with main(argv)
    help: str
    prefix: tuple[str, ...] = ()  # leading arguments for a module that serves several steps
    aliases: tuple[str, ...] = ()  # earlier names, still accepted


COMMANDS: list[Command] = [
    Command("check-config", "config", "check config files (layered: base.yaml overlay.yaml) against the schema"),
    Command("demo-corpus-split", "demo.corpus", "generate one split of the built-in synthetic demo corpus",
            aliases=("demo-corpus",)),
    Command("tagger", "resources.tagger", "provision the NLTK POS tagger offline"),
    Command("word-vectors", "resources.vectors", "provision the word vectors as gensim KeyedVectors"),
    Command("alignments-corpus", "corpus.mfa", "write a SpokenCOCO split as the Montreal Forced Aligner's input corpus"),
    Command("corpus-state", "corpus.state", "record the state of a split's corpus files (names, sizes, mtimes)"),
    Command("testdata-dataset", "testdata.dataset", "read a split's captions: utterances and word times",
            aliases=("dataset",)),
    Command("testdata-frames", "testdata.frames", "word times -> spans on the model's input-frame grid",
            aliases=("frames",)),
    Command("testdata-nouns", "testdata.nouns", "nouns of each utterance (NLTK POS tags)", aliases=("nouns",)),
    Command("testdata-vocab", "testdata.vocab", "nouns the word vectors know (the original spell check)",
            aliases=("vocab",)),
    Command("testdata-labels", "testdata.labels", "COCO category names of each test image", aliases=("labels",)),
    Command("testdata-similarities", "testdata.similarities", "word-vector similarity of nouns to labels",
            prefix=("compute",)),
    Command("testdata-histogram", "testdata.similarities", "histogram of the best similarities and the threshold",
            prefix=("histogram",)),
    Command("testdata-pairs", "testdata.pairs", "the test set: (utterance, noun, category) pairs", aliases=("pairs",)),
    Command("testdata-summary", "testdata.summary", "the test-set funnel, from utterances to pairs"),
    Command("features-images", "features.plan", "plan which images go in which shard, checking their files",
            prefix=("images",)),
    Command("features-captions", "features.plan", "plan which captions go in which shard (those of usable images)",
            prefix=("captions",)),
    Command("features-audio", "features.audio", "log-mel energies of one shard's captions into HDF5"),
    Command("features-visual", "features.visual", "CNN feature grids of one shard's images into HDF5"),
    Command("train-model", "train.loop", "train a VGS model on feature shards", aliases=("train",)),
    Command("tensors-dump", "train.tensors", "alignment tensor of every test utterance with its image",
            aliases=("tensors",)),
    Command("score-pairs", "scores.run", "alignment and glancing scores of the test pairs, and their tables",
            aliases=("score",)),
    Command("seeds-summary", "scores.seeds", "the scores of several training seeds side by side, with mean and sd"),
    Command("report-html", "report.page", "the self-contained HTML report of a run", aliases=("report",)),
]


def find_command(name: str) -> Command | None:
    for command in COMMANDS:
        if name == command.name or name in command.aliases:
            return command
    return None


def run_main(name: str, main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a step's main, turning InputError into one clear line and exit status 2."""
    try:
        return int(main(argv) or 0)
    except InputError as err:
        print(f"vgsalign {name}: error: {err}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    """The top-level parser: it lists the steps; each step parses its own options."""
    from . import __version__

    top = argparse.ArgumentParser(
        prog="vgsalign",
        description="Word-object alignment scores for visually grounded speech models. The whole "
                    "pipeline runs through Snakemake (`snakemake --cores all report`); each step "
                    "below is one workflow rule and also runs by hand. `vgsalign <step> --help` "
                    "lists a step's options.",
    )
    top.add_argument("-V", "--version", action="version", version=f"vgsalign {__version__}")
    steps = top.add_subparsers(title="steps", metavar="<step>")
    for command in COMMANDS:
        steps.add_parser(command.name, help=command.help, aliases=list(command.aliases), add_help=False)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser().print_help()
        return 0
    command = find_command(argv[0])
    if command is None:
        try:
            parser().parse_args(argv[:1])   # --help, --version, or argparse's own "invalid choice" line
        except SystemExit as stop:
            return int(stop.code or 0)
        return 1
    from . import runtime

    runtime.STEP = argv[0]
    module = importlib.import_module(f".{command.module}", __package__)
    return run_main(argv[0], module.main, [*command.prefix, *argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
