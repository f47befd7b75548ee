"""read_table: pyarrow's reader where it gives what pandas' reader gives, pandas' elsewhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vgsalign import tables
from vgsalign.errors import InputError
from vgsalign.testdata.csv_writer import write_table

# (CSV text, whether pyarrow's reader may read it; None: either way)
CASES = {
    "plain": ("utt_id,image_id,word,onset_s,kept\nu1,7,dog,0.25,True\nu2,8,NA,1.0,False\n", True),
    "words that look missing": ("word,n\nNA,1\nnull,2\nnan,3\n,4\n", True),
    "quoted text": ('text,n\n"a, b",1\n"he said ""hi""",2\n"line\nbreak",3\n', True),
    "an empty int field": ("a,b\n1,x\n,y\n", True),
    "an empty column": ("x,b\n,1\n,2\n", True),
    "header only": ("utt_id,b\n", True),
    "bools in any case": ("x,b\nTRUE,1\nfalse,2\n", True),
    "exponents": ("x,b\n1e-05,1\n2.5E+12,2\n", True),
    "a float beyond int64": ("x,b\n1e-05,1\n2.5E+20,2\n", False),
    "nan as text in a float column": ("a,b\n1.5,x\nnan,y\n", False),
    "a date": ("x,b\n2014-01-01,1\n2015-02-02,2\n", False),
    "an integer beyond int64": ("x,b\n18446744073709551615,1\n2,2\n", False),
    "duplicate names": ("a,a\n1,2\n", False),
    "a float after a block of ints": ("x,b\n" + "1,1\n" * 300_000 + "2.5,1\n", None),
}


@pytest.mark.parametrize("name", CASES)
def test_read_table_gives_what_pandas_reads(tmp_path, name):
    text, arrow_reads = CASES[name]
    path = tmp_path / "t.csv"
    path.write_text(text)
    header = pd.read_csv(path, nrows=0).columns
    if arrow_reads is not None:
        assert (tables._read_with_arrow(path, header) is not None) == arrow_reads
    got, expected = tables.read_table(path), tables._read_with_pandas(path, header)
    assert list(got.columns) == list(expected.columns)
    assert [str(got[c].dtype) for c in got.columns] == [str(expected[c].dtype) for c in expected.columns]
    assert got.equals(expected)


def test_written_tables_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    table = pd.DataFrame({"utt_id": [f"u{i}" for i in range(n)], "image_id": rng.integers(0, 10**12, n),
                          "word": rng.choice(["dog", "NA", "null", "a,b", 'say "x"', ""], n),
                          "onset_s": rng.random(n) * 10, "similarity": rng.standard_normal(n).astype(np.float32),
                          "kept": rng.random(n) < 0.5})
    path = tmp_path / "t.csv"
    write_table(table, path)
    assert tables._read_with_arrow(path, pd.read_csv(path, nrows=0).columns) is not None
    back = tables.read_table(path)
    pd.testing.assert_frame_equal(back, table.astype({"similarity": np.float64}), check_dtype=False)
    assert back["onset_s"].to_numpy().tobytes() == table["onset_s"].to_numpy().tobytes()


def test_missing_table_and_column_are_named(tmp_path):
    with pytest.raises(InputError, match="table not found"):
        tables.read_table(tmp_path / "none.csv")
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"missing column\(s\) \['word'\]"):
        tables.read_table(path, required=("a", "word"))
