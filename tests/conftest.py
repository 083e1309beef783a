"""Shared fixtures: where the benchmark data is.

``shared_data`` is ``$RESTORE_SHARED_DATA`` when set, else ``data`` under the shared folder
of tests/shared_paths.py (``../shared`` beside the checkout, or ``$RESTORE_SHARED``). When it
is absent the test skips, except under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared_paths import DATA, require


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (benchmarks/, train/)."""
    env = os.environ.get("RESTORE_SHARED_DATA")
    return require(Path(env).resolve() if env else DATA)


@pytest.fixture(scope="session")
def benchmarks(shared_data: Path) -> Path:
    """``shared_data / "benchmarks"`` (one folder per set, ground truth under HR/)."""
    return require(shared_data / "benchmarks")
