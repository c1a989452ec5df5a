"""The fault-injection suite's fixtures and its ``heavy`` switch.

Cases marked ``heavy`` (whole extra cycles in subprocesses, several minutes on the 2-core CI machine) are
deselected unless asked for: ``-m heavy`` (only them), any ``-m`` expression naming ``heavy``, or
``SMMDN_FAULTS_HEAVY=1`` (everything). See the README's test section.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# the flow tests' simulated network and settings; the Prefect harness is the session's one (tests/conftest.py):
# importing it here made a second server, see its docstring
from tests.deploy.conftest import login_user, pg_env  # noqa: F401
from tests.flows.conftest import network, ops  # noqa: F401

HEAVY_ENV = "SMMDN_FAULTS_HEAVY"


def heavy_selected(config: pytest.Config) -> bool:
    """Whether this run asked for the heavy cases."""
    return os.environ.get(HEAVY_ENV, "").lower() in ("1", "true", "yes") or "heavy" in (config.option.markexpr or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect heavy cases by default (CI budget; listed as deselected, not silently skipped).

    The suite runs in collection order again (before tests/flows). It used to be moved last because
    tests/flows/test_automations.py timed out after it; the cause was a second Prefect harness, not the
    order (tests/conftest.py ``prefect_harness``), and moving the suite would hide such a leak again."""
    if not heavy_selected(config):
        heavy = [item for item in items if item.get_closest_marker("heavy")]
        if heavy:
            config.hook.pytest_deselected(items=heavy)
            items[:] = [item for item in items if not item.get_closest_marker("heavy")]


@pytest.fixture
def landing_env(network, pg_url, tmp_path, monkeypatch) -> Iterator[Path]:  # type: ignore[no-untyped-def]  # noqa: F811
    """The simulated sites on a fresh TimescaleDB; returns the landing directory."""
    from smmdn.cli import main
    from smmdn.config import get_settings
    from smmdn.demo.feeds import registry_yaml

    (tmp_path / "registry.yaml").write_text(registry_yaml(network.sites))
    for k, v in {"SMMDN_HOME": str(tmp_path), "SMMDN_DATABASE_URL": pg_url,
                 "SMMDN_REGISTRY_FILE": str(tmp_path / "registry.yaml")}.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    assert main(["sites", "load", str(tmp_path / "registry.yaml")]) == 0
    try:
        yield get_settings().path("landing")
    finally:
        get_settings.cache_clear()
