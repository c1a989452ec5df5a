"""Time on the ground floor: one day, and "this instant in UTC" (imports nothing of smmdn).

Every step takes ``now`` as an argument (tests move the clock instead of sleeping); ``utc`` turns what a
caller passes (None for the wall clock, a string, a naive or an aware timestamp) into an aware UTC stamp.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

DAY = pd.Timedelta(days=1)


def utc(value: Any = None) -> pd.Timestamp:
    """``value`` as an aware UTC timestamp (None: now; naive values are read as UTC)."""
    stamp = pd.Timestamp.now(tz="UTC") if value is None else pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
