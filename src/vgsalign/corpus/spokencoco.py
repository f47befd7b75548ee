"""SpokenCOCO (Hsu et al. 2021) with word times from forced alignments.

    <speech_root>/SpokenCOCO_train.json   <speech_root>/SpokenCOCO_val.json   <speech_root>/wavs/...

An index holds the Karpathy split: {"data": [{"image": "val2014/COCO_val2014_<id>.jpg",
"captions": [{"text", "speaker", "uttid", "wav": "wavs/val/0/<uttid>.wav"}]}]}. The train
index also holds the "restval" images, which come from val2014: each image's COCO split is
taken from its path, so its annotations are looked up in that split's instances file.
The index has no word times: they come from Montreal Forced Aligner TextGrids under
`alignments_root` (vgsalign.corpus.textgrid).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Iterator

from ..errors import InputError
from ..runtime import progress
from .captions import ReadResult, Utterance, check_word_times, is_spoken_word, keep_or_drop, read_or_reject, wav_duration
from .textgrid import find_textgrid, words_from_textgrid


def spokencoco_index(speech_root: Path, split: str) -> Path:
    """SpokenCOCO_<split>.json, or the split without its year (val2014 -> SpokenCOCO_val.json)."""
    for name in (split, re.sub(r"\d{4}$", "", split)):
        candidate = speech_root / f"SpokenCOCO_{name}.json"
        if candidate.is_file():
            return candidate
    raise InputError(speech_root / f"SpokenCOCO_{split}.json", "SpokenCOCO caption index not found")


def image_of(entry_image: str, index_path: Path) -> tuple[int, str]:
    """(COCO image id, COCO split) of an index entry such as `val2014/COCO_val2014_000000000042.jpg`."""
    match = re.search(r"COCO_([A-Za-z]+\d{4})_0*(\d+)\.\w+$", entry_image)
    if match is None:
        raise InputError(index_path, f"image entry {entry_image!r} is not a COCO image path")
    folder = Path(entry_image).parent.name
    return int(match.group(2)), folder or match.group(1)


def load_index(index_path: Path) -> list[dict]:
    try:
        data = json.loads(index_path.read_text())["data"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(index_path, f"not a SpokenCOCO index with a `data` list ({err})") from None
    if not isinstance(data, list):
        raise InputError(index_path, "`data` is not a list")
    return data


def index_captions(index_path: Path) -> Iterator[tuple[int, str, dict]]:
    """(image id, COCO split, caption entry) of every caption of an index, in order."""
    for item in load_index(index_path):
        image_id, image_split = image_of(str(item.get("image", "")), index_path)
        for caption in item.get("captions", []):
            if "wav" not in caption:
                raise InputError(index_path, f"a caption of image {image_id} has no `wav`")
            yield image_id, image_split, caption


def utterance_id(caption: dict) -> str:
    return str(caption.get("uttid") or Path(str(caption["wav"])).stem)


def read_caption(speech_root: Path, alignments_root: Path, index_path: Path, image_id: int, image_split: str,
                 caption: dict) -> Utterance | str:
    """The utterance with its aligned words, or the path of the wav when it has no TextGrid."""
    wav_rel, speaker = str(caption["wav"]), str(caption.get("speaker", ""))
    wav = speech_root / wav_rel
    audio_s = wav_duration(wav, index_path)
    grid = find_textgrid(alignments_root, wav_rel, speaker)
    if grid is None:
        return str(wav)
    words = [w for w in words_from_textgrid(grid) if is_spoken_word(w.word)]
    check_word_times(words, audio_s, grid)
    return Utterance(
        utt_id=utterance_id(caption), image_id=image_id, wav=str(wav), duration_s=audio_s,
        text=str(caption.get("text", "")), speaker=speaker, source_file=str(grid), words=words,
        image_split=image_split,
    )


def iter_spokencoco(speech_root: Path, alignments_root: Path, split: str, image_ids: Callable[[str], set[int]], *,
                    on_error: str, result: ReadResult) -> Iterator[Utterance]:
    """The kept utterances of the split's index, one at a time, in index order;
    `image_ids(coco_split)` gives the ids of a COCO split; drops and rejects go to `result`."""
    index_path = spokencoco_index(speech_root, split)
    captions = list(index_captions(index_path))
    seen = set()
    for image_id, image_split, caption in progress(captions, desc="captions", unit="caption"):
        utt_id = utterance_id(caption)
        if utt_id in seen:
            raise InputError(index_path, f"utterance id {utt_id!r} occurs twice")
        seen.add(utt_id)
        utt = read_or_reject(lambda: read_caption(speech_root, alignments_root, index_path, image_id, image_split,
                                                  caption), str(speech_root / str(caption["wav"])), on_error, result)
        if isinstance(utt, str):
            result.drops.append((utt, "no TextGrid alignment"))
        elif utt is not None and keep_or_drop(utt, image_ids(image_split), result):
            yield utt


def read_spokencoco(speech_root: Path, alignments_root: Path, split: str,
                    image_ids: Callable[[str], set[int]], *, on_error: str) -> ReadResult:
    """Every caption of the split's index; `image_ids(coco_split)` gives the ids of a COCO split."""
    result = ReadResult()
    result.utterances.extend(iter_spokencoco(speech_root, alignments_root, split, image_ids, on_error=on_error,
                                             result=result))
    return result
