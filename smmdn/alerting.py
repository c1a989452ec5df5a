"""Adapter from the daily cycle to detection, delivery and verification: each call returns a JSON-able summary
with ``status`` = ``ok`` | ``failed`` and never raises, so a broken detector or notifier cannot stop
forecasts from being issued (the flow logs it at WARNING and the daily summary shows it).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import pandas as pd

from smmdn.config import Settings

log = logging.getLogger(__name__)


def _call(module: str, name: str, *args: Any) -> dict[str, Any]:
    try:  # the import is inside: a missing optional dependency (matplotlib, apprise) fails this step only
        result = getattr(importlib.import_module(module), name)(*args)
    except Exception as exc:
        log.warning("%s.%s failed: %s", module, name, exc, exc_info=True)
        return {"status": "failed", "detail": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", "result": summarise(result)}


def summarise(result: Any) -> Any:
    """Frames → row counts + a few rows; dataclasses/objects → dicts; everything JSON-able."""
    if isinstance(result, pd.DataFrame):
        return {"rows": len(result), "head": result.head(10).astype(str).to_dict("records")}
    if hasattr(result, "to_dict") and not isinstance(result, dict):
        try:
            return summarise(result.to_dict())
        except TypeError:
            pass
    if hasattr(result, "__dataclass_fields__"):
        from dataclasses import asdict

        return summarise(asdict(result))
    if isinstance(result, dict):
        return {str(k): summarise(v) for k, v in result.items()}
    if isinstance(result, list | tuple):
        return [summarise(v) for v in result][:50]
    if isinstance(result, int | float | str | bool) or result is None:
        return result
    return str(result)


def detect(store: Any, now: pd.Timestamp, settings: Settings) -> dict[str, Any]:
    return _call("smmdn.anomalies", "detect", store, now, settings)


def deliver(store: Any, settings: Settings, now: pd.Timestamp | None = None) -> dict[str, Any]:
    return _call("smmdn.notify", "deliver_outbox", store, settings, now)


def verify(store: Any, now: pd.Timestamp, settings: Settings) -> dict[str, Any]:
    """Verification summary plus ``drift`` (calibration drift seen) and ``retrain`` (drift that asks for a
    full retrain: once per champion lineage, see ``smmdn.verification.request_retrain``)."""
    out = _call("smmdn.verification", "verify", store, now, settings)
    out["drift"] = drift_of(out.get("result"))
    result = out.get("result")
    out["retrain"] = bool(result.get("retrain", out["drift"])) if isinstance(result, dict) else out["drift"]
    return out


def drift_of(result: Any) -> bool:
    """Read a drift flag from whatever shape ``verify`` returns (bool, or a mapping with a drift key)."""
    if isinstance(result, bool):
        return result
    if isinstance(result, dict):
        for key in ("drift", "calibration_drift", "retrain"):
            if key in result:
                return bool(result[key])
    return False
