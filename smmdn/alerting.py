"""Thin adapter from the daily cycle to the alerts engineer's modules (anomalies, notify, verification).

Why an adapter: the cycle must run (and say so) while those modules are absent or change shape; each
call returns a JSON-able summary with ``status`` = ``ok`` | ``unavailable`` | ``failed`` and never
raises, so a broken notifier cannot stop forecasts from being issued (the flow logs it at WARNING).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import pandas as pd

from smmdn.config import Settings

log = logging.getLogger(__name__)


def _call(module: str, name: str, *args: Any) -> dict[str, Any]:
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ModuleNotFoundError, AttributeError) as exc:
        return {"status": "unavailable", "detail": f"{module}.{name}: {exc}"}
    try:
        result = fn(*args)
    except Exception as exc:
        log.warning("%s.%s failed: %s", module, name, exc)
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


def deliver(store: Any, settings: Settings) -> dict[str, Any]:
    return _call("smmdn.notify", "deliver_outbox", store, settings)


def verify(store: Any, now: pd.Timestamp, settings: Settings) -> dict[str, Any]:
    """Verification summary plus ``drift`` (bool): calibration drift that calls for a full retrain."""
    out = _call("smmdn.verification", "verify", store, now, settings)
    out["drift"] = drift_of(out.get("result"))
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
