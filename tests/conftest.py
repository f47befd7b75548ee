import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture()
def default_config() -> dict:
    with open(ROOT / "config.yaml") as fh:
        return copy.deepcopy(yaml.safe_load(fh))
