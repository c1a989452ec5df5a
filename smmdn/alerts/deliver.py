"""Delivery: drain the alert outbox through apprise, retrying with backoff; nothing lost, nothing sent twice.

Why an outbox: lifecycle transitions write their messages in the same transaction as the transition
(``smmdn.alerts.lifecycle``), so an alert can never exist without its message or the reverse, and a
receiver that is down only delays delivery: the row stays ``pending`` with its ``last_error``,
``attempts`` and ``next_attempt_at`` (exponential backoff from ``SMMDN_ALERT_DELIVERY_BACKOFF_S`` up to
``…_BACKOFF_MAX_S``). After ``SMMDN_ALERT_DELIVERY_ATTEMPTS`` a row is parked as ``failed`` — still in
the table, listed by ``smmdn alerts outbox``, put back by ``smmdn alerts retry``.

Exactly once, as far as it can be had: a row is *claimed* first (``pending`` → ``sending``, attempts + 1,
committed) by a conditional update that only one deliverer can win, then sent, then marked ``sent``.
Two deliverers running at once therefore never both send a row. The one window left is a crash after
the receiver accepted the message and before ``sent`` was committed: the row stays ``sending``; once
its lease (``SMMDN_ALERT_DELIVERY_LEASE_S``) has run out the next run sends it again. That is the
trade-off chosen: **at-least-once** across a crash in that window (a lost alert is worse than a
duplicate) — and every message carries its idempotency key (``incident:<id>:<team>:n<seq>:<event>:<target>``,
``digest:<team>:<day>:<target>``; rows queued before revision 0009: ``alert:<id>:r<revision>:<event>:<target>``)
as the HTTP header ``X-Smmdn-Idempotency-Key`` for json/form/xml receivers and in the text footer for
the others, so a receiver that remembers keys makes the duplicate harmless (exactly-once in effect).

Suppression is decided at send time, from the state then: an active silence or maintenance window
covering the alert (seen through the ``Muter`` interface of ``smmdn.alerts.silences``), or an
acknowledgement / resolution that makes a reminder or escalation pointless, marks the row ``suppressed``
with the reason (kept, never silently dropped).

Plots: a row carries either PNG bytes (the drift alert's reliability plot) or a plot spec; a spec is drawn
here, once per spec and run, and only for a message that is about to be sent. A plot that cannot be drawn
never holds a message back: it goes out without it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd

from smmdn.alerts.message import severity
from smmdn.alerts.routing import DeliveryConfigError, Routes, SecretResolver, load_routes
from smmdn.alerts.silences import Muter, Silences
from smmdn.config import Settings
from smmdn.errors import InputError
from smmdn.redact import redact
from smmdn.store import alerts as db
from smmdn.timeutil import utc

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)

KEY_HEADER = "X-Smmdn-Idempotency-Key"
HEADER_SCHEMES = ("json", "jsons", "form", "forms", "xml", "xmls")
AFTER_ACK = ("reminder", "escalated")
_LOG_PREFIX = re.compile(r"^\S+ \S+ - [A-Z]+ - ", re.M)


@dataclass
class DeliveryOutcome:
    """What one delivery run did, and what is left in the outbox."""

    attempted: int = 0
    sent: int = 0
    suppressed: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    notifications: dict[str, Any] = field(default_factory=dict)  # what the planning before delivery queued

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def backoff(attempts: int, settings: Settings) -> pd.Timedelta:
    """Delay before attempt ``attempts + 1``: base × 2^(attempts − 1), capped."""
    seconds = min(settings.alert_delivery_backoff_s * 2 ** max(attempts - 1, 0), settings.alert_delivery_backoff_max_s)
    return pd.Timedelta(seconds=seconds)


def incident_suppression(store: Store, incident_id: int, event: str, muter: Muter) -> str | None:
    """Why an incident message should not go out now: every speaking member muted, or an acknowledgement /
    resolution since it was queued that makes a reminder or escalation pointless."""
    from smmdn.alerts.incidents import load

    inc = load(store, incident_id)
    if inc is None:
        return None
    speaking = inc.speaking()
    hits = [muter.muting(m) for m in speaking]
    if speaking and all(hits):
        return _muted_text(hits[0])
    if event in AFTER_ACK and inc.row["status"] == "acked":
        return f"incident acknowledged by {inc.row.get('acked_by') or 'its alerts owners'}"
    if event in AFTER_ACK and inc.row["status"] == "resolved":
        return "resolved before this message went out"
    return None


def _muted_text(hit: dict[str, Any]) -> str:
    what = "maintenance window" if hit["kind"] == "maintenance" else "silence"
    return f"{what} #{hit['id']} by {hit['created_by']} until {pd.Timestamp(hit['ends_at']).isoformat()}" + (
        f": {hit['reason']}" if hit.get("reason") else "")


def suppression(alert: dict[str, Any] | None, event: str, muter: Muter) -> str | None:
    """Why a message should not go out now (None: send it)."""
    if alert is None or event == "test":
        return None
    hit = muter.muting(alert)
    if hit is not None:
        return _muted_text(hit)
    if event in AFTER_ACK and alert["status"] == "acked":
        return f"acknowledged by {alert.get('acked_by')}"
    if event in AFTER_ACK and alert["status"] == "resolved":
        return "resolved before this message went out"
    return None


def with_key(url: str, key: str, settings: Settings) -> str:
    """The URL with the idempotency key header (HTTP receivers) and the configured timeouts."""
    scheme = url.split("://", 1)[0].lower()
    params = []
    if scheme in HEADER_SCHEMES:
        params.append(f"+{KEY_HEADER}={quote(key, safe='')}")
    if "cto=" not in url:
        params.append(f"cto={settings.http_connect_timeout_s:g}")
    if "rto=" not in url:
        params.append(f"rto={settings.http_read_timeout_s:g}")
    return url + ("&" if "?" in url else "?") + "&".join(params)


def send(url: str, row: dict[str, Any], settings: Settings, attachment: bytes | None = None) -> tuple[bool, str | None]:
    """One apprise notification (``attachment``, PNG bytes, from memory); returns (ok, error text)."""
    import apprise
    from apprise.attachment.memory import AttachMemory

    notifier = apprise.Apprise()
    if not notifier.add(with_key(url, row["idempotency_key"], settings)):
        return False, f"apprise does not accept the URL of target {row['target']} (unknown scheme or malformed)"
    attach = None
    if attachment:
        attach = apprise.AppriseAttachment()
        attach.add(AttachMemory(content=bytes(attachment), name=row.get("attachment_name") or "alert.png",
                                mimetype="image/png"))
    body = redact(f"{row['body']}\nref: {row['idempotency_key']}")  # a message never carries a secret
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = bool(notifier.notify(body=body, title=redact(row["title"]), attach=attach,
                                  notify_type=apprise.NotifyType(severity(str(row.get("event") or "")))))
    text = redact(_LOG_PREFIX.sub("", captured.getvalue()).strip())  # apprise names the URL it failed on
    return ok, None if ok else (text or "apprise reported a failure without a message")


class _Plots:
    """Plot specs drawn at most once per delivery run (several targets share one event's plot)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.drawn: dict[str, bytes | None] = {}

    def attachment(self, row: dict[str, Any]) -> bytes | None:
        if row.get("attachment"):
            return bytes(row["attachment"])
        spec = row.get("attachment_spec")
        if not spec:
            return None
        key = json.dumps(spec, sort_keys=True)
        if key not in self.drawn:
            from smmdn.alerts.plots import spec_png

            try:
                self.drawn[key] = spec_png(self.store, spec)
            except Exception as exc:  # a plot is a courtesy: never hold the message back for it
                log.warning("alert plot failed for %s: %s", spec.get("title"), exc)
                self.drawn[key] = None
        return self.drawn[key]


def deliver_outbox(store: Store, settings: Settings, now: pd.Timestamp | str | None = None, *,
                   routes: Routes | None = None, limit: int | None = None, only: list[int] | None = None,
                   secrets: SecretResolver | None = None, plan: bool = True) -> DeliveryOutcome:
    """Plan the incident notifications due now (``smmdn.alerts.notify``; ``plan=False`` skips it), then
    attempt every due outbox row once (``now`` injectable: tests move the clock instead of sleeping).

    Why planning lives here: delivery is the last step of the daily cycle, so group_wait's default "the
    end of the cycle" is exactly this moment, after detection and verification opened what they found.
    ``secrets`` resolves ``secret:NAME`` references of the routes file (injected by the flows or the CLI,
    which know where secrets live; the library does not)."""
    now = utc(now)
    routes = routes if routes is not None else load_routes(settings, secrets=secrets)
    planned = None
    if plan:
        from smmdn.alerts.lifecycle import ConcurrentChange
        from smmdn.alerts.notify import notify

        try:
            planned = notify(store, now, routes, plot_days=settings.alert_plot_days)
        except ConcurrentChange as exc:  # another deliverer planned the same incidents: drain what is queued
            log.info("notification planning left to the concurrent run: %s", exc)
    lease = pd.Timedelta(seconds=settings.alert_delivery_lease_s)
    outcome = DeliveryOutcome()
    ids = db.due_ids(store, now, lease, limit)
    if only is not None:
        ids = [i for i in ids if i in set(only)]
    muter = Silences.active(store, now)
    plots = _Plots(store)
    for outbox_id in ids:
        row = db.claim(store, outbox_id, now, lease)
        if row is None:
            continue  # another deliverer claimed it
        outcome.attempted += 1
        alert = db.get_alert(store, row["alert_id"]) if row.get("alert_id") is not None else None
        reason = suppression(alert, row["event"], muter)
        if reason is None and row.get("incident_id") is not None:
            reason = incident_suppression(store, int(row["incident_id"]), row["event"], muter)
        if reason:
            db.finish(store, outbox_id, "suppressed", now, note=reason)
            outcome.suppressed += 1
            continue
        try:
            ok, error = send(routes.resolve(row["target"]), row, settings, plots.attachment(row))
        except DeliveryConfigError as exc:
            ok, error = False, str(exc)
        except Exception as exc:  # a plugin blowing up must not stop the other messages
            ok, error = False, redact(f"{type(exc).__name__}: {exc}")
        if ok:
            db.finish(store, outbox_id, "sent", now)
            outcome.sent += 1
        elif int(row["attempts"]) >= settings.alert_delivery_attempts:
            db.finish(store, outbox_id, "failed", now, error=error)
            outcome.failed += 1
            outcome.errors.append(f"#{outbox_id} {row['target']}: {error}")
        else:
            db.finish(store, outbox_id, "pending", now, error=error,
                      retry_at=now + backoff(int(row["attempts"]), settings))
            outcome.retrying += 1
            outcome.errors.append(f"#{outbox_id} {row['target']}: {error}")
    outcome.errors = outcome.errors[:20]
    outcome.outbox = db.outbox_counts(store)
    outcome.notifications = planned.to_dict() if planned is not None else {}
    log.info("delivery: %d attempted, %d sent, %d suppressed, %d to retry, %d failed", outcome.attempted,
             outcome.sent, outcome.suppressed, outcome.retrying, outcome.failed)
    if outcome.retrying or outcome.failed:
        log.warning("alert delivery: %d sent, %d to retry, %d failed (%s)", outcome.sent, outcome.retrying,
                    outcome.failed, "; ".join(outcome.errors[:3]))
    return outcome


def send_test(store: Store, settings: Settings, team: str, now: pd.Timestamp | str | None = None, *,
              by: str = "operator", routes: Routes | None = None,
              secrets: SecretResolver | None = None) -> DeliveryOutcome:
    """Queue and deliver a test message to every URL of ``team`` (checks a route without an anomaly)."""
    import uuid

    now = utc(now)
    routes = routes if routes is not None else load_routes(settings, secrets=secrets)
    if team != "default" and team not in routes.teams:
        raise InputError(f"unknown team {team!r}", where="smmdn alerts test", column="team",
                         fix=f"one of: {', '.join(['default', *sorted(routes.teams)])}")
    token = uuid.uuid4().hex[:12]
    rows = [{"idempotency_key": f"test:{token}:{target}", "alert_id": None, "event": "test", "team": team,
             "target": target, "title": f"[smmdn] TEST: route check for team {team}",
             "body": f"Test message requested by {by} at {now.isoformat()}: alerts for team {team} reach this "
                     f"destination ({target}).", "status": "pending", "attempts": 0, "next_attempt_at": now,
             "created_at": now} for target in routes.targets(team)]
    db.enqueue(store, rows)
    queued = db.read_outbox(store, status=["pending"])
    mine = queued["idempotency_key"].str.startswith(f"test:{token}")
    ids = [int(i) for i in queued.loc[mine, "id"]]
    return deliver_outbox(store, settings, now, routes=routes, only=ids, plan=False)
