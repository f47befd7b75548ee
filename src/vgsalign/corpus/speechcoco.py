"""SPEECH-COCO as distributed (and the built-in demo corpus, which copies its layout).

    <speech_root>/<split>/json/<stem>.json     <speech_root>/<split>/wav/<stem>.wav
    <stem> = imageID_captionID_Speaker_DisfluencyPosition_Speed, e.g. 298817_26763_Phil_None_0-9

A caption JSON holds `duration`, `speaker`, `synthesisedCaption` (with disfluencies such as
"um" and punctuation), `timecode`, `speed`, `wavFilename`, `captionID`, `imgID`,
`disfluency`. `timecode` is a list of `[time_ms, kind, label]` with kind SYL, SEPR, WORD or
PHO; at a word's start its entries come SYL, SEPR, WORD, then its phonemes, all at the same
time. WORD entries carry onsets only: a word ends where the next entry that is not a
syllable or phoneme starts (the next word's SEPR, a closing SEPR, a SIL) or, when none
follows, at the caption's `duration`. Disfluencies and punctuation are timed like words in
the timecode but never become words here (the next word's onset still ends the word before).
"""

from __future__ import annotations

import json
import math
import operator
import os
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InputError
from ..runtime import progress
from .captions import (DURATION_TOLERANCE_S, ReadResult, Utterance, Word, check_word_times, is_spoken_word,
                       keep_or_drop, read_or_reject, wav_duration)

# timecode kinds inside a word: they do not end it
WITHIN_WORD_KINDS = frozenset({"SYL", "PHO"})
REQUIRED_KEYS = ("timecode", "imgID", "wavFilename", "duration")


def timecode_entries(timecode: list, where: Path | str) -> list[tuple[float, str, str]]:
    """(seconds, KIND, label) per entry, checked: well-formed, finite, non-negative, in order."""
    if not isinstance(timecode, list):
        raise InputError(where, "`timecode` is not a list")
    entries, previous = [], -math.inf
    for position, entry in enumerate(timecode):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3):
            raise InputError(where, f"timecode entry {position} is not [time_ms, kind, label]: {entry!r}")
        time_ms, kind, label = entry
        if isinstance(time_ms, bool) or not isinstance(time_ms, (int, float)) or not math.isfinite(time_ms):
            raise InputError(where, f"timecode entry {position} has no valid time: {entry!r}")
        if time_ms < 0:
            raise InputError(where, f"timecode entry {position} has a negative time {time_ms} ms")
        if time_ms < previous:
            raise InputError(where, f"timecode entry {position} at {time_ms} ms comes before the previous one ({previous} ms)")
        previous = time_ms
        entries.append((float(time_ms) / 1000.0, str(kind).upper(), str(label)))
    return entries


def well_formed_timecode(timecode: list) -> tuple[list[float], list[str], tuple] | None:
    """(seconds, KINDS, labels) of a timecode that passes every check of `timecode_entries`,
    found with whole-list operations; None when any entry might fail one (the caller then
    runs `timecode_entries`, which names the problem). A few hundred entries per caption at a
    few hundred thousand captions: the per-entry checks in Python cost more than the rest of
    the reading."""
    if type(timecode) is not list or not timecode or not set(map(type, timecode)) <= {list, tuple} \
            or set(map(len, timecode)) != {3}:
        return None
    times, kinds, labels = zip(*timecode)
    if not set(map(type, times)) <= {int, float} or not set(map(type, kinds)) <= {str}:
        return None
    try:
        if not all(map(math.isfinite, times)):
            return None
    except OverflowError:       # an integer too large for a float
        return None
    if min(times) < 0 or not all(map(operator.le, times, times[1:])):
        return None
    return [float(t) / 1000.0 for t in times], list(map(str.upper, kinds)), labels


