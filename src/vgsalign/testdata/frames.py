"""Word times in seconds -> spans on the model's input-frame grid (10 ms frames, cut, padded).

Convention (docs/formats.md, "Input-frame convention"), with hop h = `frames.hop_s`:
- audio frame k stands for the audio interval [k*h, (k+1)*h); an utterance of d seconds has
  `1 + floor(d / h)` audio frames (centred log-mel frames, as the audio features compute);
- only the first `frames.max` audio frames are kept: `n_frames = min(max, 1 + floor(d/h))`,
  `cut` is true when frames were lost;
- `padding: start` puts `pad_frames = max - n_frames` zero frames before the audio (the
  original), `end` puts them after it (`pad_frames = 0`);
- a word [onset_s, offset_s) covers the half-open input-frame span
  [onset_frame, offset_frame) with
      onset_frame  = pad_frames + floor(onset_s / h)
      offset_frame = pad_frames + ceil(offset_s / h)
  i.e. every frame the word touches (at least one frame). That is `word_spans.end:
  true_end`; `next_onset` is the original's rule: frames are ceil(t / h) for onsets too, a
  word ends at the next word's onset frame (a pause after it counts as part of it), the
  caption's last word at its onset frame + 2; offset_s then holds that end in seconds;
- a word whose audio span does not end inside the kept frames (offset beyond frame
  n_frames) is marked `partly_cut` (it starts inside) or `beyond_cut` and is not used
  later: its span would be truncated, which would bias every score that divides by the
  word's length. Such words are counted in the funnel.

Output `frames.csv`: every word of words.csv with onset_frame, offset_frame, status
(`kept` | `partly_cut` | `beyond_cut`), and its utterance's n_frames, pad_frames, cut,
duration_s, audio_frames (before the cut).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_json
from ..errors import InputError
from ..settings import settings_from_json
from ..tables import read_table
from .csv_writer import write_table

# tolerance for float seconds that sit on a frame boundary (0.03 / 0.01 = 2.9999999999999996)
BOUNDARY_EPS = 1e-6
WORD_ENDS = ("true_end", "next_onset")
# the original's span of a caption-final word under next_onset: its onset frame + 2
FINAL_WORD_FRAMES = 2


@dataclass
class FrameSettings:
    """The `frames` config section."""

    hop_s: float
    max: int
    padding: str

    def __post_init__(self) -> None:
        if self.padding not in ("start", "end"):
            raise InputError("frames.padding", f"{self.padding!r}: expected 'start' or 'end'")
        if self.hop_s <= 0 or self.max < 1:
            raise InputError("frames", f"hop_s {self.hop_s} and max {self.max} must be positive")


@dataclass
class WordSpanSettings:
    """The `word_spans` config section (its own section: the features and the training
    read `frames`, and switching the word-end rule should rerun the test set only)."""

    end: str

    def __post_init__(self) -> None:
        if self.end not in WORD_ENDS:
            raise InputError("word_spans.end", f"{self.end!r}: expected one of {WORD_ENDS}")


def audio_frames(duration_s: float | np.ndarray, hop_s: float) -> np.ndarray:
    """Audio frames of an utterance: 1 + floor(duration / hop) (centred frames)."""
    return 1 + np.floor(np.asarray(duration_s, dtype=float) / hop_s + BOUNDARY_EPS).astype(np.int64)


def onset_frames(onset_s: np.ndarray, hop_s: float) -> np.ndarray:
    return np.floor(np.asarray(onset_s, dtype=float) / hop_s + BOUNDARY_EPS).astype(np.int64)


def offset_frames(offset_s: np.ndarray, hop_s: float) -> np.ndarray:
    return np.ceil(np.asarray(offset_s, dtype=float) / hop_s - BOUNDARY_EPS).astype(np.int64)


def utterance_grid(utterances: pd.DataFrame, settings: FrameSettings) -> pd.DataFrame:
    """Per utterance: audio_frames, n_frames (kept), pad_frames, cut."""
    grid = utterances[["utt_id", "duration_s"]].copy()
    grid["audio_frames"] = audio_frames(grid["duration_s"].to_numpy(), settings.hop_s)
    grid["n_frames"] = np.minimum(grid["audio_frames"], settings.max)
    grid["pad_frames"] = settings.max - grid["n_frames"] if settings.padding == "start" else 0
    grid["cut"] = grid["audio_frames"] > settings.max
    return grid


def next_onset_spans(table: pd.DataFrame, hop_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The original's spans (audio frames) and end times: (start, end, offset_s) per row of
    `table`, which is ordered by utterance and word_index."""
    start = np.ceil(table["onset_s"].to_numpy(dtype=float) / hop_s - BOUNDARY_EPS).astype(np.int64)
    is_last = (table["utt_id"] != table["utt_id"].shift(-1)).to_numpy()
    next_start = np.roll(start, -1)
    end = np.where(is_last, start + FINAL_WORD_FRAMES, next_start)
    onset_s = table["onset_s"].to_numpy(dtype=float)
    offset_s = np.where(is_last, onset_s + FINAL_WORD_FRAMES * hop_s, np.roll(onset_s, -1))
    return start, end, offset_s


