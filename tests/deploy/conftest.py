"""Deployment checks: compose, Dockerfiles, Kubernetes manifests, .env.example, roles, backups.

The client-side validators (docker-compose, hadolint, kubernetes-validate) come with the test extra
of the venv; a missing one skips with a ``needs:`` reason, which CI turns into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A validator binary: the venv's bin dir first (where the test extra installs it), then PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"needs: `{name}` (pip install -c constraints.txt -e '.[test]'; looked in {VENV_BIN} and PATH)")
    return found


def run(cmd: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=kwargs.pop("cwd", REPO), **kwargs)


@pytest.fixture
def pg_env(pg_cluster) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment for the psql/pg_dump based scripts: the test cluster's binaries and admin login."""
    if shutil.which("bash") is None:
        pytest.skip("needs: bash")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PATH=f"{pg_cluster.bindir}{os.pathsep}{env.get('PATH', '')}",
        PGHOST="127.0.0.1",
        PGPORT=str(pg_cluster.port),
        PGUSER=pg_cluster.user,
        PGPASSWORD=pg_cluster.password,
        PGCONNECT_TIMEOUT="10",
    )
    return env


@pytest.fixture
def login_user(pg_cluster, pg_env) -> Iterator[Callable[[str, str], tuple[str, str]]]:  # type: ignore[no-untyped-def]
    """``login_user(database, group)`` -> (name, password): a LOGIN user made by infra/db-users.sh."""
    made: list[str] = []

    def make(database: str, group: str) -> tuple[str, str]:
        name = f"t_{group.removeprefix('smmdn_')}_{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        env = dict(pg_env, PGDATABASE=database, SMMDN_NEW_DB_PASSWORD=password)
        result = run(["bash", "infra/db-users.sh", name, group], env=env)
        assert result.returncode == 0, result.stderr
        made.append(name)
        return name, password

    yield make
    with pg_cluster.connect() as conn:
        for name in made:
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def sample_sites() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "site": ["A", "B"],
            "name": ["Alpha", "Beta"],
            "latitude": [49.7, 40.7],
            "longitude": [5.9, -96.8],
            "elevation_m": [300.0, 360.0],
            "tags": [["north"], ["uscrn"]],
            "attributes": [{"clay": 0.3}, {}],
        }
    )


def sample_observations(start: str = "2020-01-01", days: int = 120) -> pd.DataFrame:
    """Daily values over ``days`` days: several 30-day chunks of the observations hypertable."""
    times = pd.date_range(start, periods=days, freq="D", tz="UTC")
    rows = [
        {"time": t, "site": site, "depth_cm": 10.0, "sensor": "p1", "vwc": 0.2 + 0.001 * i}
        for site in ("A", "B")
        for i, t in enumerate(times)
    ]
    return pd.DataFrame(rows)


def sample_forecasts(issue: str = "2020-04-30", k: int = 3, leads: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    issue_time = pd.Timestamp(issue, tz="UTC")
    rows = []
    for site in ("A", "B"):
        for lead in range(1, leads + 1):
            w = rng.dirichlet(np.ones(k))
            mu = 0.2 + rng.normal(0, 0.02, k)
            mean = float((w * mu).sum())
            row = {
                "site": site,
                "depth_cm": 10.0,
                "issue_time": issue_time,
                "valid_time": issue_time + pd.Timedelta(days=lead),
                "lead": lead,
                **{f"weight_{i}": w[i] for i in range(k)},
                **{f"mean_{i}": mu[i] for i in range(k)},
                **{f"sigma_{i}": 0.01 for i in range(k)},
                "mean": mean,
                "sd": 0.02,
                "q05": mean - 0.03,
                "q25": mean - 0.01,
                "q50": mean,
                "q75": mean + 0.01,
                "q95": mean + 0.03,
            }
            rows.append(row)
    return pd.DataFrame(rows)


def seed(store) -> None:  # type: ignore[no-untyped-def]
    """Sites, observations over several chunks, a model version and one complete forecast run."""
    store.upsert_sites(sample_sites())
    store.write_observations(sample_observations(), source="test")
    store.register_model_version("v1", kind="full", artifact_uri="file:///models/v1")
    run_id = store.start_forecast_run("2020-04-30", "v1")
    store.write_forecasts(sample_forecasts(), run_id=run_id, model_version="v1")
    store.finish_forecast_run(run_id)
