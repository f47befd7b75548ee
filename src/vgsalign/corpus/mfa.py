"""Step `alignments-corpus`: a SpokenCOCO split as the Montreal Forced Aligner's input corpus.

MFA reads one folder per speaker, each utterance a sound file and a `.lab` transcript of
the same name, and writes its TextGrids in the same layout:

    <out>/<speaker>/<uttid>.wav   (a symbolic link to the SpokenCOCO wav)
    <out>/<speaker>/<uttid>.lab   (the caption text, one line)

so `mfa align <out> english_us_arpa english_us_arpa <textgrids>` gives
`<textgrids>/<speaker>/<uttid>.TextGrid`, where vgsalign.corpus.textgrid looks first
(docs/real-data.md). The wavs are linked, not copied (SpokenCOCO's are ~70 GB); copy the
folder with `rsync -L` to align it on another machine. The folder is written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..atomic import write_json
from ..errors import InputError
from ..runtime import progress
from .spokencoco import index_captions, spokencoco_index, utterance_id

MANIFEST = "vgsalign_mfa_corpus.json"


def speaker_folder(speaker: str) -> str:
    """A folder name for a speaker id (SpokenCOCO's are alphanumeric already)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", speaker.strip())
    return name or "unknown_speaker"


def transcript(text: str) -> str:
    """The caption as one line; MFA itself lower-cases and strips punctuation."""
    return " ".join(str(text).split()) + "\n"


def write_mfa_corpus(speech_root: Path, split: str, out: Path) -> dict:
    """Write the split's MFA input corpus at `out` (replacing an earlier one); return its manifest."""
    index_path = spokencoco_index(speech_root, split)
    captions = list(index_captions(index_path))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        speakers: set[str] = set()
        for _, _, caption in progress(captions, desc="mfa corpus", unit="utterance"):
            wav = (speech_root / str(caption["wav"])).resolve()
            if not wav.is_file():
                raise InputError(index_path, f"the wav {wav} of {utterance_id(caption)!r} does not exist")
            folder = staging / speaker_folder(str(caption.get("speaker", "")))
            folder.mkdir(exist_ok=True)
            stem = Path(str(caption["wav"])).stem  # MFA names its TextGrid after the sound file
            (folder / f"{stem}.wav").symlink_to(wav)
            (folder / f"{stem}.lab").write_text(transcript(caption.get("text", "")))
            speakers.add(folder.name)
        manifest = {"index": str(index_path), "split": split, "utterances": len(captions), "speakers": len(speakers)}
        write_json(manifest, staging / MANIFEST)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign alignments-corpus",
                                     description="Write a SpokenCOCO split as the Montreal Forced Aligner's input corpus.")
    parser.add_argument("--speech-root", required=True, type=Path, help="holds SpokenCOCO_<split>.json and wavs/")
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True, type=Path, help="the corpus folder (one folder per speaker)")
    args = parser.parse_args(argv)
    manifest = write_mfa_corpus(args.speech_root, args.split, args.out)
    print(f"{args.out}: {manifest['utterances']} utterances of {manifest['speakers']} speakers")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("alignments-corpus", main))