def word_frames(words: pd.DataFrame, grid: pd.DataFrame, settings: FrameSettings,
                spans: WordSpanSettings) -> pd.DataFrame:
    """Words with their input-frame span and whether they fit in the kept audio."""
    table = words.merge(grid, on="utt_id", how="left", validate="many_to_one")
    if table["n_frames"].isna().any():
        missing = table.loc[table["n_frames"].isna(), "utt_id"].iloc[0]
        raise InputError("words.csv", f"utterance {missing!r} is not in utterances.csv")
    if spans.end == "next_onset":
        table = table.sort_values(["utt_id", "word_index"], kind="stable").reset_index(drop=True)
        start, end, table["offset_s"] = next_onset_spans(table, settings.hop_s)
    else:
        start = onset_frames(table["onset_s"].to_numpy(), settings.hop_s)
        end = offset_frames(table["offset_s"].to_numpy(), settings.hop_s)
    # at least one frame, even for a word shorter than a frame inside one frame
    end = np.maximum(end, start + 1)
    kept = table["n_frames"].to_numpy()
    table["status"] = np.where(end <= kept, "kept", np.where(start < kept, "partly_cut", "beyond_cut"))
    pad = table["pad_frames"].to_numpy()
    table["onset_frame"] = start + pad
    table["offset_frame"] = end + pad
    columns = ["utt_id", "image_id", "wav", "word_index", "word", "onset_s", "offset_s",
               "onset_frame", "offset_frame", "status", "n_frames", "pad_frames", "cut", "duration_s", "audio_frames"]
    return table[columns]


def build(utterances_csv: Path, words_csv: Path, settings: FrameSettings, spans: WordSpanSettings, out: Path,
          report_path: Path) -> dict:
    utterances = read_table(utterances_csv, required=("utt_id", "duration_s"))
    words = read_table(words_csv, required=("utt_id", "word_index", "word", "onset_s", "offset_s"))
    grid = utterance_grid(utterances, settings)
    table = word_frames(words, grid, settings, spans)
    write_table(table, out)
    status = table["status"].value_counts()
    report = {
        "settings": {"hop_s": settings.hop_s, "max": settings.max, "padding": settings.padding,
                     "word_end": spans.end},
        "utterances": len(grid), "utterances_cut": int(grid["cut"].sum()),
        "words": len(table), "words_kept": int(status.get("kept", 0)),
        "words_partly_cut": int(status.get("partly_cut", 0)), "words_beyond_cut": int(status.get("beyond_cut", 0)),
        "max_audio_frames": int(grid["audio_frames"].max()) if len(grid) else 0,
    }
    write_json(report, report_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign testdata-frames", description="Word spans on the input-frame grid.")
    parser.add_argument("--utterances", required=True, type=Path)
    parser.add_argument("--words", required=True, type=Path)
    parser.add_argument("--frames", required=True, help="the frames config slice as JSON")
    parser.add_argument("--word-spans", required=True, help="the word_spans config slice as JSON")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = settings_from_json(FrameSettings, args.frames, where="--frames", section="frames")
    spans = settings_from_json(WordSpanSettings, args.word_spans, where="--word-spans", section="word_spans")
    report = build(args.utterances, args.words, settings, spans, args.out, args.report)
    print(f"{report['utterances']} utterances ({report['utterances_cut']} cut); words kept {report['words_kept']}, "
          f"partly cut {report['words_partly_cut']}, beyond the cut {report['words_beyond_cut']}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("testdata-frames", main))
