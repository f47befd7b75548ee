"""The test-set tables as CSV, byte for byte as pandas' `DataFrame.to_csv(index=False)`
writes them, several times faster on large tables.

pandas formats every cell in Python (about 1 us a cell), which at SPEECH-COCO size (two
million words, fifteen columns) costs more than the rest of a step. Here each column is
formatted with pyarrow, a chunk of rows at a time (memory stays bounded by the chunk):
integers as Arrow casts them (as `str(int)`), booleans as `True`/`False`, missing values as
empty fields, floats as Python's `repr` (Arrow's shortest round-trip digits, which are
repr's, with `.0` added to integral values; values Arrow writes in exponent notation, and
those where its notation may differ from repr's, |x| < 1e-4 or >= 1e15 or not finite, go
through `repr` itself). A row holding a
comma, a quote or a line break is written by Python's csv module, as pandas does. Tables
with a column of another dtype are written by pandas itself.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import atomic_path

CHUNK_ROWS = 100_000
# characters that make Python's csv module (pandas' writer) quote a field or that need care
NEEDS_CSV_MODULE = r'[",\r\n]'
# Arrow and repr write the same digits positionally in this range (outside it Arrow's
# switch to exponent notation differs from repr's)
POSITIONAL_MIN, POSITIONAL_MAX = 1e-4, 1e15


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) and not isinstance(series.dtype, pd.CategoricalDtype)


def _supported(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        return dtype.kind in "biuf" or (dtype.kind == "O" and _is_text(series))
    return isinstance(dtype, pd.StringDtype)


def float_text(values: np.ndarray) -> pa.Array:
    """Floats as pandas writes them: repr, and an empty field for NaN."""
    values = np.asarray(values, dtype=np.float64)
    text = pa.array(values, from_pandas=True).cast(pa.string())   # NaN -> null
    magnitude = np.abs(values)
    in_range = (values == 0) | ((magnitude >= POSITIONAL_MIN) & (magnitude < POSITIONAL_MAX))
    exponent = np.asarray(pc.fill_null(pc.match_substring(text, "e"), False))
    positional = in_range & ~exponent
    fallback = ~positional & ~np.isnan(values)
    integral = positional & ~np.asarray(pc.fill_null(pc.match_substring(text, "."), True))
    if integral.any():      # Arrow writes 3.0 as "3"
        mask = pa.array(integral)
        text = pc.replace_with_mask(text, mask, pc.binary_join_element_wise(text.filter(mask), "0", "."))
    if fallback.any():
        text = pc.replace_with_mask(text, pa.array(fallback), pa.array([repr(v) for v in values[fallback].tolist()]))
    return pc.fill_null(text, "")


def column_text(series: pd.Series) -> pa.Array:
    """One column's cells as the strings pandas writes (quoting aside)."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        return pc.if_else(pa.array(series.to_numpy()), "True", "False")
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return pa.array(series.to_numpy()).cast(pa.string())
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return float_text(series.to_numpy())
    text = pa.array(series.array if isinstance(dtype, pd.StringDtype) else series.to_numpy(), from_pandas=True)
    if isinstance(text, pa.ChunkedArray):      # pandas' pyarrow-backed strings
        text = text.combine_chunks()
    return pc.fill_null(text.cast(pa.string()), "")


def chunk_bytes(chunk: pd.DataFrame) -> pa.Buffer:
    """The CSV lines of a chunk of rows, each ending with a newline."""
    columns = [column_text(chunk[name]) for name in chunk.columns]
    special = None
    for name, text in zip(chunk.columns, columns):
        if _is_text(chunk[name]):
            hit = pc.match_substring_regex(text, NEEDS_CSV_MODULE)
            special = hit if special is None else pc.or_(special, hit)
    # the newline joins the last column first: one pass less over the whole line
    lines = pc.binary_join_element_wise(*columns[:-1], pc.binary_join_element_wise(columns[-1], "", "\n"), ",")
    if special is not None and pc.any(special).as_py():
        rows = np.flatnonzero(np.asarray(special))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        quoted = []
        for row in rows:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([column[int(row)].as_py() for column in columns])
            quoted.append(buffer.getvalue())
        mask = np.zeros(len(chunk), dtype=bool)
        mask[rows] = True
        lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(quoted, type=pa.string()))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
    return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def line_blocks(chunk: pd.DataFrame) -> Iterator[bytes | pa.Buffer]:
    """The CSV lines (no header) that `to_csv(index=False)` writes for these rows, CHUNK_ROWS
    rows a block. Rows are formatted one by one, so the lines of consecutive chunks join
    into the lines of the whole table."""
    if not len(chunk):
        return
    if len(chunk.columns) < 2 or not chunk.columns.is_unique or not all(_supported(chunk[name]) for name in chunk.columns):
        # one column (a row of one empty string is quoted), other dtypes: pandas itself
        yield chunk.to_csv(index=False, header=False, lineterminator="\n").encode()
        return
    for start in range(0, len(chunk), CHUNK_ROWS):
        yield chunk_bytes(chunk.iloc[start:start + CHUNK_ROWS])


def table_lines(chunk: pd.DataFrame) -> bytes:
    """`line_blocks` joined: the lines of a few thousand rows, to send between processes."""
    return b"".join(bytes(block) for block in line_blocks(chunk))


class TableWriter:
    """A CSV table written a chunk of rows at a time (see `open_table`)."""

    def __init__(self, out, columns: list[str]):
        self.out, self.columns = out, list(columns)

    def write(self, chunk: pd.DataFrame) -> None:
        """Append rows (columns in the table's order); the bytes are those `to_csv` writes for them."""
        if list(chunk.columns) != self.columns:
            raise ValueError(f"chunk columns {list(chunk.columns)} are not the table's {self.columns}")
        for block in line_blocks(chunk):
            self.out.write(block)

    def write_lines(self, lines: bytes) -> None:
        """Append rows already formatted by `table_lines` (in a worker process, say)."""
        self.out.write(lines)


@contextlib.contextmanager
def open_table(path: str | os.PathLike, columns: list[str]) -> Iterator[TableWriter]:
    """A table to write in chunks; it replaces `path` when the block completes."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([str(name) for name in columns])
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(header.getvalue().encode())
        yield TableWriter(out, columns)


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write `table` as `table.to_csv(path, index=False)` would, atomically."""
    if len(table.columns) < 2:
        with atomic_path(path) as tmp:      # header and rows as pandas quotes a lone column
            table.to_csv(tmp, index=False)
        return
    with open_table(path, list(table.columns)) as out:
        out.write(table)
