"""Which day a daily cycle is for: the issue day, the instant it runs at, and ranges of days for replays.

Issue days are daily labels (UTC midnight); a run for an issue day sees observations up to the end of that
day (``data_end``) and holds the last ``holdout_days`` out of training to judge challengers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from smmdn.config import Settings
from smmdn.errors import InputError
from smmdn.timeutil import DAY

RUN_HOUR = pd.Timedelta(hours=6)  # nominal hour (UTC) after the issue day at which a replayed cycle "ran"


@dataclass(frozen=True)
class CycleDay:
    """One daily cycle: forecasts issued for ``issue`` (a daily label, UTC midnight) at ``now``."""

    issue: pd.Timestamp
    now: pd.Timestamp
    replay: bool = False

    @property
    def data_end(self) -> pd.Timestamp:
        """Exclusive end of the observations the cycle may see (the issue day included)."""
        return self.issue + DAY

    def holdout_start(self, settings: Settings) -> pd.Timestamp:
        """First day of the window held out from every training run and used to judge challengers."""
        return self.data_end - settings.holdout_days * DAY


def resolve_day(day: str | pd.Timestamp | None, settings: Settings, now: pd.Timestamp | None = None,
                replay: bool = False) -> CycleDay:
    """``day`` given: that issue day (``now`` = the nominal run time after it); else yesterday in the
    configured timezone (the last complete day)."""
    if day is not None:
        issue = pd.Timestamp(day)
        issue = (issue.tz_localize("UTC") if issue.tzinfo is None else issue.tz_convert("UTC")).normalize()
        run_at = now if now is not None else issue + DAY + RUN_HOUR
        return CycleDay(issue, run_at, replay)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    local = now.tz_convert(settings.timezone)
    issue = pd.Timestamp(local.date() - pd.Timedelta(days=1).to_pytimedelta(), tz="UTC")
    return CycleDay(issue, now, replay)


def day_range(start: str | pd.Timestamp, end: str | pd.Timestamp) -> list[pd.Timestamp]:
    """Issue days from ``start`` to ``end`` inclusive (UTC midnights)."""
    s, e = (pd.Timestamp(x).tz_localize("UTC") if pd.Timestamp(x).tzinfo is None else pd.Timestamp(x)
            for x in (start, end))
    if e < s:
        raise InputError("backfill end before start", where="--start/--end", fix="give start <= end")
    return list(pd.date_range(s.normalize(), e.normalize(), freq="D"))
