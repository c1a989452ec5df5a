"""Shared fixtures: a real PostgreSQL + TimescaleDB cluster (one per session), fresh stores per test.

In CI (``CI=true``) a test that needs the database, HTTP or Prefect must run: a skip whose reason
starts with ``needs:`` fails the run instead of hiding a missing install step.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test cleanly when the folder is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Turn infrastructure skips (reason containing ``needs:``) into failures in CI."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if "needs:" in reason:
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, which must run it: {reason}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    from tests.pg import start_cluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """The session's one Prefect server (a temporary SQLite database), for every directory's tests.

    Why here, defined once: a fixture imported into two conftests (tests/flows and tests/faults) is two
    fixtures, so a session ran two harness servers. Prefect's process-wide events worker keeps the API
    URL it was first created with, so after the fault cycles every event went to the first server while
    tests/flows/test_automations.py created its automations on the second, which never saw them.
    """
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_template(pg_cluster) -> str:  # type: ignore[no-untyped-def]
    """A database migrated to head, used as the template of each test's fresh database."""
    from smmdn.store import Store

    cluster = pg_cluster
    url = cluster.create_database("smmdn_template")
    store = Store(url)
    store.init()
    store.dispose()
    cluster.freeze_template("smmdn_template")
    return "smmdn_template"


@pytest.fixture
def pg_url(pg_cluster, pg_template) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"test_{os.getpid()}_{next(_db_counter)}"
    url = pg_cluster.create_database(name, template=pg_template)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
def pg_empty_url(pg_cluster) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh database with no schema (for migration tests)."""
    name = f"empty_{os.getpid()}_{next(_db_counter)}"
    url = pg_cluster.create_database(name)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
def pg_store(pg_url):  # type: ignore[no-untyped-def]
    from smmdn.store import Store

    store = Store(pg_url)
    yield store
    store.dispose()


@pytest.fixture
def sqlite_store(tmp_path):  # type: ignore[no-untyped-def]
    from smmdn.store import Store

    store = Store(f"sqlite:///{tmp_path / 'smmdn.db'}")
    store.init()
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request):  # type: ignore[no-untyped-def]
    """The same test on both backends."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_store")
    return request.getfixturevalue("pg_store")
