"""Tests leave nothing in the user's cache (issue 14, item 6): the torchvision exports go to a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from annette.importers.zoo import cache_dir


def test_tests_cache_in_a_temporary_folder() -> None:
    chosen = os.environ.get("ANNETTE_TEST_CACHE_DIR")
    assert cache_dir() == Path(chosen or os.environ["ANNETTE_CACHE_DIR"]) / "zoo"
    if not chosen:
        assert Path.home() / ".cache" / "annette" not in cache_dir().parents


def test_zoo_honours_annette_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANNETTE_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "zoo"
    monkeypatch.delenv("ANNETTE_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "annette" / "zoo"
