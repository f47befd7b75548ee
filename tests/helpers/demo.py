"""Tiny demo corpora for tests (a few seconds to make).

    from tests.helpers.demo import make_tiny_corpus, tiny_corpus  # tiny_corpus is a pytest fixture

`make_tiny_corpus(root)` writes one split under `root` (the corpus folder: `root/coco`,
`root/speech`, `root/ground_truth`, `root/manifest_<split>.json`) and returns a TinyCorpus
with the paths the readers need. Shares are raised above the config defaults so that even
8 images contain an unannotated image, crowd instances and RLE masks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from vgsalign.demo.corpus import generate_split

# the demo keys that differ from the schema's defaults (the rest are taken from it)
TINY = dict(n_images=8, captions_per_image=2, unannotated_share=0.125, crowd_share=0.2, rle_share=0.3)


@dataclass
class TinyCorpus:
    root: Path            # corpus folder
    split: str
    coco_root: Path       # holds images/<split>/ and annotations/instances_<split>.json
    speech_root: Path     # holds <split>/json and <split>/wav
    instances: Path
    truth: dict           # ground_truth/<split>.json, loaded
    manifest: dict        # manifest_<split>.json, loaded


def make_tiny_corpus(root: str | Path, split: str = "val2014", threads: int = 1, **overrides) -> TinyCorpus:
    """Generate a tiny split (8 images x 2 captions by default; override any TINY key)."""
    root = Path(root)
    manifest = generate_split(root, split, threads=threads, **{**TINY, **overrides})
    return TinyCorpus(
        root=root, split=split, coco_root=root / "coco", speech_root=root / "speech",
        instances=root / "coco/annotations" / f"instances_{split}.json",
        truth=json.loads((root / "ground_truth" / f"{split}.json").read_text()),
        manifest=manifest,
    )


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> TinyCorpus:
    """One tiny corpus per test session (treat as read-only)."""
    return make_tiny_corpus(tmp_path_factory.mktemp("demo_corpus"))
