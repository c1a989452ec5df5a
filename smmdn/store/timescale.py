"""TimescaleDB specifics: detection, hypertables, licence-dependent policies, retention.

The Apache-2 edition (what Debian builds) has hypertables, ``time_bucket``, upserts and ``drop_chunks``
but not compression, continuous aggregates or policies; those need the Timescale licence (the
``timescale/timescaledb`` image). We detect the licence and degrade: retention runs from code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

log = logging.getLogger(__name__)


def extension_available(conn: sa.Connection) -> bool:
    """Whether the server can load timescaledb (installed files + preloaded library)."""
    row = conn.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")).first()
    return row is not None


def extension_version(conn: sa.Connection) -> str | None:
    if conn.dialect.name != "postgresql":
        return None
    return conn.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")).scalar()


def licence(conn: sa.Connection) -> str | None:
    """'apache' or 'timescale' (None without the extension)."""
    if extension_version(conn) is None:
        return None
    return conn.execute(sa.text("SELECT current_setting('timescaledb.license', true)")).scalar()


def make_hypertables(conn: sa.Connection, hypertables: dict[str, str]) -> None:
    """Turn the named tables into hypertables partitioned by their time column (idempotent).

    No default time index: each table's primary key already starts with its time column, and a
    redundant index costs every bulk write.
    """
    for table, time_column in hypertables.items():
        conn.execute(
            sa.text(
                "SELECT create_hypertable(CAST(:table AS regclass), CAST(:col AS name), "
                "chunk_time_interval => INTERVAL '30 days', if_not_exists => TRUE, migrate_data => TRUE, "
                "create_default_indexes => FALSE)"
            ),
            {"table": table, "col": time_column},
        )


def hypertables(conn: sa.Connection) -> list[str]:
    if extension_version(conn) is None:
        return []
    rows = conn.execute(sa.text("SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1"))
    return [r[0] for r in rows]


@dataclass
class PolicyReport:
    """What ``apply_policies`` did, for ``smmdn db check`` and the operator."""

    licence: str | None
    compression: list[str] = field(default_factory=list)
    retention: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


COMPRESSION = {
    "observations": ("site, depth_cm, sensor", "time DESC"),
    "forcing": ("site, variable", "time DESC"),
    "forecasts": ("site, depth_cm", "valid_time DESC, issue_time DESC"),
}


def apply_policies(conn: sa.Connection, retention_days: int | None) -> PolicyReport:
    """Compression (after 30 days) and retention policies where the licence allows them."""
    lic = licence(conn)
    report = PolicyReport(licence=lic)
    if lic is None:
        report.notes.append("no timescaledb extension: plain tables, retention runs from code")
        return report
    if lic != "timescale":
        report.notes.append(
            f"timescaledb licence '{lic}': no compression or policies; retention runs from code "
            "(smmdn db retention) — use the timescale/timescaledb image for native policies"
        )
        return report
    for table, (segment_by, order_by) in COMPRESSION.items():
        conn.execute(
            sa.text(
                f"ALTER TABLE {table} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = '{segment_by}', "
                f"timescaledb.compress_orderby = '{order_by}')"
            )
        )
        conn.execute(sa.text(f"SELECT add_compression_policy('{table}', INTERVAL '30 days', if_not_exists => TRUE)"))
        report.compression.append(table)
    if retention_days:
        for table in ("observations", "forcing"):
            conn.execute(
                sa.text(
                    f"SELECT add_retention_policy('{table}', INTERVAL '{int(retention_days)} days', "
                    "if_not_exists => TRUE)"
                )
            )
            report.retention.append(table)
    return report


def drop_old_chunks(conn: sa.Connection, table: str, older_than: timedelta) -> int:
    """Retention from code for the Apache edition: drop whole chunks older than ``older_than``."""
    dropped = conn.execute(
        sa.text("SELECT drop_chunks(CAST(:table AS regclass), older_than => CAST(:age AS interval))"),
        {"table": table, "age": f"{int(older_than.total_seconds())} seconds"},
    ).fetchall()
    return len(dropped)
