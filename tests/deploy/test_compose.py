"""docker/compose.yaml: valid for the real compose binary, least-privilege secrets, sane exposure."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from smmdn.config import Settings
from tests.deploy.conftest import REPO, run, tool

COMPOSE = REPO / "docker" / "compose.yaml"
SECRETS = {
    "POSTGRES_PASSWORD": "s3cret-admin",
    "SMMDN_APP_DB_PASSWORD": "s3cret-app",
    "SMMDN_READER_DB_PASSWORD": "s3cret-reader",
    "PREFECT_DB_PASSWORD": "s3cret-prefect-db",
    "PREFECT_SERVER_API_AUTH_STRING": "admin:s3cret-api",
    "SMMDN_APPRISE_URLS": "tgram://s3cret-bot/123",
}
# Which services may see each secret (by value, anywhere in their resolved definition).
ALLOWED = {
    "POSTGRES_PASSWORD": {"timescaledb", "db-init", "db-users", "backup"},
    "SMMDN_APP_DB_PASSWORD": {"db-users", "worker-cpu", "worker-gpu"},
    "SMMDN_READER_DB_PASSWORD": {"db-users"},
    "PREFECT_DB_PASSWORD": {"prefect-db", "prefect-server"},
    "PREFECT_SERVER_API_AUTH_STRING": {"prefect-server", "worker-cpu", "worker-gpu"},
    "SMMDN_APPRISE_URLS": {"worker-cpu", "worker-gpu"},
}


def _clean_env(**extra: str) -> dict[str, str]:
    """No variable of the developer's shell may change what compose resolves."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
    return {**keep, **extra}


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run([tool("docker-compose"), *args], env=env or _clean_env())


def _resolved(env_file: Path | None = REPO / ".env.example", **env: str) -> dict:
    args = ["--env-file", str(env_file)] if env_file else []
    result = _compose(*args, "-f", str(COMPOSE), "--profile", "gpu", "--profile", "ops", "config", "--format", "json",
                      env=_clean_env(**env))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_passes_as_documented() -> None:
    bare = _compose("-f", "docker/compose.yaml", "config", "--quiet")
    assert bare.returncode == 0, bare.stderr
    assert "variable is not set" not in bare.stderr  # every interpolation has a default
    with_env = _compose("--env-file", ".env.example", "-f", "docker/compose.yaml", "config", "--quiet")
    assert with_env.returncode == 0, with_env.stderr


