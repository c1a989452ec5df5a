"""Which training a day gets, and the whole drift → retrain protocol.

Fine-tune daily; retrain in full on cold start, on ``Settings.full_retrain_weekday``, or after verification
reported calibration drift that no full retrain has answered yet. Verification asks for a retrain at most
once per champion lineage (``request_retrain``); the daily flow records the drift (``record_drift``) and
the champion step records each full retrain (``record_full_retrain``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pandas as pd

from smmdn.config import Settings
from smmdn.cycle.day import CycleDay

if TYPE_CHECKING:
    from smmdn.store import Store


class DriftVerdict(Protocol):
    """What the protocol needs of verification's drift report (``smmdn.verify.verification.DriftReport``)."""

    drift: bool
    since_retrain: str | None
    reasons: list[str]


DRIFT_WATERMARK = ("verification", "calibration_drift")
DRIFT_HANDLED = ("verification", "drift_retrained")


def record_drift(store: Store, at: pd.Timestamp) -> None:
    """Remember that verification saw calibration drift (the next cycle retrains in full)."""
    store.set_watermark(*DRIFT_WATERMARK, at)


def record_full_retrain(store: Store, at: pd.Timestamp) -> None:
    """A full retrain ran at ``at``: drift reported before it is dealt with."""
    store.set_watermark(*DRIFT_HANDLED, at)


def training_plan(store: Store, settings: Settings, cycle: CycleDay) -> tuple[str, str]:
    """``(kind, why)``: ``full`` on cold start, on the weekly retrain day or after calibration drift
    not yet answered by a full retrain; ``fine-tune`` otherwise."""
    if store.champion() is None:
        return "full", "cold start: no champion yet"
    if cycle.issue.weekday() == settings.full_retrain_weekday:
        return "full", f"weekly full retrain (weekday {settings.full_retrain_weekday})"
    drift = store.get_watermark(*DRIFT_WATERMARK)
    handled = store.get_watermark(*DRIFT_HANDLED)
    if drift is not None and (handled is None or drift > handled):
        return "full", f"verification reported calibration drift at {drift.isoformat()}"
    return "fine-tune", "daily fine-tune of the champion"


def request_retrain(store: Store, now: pd.Timestamp, report: DriftVerdict) -> bool:
    """Whether this drift should schedule a full retrain.

    Once per champion lineage: if a full retrain already ran after the request and the champion (hence
    the lineage root) stayed the same — the challenger was rejected — asking again every day would only
    burn GPU time; the drift alert stays open and the operators decide.
    """
    if not report.drift:
        return False
    key = ("verification", f"drift_retrain_for:{report.since_retrain or '-'}")
    requested = store.get_watermark(*key)
    handled = store.get_watermark(*DRIFT_HANDLED)
    if requested is not None and handled is not None and handled > requested:
        report.reasons.append(f"a full retrain ran after this drift was reported ({handled.isoformat()}) and the "
                              f"champion's lineage ({report.since_retrain}) stayed: not asking again")
        return False
    if requested is None:
        store.set_watermark(*key, now)
    return True
