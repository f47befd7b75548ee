"""Word times from Praat TextGrid files, as the Montreal Forced Aligner writes them.

MFA writes one TextGrid per utterance with a `words` tier (and a `phones` tier); empty
intervals are silence. Its output mirrors its input corpus, one folder per speaker:
`<alignments_root>/<speaker>/<utterance>.TextGrid` (vgsalign.corpus.mfa writes the input
that way). Other layouts seen in the wild (the corpus's own folders, or flat) are also found.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .captions import Word

# word-tier labels that are silences or noise markers, not words
SILENCES = frozenset({"", "sil", "sp", "spn", "<eps>"})


def textgrid_candidates(alignments_root: Path, wav_rel: str, speaker: str) -> list[Path]:
    """Where an utterance's TextGrid may be: per speaker (MFA), mirroring the corpus, or flat."""
    rel = Path(wav_rel)
    stem = rel.stem
    tail = Path(*rel.parts[1:]) if len(rel.parts) > 1 else rel  # without the leading `wavs/`
    return [
        alignments_root / speaker / f"{stem}.TextGrid",
        alignments_root / rel.with_suffix(".TextGrid"),
        alignments_root / tail.with_suffix(".TextGrid"),
        alignments_root / f"{stem}.TextGrid",
    ]


def find_textgrid(alignments_root: Path, wav_rel: str, speaker: str) -> Path | None:
    return next((p for p in textgrid_candidates(alignments_root, wav_rel, speaker) if p.is_file()), None)


def words_from_textgrid(path: Path) -> list[Word]:
    """The non-silent intervals of the `words` tier (any case), in order."""
    import textgrids

    try:
        grid = textgrids.TextGrid(str(path))
    except Exception as err:  # the library raises several types on bad files
        raise InputError(path, f"unreadable TextGrid ({type(err).__name__}: {err})") from None
    tier_name = next((name for name in grid if name.lower() == "words"), None)
    if tier_name is None:
        raise InputError(path, f"no `words` tier (tiers: {list(grid)})")
    words = []
    for interval in grid[tier_name]:
        text = str(interval.text).strip()
        if text.lower() in SILENCES:
            continue
        words.append(Word(word=text, onset_s=float(interval.xmin), offset_s=float(interval.xmax)))
    return words
