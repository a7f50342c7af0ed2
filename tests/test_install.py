"""The first run: the message that a machine without ../shared/data gets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skinscan.core.errors import DataError
from skinscan.training.records import load_records

ROOT = Path(__file__).resolve().parents[1]


def test_missing_data_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as caught:
        load_records(tmp_path / "ham10000")
    message = str(caught.value)
    assert "\n" not in message and 'README\'s section "Data"' in message
    readme = (ROOT / "README.md").read_text()
    assert "\n## Data\n" in readme  # the section the message names


def test_the_cli_gives_the_hint_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINSCAN_")}
    command = [sys.executable, "-m", "skinscan.cli", "evaluate", str(tmp_path / "data"), "--out", str(tmp_path / "r")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "where to get the public datasets" in result.stderr
