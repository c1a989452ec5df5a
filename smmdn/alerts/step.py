"""The detect step of the daily cycle: read what each site completed since its watermark, score and classify
it (``smmdn.alerts.detect``), and let the lifecycle turn the conditions into alert transitions and outbox rows
(``smmdn.alerts.lifecycle``), in one transaction.

Maintenance windows remove a site's days from detection; replaced sensors stop at their replacement.
Each site has a watermark (the last local day evaluated), so a rerun for the same ``now`` changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.alerts import consensus as agreement_rules
from smmdn.alerts import lifecycle
from smmdn.alerts.consensus import consensus
from smmdn.alerts.daycache import daily_context
from smmdn.alerts.detect import (
    KEY,
    MISSING_WINDOW,
    SERIES,
    Rules,
    classify,
    complete,
    runs,
)
from smmdn.alerts.exclusion import exclusion_transition
from smmdn.alerts.routing import Routes, load_routes
from smmdn.alerts.scorecache import score_window
from smmdn.alerts.silences import drop_maintenance
from smmdn.config import Settings
from smmdn.store import alerts as db
from smmdn.store.sites import site_offsets
from smmdn.timeutil import DAY, utc

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)


@dataclass
class DetectOutcome:
    """What one detection run saw and did (the daily summary shows ``opened``)."""

    now: str
    days: list[str] = field(default_factory=list)
    series: int = 0
    observations: int = 0
    outside: int = 0
    opened: int = 0
    reopened: int = 0
    resolved: int = 0
    escalated: int = 0  # reminders are the incident's: NotifyOutcome.queued['reminder'] (smmdn.alerts.notify)
    messages_queued: int = 0
    active_alerts: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FAULT_HOLDING = ("sensor_fault", "flatline")


def held_sensors(store: Store) -> set[tuple[str, float, str]]:
    """Sensors under an open fault alert: the consensus starts them excluded (the alert is the state)."""
    active = db.read_alerts(store, status=db.ACTIVE)
    if active.empty:
        return set()
    active = active.loc[active["kind"].isin(FAULT_HOLDING) & (active["sensor"] != "*")]
    return {(str(r.site), float(r.depth_cm), str(r.sensor)) for r in active.itertuples()}


def fault_periods(store: Store) -> dict[tuple[str, float, str], list[tuple[pd.Timestamp, pd.Timestamp | None]]]:
    """Every fault alert's period per sensor: its first day to the day after its last (open-ended while the
    alert is active). The consensus keeps a sensor out on a past fault's days (a trailing window that starts
    inside one must not learn the faulty level) and starts sensors under an open alert excluded."""
    found = db.read_alerts(store, kinds=list(FAULT_HOLDING))
    out: dict[tuple[str, float, str], list[tuple[pd.Timestamp, pd.Timestamp | None]]] = {}
    if found.empty:
        return out
    for r in found.loc[found["sensor"] != "*"].itertuples():
        since = pd.Timestamp(r.window_start).floor("D")
        until = None if r.status in db.ACTIVE else pd.Timestamp(r.window_end).floor("D") + DAY
        out.setdefault((str(r.site), float(r.depth_cm), str(r.sensor)), []).append((since, until))
    return out


def _site_of(action: lifecycle.Action) -> str:
    return str(action.handle.row.get("site", action.values.get("site")))


def network_checks(store: Store, now: pd.Timestamp | str | None, settings: Settings, routes: Routes | None = None,
                   last: pd.DataFrame | None = None) -> str | None:
    """The network-wide share of sensors left out of the model (``alerts.exclusion``): once per cycle, over
    every site — ``detect`` runs it itself unless it is a shard's run (``sites`` not empty)."""
    now = utc(now)
    routes = routes if routes is not None else load_routes(settings)
    if last is None:
        last = lifecycle.last_readings(store, now - MISSING_WINDOW, db.sensor_periods(store), now)
    expected = int(last[SERIES].drop_duplicates().shape[0]) if last is not None and not last.empty else 0
    event = exclusion_transition(store, now, len(held_sensors(store)), expected, settings.alert_excluded_share_max,
                                 routes)
    if event:
        log.warning("alerts: sensors excluded from the model: %s", event)
    return event


