"""Operator-facing text for a daily cycle (markdown summary and one table row), from its summary dict."""

from __future__ import annotations

from typing import Any


def _ingest_totals(summary: dict[str, Any]) -> dict[str, int]:
    rows = (summary.get("ingest") or {}).get("summaries", [])
    keys = ("fetched", "inserted", "updated", "quarantined", "flagged", "forcing_inserted")
    totals = {k: sum(int(r.get(k) or 0) for r in rows) for k in keys}
    totals["failed_sources"] = sum(1 for r in rows if r.get("status") == "failed")
    return totals


def _alert_count(summary: dict[str, Any]) -> str:
    alerts = summary.get("alerts") or {}
    if alerts.get("status") != "ok":
        return alerts.get("status", "n/a")
    result = alerts.get("result")
    if isinstance(result, dict) and "rows" in result:
        return str(result["rows"])
    if isinstance(result, list):
        return str(len(result))
    return str(result)


def cycle_row(summary: dict[str, Any]) -> dict[str, Any]:
    tr = summary.get("training") or {}
    fc = summary.get("forecast") or {}
    val = summary.get("validation") or {}
    return {
        "issue": summary["issue"], **_ingest_totals(summary), "validation": val.get("status"),
        "training": f"{tr.get('kind', '')} {tr.get('status', '')}".strip(), "model": fc.get("model_version"),
        "holdout_crps": tr.get("challenger_crps"), "champion_crps": tr.get("champion_crps"),
        "forecast_rows": fc.get("rows"), "stale_forcing": fc.get("stale_forcing"), "alerts": _alert_count(summary),
        "drift": (summary.get("verification") or {}).get("drift"),
    }


def cycle_markdown(summary: dict[str, Any]) -> str:
    row = cycle_row(summary)
    tr = summary.get("training") or {}
    fc = summary.get("forecast") or {}
    val = summary.get("validation") or {}
    docs = "\n".join(f"  - `{d}`" for d in val.get("data_docs", [])) or "  - (none this cycle)"
    lines = [
        f"# Daily cycle {summary['issue']}" + (" (replay)" if summary.get("replay") else ""),
        "",
        f"- cold start: **{summary.get('cold_start')}**",
        f"- data: fetched {row['fetched']}, new {row['inserted']}, updated {row['updated']}, "
        f"quarantined {row['quarantined']}, flagged {row['flagged']}, forcing values {row['forcing_inserted']}, "
        f"failed sources {row['failed_sources']}",
        f"- validation: **{val.get('status')}** ({val.get('runs', 0)} runs; failed: {val.get('failed') or 'none'}; "
        f"open quarantine rows {val.get('open_quarantine', 0)}); Data Docs:",
        docs,
        f"- training: {tr.get('kind', '-')} → **{tr.get('status', '-')}** {tr.get('version', '')}: "
        f"{tr.get('reason', '')} (why: {tr.get('why', '-')}; device {tr.get('device', '-')})",
        f"- champion: **{tr.get('champion') or fc.get('model_version')}**, held-out CRPS challenger "
        f"{tr.get('challenger_crps')} vs champion {tr.get('champion_crps')} (window {tr.get('holdout')})",
        f"- forecast: run `{fc.get('run_id')}` **{fc.get('status')}**, {fc.get('rows', 0)} rows, "
        f"{fc.get('series', 0)} series" + (" — **STALE FORCING**: " + str(
            (fc.get("freshness") or {}).get("stale_forcing_reason")) if fc.get("stale_forcing") else ""),
        f"- alerts raised: {row['alerts']}; delivery: {(summary.get('delivery') or {}).get('status')}",
        f"- verification: {(summary.get('verification') or {}).get('status')}, drift {row['drift']}",
    ]
    return "\n".join(lines) + "\n"
