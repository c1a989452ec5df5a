"""A throwaway PostgreSQL + TimescaleDB cluster for tests and benchmarks.

Never the machine's default cluster: ``initdb`` into a temp directory, a free port on 127.0.0.1,
``shared_preload_libraries=timescaledb``, telemetry off; stopped and removed afterwards. ``initdb`` and
``pg_ctl`` refuse to run as root, so under root they run as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg


def _bindir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def _has_timescaledb(bindir: Path) -> bool:
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return False
    libdir = subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    return (Path(libdir) / "timescaledb.so").exists()


def unavailable_reason() -> str | None:
    """Why no cluster can be started here (None when it can)."""
    bindir = _bindir()
    if bindir is None:
        return "needs: PostgreSQL server binaries (run infra/install-timescaledb.sh)"
    if not _has_timescaledb(bindir):
        return "needs: the TimescaleDB extension (run infra/install-timescaledb.sh)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    bindir: Path
    datadir: Path
    port: int
    user: str = "smmdn"
    password: str = "smmdn-test"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(database, "postgresql"), autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        with self.connect() as conn:
            for attempt in range(100):
                try:
                    conn.execute(sql)
                    break
                except psycopg.errors.ObjectInUse:
                    # TimescaleDB's scheduler may still hold the template for a moment.
                    if attempt == 99:
                        raise
                    self._disconnect_all(conn, template)
                    time.sleep(0.05)
        return self.url(name)

    def freeze_template(self, name: str) -> None:
        """No more connections to ``name`` (background workers included), so it can be copied."""
        with self.connect() as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            self._disconnect_all(conn, name)

    @staticmethod
    def _disconnect_all(conn: psycopg.Connection, database: str | None) -> None:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        _run_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"], check=False)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _run_as_postgres(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def start_cluster() -> Cluster:
    """initdb + start on a free loopback port; returns once the server accepts connections."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    bindir = _bindir()
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="smmdn-pg-"))
    datadir = root / "data"
    pwfile = root / "pw"
    cluster = Cluster(bindir=bindir, datadir=datadir, port=_free_port())
    pwfile.write_text(cluster.password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    _run_as_postgres(
        [
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            cluster.user,
            "-A",
            "scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]
    )
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write(
            "\nlisten_addresses = '127.0.0.1'\n"
            f"port = {cluster.port}\n"
            f"unix_socket_directories = '{root}'\n"
            "shared_preload_libraries = 'timescaledb'\n"
            "timescaledb.telemetry_level = off\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "max_connections = 100\nshared_buffers = 256MB\nmax_wal_size = 2GB\n"
            "timescaledb.max_background_workers = 2\n"
        )
    _run_as_postgres([str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(root / "log"), "-w", "-t", "60", "start"])
    deadline = time.monotonic() + 30
    while True:
        try:
            with cluster.connect():
                return cluster
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                log = (root / "log").read_text() if (root / "log").exists() else ""
                cluster.stop()
                raise RuntimeError(f"PostgreSQL did not accept connections; log:\n{log[-2000:]}") from None
            time.sleep(0.2)
