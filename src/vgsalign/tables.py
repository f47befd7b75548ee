"""Reading the stages' CSV tables back: ids and words stay text ("null", "nan" and "NA" are words)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

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


# column types pyarrow's reader gives that pandas' reader gives too (as int64, float64, bool,
# str; "null": a header-only table's columns)
ARROW_TYPES = (pa.int64(), pa.float64(), pa.bool_(), pa.string(), pa.null())


def _read_with_pandas(path: Path, header: pd.Index) -> pd.DataFrame:
    return pd.read_csv(path, na_filter=False, dtype={c: str for c in TEXT_COLUMNS if c in header})


def _read_with_arrow(path: Path, header: pd.Index) -> pd.DataFrame | None:
    """The table `_read_with_pandas` gives, read by pyarrow's multi-threaded CSV reader: the
    word tables are hundreds of MB at full size, and it reads them in half the time (frames.csv
    of 202,800 captions, 485 MB: 1.8 s instead of 3.9 s; about 25% more peak memory). None
    where the two readers could disagree: pyarrow refuses the file (it fixes a column's type
    from the first block), pandas renamed a column (duplicates), a column came out as another
    type (a date), or a float column holds what pandas reads otherwise ("nan" is text to
    it, an integer beyond int64 is uint64)."""
    text = {c: pa.string() for c in TEXT_COLUMNS if c in header}
    try:
        arrow = pa_csv.read_csv(
            path, parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=text, null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False,
                true_values=["True", "TRUE", "true"], false_values=["False", "FALSE", "false"]))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if arrow.column_names != [str(c) for c in header] or any(t not in ARROW_TYPES for t in arrow.schema.types):
        return None
    for column, kind in zip(arrow.columns, arrow.schema.types):
        if kind == pa.float64():
            values = column.to_numpy()
            if np.isnan(values).any() or (np.abs(values) >= 2.0 ** 63).any():
                return None
    return arrow.to_pandas(split_blocks=True, self_destruct=True)


def read_table(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV written by a test-set stage, with text columns as str and no NA guessing."""
    path = Path(path)
    header = table_header(path, required)
    table = _read_with_arrow(path, header)
    if table is None:
        table = _read_with_pandas(path, header)
    for column in ("cut", "in_vocab", "kept"):
        if column in table.columns and table[column].dtype != bool:
            table[column] = table[column].astype(str).str.lower().map({"true": True, "false": False})
    return table
