import os

import pandas as pd
import pytest

from vgsalign.atomic import atomic_path, write_csv


def test_output_gets_plain_open_permissions_and_no_temp_left(tmp_path):
    target = tmp_path / "table.csv"
    write_csv(pd.DataFrame({"a": [1]}), target)
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
