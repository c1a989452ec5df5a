"""The words of an alert and of an incident: what, where (site, depth, sensor, coordinates), since when,
observed vs predicted, the evidence, the likely cause, what to check and the commands to act — plain text
that reads the same in a mail, a chat or an SMS gateway.

This module owns the message layout (issue 17): other parts add kinds, labels and causes through the
tables below (``LABELS``, ``CAUSES``, ``FAULTS``, ``CHECKS``), not by formatting messages of their own."""

from __future__ import annotations

from typing import Any

import pandas as pd

from smmdn.display import DEFAULT_VWC_RESOLUTION, coordinates, vwc

EVENTS = {
    "opened": "NEW",
    "reopened": "BACK",
    "reminder": "STILL OPEN",
    "escalated": "ESCALATED",
    "resolved": "RESOLVED",
    "updated": "UPDATED",
    "digest": "DIGEST",
    "test": "TEST",
}
LABELS = {
    "sensor_fault": "likely sensor fault",
    "cluster": "whole cluster deviates",
    "deviation": "deviation from the forecast",
    "flatline": "sensor stuck (flatline)",
    "missing": "no data",
    "site_silent": "logger silent (every sensor missing)",
    "calibration_drift": "forecast calibration drift",
    "model_fallback": "champion model cannot be loaded",
    "sensors_excluded": "many sensors excluded from the model",
}
FAULTS = {  # fault types the replicate consensus names (smmdn.alerts.consensus)
    "offset": "the sensor jumped away from its siblings and stays there (a step offset): moved or re-seated "
              "probe, damaged cable or a changed calibration. Check the probe's installation and cable.",
    "drift": "the sensor drifts steadily away from its siblings: a calibration drift, salinity or lost soil "
             "contact. Check the probe; compare with a hand-held reading.",
    "stuck": "the sensor's readings stopped changing while its siblings' change: a hung probe or logger channel.",
    "spikes/noise": "the sensor's readings jump far more than its siblings': a loose connector, interference "
                    "or a failing probe. Check the cable and connector.",
    "dropout": "the sensor reads close to zero while its siblings read normal water contents: a lost contact, "
               "a broken probe or a wiring fault. Check the probe and its cable.",
}
CAUSES = {
    "sensors_excluded": "more sensors than the set share are under open fault alerts and left out of the model's "
                        "training and observed state; if the faults are false the model is starved. Review the "
                        "open fault alerts (smmdn alerts) and resolve the false ones.",
    "sensor_fault": "this sensor deviates from the predicted mixture and there is no sibling at its depth to "
                    "compare it with, so the attribution rests on other depths and the quality flags and is "
                    "weak: drift, damage or lost soil contact, or an event only this depth saw. Check the probe.",
    "cluster": "the sensors deviate together on the same side: a hydrological event the forecast missed "
               "(rain, irrigation, snowmelt, ponding) or a forcing error (wrong or missing weather input). "
               "No probe is suspected; check the rain gauge and the weather forcing.",
    "deviation": "the series left the predicted range and nothing to compare it with settles why; "
                 "check recent rain at the site, then the probe.",
    "flatline": "validation flagged the readings as identical for a day or more: a hung logger or probe.",
    "missing": "no reading arrived: logger, telemetry, power or the upstream feed. Check the station link.",
    "site_silent": "no sensor of the site's logger reports: the logger, its power or its telemetry, not the "
                   "probes. Check the station link and the logger's power first.",
    "calibration_drift": "the predicted intervals no longer match how often observations fall inside them; "
                         "a full retrain is scheduled for the next daily cycle.",
    "model_fallback": "the champion's artifact could not be loaded (missing, truncated or unreadable storage); "
                      "forecasts and detection run on the previous good model version until it loads again. "
                      "Check the shared storage, then `smmdn models list` (promote or retrain).",
}


SEVERITY = {"test": "info", "resolved": "info", "digest": "info", "opened": "warning", "reopened": "warning",
            "updated": "warning", "reminder": "warning", "escalated": "failure"}


def severity(event: str) -> str:
    """The notification type a chat or mail client shows (apprise's info / warning / failure): an
    escalation must not look like a routine note."""
    return SEVERITY.get(event, "warning")


