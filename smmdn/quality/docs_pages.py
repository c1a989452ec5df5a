"""Validation pages that work offline and are kept: one self-contained HTML page per validation run, and an
index of every run, newest first.

Why beside Great Expectations' own Data Docs: GX's pages load Bootstrap, jQuery and bootstrap-table from
CDNs (its index is an empty table without them), and a site keeps the last run only. These pages carry
their stylesheet inline and need no script, so a field laptop or an air-gapped server shows them as they
are; GX's pages stay under ``<source>/`` for those who know them (``strip_cdn`` makes them readable
offline, without the interactive table)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1f2933;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
.meta{color:#52606d;margin-bottom:16px}
table{border-collapse:collapse;width:100%;margin:8px 0 16px}
th,td{border-bottom:1px solid #d9e2ec;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}
tr.fail td{background:#fff1f1}
.ok{color:#0f7b3f;font-weight:600}.bad{color:#b42318;font-weight:600}.warn{color:#9a6700;font-weight:600}
code{font-size:12px;background:#f0f4f8;padding:1px 4px;border-radius:3px;word-break:break-all}
a{color:#1b5fb4}
"""
RUNS = "runs"
CDN = re.compile(r"<(?:link|script)\b[^>]*(?:href|src)=\"https?://[^\"]*\"[^>]*>(?:\s*</script>)?", re.I)
REMOTE_IMG = re.compile(r"<img\b[^>]*src=\"https?://[^\"]*\"[^>]*>", re.I)
REMOTE_URL = re.compile(r"url\(\s*['\"]?https?://[^)]*\)", re.I)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>")


def _status(entry: dict[str, Any]) -> tuple[str, str]:
    if entry.get("success"):
        return "ok", "passed"
    return ("warn", "flagged") if entry.get("outcome") == "flag" else ("bad", "failed")


def _observed(value: Any) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return html.escape(text if len(text) < 120 else text[:117] + "…")


def write_run_page(docs_root: Path, source: str, suite: str, results: dict[str, dict[str, Any]], rows: int,
                   when: pd.Timestamp | None = None) -> Path:
    """``<docs_root>/runs/<day>/<time>-<source>-<suite>.html`` for this run, and the index refreshed."""
    when = pd.Timestamp.now(tz="UTC") if when is None else pd.Timestamp(when)
    failed = sum(1 for e in results.values() if not e.get("success"))
    table = "".join(
        f"<tr class='{'fail' if not e.get('success') else ''}'><td class={_status(e)[0]}>{_status(e)[1]}</td>"
        f"<td>{html.escape(name)}</td><td><code>{html.escape(str(e.get('expectation')))}</code></td>"
        f"<td>{html.escape(str(e.get('column') or '-'))}</td><td>{int(e.get('unexpected_count') or 0)}</td>"
        f"<td>{_observed(e.get('observed_value'))}</td><td>{html.escape(str(e.get('error') or e.get('note') or ''))}"
        "</td></tr>" for name, e in results.items())
    verdict = ("<span class=ok>every expectation passed</span>" if not failed
               else f"<span class=bad>{failed} of {len(results)} expectation(s) not met</span>")
    body = (f"<p><a href='../../index.html'>← all validation runs</a></p><h1>{html.escape(source)}: "
            f"{html.escape(suite)}</h1><div class=meta>{when.strftime('%Y-%m-%d %H:%M:%S')} UTC · {rows} row(s) "
            f"validated · {verdict}</div><h2>Expectations</h2><table><tr><th>status</th><th>check</th>"
            f"<th>expectation</th><th>column</th><th>unexpected rows</th><th>observed</th><th>note</th></tr>"
            f"{table}</table>")
    directory = docs_root / RUNS / when.strftime("%Y-%m-%d")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{when.strftime('%H%M%S%f')}-{_slug(source)}-{_slug(suite)}.html"
    path.write_text(_page(f"{source} {suite} {when:%Y-%m-%d %H:%M}", body), encoding="utf-8")
    summary = {"source": source, "suite": suite, "time": when.isoformat(), "rows": rows,
               "expectations": len(results), "failed": failed, "page": path.relative_to(docs_root).as_posix()}
    path.with_suffix(".json").write_text(json.dumps(summary), encoding="utf-8")
    write_index(docs_root)
    return path


def write_index(docs_root: Path) -> Path:
    """``<docs_root>/index.html``: every kept run, newest first, with links to its page."""
    runs = []
    for meta in (docs_root / RUNS).glob("*/*.json"):
        try:
            runs.append(json.loads(meta.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a page being written by another process: it lists next time
    runs.sort(key=lambda r: r["time"], reverse=True)
    rows = "".join(
        f"<tr class='{'fail' if r['failed'] else ''}'><td>{html.escape(r['time'][:19].replace('T', ' '))}</td>"
        f"<td>{html.escape(r['source'])}</td><td>{html.escape(r['suite'])}</td><td>{r['rows']}</td>"
        f"<td class={'bad' if r['failed'] else 'ok'}>{r['failed'] or 'none'}</td>"
        f"<td><a href='{html.escape(r['page'])}'>result</a></td></tr>" for r in runs)
    others = sorted(p.parent.name for p in docs_root.glob("*/index.html") if p.parent.name != RUNS)
    gx = (" · Great Expectations' own pages (last run per source): " + ", ".join(
        f"<a href='{html.escape(n)}/index.html'>{html.escape(n)}</a>" for n in others)) if others else ""
    body = (f"<h1>Validation runs</h1><div class=meta>{len(runs)} run(s) kept, newest first{gx}</div>"
            "<table><tr><th>time (UTC)</th><th>source</th><th>suite</th><th>rows</th><th>expectations not met</th>"
            f"<th></th></tr>{rows}</table>")
    index = docs_root / "index.html"
    docs_root.mkdir(parents=True, exist_ok=True)
    index.write_text(_page("smmdn validation runs", body), encoding="utf-8")
    return index


def strip_cdn(site: Path) -> int:
    """Remove CDN stylesheets, scripts and images from GX's pages under ``site`` (they only stall offline) and keep
    its local stylesheet; returns the pages changed."""
    changed = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        cleaned = REMOTE_URL.sub("none", REMOTE_IMG.sub("", CDN.sub("", text)))
        if cleaned != text:
            page.write_text(cleaned, encoding="utf-8")
            changed += 1
    return changed


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"
