"""Silences and maintenance windows: which alerts they mute, and which days maintenance takes out of detection.

The deliverer sees silences only through the small ``Muter`` interface (as Alertmanager's notifier does),
so what mutes a message can grow (inhibition, say) without the delivery pipeline knowing about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from smmdn.store import alerts as db
from smmdn.timeutil import DAY

if TYPE_CHECKING:
    from smmdn.store.store import Store


class Muter(Protocol):
    """Whatever mutes an alert's messages right now: returns what mutes it (a silence row), or None."""

    def muting(self, alert: dict[str, Any]) -> dict[str, Any] | None: ...


def matching_silence(alert: dict[str, Any], silences: pd.DataFrame) -> dict[str, Any] | None:
    """The first silence or maintenance window (active at the time ``silences`` was read) covering ``alert``."""
    if silences is None or silences.empty:
        return None
    for s in silences.to_dict("records"):
        if s["site"] not in (alert["site"], "*"):
            continue
        if s["kind"] == "silence":
            if s.get("depth_cm") is not None and not pd.isna(s["depth_cm"]) and float(s["depth_cm"]) != float(
                    alert["depth_cm"]):
                continue
            if s.get("sensor") and s["sensor"] != alert["sensor"]:
                continue
            if s.get("alert_kind") and s["alert_kind"] != alert["kind"]:
                continue
        return s
    return None


class Silences:
    """The silences and maintenance windows of one instant, read once (a ``Muter``)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    @classmethod
    def active(cls, store: Store, at: pd.Timestamp) -> Silences:
        return cls(db.read_silences(store, active_at=at))

    def muting(self, alert: dict[str, Any]) -> dict[str, Any] | None:
        return matching_silence(alert, self.frame)


def drop_maintenance(store: Store, days: pd.DataFrame, offsets: dict[str, float]) -> pd.DataFrame:
    """Daily rows whose local day overlaps a maintenance window of their site are not evaluated."""
    if days.empty:
        return days
    offset = pd.to_timedelta(days["site"].map(offsets).fillna(0.0).to_numpy(), unit="h")
    start = days["time"] - offset
    windows = db.read_silences(store, kind="maintenance", overlapping=(start.min(), (start + DAY).max()))
    if windows.empty:
        return days
    hit = np.zeros(len(days), dtype=bool)
    for w in windows.itertuples():
        hit |= ((days["site"] == w.site) | (w.site == "*")).to_numpy() & (start < w.ends_at).to_numpy() & (
            (start + DAY) > w.starts_at).to_numpy()
    return days.loc[~hit]
