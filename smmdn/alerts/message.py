"""The words of an alert: what, where (site, depth, sensor, coordinates), since when, observed vs predicted,
the likely cause and what to do — plain text that reads the same in a mail, a chat or an SMS gateway."""

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
    "test": "TEST",
}
LABELS = {
    "sensor_fault": "likely sensor fault",
    "cluster": "whole cluster deviates",
    "deviation": "deviation from the forecast",
    "flatline": "sensor stuck (flatline)",
    "missing": "no data",
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
    "calibration_drift": "the predicted intervals no longer match how often observations fall inside them; "
                         "a full retrain is scheduled for the next daily cycle.",
    "model_fallback": "the champion's artifact could not be loaded (missing, truncated or unreadable storage); "
                      "forecasts and detection run on the previous good model version until it loads again. "
                      "Check the shared storage, then `smmdn models list` (promote or retrain).",
}


SEVERITY = {"test": "info", "resolved": "info", "opened": "warning", "reopened": "warning",
            "reminder": "warning", "escalated": "failure"}


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
    sensor = "all sensors" if alert["sensor"] == "*" else f"sensor {alert['sensor']}"
    return f"Where: site {alert['site']}{name}{coords}; depth {float(alert['depth_cm']):g} cm; {sensor}"


def subject(alert: dict[str, Any], event: str) -> str:
    where = "network" if alert["site"] == "*" else (
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
    if kind == "missing":
        lines.append(f"Since: last reading {details.get('last_reading') or 'none in the look-back window'}")
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
    if kind not in ("missing", "calibration_drift", "model_fallback", "sensors_excluded"):
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
        lines.append(f"Resolved: {alert.get('resolved_by') or 'auto'}" + (f" — {note}" if note else ""))
    elif event == "escalated":
        lines.append(f"Escalated: open and unacknowledged since {_day(alert.get('created_at'))}")
    elif note:
        lines.append(f"Note: {note}")
    if event != "resolved" and alert.get("id") is not None:
        lines.append(f"Acknowledge: smmdn alerts ack {alert['id']} --by <your name>")
    lines.append(f"Alert #{alert.get('id')} (revision {alert.get('revision', 0)}) · teams: {', '.join(teams)}")
    return subject(alert, event), "\n".join(lines)
