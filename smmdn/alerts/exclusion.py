"""The operators' network-wide alert when too many sensors are left out of the model at once.

Why: a sensor under an open fault alert stops teaching and steering the model (``smmdn.cycle.inputs``); a
false fault must not silently starve it, so when more than ``SMMDN_ALERT_EXCLUDED_SHARE_MAX`` of the
network's sensors are excluded the ops route hears about it (one network-wide alert, ``alerts.network``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from smmdn.alerts.network import network_transition
from smmdn.alerts.routing import Routes

if TYPE_CHECKING:
    from smmdn.store import Store

KIND = "sensors_excluded"


def exclusion_transition(store: Store, now: pd.Timestamp, excluded: int, total: int, limit: float,
                         routes: Routes) -> str | None:
    """Open / update / resolve the excluded-share alert; returns the event queued, if any."""
    share = excluded / total if total else 0.0
    details = {"excluded": excluded, "sensors": total, "share": round(share, 3), "limit": limit,
               "basis": f"{excluded} of {total} sensors under an open fault alert are left out of the model"}
    return network_transition(store, now, KIND, total > 0 and share > limit, details, routes, observed=share,
                              resolved_note=f"{excluded} of {total} sensors excluded now")
