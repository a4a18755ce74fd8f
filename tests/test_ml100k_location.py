"""Where MovieLens-100K is found (issue 16, item 10): the folder scripts/install-ml100k.sh fills from the
recbole wheel without installing recbole, an explicit LUCIDREC_ML100K, else an installed recbole."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest

from lucidrec.data import loaders
from lucidrec.errors import DataError


def fake_folder(path):
    path.mkdir(parents=True)
    (path / "ml-100k.inter").write_text("user_id:token\titem_id:token\n")
    return path


def no_recbole(name):
    raise metadata.PackageNotFoundError(name)


def test_the_env_variable_wins(tmp_path, monkeypatch):
    folder = fake_folder(tmp_path / "mine")
    monkeypatch.setenv("LUCIDREC_ML100K", str(folder))
    assert loaders.movielens_100k_folder() == folder


def test_the_venv_share_folder_needs_no_recbole(tmp_path, monkeypatch):
    monkeypatch.delenv("LUCIDREC_ML100K", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(loaders.metadata, "distribution", no_recbole)
    folder = fake_folder(tmp_path / "share" / "lucidrec" / "ml-100k")
    assert loaders.movielens_100k_folder() == folder


def test_nothing_found_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LUCIDREC_ML100K", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(loaders.metadata, "distribution", no_recbole)
    with pytest.raises(DataError, match="scripts/install-ml100k.sh") as e:
        loaders.movielens_100k_folder()
    assert str(tmp_path / "share" / "lucidrec" / "ml-100k") in str(e.value) and "Fix:" in str(e.value)
