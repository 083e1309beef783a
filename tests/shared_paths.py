"""Where the shared data and fixtures are (../shared beside the checkout, or $RESTORE_SHARED).

Tests that need them skip when they are absent, except under CI (CI=true), where their
absence is a failure: CI always has ../shared.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RESTORE_SHARED", REPO.parent / "shared")).resolve()
FIXTURES = SHARED / "fixtures" / "reference"
DATA = SHARED / "data"
BENCHMARKS = DATA / "benchmarks"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(path: Path) -> Path:
    """``path`` if it exists; otherwise skip the test (fail under CI)."""
    if not path.exists():
        msg = f"{path} is not available"
        if in_ci():
            pytest.fail(msg + " (CI must have ../shared)")
        pytest.skip(msg)
    return path


def reference_cases() -> list:
    """The fixture case folders, or one parameter that skips/fails when they are absent."""
    cases = sorted(p for p in FIXTURES.glob("*/") if (p / "config.json").is_file())
    if cases:
        return cases
    return [pytest.param(FIXTURES / "missing", marks=pytest.mark.skipif(
        not in_ci(), reason=f"{FIXTURES} is not available"))]
