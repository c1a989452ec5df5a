"""The operators' network-wide alert when too many sensors are left out of the model at once.

Why: a sensor under an open fault alert stops teaching and steering the model (``smmdn.cycle.inputs``); a
false fault must not silently starve it, so when more than ``SMMDN_ALERT_EXCLUDED_SHARE_MAX`` of the
network's sensors are excluded the ops route hears about it (same path as the calibration-drift alert).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from smmdn.alerts.lifecycle import Action, Handle, apply
from smmdn.alerts.routing import Routes
from smmdn.store import alerts as db

KIND = "sensors_excluded"


def exclusion_transition(store: Any, now: pd.Timestamp, excluded: int, total: int, limit: float,
                         routes: Routes) -> str | None:
    """Open / update / resolve the excluded-share alert; returns the event queued, if any."""
    share = excluded / total if total else 0.0
    over = total > 0 and share > limit
    details = {"excluded": excluded, "sensors": total, "share": round(share, 3), "limit": limit,
               "basis": f"{excluded} of {total} sensors under an open fault alert are left out of the model"}
    active = db.read_alerts(store, status=db.ACTIVE, kinds=[KIND])
    handle = Handle(int(active.iloc[0]["id"]), active.iloc[0].to_dict()) if not active.empty else None
    if over and handle is None:
        values = {"kind": KIND, "site": "*", "depth_cm": 0.0, "sensor": "*", "window_start": now, "window_end": now,
                  "status": "open", "created_at": now, "details": details, "observed": share}
        action = Action("open", Handle(None, {}), values, "opened", now)
    elif over and handle is not None:
        action = Action("update", handle, {"window_end": now, "details": details, "observed": share})
    elif not over and handle is not None:
        action = Action("resolve", handle, {"status": "resolved", "resolved_at": now, "resolved_by": "auto",
                                            "details": details}, "resolved", now,
                        note=f"{excluded} of {total} sensors excluded now")
    else:
        return None
    apply(store, [action], now, None, None, routes)
    return action.event
