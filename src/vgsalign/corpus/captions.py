"""What every speech reader returns: utterances with timed words, and the checks they share.

A reader (SPEECH-COCO, SpokenCOCO) turns one caption file into an `Utterance`; a caption
that cannot be used for the test set (no words, words that disagree with its text, an
image outside the instances file) is a counted *drop*; a file that is broken (unreadable,
times out of order, words past the audio) is an InputError, which `dataset.on_error: skip`
turns into a *reject* (file, problem) instead of stopping the stage.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import soundfile

from ..errors import InputError

# seconds by which word times may exceed the audio (rounding of ms times, resampling)
DURATION_TOLERANCE_S = 0.05
# spoken fillers SPEECH-COCO inserts ("Um, ah. Two wild turkeys ..."): never test words
DISFLUENCIES = frozenset({"um", "uh", "er", "erm", "ah", "hmm", "mm"})


class Word(NamedTuple):
    # a tuple: a split has millions of words
    word: str
    onset_s: float
    offset_s: float


@dataclass
class Utterance:
    utt_id: str
    image_id: int
    wav: str
    duration_s: float
    text: str
    speaker: str
    source_file: str
    words: list[Word] = field(default_factory=list)
    image_split: str = ""  # the COCO split whose instances file lists the image


@dataclass
class ReadResult:
    utterances: list[Utterance] = field(default_factory=list)
    drops: list[tuple[str, str]] = field(default_factory=list)    # (file, reason): usable file, not a test caption
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (file, problem): broken file, skipped


# a corpus has a vocabulary of tens of thousands of tokens, each seen many times: cached
@lru_cache(maxsize=1 << 17)
def normalise_token(token: str) -> str:
    return re.sub(r"[^a-z0-9'<>]", "", token.lower())


@lru_cache(maxsize=1 << 17)
def is_spoken_word(token: str) -> bool:
    """A token that can become a test word: not punctuation, not a disfluency."""
    norm = normalise_token(token)
    return bool(re.search(r"[a-z0-9]", norm)) and norm not in DISFLUENCIES


def words_match_text(words: list[str], text: str) -> bool:
    """Do the aligned words spell the caption text (case, punctuation and disfluencies ignored)?

    `<unk>` (an aligner's out-of-dictionary word) matches any one text token.
    """
    said = [normalise_token(w) for w in words if is_spoken_word(w) or normalise_token(w) == "<unk>"]
    written = [normalise_token(w) for w in text.split() if is_spoken_word(w)]
    if len(said) == len(written):
        return all(s == w or s == "<unk>" for s, w in zip(said, written))
    # the aligner may split or join tokens differently (hyphens, clitics): compare the letters
    return "".join(said) == "".join(written)


# bytes read to find the header of a plain PCM wav (RIFF, fmt and data chunk headers)
WAV_HEADER_BYTES = 512


def pcm_wav_frames(path: Path) -> tuple[int, int] | None:
    """(frames, sample rate) of a plain PCM wav, from its header; None for any other layout.

    Plain: RIFF/WAVE whose RIFF size is the file's, a 16-byte PCM `fmt ` chunk with a
    consistent block size, optional LIST chunks, and a `data` chunk of whole frames that ends
    the file. libsndfile reads such a file's frames as data bytes / block size; the caller
    asks libsndfile itself about every other file (extensible or float formats, odd sizes,
    truncated files), so both give the same duration. Opening the file through libsndfile
    costs several times this header read, which matters at a few hundred thousand wavs.
    """
    with open(path, "rb") as fh:
        head = fh.read(WAV_HEADER_BYTES)
        size = os.fstat(fh.fileno()).st_size
    if len(head) < 44 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    if struct.unpack_from("<I", head, 4)[0] + 8 != size:
        return None
    position, rate, block = 12, None, None
    while position + 8 <= len(head):
        chunk, length = head[position:position + 4], struct.unpack_from("<I", head, position + 4)[0]
        body = position + 8
        if chunk == b"fmt ":
            if length != 16 or body + 16 > len(head):
                return None
            tag, channels, rate, byte_rate, block, bits = struct.unpack_from("<HHIIHH", head, body)
            if tag != 1 or channels < 1 or rate < 1 or bits not in (8, 16, 24, 32) or block != channels * bits // 8 \
                    or byte_rate != rate * block:
                return None
        elif chunk == b"data":
            if rate is None or body + length != size or length % block:
                return None
            return length // block, rate
        elif chunk != b"LIST":
            return None
        position = body + length + (length & 1)
    return None


def wav_duration(path: Path, caption_file: Path | str) -> float:
    """Seconds of audio in a wav, from its header; a missing or unreadable wav is an InputError."""
    if not path.is_file():
        raise InputError(caption_file, f"its wav {path} does not exist")
    try:
        plain = pcm_wav_frames(path)
    except OSError as err:
        raise InputError(path, f"unreadable wav ({err})") from None
    if plain is not None:
        frames, samplerate = plain
    else:
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, soundfile.LibsndfileError) as err:
            raise InputError(path, f"unreadable wav ({err})") from None
        frames, samplerate = info.frames, info.samplerate
    if samplerate <= 0 or frames <= 0:
        raise InputError(path, "wav holds no audio")
    return frames / samplerate


def check_word_times(words: list[Word], duration_s: float, where: Path | str) -> None:
    """Finite, non-negative, ordered onsets; each word ends after it starts and within the audio."""
    previous_onset = -math.inf
    for index, w in enumerate(words):
        if not (math.isfinite(w.onset_s) and math.isfinite(w.offset_s)):
            raise InputError(where, f"word {index} {w.word!r} has a non-finite time")
        if w.onset_s < 0:
            raise InputError(where, f"word {index} {w.word!r} has a negative onset {w.onset_s}")
        if w.onset_s < previous_onset:
            raise InputError(where, f"word {index} {w.word!r} starts at {w.onset_s} s, before the previous word")
        if w.offset_s <= w.onset_s:
            raise InputError(where, f"word {index} {w.word!r} ends at {w.offset_s} s, not after its onset {w.onset_s} s")
        if w.offset_s > duration_s + DURATION_TOLERANCE_S:
            raise InputError(where, f"word {index} {w.word!r} ends at {w.offset_s} s, after the audio's end ({duration_s:.3f} s)")
        previous_onset = w.onset_s


def drop_reason(utt: Utterance, image_ids: set[int]) -> str | None:
    """Why the utterance is not a test caption, or None (a caption without text is not checked against it)."""
    if not utt.words:
        return "no words in the alignment"
    if utt.text and not words_match_text([w.word for w in utt.words], utt.text):
        return "aligned words disagree with the caption text"
    if utt.image_id not in image_ids:
        return f"image {utt.image_id} is not in the instances file"
    return None


def keep_or_drop(utt: Utterance, image_ids: set[int], result: ReadResult) -> bool:
    """Whether the utterance is a test caption (the readers yield it); if not, why not is
    recorded in `result.drops`."""
    reason = drop_reason(utt, image_ids)
    if reason is not None:
        result.drops.append((utt.source_file, reason))
    return reason is None


def read_or_reject(read, source: str, on_error: str, result: ReadResult):
    """Call `read()`; a broken file (InputError) stops the stage, or with on_error skip is a reject."""
    try:
        return read()
    except InputError as err:
        if on_error != "skip":
            raise
        result.rejects.append((err.where or source, err.problem))
        return None