def test_services_healthchecks_and_one_shots() -> None:
    services = _resolved()["services"]
    assert set(services) == {
        "timescaledb", "prefect-db", "prefect-server", "db-init", "db-users", "worker-cpu", "worker-gpu", "backup",
    }  # fmt: skip
    one_shot = {"db-init", "db-users", "backup"}
    for name, service in services.items():
        if name in one_shot:
            assert service.get("restart") == "no", name
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name
    assert "timescale/timescaledb:" in services["timescaledb"]["image"]  # the Timescale-licensed image
    assert services["db-init"]["command"] == ["smmdn", "db", "init"]
    for worker in ("worker-cpu", "worker-gpu"):
        depends = services[worker]["depends_on"]
        assert depends["db-init"]["condition"] == "service_completed_successfully"
        assert depends["prefect-server"]["condition"] == "service_healthy"
    assert services["db-init"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert services["prefect-server"]["depends_on"]["prefect-db"]["condition"] == "service_healthy"


def test_prefect_server_uses_its_own_postgres_and_api_auth() -> None:
    env = _resolved(**SECRETS)["services"]["prefect-server"]["environment"]
    assert env["PREFECT_SERVER_DATABASE_DRIVER"] == "postgresql+asyncpg"
    assert env["PREFECT_SERVER_DATABASE_HOST"] == "prefect-db"
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == SECRETS["PREFECT_SERVER_API_AUTH_STRING"]


def test_prefect_server_refuses_to_start_without_auth_string(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # `config` prints compose syntax, where $$ is a literal $ (what the container's shell gets).
    command = [part.replace("$$", "$") for part in _resolved()["services"]["prefect-server"]["command"]]
    assert command[:2] == ["/bin/sh", "-c"]
    stub = tmp_path / "prefect"  # stands in for the real server
    stub.write_text('#!/bin/sh\necho "server started: $*"\n')
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    refused = subprocess.run(command, env={**env, "PREFECT_SERVER_API_AUTH_STRING": ""}, capture_output=True, text=True)
    assert refused.returncode == 78 and "PREFECT_SERVER_API_AUTH_STRING" in refused.stderr
    started = subprocess.run(
        command, env={**env, "PREFECT_SERVER_API_AUTH_STRING": "a:b"}, capture_output=True, text=True
    )
    assert started.returncode == 0 and "server start" in started.stdout


def test_secrets_reach_only_the_services_that_need_them() -> None:
    services = _resolved(**SECRETS)["services"]
    for secret, value in SECRETS.items():
        seen = {name for name, service in services.items() if value in json.dumps(service)}
        assert seen == ALLOWED[secret], f"{secret} visible to {sorted(seen)}"


def test_only_operator_ports_are_published_and_on_loopback_by_default() -> None:
    services = _resolved()["services"]
    published = {
        name: [(p.get("host_ip"), p["target"]) for p in service.get("ports", [])]
        for name, service in services.items()
        if service.get("ports")
    }
    assert published == {"timescaledb": [("127.0.0.1", 5432)], "prefect-server": [("127.0.0.1", 4200)]}


def test_grafana_reads_as_the_reader_login_and_publishes_on_loopback() -> None:
    result = _compose("--env-file", str(REPO / ".env.example"), "-f", str(COMPOSE), "--profile", "dashboards",
                      "config", "--format", "json", env=_clean_env(**SECRETS))
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    grafana = services["grafana"]
    seen = {name for name, service in services.items() if SECRETS["SMMDN_READER_DB_PASSWORD"] in json.dumps(service)}
    assert seen == {"db-users", "grafana"}  # the reader's password, and no other secret, reaches Grafana
    assert not {k for k, v in SECRETS.items() if k != "SMMDN_READER_DB_PASSWORD" and v in json.dumps(grafana)}
    assert [(p.get("host_ip"), p["target"]) for p in grafana["ports"]] == [("127.0.0.1", 3000)]
    binds = {v["target"]: v for v in grafana["volumes"] if v["type"] == "bind"}
    assert set(binds) == {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards/smmdn"}
    for bind in binds.values():
        assert bind["read_only"] and Path(bind["source"]).is_dir()
    datasource = yaml.safe_load((REPO / "infra/grafana/provisioning/datasources/timescaledb.yaml").read_text())
    assert datasource["datasources"][0]["user"] == "${SMMDN_READER_DB_USER}"
    assert {"SMMDN_READER_DB_USER", "SMMDN_READER_DB_PASSWORD", "SMMDN_GRAFANA_DB_HOST"} <= set(grafana["environment"])


def test_gpu_worker_reserves_a_gpu_and_workers_poll_the_two_pools() -> None:
    services = _resolved()["services"]
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert services["worker-gpu"]["build"]["dockerfile"].endswith("Dockerfile.gpu")
    pools = {name: _pool(services[name]["command"]) for name in ("worker-cpu", "worker-gpu")}
    assert pools == {"worker-cpu": "cpu", "worker-gpu": "gpu"}


def _pool(command: list[str]) -> str:
    return command[command.index("--pool") + 1]


def test_volumes_are_named_and_binds_read_only() -> None:
    config = _resolved()
    assert {"timescaledb-data", "prefect-db-data", "smmdn-data", "smmdn-backups"} <= set(config["volumes"])
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert volume.get("read_only"), f"{name}: writable bind mount {volume['source']}"
            else:
                assert volume["type"] == "volume" and volume["source"] in config["volumes"], (name, volume)


def test_workers_receive_every_settings_field() -> None:
    """A new Settings field must be wired into the containers (pass-through from the env file)."""
    expected = {f"SMMDN_{name.upper()}" for name in Settings.model_fields}
    services = _resolved()["services"]
    for worker in ("worker-cpu", "worker-gpu"):
        missing = expected - set(services[worker]["environment"])
        assert not missing, f"{worker} lacks {sorted(missing)}: add them to x-smmdn-environment in docker/compose.yaml"


def test_no_secret_literals_in_the_compose_source() -> None:
    source = yaml.safe_load(COMPOSE.read_text())
    secret_key = re.compile(r"PASSWORD|AUTH_STRING|API_KEY|SECRET|TOKEN|APPRISE_URLS")
    checked = 0
    for name, service in source["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if secret_key.search(key):
                checked += 1
                assert value is None or re.fullmatch(r"\$\{[A-Z0-9_]+(:-)?\}", str(value)), f"{name}.{key}={value!r}"
    assert checked >= 8
    assert not re.search(r"://[^/@\s:$]+:[^/@\s$]+@", COMPOSE.read_text()), "credentials in a URL"


@pytest.mark.parametrize("missing", ["PREFECT_SERVER_API_AUTH_STRING", "POSTGRES_PASSWORD"])
def test_example_env_file_leaves_secrets_empty(missing: str) -> None:
    env = _resolved()["services"]
    target = "prefect-server" if missing.startswith("PREFECT") else "timescaledb"
    assert env[target]["environment"][missing] == ""
