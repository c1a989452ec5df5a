"""Storage: TimescaleDB on PostgreSQL in production, SQLite as the embedded default."""

from smmdn.store.bulk import WriteResult
from smmdn.store.store import Store

__all__ = ["Store", "WriteResult"]
