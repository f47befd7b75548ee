"""Reading the stages' CSV tables back: ids and words stay text ("null", "nan" and "NA" are words)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from .errors import InputError

TEXT_COLUMNS = ("utt_id", "word", "category", "supercategory", "tag", "wav", "split", "speaker", "text",
                "status", "label_tokens", "tokens_used", "tokens_missing")


def table_header(path: str | Path, required: Sequence[str] = ()) -> pd.Index:
    """The columns of a CSV table, checked without reading its rows: a missing file or a
    missing required column is an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "table not found")
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(path, f"missing column(s) {missing}")
    return header


def read_table(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV written by a test-set stage, with text columns as str and no NA guessing."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "table not found")
    header = pd.read_csv(path, nrows=0).columns
    table = pd.read_csv(path, na_filter=False, dtype={c: str for c in TEXT_COLUMNS if c in header})
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing}")
    for column in ("cut", "in_vocab", "kept"):
        if column in table.columns and table[column].dtype != bool:
            table[column] = table[column].astype(str).str.lower().map({"true": True, "false": False})
    return table