def _day(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _num(value: Any, digits: int = 4) -> str:
    """A unitless number (PIT); water contents go through ``vwc``."""
    if value is None or pd.isna(value):
        return "-"
    return f"{float(value):.{digits}f}"


def where_line(alert: dict[str, Any], site: dict[str, Any] | None) -> str:
    site = site or {}
    name = f" ({site['name']})" if site.get("name") else ""
    lat, lon = site.get("latitude"), site.get("longitude")
    coords = f", {coordinates(lat, lon)}" if lat is not None and lon is not None and not (
        pd.isna(lat) or pd.isna(lon)) else ""
    if alert["site"] == "*":
        return "Where: the whole network"
    if alert.get("kind") == "site_silent":
        return f"Where: site {alert['site']}{name}{coords}; the whole logger (every depth and sensor)"
    sensor = "all sensors" if alert["sensor"] == "*" else f"sensor {alert['sensor']}"
    return f"Where: site {alert['site']}{name}{coords}; depth {float(alert['depth_cm']):g} cm; {sensor}"


def subject(alert: dict[str, Any], event: str) -> str:
    where = "network" if alert["site"] == "*" else f"{alert['site']}" if alert["kind"] == "site_silent" else (
        f"{alert['site']} {float(alert['depth_cm']):g} cm" + ("" if alert["sensor"] == "*" else f" {alert['sensor']}"))
    label = LABELS.get(alert["kind"], alert["kind"])
    fault = (alert.get("details") or {}).get("fault")
    if alert["kind"] == "sensor_fault" and fault:
        label = f"sensor fault ({fault})"
    return f"[smmdn] {EVENTS.get(event, event.upper())}: {label} — {where}"


def render(alert: dict[str, Any], event: str, site: dict[str, Any] | None, teams: list[str],
           note: str | None = None, resolution: float = DEFAULT_VWC_RESOLUTION) -> tuple[str, str]:
    """(title, body) of one lifecycle event of ``alert`` (a row of the alerts table); water contents on the
    ``resolution`` grid (``SMMDN_VWC_RESOLUTION``)."""

    def w(value: Any) -> str:
        return "-" if value is None or pd.isna(value) else vwc(value, resolution)

    details = alert.get("details") or {}
    kind = alert["kind"]
    lines = [subject(alert, event).removeprefix("[smmdn] "), where_line(alert, site)]
    if kind in ("missing", "site_silent"):
        lines.append(f"Since: last reading {details.get('last_reading') or 'none in the look-back window'}"
                     + (f"; {details['sensors']} sensor(s) silent" if details.get("sensors") else ""))
    elif kind == "sensors_excluded":
        lines.append(f"Since: {_day(alert['window_start'])}; {details.get('basis', '')}")
    elif kind == "calibration_drift":
        lines.append(f"Since: {_day(alert['window_start'])}; window {details.get('window', '-')}")
        for reason in details.get("reasons", []):
            lines.append(f"Test: {reason}")
    elif kind == "model_fallback":
        lines.append(f"Since: {_day(alert['window_start'])}; champion {details.get('champion')}, serving "
                     f"{details.get('serving')}")
        lines.append(f"Error: {details.get('error', '-')}")
    else:
        days = details.get("days_outside")
        lines.append(f"Since: {_day(alert['window_start'])}; last seen {_day(alert['window_end'])}"
                     + (f" ({days} day(s) outside)" if days else ""))
    if kind not in ("missing", "site_silent", "calibration_drift", "model_fallback", "sensors_excluded"):
        level = details.get("level_pct", "")
        hdr = details.get("hdr") or []
        region = " ∪ ".join(f"{w(a)}–{w(b)}" for a, b in hdr) or (
            f"{w(alert.get('predicted_low'))}–{w(alert.get('predicted_high'))}")
        what = "cluster mean" if alert["sensor"] == "*" else "daily mean"
        lines.append(f"Observed: {w(alert.get('observed'))} m3/m3 ({what}); predicted {level} % "
                     f"highest-density region {region} m3/m3; PIT {_num(alert.get('pit'), 4)}")
        if details.get("issue_time"):
            lines.append(f"Forecast: issued {_day(details['issue_time'])}, lead {details.get('lead')} day(s), "
                         f"model {details.get('model_version')}")
        siblings = details.get("siblings") or {}
        if siblings:
            lines.append("Sensors that day: " + ", ".join(
                f"{s} {w(v.get('vwc'))}{' (outside)' if v.get('outside') else ''}" for s, v in siblings.items()))
        if details.get("fault"):
            recent = details.get("recent_residuals") or []
            lines.append("Residual vs siblings (m3/m3, sensor minus the median of its siblings, offsets removed): "
                         + (", ".join(f"{d} {'-' if r is None else f'{r:+.3f}'}" for d, r in recent) or "-")
                         + f"; siblings' reference that day {w(details.get('reference'))} m3/m3")
            if details.get("weak_attribution"):
                lines.append("Attribution: weak — two sensors only; their residuals mirror each other and the one "
                             "farther from the forecast is named")
        flags = details.get("flags") or {}
        raised = {k: v for k, v in flags.items() if k != "readings" and v}
        if raised:
            lines.append("Quality flags that day: " + ", ".join(f"{k} {v}" for k, v in raised.items())
                         + f" of {flags.get('readings')} readings")
    cause = FAULTS.get(details.get("fault") or "", "") if kind == "sensor_fault" else ""
    cause = cause or CAUSES.get(kind, "")
    basis = details.get("basis")
    lines.append(f"Likely cause: {cause}" + (f" [basis: {basis}]" if basis else ""))
    if event == "resolved":
        note = note or details.get("resolved_note")
        lines.append(f"Resolved: {alert.get('resolved_by') or 'auto'}" + (f" — {note}" if note else ""))
    elif event == "escalated":
        lines.append(f"Escalated: open and unacknowledged since {_day(alert.get('created_at'))}")
    elif note:
        lines.append(f"Note: {note}")
    if event != "resolved" and alert.get("id") is not None:
        lines.append(f"Acknowledge: smmdn alerts ack {alert['id']} --by <your name>")
    lines.append(f"Alert #{alert.get('id')} (revision {alert.get('revision', 0)}) · teams: {', '.join(teams)}")
    return subject(alert, event), "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# incidents (smmdn.alerts.notify) and digests (smmdn.alerts.digest)
# ---------------------------------------------------------------------------------------------------
CHECKS = {  # what a technician checks on site, per root kind
    "sensor_fault": "the probe named above: installation, soil contact, cable and connector; compare with a "
                    "hand-held reading next to it.",
    "flatline": "the logger channel of the sensor (restart it) and the probe's cable.",
    "cluster": "the rain gauge, irrigation or ponding at the site, and the weather forcing; no probe is suspected.",
    "deviation": "recent rain or irrigation at the site, then the probe.",
    "missing": "the logger's channels for the sensors listed, their cables, then the telemetry.",
    "site_silent": "the logger's power (battery, solar panel), its modem/telemetry and the upstream feed.",
}


def duration_text(start: Any, end: Any) -> str:
    """``3 d 4 h`` between two instants (``-`` when one is missing)."""
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return "-"
    seconds = max((pd.Timestamp(end) - pd.Timestamp(start)).total_seconds(), 0)
    days, rest = divmod(int(seconds), 86400)
    return (f"{days} d " if days else "") + f"{rest // 3600} h"


def _where_short(alert: dict[str, Any]) -> str:
    if alert["site"] == "*":
        return "network"
    if alert["kind"] == "site_silent":
        return f"{alert['site']} (whole logger)"
    sensor = "" if alert["sensor"] == "*" else f" {alert['sensor']}"
    return f"{alert['site']} {float(alert['depth_cm']):g} cm{sensor}"


def incident_subject(inc: Any, event: str) -> str:
    root = inc.root
    others = len(inc.members) - 1
    extra = f" (+{others} related alert{'s' if others != 1 else ''})" if others > 0 else ""
    return f"{subject(root, event)}{extra} · incident #{inc.id}"


def member_key(m: dict[str, Any]) -> str:
    """What a member says, whatever its alert id: a recurrence of the same kind at the same place (a new
    alert after the old one cleared) is not news. A cluster event is a site's story: the wetting front
    reaching another depth is the event running its course, nothing for a field team to act on, so it
    is listed in the next message and the digest, not sent as an update (the budget: opened, at most one
    escalation, resolved)."""
    if m["kind"] == "cluster":
        return f"{m['site']}|*|*|cluster"
    return f"{m['site']}|{float(m['depth_cm']):g}|{m['sensor']}|{m['kind']}"


def loud_keys(inc: Any) -> set[str]:
    return {member_key(m) for m in inc.loud()}


def told_keys(inc: Any, fingerprint: str | None) -> set[str]:
    """The places and kinds the message with ``fingerprint`` (alert ids and kinds) spoke of."""
    by_id = {int(m["id"]): m for m in inc.members}
    ids = [x.split(":") for x in (fingerprint or "").split(";")[0].split(",") if x]
    return {member_key(by_id[int(i)]) if int(i) in by_id else f"#{i}|{k}" for i, k in ids}


def changes(inc: Any, fingerprint: str | None) -> list[str]:
    """What changed since the message whose fingerprint was ``fingerprint``: members added or now muted."""
    moved = [f"alert #{m['id']} {LABELS.get(m['kind'], m['kind'])} at {_where_short(m)} taken over from incident "
             f"#{m['_moved_from']} (explained by this incident; nothing more is sent about #{m['_moved_from']})"
             for m in inc.members if m.get("_moved_from") is not None]
    if fingerprint is None:  # the first message: only where its members came from
        return moved
    before, now = told_keys(inc, fingerprint), loud_keys(inc)
    fresh = {member_key(m): m for m in inc.loud() if member_key(m) in now - before}  # one line per place and kind
    out = [f"new: alert #{m['id']} {LABELS.get(m['kind'], m['kind'])} at {_where_short(m)}" for m in fresh.values()]
    gone = {member_key(m): m for m in inc.members if member_key(m) in before - now}
    out += [f"now explained by another alert (inhibited): #{m['id']} {m['kind']} at {_where_short(m)}"
            for m in gone.values()]
    out += moved
    if not out and inc.row.get("_reopened"):
        return ["back after its resolution"]
    return out


def _member_line(m: dict[str, Any]) -> str:
    line = f"  #{m['id']} {LABELS.get(m['kind'], m['kind'])} at {_where_short(m)}, {m['status']}, since " \
           f"{_day(m.get('window_start'))}"
    if m.get("inhibited_by") is not None:
        line += f" — inhibited by #{m['inhibited_by']} ({m.get('inhibit_rule')})"
    return line


def render_incident(inc: Any, event: str, site: dict[str, Any] | None, team: str, what_changed: list[str],
                    resolution: float = DEFAULT_VWC_RESOLUTION, now: Any = None) -> tuple[str, str]:
    """(title, body) of one incident message: the root alert's evidence, the members, what changed, what to
    check, and the commands to acknowledge, silence or plan maintenance."""
    root = inc.root
    _, alert_body = render(root, "resolved" if event == "resolved" else "opened", site, [team], None, resolution)
    evidence = [x for x in alert_body.splitlines()[1:] if not x.startswith(("Alert #", "Acknowledge:"))]
    title = incident_subject(inc, event)
    lines = [title.removeprefix("[smmdn] "), *evidence]
    if what_changed:
        lines.append("What changed: " + "; ".join(what_changed))
    if len(inc.members) > 1:
        lines.append(f"Alerts in this incident ({len(inc.members)}):")
        lines += [_member_line(m) for m in inc.members]
    check = CHECKS.get(root.get("kind", ""), "")
    if check and event != "resolved":
        lines.append(f"What to check: {check}")
    opened = inc.row.get("opened_at")
    if event == "resolved":
        lines.append(f"Lasted: {duration_text(opened, inc.row.get('resolved_at'))}, every alert cleared "
                     f"(opened {_day(opened)}, resolved {_day(inc.row.get('resolved_at'))})")
    elif event == "escalated":
        lines.append(f"Escalated: open and unacknowledged since {_day(opened)}. This is the one message your team "
                     f"gets about it; its owners hear the resolution (follow it: smmdn alerts incidents {inc.id})")
    elif event == "reminder":
        lines.append(f"Still open for {duration_text(opened, now)}; nobody acknowledged it yet")
    if event != "resolved":
        lines.append(f"Acknowledge: smmdn alerts ack --incident {inc.id} --by <your name>")
        where = f"{root['site']}" if root.get("site") not in (None, "*") else "<site>"
        lines.append(f"Silence: smmdn alerts silence --incident {inc.id} --for 2d --by <your name> --reason …")
        if where != "<site>":
            lines.append(f"Maintenance: smmdn alerts maintenance {where} --start <ISO> --end <ISO> --by <your name>")
    lines.append(f"Incident #{inc.id} · team {team}")
    return title, "\n".join(lines)


def render_digest(team: str, entries: list[dict[str, Any]], sites: dict[str, dict[str, Any]],
                  resolution: float, now: Any) -> tuple[str, str]:
    """(title, body) of a team's daily digest: one paragraph per incident."""
    open_n = sum(1 for e in entries if e["incident"].row["status"] != "resolved")
    title = f"[smmdn] DIGEST: {open_n} open incident(s) for team {team} — {pd.Timestamp(now):%Y-%m-%d}"
    lines = [title.removeprefix("[smmdn] ")]
    for e in entries:
        inc = e["incident"]
        root = inc.root
        state = inc.row["status"]
        if state == "acked":
            state = f"acknowledged by {inc.row.get('acked_by') or 'its alerts owners'}"
        if e["silenced"]:
            state += ", silenced"
        site = sites.get(str(root.get("site"))) or {}
        lines.append(f"- #{inc.id} {LABELS.get(root.get('kind'), root.get('kind'))} at {_where_short(root)}"
                     + (f" ({site['name']})" if site.get("name") else "")
                     + f": {state}, open {duration_text(inc.row.get('opened_at'), inc.row.get('resolved_at') or now)}, "
                     f"{len(inc.members)} alert(s)"
                     + (f"; since the last digest: {', '.join(e['events'])}" if e["events"] else ""))
    lines.append("Details: smmdn alerts incidents; act: smmdn alerts ack --incident <id> --by <your name>")
    return title, "\n".join(lines)
