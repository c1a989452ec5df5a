"""State is written owner-only: directories under SMMDN_HOME 0700, the SQLite database (and its WAL) 0600."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from smmdn.config import Settings
from smmdn.store import Store


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_state_directories_are_created_owner_only(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "home" / "nested")
    for name in ("data", "model", "artifact", "landing"):
        assert _mode(settings.path(name)) == 0o700, name
    assert _mode(tmp_path / "home") == _mode(tmp_path / "home" / "nested") == 0o700


def test_an_existing_directory_keeps_the_operators_mode(tmp_path: Path) -> None:
    shared = tmp_path / "landing"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)  # e.g. group-writable drop box set up by the operator
    assert _mode(Settings(_env_file=None, home=tmp_path, landing_dir=shared).path("landing")) == 0o755


def test_the_sqlite_database_is_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, under which SQLite would create it 0644
    try:
        settings = Settings(_env_file=None, home=tmp_path / "home")
        store = Store(settings.resolved_database_url)
        store.init()
        store.upsert_sites(pd.DataFrame({"site": ["a"], "name": ["A"]}))
        db = settings.path("data") / "smmdn.db"
        assert _mode(db) == 0o600
        for companion in (db.with_name("smmdn.db-wal"), db.with_name("smmdn.db-shm")):
            if companion.exists():
                assert _mode(companion) == 0o600, companion
        store.dispose()
    finally:
        os.umask(old)


def test_landing_subfolders_are_owner_only(tmp_path: Path) -> None:
    from smmdn.ingest import _move

    (tmp_path / "f.dat").write_text("x")
    target = _move(tmp_path / "f.dat", tmp_path / "rejected")
    assert _mode(target.parent) == 0o700
