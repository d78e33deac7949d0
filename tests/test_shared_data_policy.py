"""Under CI=true a missing dataset fails the run instead of skipping."""

from __future__ import annotations

import pytest

from imgdiff.data import data_dir

from .conftest import need


def test_missing_dataset_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing"):
        need(tmp_path / "no-such-dataset")


def test_missing_dataset_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        need(tmp_path / "no-such-dataset")


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGDIFF_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.delenv("IMGDIFF_DATA_DIR")
    assert data_dir().parts[-2:] == ("shared", "data")
