"""The network-wide calibration-drift alert: opened, updated and resolved from verification's verdict.

One alert for the whole network (site ``*``), routed to the operators (``operators:`` in the routes file),
not to field teams: drift is the model's problem, not a probe's.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from smmdn.alerts.lifecycle import Action, Handle, apply
from smmdn.alerts.routing import Routes
from smmdn.store import alerts as db


def drift_transition(store: Any, now: pd.Timestamp, drift: bool, details: dict[str, Any], routes: Routes,
                     attachment: bytes | None = None) -> str | None:
    """Open / update / resolve the network-wide calibration-drift alert; returns the event queued, if any."""
    active = db.read_alerts(store, status=db.ACTIVE, kinds=["calibration_drift"])
    handle = Handle(int(active.iloc[0]["id"]), active.iloc[0].to_dict()) if not active.empty else None
    if drift and handle is None:
        values = {"kind": "calibration_drift", "site": "*", "depth_cm": 0.0, "sensor": "*", "window_start": now,
                  "window_end": now, "status": "open", "created_at": now, "details": details,
                  "observed": details.get("coverage_90")}
        action = Action("open", Handle(None, {}), values, "opened", now)
    elif drift and handle is not None:
        action = Action("update", handle, {"window_end": now, "details": details,
                                           "observed": details.get("coverage_90")})
    elif not drift and handle is not None:
        action = Action("resolve", handle, {"status": "resolved", "resolved_at": now, "resolved_by": "auto",
                                            "details": details}, "resolved", now,
                        note="calibration back inside the limits (or too few scores since the last full retrain)")
    else:
        return None
    apply(store, [action], now, None, None, routes, attachments={id(action): attachment} if attachment else None)
    return action.event
