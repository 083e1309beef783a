"""Shared fixtures: where the benchmark data is.

``shared_data`` is ``$RESTORE_SHARED_DATA`` when set, else ``data`` under the shared folder
of tests/shared_paths.py (``../shared`` beside the checkout, or ``$RESTORE_SHARED``). When it
is absent the test skips, except under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from shared_paths import DATA, in_ci, require

# Property tests (tests/test_exact_property.py): a fixed, derandomized search in CI; the same
# size of search with fresh examples locally; HYPOTHESIS_PROFILE=deep for a long local hunt.
_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=40, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=40, **_common)
settings.register_profile("deep", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev"))


# What points restore at a registry, at the user's folders and at the caches.
USER_DIR_VARS = ("RESTORE_REGISTRY", "RESTORE_CONFIG_DIR", "RESTORE_DATA_DIR",
                 "RESTORE_CACHE_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
                 "HF_HUB_OFFLINE")


@pytest.fixture
def isolated_user_dirs(tmp_path, monkeypatch) -> Path:
    """An empty user config, data and download cache of the test's own (under
    ``tmp_path``), and none of the caller's registry, XDG or offline settings."""
    for var in USER_DIR_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RESTORE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("RESTORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RESTORE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (benchmarks/, train/)."""
    env = os.environ.get("RESTORE_SHARED_DATA")
    return require(Path(env).resolve() if env else DATA)


@pytest.fixture(scope="session")
def benchmarks(shared_data: Path) -> Path:
    """``shared_data / "benchmarks"`` (one folder per set, ground truth under HR/)."""
    return require(shared_data / "benchmarks")
