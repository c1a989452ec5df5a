"""Command-line values every command reads the same way (one home: times)."""

from __future__ import annotations

from typing import Any


def parse_time(value: str | None, flag: str) -> Any:
    """ISO 8601 → UTC ``pd.Timestamp`` (naive is UTC); ``None`` stays ``None``; anything else is an
    ``InputError`` naming the flag (exit 2), never a traceback.

    Strict ISO (``datetime.fromisoformat``): '03/04/2024' would be a guess between March and April.
    """
    from datetime import datetime

    import pandas as pd

    from smmdn.errors import InputError

    if value is None:
        return None
    try:
        stamp = pd.Timestamp(datetime.fromisoformat(value.strip()))
    except (ValueError, TypeError, OverflowError) as exc:
        stamp, cause = pd.NaT, exc
    else:
        cause = None
    if pd.isna(stamp):
        raise InputError(f"cannot read {value!r} as a time", where=flag,
                         fix="use ISO 8601, e.g. 2024-05-01 or 2024-05-01T08:00Z") from cause
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
