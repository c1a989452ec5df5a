"""Forecast views on a TimescaleDB filled by real daily cycles: the flow's overview and per-site artifacts,
every Grafana panel's SQL as the read-only role, the CLI's show / export / plot, and the site page rendered in
headless Chromium. One fixture for all of it (three daily cycles cost about a minute)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from sqlalchemy.engine import make_url

from smmdn.config import get_settings
from smmdn.store import alerts as db
from tests.flows.conftest import HISTORY, Ops, artifacts, flow_run_logs, run_daily, task_run_logs
from tests.helpers.browser import render

pytestmark = [pytest.mark.postgres, pytest.mark.prefect, pytest.mark.slow]

DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "dashboards" / "smmdn.json"


def grafana_sql(sql: str, start: pd.Timestamp, end: pd.Timestamp, variables: dict[str, str]) -> str:
    """Expand Grafana's macros and template variables the way its PostgreSQL datasource does."""
    frm, to = f"'{start.isoformat()}'", f"'{end.isoformat()}'"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {frm} AND {to}", sql)
    sql = sql.replace("$__timeFrom()", frm).replace("$__timeTo()", to)
    for name, value in variables.items():
        sql = sql.replace(f"${name}", value)
    assert "$" not in sql, sql
    return sql


def _plant_wet_probe(ops: Ops, day: pd.Timestamp) -> str:
    """A fourth probe at the first site's 5 cm reads far too wet (its siblings are fine): an alert opens."""
    site = ops.network.sites[0].site
    hours = pd.date_range(day, periods=24, freq="h", tz="UTC")
    ops.store().write_observations(pd.DataFrame({"time": hours, "site": site, "depth_cm": 5.0, "sensor": "d",
                                                 "vwc": np.full(24, 0.58)}), source="test")
    return site


def test_views_over_real_cycles(ops: Ops, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from smmdn.cli import main

    ops.drop_day(ops.day(HISTORY))
    run_daily(ops, HISTORY + 1)
    site = _plant_wet_probe(ops, ops.day(HISTORY + 2))
    run_daily(ops, HISTORY + 2)
    run_daily(ops, HISTORY + 3)
    store = ops.store()
    assert not db.read_alerts(store, status=db.ACTIVE, site=site).empty

    # the flow's artifacts: the overview of every site, a plot for each site with an open alert
    overview = json.loads(artifacts("network-overview")[0].data)
    assert {r["site"] for r in overview} == {s.site for s in ops.network.sites}
    mine = next(r for r in overview if r["site"] == site)
    assert mine["open_alerts"] >= 1 and mine["series"] >= 9 and mine["latest_forecast"] != "-"
    site_artifact = artifacts(f"site-{site.lower()}")[0]
    assert "data:image/png;base64," in site_artifact.data and str(ops.day(HISTORY + 3).date()) in (
        site_artifact.description or "")

    # the runs tell the day's story: named after their issue day, with the library's own log lines
    runs, logs = flow_run_logs(f"daily-{ops.day(HISTORY + 3).date()}")
    assert runs and runs[0].state.is_completed()  # the newest: other tests of the session may replay that day
    steps = {r.name for r in logs if r.name.startswith("smmdn.")}
    assert {"smmdn.alerts.step", "smmdn.verify.verification", "smmdn.alerts.deliver"} <= steps, steps
    # each step its own run of that day's cycle (task runs), named after the day, with its own log lines
    daily_id = runs[0].id
    ingest_runs, ingest_logs = task_run_logs(f"ingest-{ops.day(HISTORY + 4).date()}")  # runs the morning after
    assert ingest_runs and ingest_runs[0].flow_run_id == daily_id and ingest_runs[0].state.is_completed()
    assert any(r.name == "smmdn.ingest" for r in ingest_logs)
    assert all(r.flow_run_id == daily_id for r in ingest_logs)
    for step, library in ((f"train-{ops.day(HISTORY + 3).date()}-fine-tune", "smmdn.cycle.champion"),
                          (f"validate-{ops.day(HISTORY + 3).date()}", None),  # logs at INFO: below the tests' level
                          (f"forecast-{ops.day(HISTORY + 3).date()}", "smmdn.cycle.forecast")):
        step_runs, step_logs = task_run_logs(step)
        assert step_runs and step_runs[0].flow_run_id == daily_id and step_runs[0].state.is_completed(), step
        assert library is None or any(r.name == library for r in step_logs), (step, {r.name for r in step_logs})

    # every Grafana panel's SQL returns rows, run as the read-only role
    variables = {"site": site, "depth": "5"}
    start, end = ops.day(0), ops.day(HISTORY + 10)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    url = make_url(ops.url).set(drivername="postgresql").render_as_string(hide_password=False)
    ran = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE smmdn_reader")
        assert conn.execute("SELECT current_user").fetchone()[0] == "smmdn_reader"
        for var in dashboard["templating"]["list"]:
            assert conn.execute(grafana_sql(var["query"], start, end, variables)).fetchall(), var["name"]
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                rows = conn.execute(grafana_sql(target["rawSql"], start, end, variables)).fetchall()
                assert rows, f"panel {panel['title']!r} query {target['refId']} returned no rows"
                ran += 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM alerts")
    assert ran >= 10

    # the CLI: show, export --latest without --since, an unknown site, plot
    assert main(["forecasts", "show", "--site", site, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown and {r["site"] for r in shown} == {site} and {"q05", "q50", "q95", "lead"} <= set(shown[0])
    assert main(["forecasts", "export", "--latest", "--site", site]) == 0
    exported = capsys.readouterr().out.splitlines()
    assert "q50" in exported[0].split(",") and len(exported) - 1 == len(shown)  # the same rows, as CSV
    assert main(["forecasts", "show", "--site", "NO-SUCH-SITE"]) == 2
    assert main(["forecasts", "export", "--latest", "--site", "NO-SUCH-SITE"]) == 2
    assert "unknown site" in capsys.readouterr().err
    out = tmp_path / "plots"
    assert main(["forecasts", "plot", "--site", site, "--out", str(out)]) == 0
    pngs = sorted(out.glob(f"{site}-*cm.png"))
    assert len(pngs) == 3 and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)

    # the page as a person's browser shows it: every plot decoded, nothing on the console
    page = render(out / f"{site}.html", screenshot=tmp_path / "page.png")
    decoded = re.search(r'data-plots-decoded="(\d+)/(\d+)"', page.dom)
    assert decoded and decoded.group(1) == decoded.group(2) == "3", page.dom[:500]
    assert page.console == []
    assert "Open alerts" in page.dom and "sensor_fault" in page.dom
    assert (tmp_path / "page.png").stat().st_size > 10_000
    get_settings.cache_clear()


def test_the_browser_check_sees_a_broken_page(tmp_path: Path) -> None:
    """The console check can fail: an uncaught error and a console message are both reported."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><img src='missing.png'><script>undefinedFunction()</script>"
                    "<script>console.error('boom')</script></body></html>", encoding="utf-8")
    rendered = render(page)
    assert any("undefinedFunction" in m for m in rendered.console) and "boom" in rendered.console
