"""Step `testdata-dataset`: the utterance and word index of one split (who said which word
when, about which image).

The corpus readers live in vgsalign.corpus: SPEECH-COCO and the demo corpus
(`corpus.speechcoco`), SpokenCOCO with MFA TextGrids (`corpus.spokencoco`,
`corpus.textgrid`), MSCOCO instances files (`corpus.coco`). Image ids are checked against
the instances file of each image's COCO split (SpokenCOCO's train index holds val2014
"restval" images).

A caption whose words disagree with its text, whose image is not in the instances file,
or (SpokenCOCO) that has no TextGrid is *dropped*, counted and listed in
`reports/dataset.json`. A *broken* file (unreadable JSON or wav, no timecode, negative or
unordered times, words past the audio) stops the step with one line naming it; with
`dataset.on_error: skip` it is listed in the rejects table (file, problem) instead, and
the step fails only when more than `dataset.max_rejected_share` of the captions are rejected.

Outputs: `utterances.csv`, `words.csv` (formats in docs/formats.md), the rejects table,
`reports/dataset.json`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pandas as pd

from ..atomic import write_csv, write_json
from ..corpus.captions import ReadResult, Utterance
from ..corpus.coco import coco_image_ids, instances_path
from ..corpus.speechcoco import iter_speechcoco
from ..corpus.spokencoco import iter_spokencoco, spokencoco_index  # noqa: F401 (features.shards imports the latter from here)
from ..errors import InputError
from ..runtime import usable_cpus
from ..settings import settings_from_json
from .csv_writer import open_table

SOURCES = ("demo", "speechcoco", "spokencoco")
REJECT_COLUMNS = ["file", "problem"]
UTTERANCE_COLUMNS = ["utt_id", "image_id", "split", "wav", "duration_s", "n_words", "speaker", "text"]
WORD_COLUMNS = ["utt_id", "image_id", "wav", "word_index", "word", "onset_s", "offset_s"]
# utterances read before their rows are written (a few MB of rows)
CHUNK_UTTERANCES = 5_000


@dataclass
class DatasetSettings:
    """The part of the `dataset` config section this step reads (paths come resolved)."""

    source: str
    alignments_root: str | None
    on_error: str
    max_rejected_share: float

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise InputError("dataset.source", f"unknown source {self.source!r}; expected one of {SOURCES}")
        if self.on_error not in ("stop", "skip"):
            raise InputError("dataset.on_error", f"{self.on_error!r}: expected 'stop' or 'skip'")
        if not 0 <= self.max_rejected_share <= 1:
            raise InputError("dataset.max_rejected_share", f"{self.max_rejected_share!r}: expected a share from 0 to 1")
        if self.source == "spokencoco" and not self.alignments_root:
            raise InputError("dataset.alignments_root", "required for SpokenCOCO (the MFA TextGrid folder)")


def iter_split(settings: DatasetSettings, speech_root: Path, coco_root: Path, split: str,
               result: ReadResult, threads: int = 1) -> Iterator[Utterance]:
    """The kept captions of a split, one at a time, read with the reader of `settings.source`
    (SPEECH-COCO's over `threads` processes); drops and rejects go to `result`."""

    @lru_cache(maxsize=None)
    def image_ids(coco_split: str) -> set[int]:
        return coco_image_ids(instances_path(coco_root, coco_split))

    if settings.source in ("demo", "speechcoco"):
        return iter_speechcoco(speech_root, split, image_ids(split), on_error=settings.on_error, result=result,
                               threads=threads)
    return iter_spokencoco(speech_root, Path(settings.alignments_root), split, image_ids,
                           on_error=settings.on_error, result=result)


def read_split(settings: DatasetSettings, speech_root: Path, coco_root: Path, split: str) -> ReadResult:
    """Read every caption of a split with the reader of `settings.source`."""
    result = ReadResult()
    result.utterances.extend(iter_split(settings, speech_root, coco_root, split, result))
    return result


def table_chunk(utterances: list[Utterance], split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """utterances.csv and words.csv rows of these utterances (built column by column)."""
    utt_columns: dict[str, list] = {name: [] for name in UTTERANCE_COLUMNS}
    word_columns: dict[str, list] = {name: [] for name in WORD_COLUMNS}
    for u in utterances:
        n = len(u.words)
        for name, value in (("utt_id", u.utt_id), ("image_id", u.image_id), ("split", split), ("wav", u.wav),
                            ("duration_s", u.duration_s), ("n_words", n), ("speaker", u.speaker), ("text", u.text)):
            utt_columns[name].append(value)
        word_columns["utt_id"] += [u.utt_id] * n
        word_columns["image_id"] += [u.image_id] * n
        word_columns["wav"] += [u.wav] * n
        word_columns["word_index"] += range(n)
        word_columns["word"] += [w.word for w in u.words]
        word_columns["onset_s"] += [w.onset_s for w in u.words]
        word_columns["offset_s"] += [w.offset_s for w in u.words]
    return pd.DataFrame(utt_columns, columns=UTTERANCE_COLUMNS), pd.DataFrame(word_columns, columns=WORD_COLUMNS)


def tables(result: ReadResult, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """utterances.csv and words.csv of the kept utterances."""
    ids = [u.utt_id for u in result.utterances]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise InputError(duplicate, "utterance id occurs twice in the corpus")
    return table_chunk(result.utterances, split)


def drop_reasons(result: ReadResult) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for _, reason in result.drops:
        key = re.sub(r"image \d+ ", "image ", reason)
        reasons[key] = reasons.get(key, 0) + 1
    return reasons


def check_rejected_share(result: ReadResult, settings: DatasetSettings, rejects_path: Path,
                         kept: int | None = None) -> None:
    """Fail with one line when more captions were rejected than `dataset.max_rejected_share`
    allows; `kept`: the utterances kept, when they were not collected in `result`."""
    total = (len(result.utterances) if kept is None else kept) + len(result.drops) + len(result.rejects)
    share = len(result.rejects) / total if total else 0.0
    if share > settings.max_rejected_share:
        raise InputError(rejects_path, f"{len(result.rejects)} of {total} caption files rejected ({share:.2%}), more "
                                       f"than dataset.max_rejected_share {settings.max_rejected_share:.2%}; "
                                       f"first: {result.rejects[0][0]}: {result.rejects[0][1]}")


def build(settings: DatasetSettings, speech_root: Path, coco_root: Path, split: str, out_dir: Path,
          report_path: Path, rejects_path: Path, threads: int = 1) -> dict:
    """Read the split and write its tables, CHUNK_UTTERANCES utterances at a time (memory
    does not grow with the corpus beyond the ids and drop reasons the report needs)."""
    result = ReadResult()
    seen: dict[str, None] = {}      # utterance ids, in the order they first occur
    repeated: set[str] = set()
    images: set[int] = set()
    n_utterances, n_words = 0, 0
    with open_table(out_dir / "words.csv", WORD_COLUMNS) as words_out, \
            open_table(out_dir / "utterances.csv", UTTERANCE_COLUMNS) as utterances_out:
        def flush(batch: list[Utterance]) -> None:
            utterances, words = table_chunk(batch, split)
            words_out.write(words)
            utterances_out.write(utterances)

        batch: list[Utterance] = []
        for utt in iter_split(settings, speech_root, coco_root, split, result, threads):
            if utt.utt_id in seen:
                repeated.add(utt.utt_id)
            seen[utt.utt_id] = None
            images.add(utt.image_id)
            n_utterances += 1
            n_words += len(utt.words)
            batch.append(utt)
            if len(batch) == CHUNK_UTTERANCES:
                flush(batch)
                batch = []
        flush(batch)
        # the rejects table first: when too many files are broken, it says which
        write_csv(pd.DataFrame(result.rejects, columns=REJECT_COLUMNS), rejects_path)
        check_rejected_share(result, settings, rejects_path, kept=n_utterances)
        if repeated:        # the first in corpus order, as `tables` names it
            raise InputError(next(u for u in seen if u in repeated), "utterance id occurs twice in the corpus")
    report = {
        "source": settings.source, "split": split, "on_error": settings.on_error,
        "captions_read": n_utterances + len(result.drops),
        "utterances": n_utterances, "words": n_words, "images": len(images),
        "captions_dropped": len(result.drops), "drop_reasons": drop_reasons(result),
        "captions_rejected": len(result.rejects), "rejects": str(rejects_path),
        "dropped": [{"file": f, "reason": r} for f, r in result.drops],
    }
    write_json(report, report_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign testdata-dataset", description="Index the utterances and words of a split.")
    parser.add_argument("--dataset", required=True,
                        help="the dataset config slice as JSON (source, alignments_root, on_error, max_rejected_share)")
    parser.add_argument("--speech-root", required=True, type=Path)
    parser.add_argument("--coco-root", required=True, type=Path, help="holds annotations/instances_<split>.json")
    parser.add_argument("--split", required=True)
    parser.add_argument("--out-dir", required=True, type=Path, help="writes utterances.csv and words.csv here")
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--rejects", required=True, type=Path, help="rejects table (file, problem) of skipped files")
    parser.add_argument("--threads", type=int, default=1, help="processes reading SPEECH-COCO caption files (default 1)")
    args = parser.parse_args(argv)
    settings = settings_from_json(DatasetSettings, args.dataset, where="--dataset", section="dataset")
    report = build(settings, args.speech_root, args.coco_root, args.split, args.out_dir, args.report, args.rejects,
                   threads=max(1, min(args.threads, usable_cpus())))
    print(f"{report['utterances']} utterances, {report['words']} words; {report['captions_dropped']} captions dropped "
          f"{report['drop_reasons']}; {report['captions_rejected']} broken files skipped")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("testdata-dataset", main))