def words_from_timecode(timecode: list, caption_end_s: float, where: Path | str) -> list[Word]:
    """Spoken words with onset and offset (s); disfluencies and punctuation are left out."""
    parsed = well_formed_timecode(timecode)
    if parsed is None:
        entries = timecode_entries(timecode, where)
        seconds, kinds, labels = zip(*entries) if entries else ((), (), ())
    else:
        seconds, kinds, labels = parsed
    # backwards: a word ends where the next entry that is not a syllable or phoneme starts
    words, next_boundary = [], caption_end_s
    for position in range(len(seconds) - 1, -1, -1):
        kind = kinds[position]
        if kind == "WORD":
            label = str(labels[position])
            if is_spoken_word(label):
                words.append(Word(word=label.strip(), onset_s=seconds[position], offset_s=next_boundary))
        if kind not in WITHIN_WORD_KINDS:
            next_boundary = seconds[position]
    words.reverse()
    return words


def caption_text(meta: dict) -> str:
    return str(meta.get("synthesisedCaption", ""))


def read_caption(json_path: Path, wav_dir: Path) -> Utterance:
    """One caption JSON and its wav; a broken file is an InputError naming it."""
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(json_path, f"unreadable caption JSON ({err})") from None
    if not isinstance(meta, dict):
        raise InputError(json_path, "expected a JSON object")
    for key in REQUIRED_KEYS:
        if key not in meta:
            raise InputError(json_path, f"no `{key}` entry")
    wav = wav_dir / str(meta["wavFilename"])
    audio_s = wav_duration(wav, json_path)
    try:
        caption_s = float(meta["duration"])
        image_id = int(meta["imgID"])
    except (TypeError, ValueError):
        raise InputError(json_path, f"`duration` {meta['duration']!r} or `imgID` {meta['imgID']!r} is not a number") from None
    if abs(caption_s - audio_s) > DURATION_TOLERANCE_S:
        raise InputError(json_path, f"`duration` is {caption_s} s but {wav.name} lasts {audio_s:.3f} s")
    words = words_from_timecode(meta["timecode"], caption_end_s=caption_s, where=json_path)
    check_word_times(words, audio_s, json_path)
    return Utterance(
        utt_id=json_path.stem, image_id=image_id, wav=str(wav), duration_s=audio_s, text=caption_text(meta),
        speaker=str(meta.get("speaker", "")), source_file=str(json_path), words=words,
    )


def caption_files(json_dir: Path) -> list[str]:
    """The caption JSON file names of a split's `json/` folder, sorted as strings (the order
    Path sorting gives within one folder, at a tenth of its cost)."""
    if not json_dir.is_dir():
        raise InputError(json_dir, "caption JSON folder not found")
    names = sorted(entry.name for entry in os.scandir(json_dir) if entry.name.endswith(".json"))
    if not names:
        raise InputError(json_dir, "no caption JSON files")
    return names


def read_files(paths: Iterable[Path], wav_dir: Path, split: str, image_ids: set[int], *, on_error: str,
               result: ReadResult) -> Iterator[Utterance]:
    """The kept utterances of these caption files, in their order; drops and rejects go to `result`."""
    for path in paths:
        utt = read_or_reject(lambda: read_caption(path, wav_dir), str(path), on_error, result)
        if utt is not None:
            utt.image_split = split
            if keep_or_drop(utt, image_ids, result):
                yield utt


def iter_speechcoco(speech_root: Path, split: str, image_ids: set[int], *, on_error: str,
                    result: ReadResult) -> Iterator[Utterance]:
    """The kept utterances of `<speech_root>/<split>/json/`, one at a time, in file order;
    drops and rejects go to `result` (its `utterances` stay empty)."""
    json_dir, wav_dir = speech_root / split / "json", speech_root / split / "wav"
    names = caption_files(json_dir)
    paths = (json_dir / name for name in progress(names, desc="captions", unit="caption"))
    yield from read_files(paths, wav_dir, split, image_ids, on_error=on_error, result=result)


def read_speechcoco(speech_root: Path, split: str, image_ids: set[int], *, on_error: str) -> ReadResult:
    """Every caption of `<speech_root>/<split>/json/`, checked against the split's image ids."""
    result = ReadResult()
    result.utterances.extend(iter_speechcoco(speech_root, split, image_ids, on_error=on_error, result=result))
    return result
