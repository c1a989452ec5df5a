"""Network-wide alerts for the operators (site ``*``): opened, updated and resolved from a yes/no verdict.

Why one home: calibration drift and a champion that cannot be loaded are the system's problems, not a
probe's; both are one alert for the whole network, routed to ``operators:`` (``OPERATOR_KINDS``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.alerts.lifecycle import Action, Handle, apply
from smmdn.alerts.routing import OPERATOR_KINDS, Routes
from smmdn.store import alerts as db

if TYPE_CHECKING:
    from smmdn.store import Store


def network_transition(store: Store, now: pd.Timestamp, kind: str, active: bool, details: dict[str, Any],
                       routes: Routes, *, observed: float | None = None, attachment: bytes | None = None,
                       resolved_note: str = "back to normal") -> str | None:
    """Open / update / resolve the network-wide ``kind`` alert; returns the event queued, if any."""
    if kind not in OPERATOR_KINDS:
        raise ValueError(f"{kind!r} is not a network-wide operator alert ({', '.join(OPERATOR_KINDS)})")
    current = db.read_alerts(store, status=db.ACTIVE, kinds=[kind])
    handle = Handle(int(current.iloc[0]["id"]), current.iloc[0].to_dict()) if not current.empty else None
    if active and handle is None:
        values = {"kind": kind, "site": "*", "depth_cm": 0.0, "sensor": "*", "window_start": now,
                  "window_end": now, "status": "open", "created_at": now, "details": details, "observed": observed}
        action = Action("open", Handle(None, {}), values, "opened", now)
    elif active and handle is not None:
        action = Action("update", handle, {"window_end": now, "details": details, "observed": observed})
    elif not active and handle is not None:
        action = Action("resolve", handle, {"status": "resolved", "resolved_at": now, "resolved_by": "auto",
                                            "details": details}, "resolved", now, note=resolved_note)
    else:
        return None
    apply(store, [action], now, None, None, routes, attachments={id(action): attachment} if attachment else None)
    return action.event
