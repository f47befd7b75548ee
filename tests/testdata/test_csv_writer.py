"""The fast CSV writer writes the same bytes as pandas' DataFrame.to_csv(index=False)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vgsalign.tables import read_table
from vgsalign.testdata import csv_writer
from vgsalign.testdata.csv_writer import write_table


def pandas_bytes(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.to_csv(buffer, index=False)
    return buffer.getvalue()


def written_bytes(table: pd.DataFrame, tmp_path) -> bytes:
    path = tmp_path / "t.csv"
    write_table(table, path)
    return path.read_bytes()


EDGE_FLOATS = [0.0, -0.0, 1.0, -3.0, 0.1, 1e-4, 9.999e-5, 1e-5, 1e-7, 5e-324, 1e15, 999999999999999.9, 1e16,
               1.7976931348623157e308, 123456789.123, 2.5e-4, np.nan, np.inf, -np.inf, 0.30000000000000004,
               1 / 3, 2 / 3 * 1e14, 1e14 + 0.5]


def test_edge_cases(tmp_path):
    n = len(EDGE_FLOATS)
    text = ["x", "y,z", 'q"r', "", "line\nb", " sp", "cr\rx", "tab\tx", "ünï", "null", "NA", "nan", "a\r\nb",
            '"', ",", "plain", "1e5", "True", "  ", "x", "y", "z", "w"][:n]
    table = pd.DataFrame({
        "text": text, "float": EDGE_FLOATS, "int": np.arange(n) * 10**15 - 7, "bool": [i % 3 == 0 for i in range(n)],
        "missing": ["s" if i % 2 else None for i in range(n)], "small": np.arange(n, dtype=np.int32),
    })
    assert written_bytes(table, tmp_path) == pandas_bytes(table)


def test_tables_read_back_and_chunked(tmp_path, monkeypatch):
    """Columns as read_table gives them (pyarrow-backed text), across chunk boundaries."""
    rng = np.random.default_rng(0)
    n = 2_500
    source = pd.DataFrame({
        "utt_id": [f"{i // 7}_u" for i in range(n)], "image_id": rng.integers(0, 10**7, n),
        "word": rng.choice(["dog", "a,b", 'say "hi"', "nan", ""], n), "onset_s": np.round(rng.random(n) * 5, 3),
        "similarity": rng.standard_normal(n) / 3, "kept": rng.random(n) < 0.5,
    })
    path = tmp_path / "source.csv"
    source.to_csv(path, index=False)
    table = read_table(path)
    monkeypatch.setattr(csv_writer, "CHUNK_ROWS", 333)
    assert written_bytes(table, tmp_path) == path.read_bytes() == pandas_bytes(table)


def test_empty_and_single_column(tmp_path):
    empty = pd.DataFrame({"a": pd.Series([], dtype=str), "b": pd.Series([], dtype=float)})
    assert written_bytes(empty, tmp_path) == pandas_bytes(empty)
    single = pd.DataFrame({"a": ["", "x"]})
    assert written_bytes(single, tmp_path) == pandas_bytes(single)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True),
                               st.integers(min_value=-2**63, max_value=2**63 - 1), st.booleans()),
                     min_size=1, max_size=40))
def test_random_tables(tmp_path, rows):
    text, floats, ints, flags = zip(*rows)
    table = pd.DataFrame({"text": list(text), "float": np.array(floats, dtype=float),
                          "int": np.array(ints, dtype=np.int64), "flag": list(flags)})
    assert written_bytes(table, tmp_path) == pandas_bytes(table)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 1e3, 1e12])
def test_float_digits_as_repr(tmp_path, scale):
    values = np.random.default_rng(1).standard_normal(20_000) * scale
    table = pd.DataFrame({"x": values, "y": np.round(values, 3)})
    assert written_bytes(table, tmp_path) == pandas_bytes(table)
