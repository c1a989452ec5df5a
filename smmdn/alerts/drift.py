"""The network-wide calibration-drift alert: opened, updated and resolved from verification's verdict.

One alert for the whole network (site ``*``), routed to the operators (``operators:`` in the routes file),
not to field teams: drift is the model's problem, not a probe's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.alerts.network import network_transition
from smmdn.alerts.routing import Routes

if TYPE_CHECKING:
    from smmdn.store import Store


def drift_transition(store: Store, now: pd.Timestamp, drift: bool, details: dict[str, Any], routes: Routes,
                     attachment: bytes | None = None) -> str | None:
    """Open / update / resolve the network-wide calibration-drift alert; returns the event queued, if any."""
    return network_transition(
        store, now, "calibration_drift", drift, details, routes, observed=details.get("coverage_90"),
        attachment=attachment,
        resolved_note="calibration back inside the limits (or too few scores since the last full retrain)")
