"""Operator-facing text for a daily cycle (markdown summary and one table row), from its summary dict."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smmdn.display import plain, score

if TYPE_CHECKING:
    from smmdn.store import Store


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
    if isinstance(result, dict) and "opened" in result:
        return str(int(result["opened"]) + int(result.get("reopened") or 0))
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
        f"{score(tr.get('challenger_crps'))} vs champion {score(tr.get('champion_crps'))} "
        f"(window {plain(tr.get('holdout'))})",
        f"- forecast: run `{fc.get('run_id')}` **{fc.get('status')}**, {fc.get('rows', 0)} rows, "
        f"{fc.get('series', 0)} series" + (" — **STALE FORCING**: " + str(
            (fc.get("freshness") or {}).get("stale_forcing_reason")) if fc.get("stale_forcing") else ""),
        f"- alerts raised: {row['alerts']}{_alert_detail(summary)}; delivery: {_delivery_detail(summary)}",
        f"- verification: {(summary.get('verification') or {}).get('status')}, drift {row['drift']}"
        f"{_verification_detail(summary)}",
    ]
    return "\n".join(lines) + "\n"


def _result(summary: dict[str, Any], step: str) -> dict[str, Any]:
    part = summary.get(step) or {}
    result = part.get("result") if part.get("status") == "ok" else None
    return result if isinstance(result, dict) else {}


def _alert_detail(summary: dict[str, Any]) -> str:
    r = _result(summary, "alerts")
    if not r:
        return f" ({(summary.get('alerts') or {}).get('detail', '')})" if summary.get("alerts") else ""
    return (f" (resolved {r.get('resolved', 0)}, escalated {r.get('escalated', 0)}, "
            f"active {r.get('active_alerts', 0)}; {r.get('observations', 0)} new daily values of "
            f"{r.get('series', 0)} series)")


def _delivery_detail(summary: dict[str, Any]) -> str:
    r = _result(summary, "delivery")
    if not r:
        return str((summary.get("delivery") or {}).get("status"))
    box = r.get("outbox") or {}
    return (f"sent {r.get('sent', 0)}, suppressed {r.get('suppressed', 0)}, retrying {r.get('retrying', 0)}, "
            f"failed {r.get('failed', 0)} (outbox: pending {box.get('pending', 0)}, failed {box.get('failed', 0)})")


def _verification_detail(summary: dict[str, Any]) -> str:
    r = _result(summary, "verification")
    if not r:
        return ""
    rep = r.get("report") or {}
    return (f"; scored {r.get('scored', 0)} pairs; window coverage_90 {rep.get('coverage_90')}, PIT p "
            f"{rep.get('pit_p')}; {'; '.join(rep.get('reasons') or [])}")


def pit_bars(histogram: list[float], width: int = 30) -> str:
    """A PIT histogram as text bars (flat when calibrated): renders in any markdown viewer."""
    if not histogram:
        return "(no scores yet)"
    top = max(max(histogram), 0.1)
    lines = []
    for i, share in enumerate(histogram):
        bar = "█" * round(width * share / top)
        lines.append(f"{i / 10:.1f}–{(i + 1) / 10:.1f} | {bar} {share:.3f}")
    lines.append(f"(flat at {1 / len(histogram):.3f} when calibrated)")
    return "\n".join(lines)


def skill_rows(frame: Any) -> list[dict[str, Any]]:
    """Rows of a skill frame for a table artifact (floats rounded, at most 500 rows)."""
    if frame is None or len(frame) == 0:
        return []
    return [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}
            for row in frame.head(500).to_dict("records")]


def verification_markdown(result: dict[str, Any], by_lead: list[dict[str, Any]], pit_histogram: list[float],
                          plots: dict[str, str]) -> str:
    """Reliability view of the verify step: drift verdict, coverage and CRPS per lead, PIT histogram, plots."""
    r = result.get("result") if isinstance(result.get("result"), dict) else {}
    rep = r.get("report") or {}
    lines = [f"# Verification {str(r.get('now', ''))[:10]}", "",
             f"- drift: **{result.get('drift')}** — {'; '.join(rep.get('reasons') or []) or 'within limits'}",
             f"- window {rep.get('window')}: {rep.get('n', 0)} pairs ({rep.get('independent', 0)} site-depth-days) "
             f"since the last full retrain ({rep.get('since_retrain') or 'none yet'}); coverage_50 "
             f"{rep.get('coverage_50')}, coverage_90 {rep.get('coverage_90')}, PIT chi-square p {rep.get('pit_p')}",
             f"- scored this run: {r.get('scored', 0)} pairs, valid days {', '.join(r.get('valid_days') or []) or '-'}",
             "", "| lead | n | CRPS | coverage_50 | coverage_90 | width_90 | mean PIT |",
             "|---|---|---|---|---|---|---|"]
    for row in by_lead:
        lines.append(f"| {row['lead']} | {row['n']} | {row['crps']:.4f} | {row['coverage_50']:.3f} | "
                     f"{row['coverage_90']:.3f} | {row['width_90']:.4f} | {row['pit_mean']:.3f} |")
    lines += ["", "PIT histogram (last 30 days):", "", "```", pit_bars(pit_histogram), "```", ""]
    for name, path in (plots or {}).items():
        lines.append(f"- {name} plot: `{path}`")
    lines += [_inline_png(name, path) for name, path in (plots or {}).items()]
    return "\n".join(lines) + "\n"


def _inline_png(name: str, path: str) -> str:
    """The PNG itself inside the markdown (a data URI), so the artifact shows the plot without file access."""
    import base64
    from pathlib import Path

    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return f"\n![{name}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})\n"


def site_markdown(store: Store, site: str, now: Any) -> str:
    """A site with open alerts, for the UI: one plot per depth with an alert (inline PNG), and the alerts."""
    import base64

    from smmdn.views.fan import depth_png
    from smmdn.views.site import site_view

    view = site_view(store, site, days=21, now=now)
    alerting = sorted({float(d) for d in view.alerts["depth_cm"] if float(d) in view.depths}) or view.depths[:1]
    lines = [f"# {site}: open alerts", ""]
    for a in view.alerts.itertuples():
        who = "all sensors" if a.sensor == "*" else f"sensor {a.sensor}"
        lines.append(f"- #{a.id} **{a.kind}** at {float(a.depth_cm):g} cm, {who}, since "
                     f"{a.window_start:%Y-%m-%d} (`smmdn alerts show {a.id}`)")
    lines.append("")
    for depth in alerting:
        png = base64.b64encode(depth_png(view, depth)).decode("ascii")
        lines += [f"## {depth:g} cm", "", f"![{site} {depth:g} cm](data:image/png;base64,{png})", ""]
    lines.append(f"All depths: `smmdn forecasts plot --site {site}` writes a self-contained page.")
    return "\n".join(lines) + "\n"
