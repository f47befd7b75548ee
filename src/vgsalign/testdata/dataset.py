"""Utterance and word index of one split: who said which word when, about which image.

Readers:
- SPEECH-COCO (and the built-in demo corpus, same layout): `<speech_root>/<split>/json/*.json`
  with `timecode` entries `[time_ms, kind, label]` and `<speech_root>/<split>/wav/<wavFilename>`.
  WORD entries carry onsets only. A word ends where the next entry that is not a syllable or
  phoneme (`SYL`, `PHO`) starts: the next WORD, SIL, SEPR, ... The last word ends at the
  next such entry or, when none follows, at the caption's end (`duration`). The original
  code ended every word "onset + 2 frames" after its onset; we use the timecode itself.
- SpokenCOCO: `<speech_root>/SpokenCOCO_<split>.json` (or the split without its year,
  e.g. `SpokenCOCO_val.json` for `val2014`) with word alignments from Praat TextGrid files
  (Montreal Forced Aligner output, tier `words`) under `alignments_root`, read with
  `praat-textgrids`.
- MSCOCO `instances_<split>.json` through pycocotools, for the image ids.

Broken files (no timecode, unreadable JSON or wav, negative or unordered times, words past
the end of the audio) stop the stage with an error naming the file. Captions whose word
list disagrees with their text, whose image is not in the instances file, or (SpokenCOCO)
that have no TextGrid, are dropped, counted and listed in `reports/dataset.json`.

Outputs: `utterances.csv`, `words.csv` (formats in docs/formats.md), `reports/dataset.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import soundfile
from tqdm import tqdm

from ..atomic import write_csv, write_json
from ..errors import InputError
from ..corpus.coco import open_coco

# timecode kinds inside a word: they do not end it
WITHIN_WORD_KINDS = frozenset({"SYL", "PHO"})
# seconds by which the timecode may exceed the audio (rounding of ms times, resampling)
DURATION_TOLERANCE_S = 0.05
# TextGrid word-tier labels that are silences, not words
TEXTGRID_SILENCES = frozenset({"", "sil", "sp", "<eps>"})


@dataclass
class Word:
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


@dataclass
class ReadResult:
    utterances: list[Utterance] = field(default_factory=list)
    # (file, reason) per dropped caption
    drops: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- shared checks

def _normalise_token(token: str) -> str:
    return re.sub(r"[^a-z0-9'<>]", "", token.lower())


def words_match_text(words: list[str], text: str) -> bool:
    """Do the aligned words spell the caption text (case and punctuation ignored)?

    `<unk>` (an aligner's out-of-dictionary word) matches any one text token.
    """
    said = [t for t in (_normalise_token(w) for w in words) if t]
    written = [t for t in (_normalise_token(w) for w in text.split()) if t]
    if len(said) == len(written):
        return all(s == w or s == "<unk>" for s, w in zip(said, written))
    # the timecode may split or join tokens differently (hyphens, clitics): compare the letters
    return "".join(said) == "".join(written)


def wav_duration(path: Path, caption_file: Path) -> float:
    if not path.is_file():
        raise InputError(caption_file, f"its wav {path} does not exist")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise InputError(path, f"unreadable wav ({err})") from None
    if info.samplerate <= 0 or info.frames <= 0:
        raise InputError(path, "wav holds no audio")
    return info.frames / info.samplerate


def check_word_times(words: list[Word], duration_s: float, where: Path) -> None:
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


# --------------------------------------------------------------------------- SPEECH-COCO

def words_from_timecode(timecode: list, caption_end_s: float, where: Path) -> list[Word]:
    """Words with onset and offset (s) from SPEECH-COCO timecode entries `[time_ms, kind, label]`."""
    if not isinstance(timecode, list):
        raise InputError(where, "`timecode` is not a list")
    entries = []
    previous = -math.inf
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
    words = []
    for position, (onset, kind, label) in enumerate(entries):
        if kind != "WORD":
            continue
        offset = next(
            (t for t, k, _ in entries[position + 1:] if k not in WITHIN_WORD_KINDS),
            caption_end_s,
        )
        words.append(Word(word=label.strip(), onset_s=onset, offset_s=offset))
    return words


def read_speechcoco_caption(json_path: Path, wav_dir: Path) -> Utterance:
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(json_path, f"unreadable caption JSON ({err})") from None
    if not isinstance(meta, dict):
        raise InputError(json_path, "expected a JSON object")
    for key in ("timecode", "imgID", "wavFilename", "duration"):
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
        utt_id=json_path.stem, image_id=image_id, wav=str(wav), duration_s=audio_s,
        text=str(meta.get("synthesisedCaption", "")), speaker=str(meta.get("speaker", "")),
        source_file=str(json_path), words=words,
    )


def read_speechcoco(speech_root: Path, split: str, image_ids: set[int]) -> ReadResult:
    json_dir, wav_dir = speech_root / split / "json", speech_root / split / "wav"
    if not json_dir.is_dir():
        raise InputError(json_dir, "caption JSON folder not found")
    files = sorted(json_dir.glob("*.json"))
    if not files:
        raise InputError(json_dir, "no caption JSON files")
    result = ReadResult()
    for path in tqdm(files, desc="captions", mininterval=1):
        utt = read_speechcoco_caption(path, wav_dir)
        _keep_or_drop(utt, image_ids, result)
    return result


def _keep_or_drop(utt: Utterance, image_ids: set[int], result: ReadResult) -> None:
    """Keep the utterance, or record why not (a caption without text is not checked against it)."""
    if not utt.words:
        result.drops.append((utt.source_file, "no words in the timecode"))
    elif utt.text and not words_match_text([w.word for w in utt.words], utt.text):
        result.drops.append((utt.source_file, "aligned words disagree with the caption text"))
    elif utt.image_id not in image_ids:
        result.drops.append((utt.source_file, f"image {utt.image_id} is not in the instances file"))
    else:
        result.utterances.append(utt)


# --------------------------------------------------------------------------- SpokenCOCO

def spokencoco_index(speech_root: Path, split: str) -> Path:
    for name in (split, re.sub(r"\d{4}$", "", split)):
        candidate = speech_root / f"SpokenCOCO_{name}.json"
        if candidate.is_file():
            return candidate
    raise InputError(speech_root / f"SpokenCOCO_{split}.json", "SpokenCOCO caption index not found")


def textgrid_candidates(alignments_root: Path, wav_rel: str, speaker: str) -> list[Path]:
    """Where MFA puts an utterance's TextGrid: mirroring the corpus folders, or flat, or per speaker."""
    rel = Path(wav_rel)
    stem = rel.stem
    tail = Path(*rel.parts[1:]) if len(rel.parts) > 1 else rel  # without the leading `wavs/`
    return [
        alignments_root / rel.with_suffix(".TextGrid"),
        alignments_root / tail.with_suffix(".TextGrid"),
        alignments_root / speaker / f"{stem}.TextGrid",
        alignments_root / f"{stem}.TextGrid",
    ]


def words_from_textgrid(path: Path) -> list[Word]:
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
        if text.lower() in TEXTGRID_SILENCES:
            continue
        words.append(Word(word=text, onset_s=float(interval.xmin), offset_s=float(interval.xmax)))
    return words


def read_spokencoco(speech_root: Path, alignments_root: Path, split: str, image_ids: set[int]) -> ReadResult:
    index_path = spokencoco_index(speech_root, split)
    try:
        data = json.loads(index_path.read_text())["data"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(index_path, f"not a SpokenCOCO index with a `data` list ({err})") from None
    result = ReadResult()
    seen = set()
    for item in tqdm(data, desc="images", mininterval=1):
        match = re.search(r"(\d+)\.\w+$", str(item.get("image", "")))
        if match is None:
            raise InputError(index_path, f"image entry {item.get('image')!r} has no COCO id")
        image_id = int(match.group(1))
        for caption in item.get("captions", []):
            wav_rel = str(caption["wav"])
            wav = speech_root / wav_rel
            utt_id = str(caption.get("uttid") or Path(wav_rel).stem)
            if utt_id in seen:
                raise InputError(index_path, f"utterance id {utt_id!r} occurs twice")
            seen.add(utt_id)
            audio_s = wav_duration(wav, index_path)
            grid = next((p for p in textgrid_candidates(alignments_root, wav_rel, str(caption.get("speaker", "")))
                         if p.is_file()), None)
            if grid is None:
                result.drops.append((str(wav), "no TextGrid alignment"))
                continue
            words = words_from_textgrid(grid)
            check_word_times(words, audio_s, grid)
            utt = Utterance(
                utt_id=utt_id, image_id=image_id, wav=str(wav), duration_s=audio_s,
                text=str(caption.get("text", "")), speaker=str(caption.get("speaker", "")),
                source_file=str(grid), words=words,
            )
            _keep_or_drop(utt, image_ids, result)
    return result


# --------------------------------------------------------------------------- COCO

def coco_image_ids(instances_json: Path) -> set[int]:
    coco = open_coco(instances_json)
    return {int(i) for i in coco.getImgIds()}


# --------------------------------------------------------------------------- tables

def tables(result: ReadResult, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [u.utt_id for u in result.utterances]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise InputError(duplicate, "utterance id occurs twice in the corpus")
    utterances = pd.DataFrame(
        [
            {"utt_id": u.utt_id, "image_id": u.image_id, "split": split, "wav": u.wav,
             "duration_s": u.duration_s, "n_words": len(u.words), "speaker": u.speaker, "text": u.text}
            for u in result.utterances
        ],
        columns=["utt_id", "image_id", "split", "wav", "duration_s", "n_words", "speaker", "text"],
    )
    words = pd.DataFrame(
        [
            {"utt_id": u.utt_id, "image_id": u.image_id, "wav": u.wav, "word_index": i,
             "word": w.word, "onset_s": w.onset_s, "offset_s": w.offset_s}
            for u in result.utterances for i, w in enumerate(u.words)
        ],
        columns=["utt_id", "image_id", "wav", "word_index", "word", "onset_s", "offset_s"],
    )
    return utterances, words


def build(source: str, speech_root: Path, alignments_root: Path | None, instances_json: Path,
          split: str, out_dir: Path, report_path: Path) -> dict:
    image_ids = coco_image_ids(instances_json)
    if source in ("demo", "speechcoco"):
        result = read_speechcoco(speech_root, split, image_ids)
    elif source == "spokencoco":
        if alignments_root is None:
            raise InputError("dataset.alignments_root", "required for SpokenCOCO")
        result = read_spokencoco(speech_root, alignments_root, split, image_ids)
    else:
        raise InputError("dataset.source", f"unknown source {source!r}")
    utterances, words = tables(result, split)
    write_csv(words, out_dir / "words.csv")
    write_csv(utterances, out_dir / "utterances.csv")
    reasons: dict[str, int] = {}
    for _, reason in result.drops:
        key = re.sub(r"image \d+ ", "image ", reason)
        reasons[key] = reasons.get(key, 0) + 1
    report = {
        "source": source, "split": split,
        "captions_read": len(result.utterances) + len(result.drops),
        "utterances": len(utterances), "words": len(words), "images": int(utterances["image_id"].nunique()),
        "captions_dropped": len(result.drops), "drop_reasons": reasons,
        "dropped": [{"file": f, "reason": r} for f, r in result.drops],
    }
    write_json(report, report_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign dataset", description="Index the utterances and words of a split.")
    parser.add_argument("--source", choices=["demo", "speechcoco", "spokencoco"], required=True)
    parser.add_argument("--speech-root", required=True, type=Path)
    parser.add_argument("--alignments-root", type=Path, default=None, help="SpokenCOCO: TextGrid folder")
    parser.add_argument("--instances", required=True, type=Path, help="instances_<split>.json")
    parser.add_argument("--split", required=True)
    parser.add_argument("--out-dir", required=True, type=Path, help="writes utterances.csv and words.csv here")
    parser.add_argument("--report", required=True, type=Path)
    args = parser.parse_args(argv)
    report = build(args.source, args.speech_root, args.alignments_root, args.instances, args.split,
                   args.out_dir, args.report)
    print(f"{report['utterances']} utterances, {report['words']} words; {report['captions_dropped']} captions dropped "
          f"{report['drop_reasons']}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("dataset", main))
