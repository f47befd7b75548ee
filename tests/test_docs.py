"""The docs name what exists: every test that docs/reliability.md lists is in the suite,
and its count of fault cases is the number of rows."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_fault_case_in_reliability_md_names_an_existing_test():
    text = (ROOT / "docs/reliability.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`tests/" in line]
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", "\n".join(rows))
    assert len(named) == len(rows) >= 30
    for path, name in named:
        tree = ast.parse((ROOT / path).read_text())
        functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert name in functions, f"docs/reliability.md names {path}::{name}, which does not exist"
    count = int(re.search(r"(\d+) fault cases are covered", text).group(1))
    assert count == len(rows)
