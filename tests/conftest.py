from pathlib import Path

import pytest

from vgsalign.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture()
def default_config() -> dict:
    """config.yaml with every default filled, as the workflow sees it."""
    return load_config(ROOT / "config.yaml")
