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
import itertools
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pandas as pd

from ..atomic import write_csv, write_json
from ..corpus.captions import ReadResult, Utterance
from ..corpus.coco import coco_image_ids, instances_path
from ..corpus.speechcoco import caption_files, iter_speechcoco, read_files
from ..corpus.spokencoco import iter_spokencoco, spokencoco_index  # noqa: F401 (features.shards imports the latter from here)
from ..errors import InputError
from ..runtime import progress_bar, usable_cpus
from ..settings import settings_from_json
from .csv_writer import open_table, table_lines

SOURCES = ("demo", "speechcoco", "spokencoco")
REJECT_COLUMNS = ["file", "problem"]
UTTERANCE_COLUMNS = ["utt_id", "image_id", "split", "wav", "duration_s", "n_words", "speaker", "text"]
WORD_COLUMNS = ["utt_id", "image_id", "wav", "word_index", "word", "onset_s", "offset_s"]
# utterances read before their rows are written (a few MB of rows)
CHUNK_UTTERANCES = 5_000
# SPEECH-COCO caption files one task reads (in a worker process): its rows are about 1 MB
FILES_PER_TASK = 500


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
               result: ReadResult) -> Iterator[Utterance]:
    """The kept captions of a split, one at a time, read with the reader of `settings.source`;
    drops and rejects go to `result`."""

    @lru_cache(maxsize=None)
    def image_ids(coco_split: str) -> set[int]:
        return coco_image_ids(instances_path(coco_root, coco_split))

    if settings.source in ("demo", "speechcoco"):
        return iter_speechcoco(speech_root, split, image_ids(split), on_error=settings.on_error, result=result)
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


@dataclass
class Rows:
    """The utterances.csv and words.csv lines of a run of captions, and what the report needs of them."""

    utterance_lines: bytes
    word_lines: bytes
    utt_ids: list[str]
    image_ids: set[int]
    words: int
    drops: list[tuple[str, str]] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)
    # with on_error stop: (where, problem) of the broken file that stops the step, after these rows
    error: tuple[str | None, str] | None = None
    caption_files: int = 0    # SPEECH-COCO files read (the progress bar)


def rows_of(utterances: list[Utterance], split: str, **read) -> Rows:
    """The rows of these utterances; `read`: the other fields of `Rows` (drops, rejects, ...)."""
    utterance_table, word_table = table_chunk(utterances, split)
    return Rows(utterance_lines=table_lines(utterance_table), word_lines=table_lines(word_table),
                utt_ids=[u.utt_id for u in utterances], image_ids={u.image_id for u in utterances},
                words=len(word_table), **read)


def speechcoco_rows(names: list[str], json_dir: Path, wav_dir: Path, split: str, image_ids: set[int],
                    on_error: str) -> Rows:
    """The rows of these SPEECH-COCO caption files (one task): read, checked and dropped as
    `iter_speechcoco` does; a broken file with on_error stop ends the task as `Rows.error`
    (an InputError does not pickle)."""
    result, error = ReadResult(), None
    try:
        result.utterances.extend(read_files((json_dir / name for name in names), wav_dir, split, image_ids,
                                            on_error=on_error, result=result))
    except InputError as err:
        error = (err.where, err.problem)
    return rows_of(result.utterances, split, drops=result.drops, rejects=result.rejects, error=error,
                   caption_files=len(names))


_worker_image_ids: set[int] = set()     # a worker process's copy of the split's image ids


def _remember_image_ids(image_ids: set[int]) -> None:
    global _worker_image_ids
    _worker_image_ids = image_ids


def _speechcoco_rows_in_worker(names: list[str], json_dir: Path, wav_dir: Path, split: str, on_error: str) -> Rows:
    return speechcoco_rows(names, json_dir, wav_dir, split, _worker_image_ids, on_error)


def speechcoco_split_rows(speech_root: Path, split: str, image_ids: set[int], on_error: str,
                          threads: int) -> Iterator[Rows]:
    """The rows of a SPEECH-COCO split in file order, FILES_PER_TASK files at a time, read over
    `threads` processes. The workers do all the per-caption work (parsing the timecodes,
    the checks, formatting the lines): the parent only writes, so on 2 cores it does not
    become the bottleneck it was when it rebuilt and formatted every utterance itself."""
    json_dir, wav_dir = speech_root / split / "json", speech_root / split / "wav"
    names = caption_files(json_dir)
    tasks = [names[start:start + FILES_PER_TASK] for start in range(0, len(names), FILES_PER_TASK)]
    pool = None
    if threads <= 1 or len(tasks) < 2:
        reads = (speechcoco_rows(task, json_dir, wav_dir, split, image_ids, on_error) for task in tasks)
    else:
        # spawn: the parent may already run pyarrow's threads (the tables), which fork would copy mid-state
        pool = ProcessPoolExecutor(max_workers=threads, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_remember_image_ids, initargs=(image_ids,))
        reads = pool.map(_speechcoco_rows_in_worker, tasks, itertools.repeat(json_dir), itertools.repeat(wav_dir),
                         itertools.repeat(split), itertools.repeat(on_error))
    try:
        with progress_bar(total=len(names), desc="captions", unit="caption") as bar:
            for rows in reads:
                bar.update(rows.caption_files)
                yield rows
    finally:    # a stopped step (a broken file) does not wait for the tasks still queued
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def split_rows(settings: DatasetSettings, speech_root: Path, coco_root: Path, split: str, result: ReadResult,
               threads: int = 1) -> Iterator[Rows]:
    """The rows of a split in corpus order, a few thousand utterances at a time; SpokenCOCO's
    drops and rejects go to `result`, SPEECH-COCO's come with the rows."""
    if settings.source in ("demo", "speechcoco"):
        image_ids = coco_image_ids(instances_path(coco_root, split))
        yield from speechcoco_split_rows(speech_root, split, image_ids, settings.on_error, threads)
        return
    utterances = iter_split(settings, speech_root, coco_root, split, result)
    while batch := list(itertools.islice(utterances, CHUNK_UTTERANCES)):
        yield rows_of(batch, split)


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
    """Read the split and write its tables, a few thousand utterances at a time (memory
    does not grow with the corpus beyond the ids and drop reasons the report needs)."""
    result = ReadResult()
    seen: dict[str, None] = {}      # utterance ids, in the order they first occur
    repeated: set[str] = set()
    images: set[int] = set()
    n_utterances, n_words = 0, 0
    with open_table(out_dir / "words.csv", WORD_COLUMNS) as words_out, \
            open_table(out_dir / "utterances.csv", UTTERANCE_COLUMNS) as utterances_out:
        for rows in split_rows(settings, speech_root, coco_root, split, result, threads):
            result.drops += rows.drops
            result.rejects += rows.rejects
            if rows.error is not None:
                raise InputError(*rows.error)
            for utt_id in rows.utt_ids:
                if utt_id in seen:
                    repeated.add(utt_id)
                seen[utt_id] = None
            images |= rows.image_ids
            n_utterances += len(rows.utt_ids)
            n_words += rows.words
            words_out.write_lines(rows.word_lines)
            utterances_out.write_lines(rows.utterance_lines)
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
