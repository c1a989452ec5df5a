"""Alert tasks of the daily cycle: detect (new observations vs the predicted mixture → lifecycle → outbox)
and deliver (drain the outbox through apprise). Each returns a JSON-able summary; the daily flow turns a
failure into a ``failed`` step (``common.outcome``) so a broken detector or notifier never stops forecasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from prefect import task

from flows import common
from flows.secrets import prefect_secret


@task(name="detect-anomalies", timeout_seconds=900, persist_result=True)
def detect_task(now: str, sites: list[str] | None = None) -> Any:
    """Detection for ``sites`` (None: every site; ``[]``: the network-wide checks alone)."""
    from smmdn.alerts.routing import load_routes
    from smmdn.alerts.step import detect

    cfg = common.settings()
    routes = load_routes(cfg, secrets=prefect_secret)
    outcome = detect(common.store(cfg), pd.Timestamp(now), cfg, routes=routes, sites=sites)
    for transition in outcome.alerts:
        alert_event(transition)
    return common.summarise(outcome)


def alert_event(transition: dict[str, Any]) -> None:
    """One Prefect event per alert transition (``smmdn.alert.opened`` …; the network-wide calibration drift as
    ``smmdn.calibration-drift.opened`` …, so an automation needs no label filter): automations and the event
    feed see alerts, not only flow states. Telling Prefect is a courtesy: it never fails the step."""
    from prefect.events import emit_event

    site, kind = str(transition["site"]), str(transition["kind"])
    where = "network" if site == "*" else f"{site} {float(transition['depth_cm']):g} cm {transition['sensor']}"
    try:
        family = "calibration-drift" if kind == "calibration_drift" else "alert"
        emit_event(event=f"smmdn.{family}.{transition['event']}",
                   resource={"prefect.resource.id": f"smmdn.alert.{transition['alert']}",
                             "prefect.resource.name": f"{kind} {where}", "smmdn.site": site, "smmdn.kind": kind},
                   payload={k: (v if isinstance(v, int | float | str | bool) or v is None else str(v))
                            for k, v in transition.items()})
    except Exception as exc:
        common.logger().warning("alert event not emitted: %s", exc)


@task(name="deliver-alerts", timeout_seconds=600, persist_result=True)
def deliver_task(now: str | None = None) -> Any:
    """Plan the incident notifications due at ``now`` (the cycle's clock: group_wait and the reminder
    backoff run on it), then drain the outbox. No task retries: the outbox is the retry (a row that failed
    stays pending with its backoff)."""
    from smmdn.alerts.deliver import deliver_outbox

    cfg = common.settings()
    return common.summarise(deliver_outbox(common.store(cfg), cfg, now, secrets=prefect_secret))


def detect(now: pd.Timestamp, sites: Sequence[str] | None = None) -> dict[str, Any]:
    """The detect step's summary (``status`` ok | failed); ``sites`` as in ``detect_task``."""
    subset = None if sites is None else list(sites)
    return common.outcome(detect_task(now.isoformat(), subset, return_state=True), "detection")


def deliver(now: pd.Timestamp | None = None) -> dict[str, Any]:
    """The delivery step's summary (``status`` ok | failed); ``now``: the cycle's clock (default: the wall clock)."""
    return common.outcome(deliver_task(None if now is None else now.isoformat(), return_state=True),
                          "alert delivery")