def detect(store: Store, now: pd.Timestamp | str | None, settings: Settings, *, rules: Rules | None = None,
           routes: Routes | None = None, sites: Sequence[str] | None = None) -> DetectOutcome:
    """Evaluate the days each site completed since its watermark, apply the alert lifecycle, queue messages.

    ``sites``: only these sites' series and alerts (a shard of the daily cycle); None: every site. The
    network-wide duties (``network_checks``, the clocks of network alerts, site ``*``) run only for the whole
    network: ``sites`` None, or empty (``[]``: them alone, the sharded cycle's parent). Daily values come
    from the detector state in the store (``smmdn.alerts.daycache``): only readings written since the last
    run are read raw."""
    now = utc(now)
    scope = None if sites is None else {str(s) for s in sites}
    network = not scope
    rules = rules or Rules.from_settings(settings)
    routes = routes if routes is not None else load_routes(settings)
    offsets = site_offsets(store)
    marks = lifecycle.site_watermarks(store)
    if scope is not None:
        marks = {s: m for s, m in marks.items() if s in scope}
    default_from = (now - rules.lookback_days * DAY).floor("D")
    first = min([m + DAY for m in marks.values()] + [default_from]) if marks else default_from
    read_from = first - max(rules.context_days + 1, rules.consensus_days) * DAY  # the consensus learns over it
    periods = db.sensor_periods(store)
    days = daily_context(store, read_from, now, offsets, periods, sites)
    outcome = DetectOutcome(now=now.isoformat())
    if not days.empty:
        days = days.loc[complete(days, now, offsets)]
        days = days.loc[days["time"] >= read_from]
        days = drop_maintenance(store, days, offsets)
    fresh = pd.Series(False, index=days.index)
    if not days.empty:
        start_of = days["site"].map(lambda s: marks.get(s, default_from - DAY) + DAY)
        fresh = days["time"] >= start_of
    outcome.series = int(days.loc[fresh, SERIES].drop_duplicates().shape[0]) if not days.empty else 0
    outcome.observations = int(fresh.sum())
    outcome.days = sorted({t.date().isoformat() for t in days.loc[fresh, "time"]}) if not days.empty else []

    conditions = pd.DataFrame(columns=["time", *KEY, "state"])
    scored = pd.DataFrame()
    if not days.empty and fresh.any():
        scored = score_window(store, days, fresh, rules, read_from)  # cached verdicts of the earlier days
        thresholds = replace(agreement_rules.DEFAULT, readmit_days=rules.readmit_days)
        agreement = consensus(scored, fault_periods(store), thresholds)
        conditions = runs(classify(scored, agreement, evidence_from=days.loc[fresh, "time"].min()))
        conditions = conditions.merge(
            days.loc[fresh, ["time", "site"]].drop_duplicates().assign(_fresh=True), on=["time", "site"], how="left")
        conditions["_fresh"] = conditions["_fresh"].eq(True)
        outcome.outside = int(scored.loc[scored["time"].isin(days.loc[fresh, "time"]), "outside"].sum())
    every = lifecycle.last_readings(store, now - MISSING_WINDOW, periods, now)
    last = every if scope is None else every.loc[every["site"].astype(str).isin(scope)].reset_index(drop=True)
    plan = lifecycle.plan(store, conditions, scored, last, now, rules, periods)
    if scope is not None:  # not the clocks of other sites' alerts, nor the network's unless it is the network
        plan = [a for a in plan if _site_of(a) in scope or (network and _site_of(a) == "*")]
    new_marks = {}
    if not days.empty and fresh.any():
        new_marks = days.loc[fresh].groupby("site")["time"].max().to_dict()
    applied = lifecycle.apply(store, plan, now, settings, rules, routes, new_marks)
    for key in ("opened", "reopened", "resolved", "escalated", "messages_queued"):
        setattr(outcome, key, applied[key])
    if network:  # once per cycle over every site: a shard leaves it to the parent's network-only run
        network_checks(store, now, settings, routes, every)
    outcome.alerts = applied["events"]  # every transition (the flow emits each as an event; summaries cut to 50)
    outcome.active_alerts = len(db.read_alerts(store, status=db.ACTIVE))
    log.info("detection at %s: %d series over %d day(s), %d outside; opened %d, reopened %d, resolved %d, "
             "escalated %d; %d message(s) queued; %d alert(s) active", f"{now:%Y-%m-%d %H:%M} UTC",
             outcome.series, len(outcome.days), outcome.outside, outcome.opened, outcome.reopened, outcome.resolved,
             outcome.escalated, outcome.messages_queued, outcome.active_alerts)
    return outcome
